package integration

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// Rule 1: with run_on_preflight false a CORS preflight goes on without a
// key, and still loses forged identity headers; anything short of a
// preflight still needs a key.
func TestPreflight(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		run_on_preflight false
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	key_auth {
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	preflight := []string{"Origin", "http://example.com", "Access-Control-Request-Method", "POST"}
	options := func(base string, hdr ...string) *response {
		return do(t, req(http.MethodOptions, base+"/cors", nil, hdr...))
	}

	// run_on_preflight false.
	r := options(site, append(preflight, forged...)...)
	got := wantIdentity(t, r, idNobody)
	if got.Method != http.MethodOptions || got.Header.Get("Origin") != "http://example.com" {
		t.Errorf("upstream got %s with Origin %q", got.Method, got.Header.Get("Origin"))
	}
	// A key is not looked at on a preflight.
	wantIdentity(t, options(site, append(preflight, "apikey", keyAlice)...), idNobody)
	wantIdentity(t, options(site, append(preflight, "apikey", keyWrong)...), idNobody)
	// Not a preflight: OPTIONS without one of the two headers, or another method.
	want401(t, options(site, "Origin", "http://example.com"), msgNoKey)
	want401(t, options(site, "Access-Control-Request-Method", "POST"), msgNoKey)
	want401(t, get(t, site+"/cors", preflight...), msgNoKey)
	wantIdentity(t, options(site, "Origin", "http://example.com", "apikey", keyAlice), idAlice)

	// run_on_preflight true, the default.
	want401(t, options(site2, preflight...), msgNoKey)
	wantIdentity(t, options(site2, append(preflight, "apikey", keyAlice)...), idAlice)
}

// Rule 2: key names in order, header then query then body; the first
// location where a name is present decides, and the next name is tried only
// when one is absent everywhere. Also rule 3's "absent" values.
func TestKeyNameOrderAndLocations(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_names apikey token
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	for _, tc := range []struct {
		name string
		call call
		want outcome
	}{
		{"apikey header", call{hdr: []string{"apikey", keyAlice}}, pass(idAlice)},
		{"apikey query", call{path: "/?apikey=" + keyAlice}, pass(idAlice)},
		{"apikey form", call{ctype: formType, body: "apikey=" + keyAlice}, pass(idAlice)},
		{"token header when apikey is absent everywhere", call{hdr: []string{"token", keyBob}}, pass(idBob)},
		{"token query", call{path: "/?token=" + keyBob}, pass(idBob)},
		{"token body", call{ctype: jsonType, body: `{"token": "` + keyBob + `"}`}, pass(idBob)},
		{"wrong apikey header decides before a right token header",
			call{hdr: []string{"apikey", keyWrong, "token", keyAlice}}, reject(msgInvalid)},
		{"wrong apikey query decides before a right token header",
			call{path: "/?apikey=" + keyWrong, hdr: []string{"token", keyAlice}}, reject(msgInvalid)},
		{"wrong apikey body decides before a right token header",
			call{hdr: []string{"token", keyAlice}, ctype: formType, body: "apikey=" + keyWrong}, reject(msgInvalid)},
		{"right apikey header before a wrong apikey query",
			call{path: "/?apikey=" + keyWrong, hdr: []string{"apikey", keyAlice}}, pass(idAlice)},
		{"right apikey query before a wrong apikey body",
			call{path: "/?apikey=" + keyAlice, ctype: formType, body: "apikey=" + keyWrong}, pass(idAlice)},
		{"wrong apikey header before a right apikey query",
			call{path: "/?apikey=" + keyAlice, hdr: []string{"apikey", keyWrong}}, reject(msgInvalid)},
		{"wrong apikey query before a right apikey body",
			call{path: "/?apikey=" + keyWrong, ctype: formType, body: "apikey=" + keyAlice}, reject(msgInvalid)},
		{"the body is not read when the header decides (a duplicate in it does not count)",
			call{hdr: []string{"apikey", keyAlice}, ctype: formType, body: "apikey=1&apikey=2"}, pass(idAlice)},
		{"an empty apikey header is present: No API key, token not tried",
			call{hdr: []string{"apikey", "", "token", keyAlice}}, reject(msgNoKey)},
		{"?apikey without '=' is absent: token decides",
			call{path: "/?apikey&x=1", hdr: []string{"token", keyAlice}}, pass(idAlice)},
		{"?apikey without '=' is absent: the body decides",
			call{path: "/?apikey", ctype: formType, body: "apikey=" + keyAlice}, pass(idAlice)},
		{"a form field without '=' is absent", call{ctype: formType, body: "apikey&token=" + keyAlice}, pass(idAlice)},
		{"a JSON number is absent", call{ctype: jsonType, body: `{"apikey": 12, "token": "` + keyAlice + `"}`}, pass(idAlice)},
		{"a JSON true is absent", call{ctype: jsonType, body: `{"apikey": true, "token": "` + keyAlice + `"}`}, pass(idAlice)},
		{"a JSON false is absent", call{ctype: jsonType, body: `{"apikey": false, "token": "` + keyAlice + `"}`}, pass(idAlice)},
		{"a JSON null is absent", call{ctype: jsonType, body: `{"apikey": null, "token": "` + keyAlice + `"}`}, pass(idAlice)},
		{"a JSON null in the body lets the query of the next name decide",
			call{path: "/?token=" + keyBob, ctype: jsonType, body: `{"apikey": null}`}, pass(idBob)},
		{"no key anywhere", call{path: "/?x=1", hdr: []string{"x-other", "1"}, ctype: formType, body: "a=b"}, reject(msgNoKey)},
		{"a name matches exactly in the query", call{path: "/?APIKEY=" + keyAlice + "&apikeys=" + keyAlice}, reject(msgNoKey)},
		{"a name matches exactly in the body", call{ctype: formType, body: "Apikey=" + keyAlice}, reject(msgNoKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, tc.call.send(t, site), "Key")
		})
	}
}

// Rule 2: header names match case-insensitively, and an underscore in a
// key name matches a dash in a header; Caddy drops underscored headers
// unless the server expects them, and then drops the dashed spelling.
func TestHeaderNames(t *testing.T) {
	e := newEnv(t)
	e.vars["GlobalExtra"] = "\tservers :" + strconv.Itoa(sitePort[1]) + " {\n\t\texpected_underscore_headers api_key\n\t}\n"
	e.load(`{{.Global}}
(auth) {
	key_auth {
		key_names api_key X-API-Token
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site}} {
	import auth
}
{{.Site2}} {
	import auth
}
`, "caddyfile")
	for _, tc := range []struct {
		name string
		base string
		hdr  []string
		want outcome
	}{
		{"Api-Key for api_key", site, []string{"Api-Key", keyAlice}, pass(idAlice)},
		{"api-key in lower case", site, []string{"api-key", keyAlice}, pass(idAlice)},
		{"API-KEY in upper case", site, []string{"API-KEY", keyAlice}, pass(idAlice)},
		{"aPi-kEy in mixed case", site, []string{"aPi-kEy", keyAlice}, pass(idAlice)},
		{"api_key is dropped by Caddy", site, []string{"api_key", keyAlice}, reject(msgNoKey)},
		{"x-api-token for X-API-Token", site, []string{"x-api-token", keyBob}, pass(idBob)},
		{"X-Api-Token", site, []string{"X-Api-Token", keyBob}, pass(idBob)},
		{"api-key before x-api-token", site, []string{"X-Api-Token", keyBob, "api-key", keyWrong}, reject(msgInvalid)},
		{"Api-Key twice", site, []string{"Api-Key", keyAlice, "api-key", keyAlice}, reject(msgDuplicate)},
		{"expected api_key", site2, []string{"api_key", keyAlice}, pass(idAlice)},
		{"expected API_KEY", site2, []string{"API_KEY", keyAlice}, pass(idAlice)},
		{"expected api_key drops Api-Key", site2, []string{"Api-Key", keyAlice}, reject(msgNoKey)},
		// Caddy itself drops an expected underscore header that repeats.
		{"expected api_key twice", site2, []string{"api_key", keyAlice, "api_key", keyAlice}, reject(msgNoKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, get(t, tc.base+"/h", tc.hdr...), "Key")
		})
	}
	// In the query a name matches exactly: no dash for the underscore, no
	// case folding.
	wantIdentity(t, get(t, site+"/q?api_key="+keyAlice), idAlice)
	wantIdentity(t, get(t, site+"/q?X-API-Token="+keyAlice), idAlice)
	want401(t, get(t, site+"/q?api-key="+keyAlice), msgNoKey)
	want401(t, get(t, site+"/q?Api_Key="+keyAlice), msgNoKey)
	want401(t, get(t, site+"/q?x-api-token="+keyAlice), msgNoKey)
}

// Rule 2: query names and values match after percent-decoding.
func TestQueryDecoding(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	for _, tc := range []struct {
		query string
		want  outcome
	}{
		{"api%6B%65%79=" + keyAlice, pass(idAlice)},
		{"%61%70%69%6b%65%79=" + keyAlice, pass(idAlice)},
		{"apikey=" + url.QueryEscape(keySpecial), pass(idAliceSpecial)},
		{"apikey=" + escapeAll(keySpecial), pass(idAliceSpecial)},
		{escapeAll("apikey") + "=" + escapeAll(keyAlice), pass(idAlice)},
		{"apikey=alice%2Dsecret%2D0001", pass(idAlice)},
		{"apikey=" + keyNoID + "&other=1", pass(idBobNoID)},
		{"apikey=" + keyAlice + "&api%6Bey=" + keyAlice, reject(msgDuplicate)},
		{"apikey=" + keyAlice + "&apikey", pass(idAlice)}, // the bare one is absent
		{"apikey=%zz", reject(msgInvalid)},
		{"api%zzkey=" + keyAlice, reject(msgNoKey)},
		{"apikey+=" + keyAlice, reject(msgNoKey)}, // "apikey "
		{"x=apikey%3D" + keyAlice, reject(msgNoKey)},
	} {
		t.Run(tc.query, func(t *testing.T) {
			tc.want.check(t, get(t, site+"/q?"+tc.query), "Key")
		})
	}
}

// Rule 3: a key given more than once is a duplicate, wherever it is, even
// when every copy is right.
func TestDuplicates(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	mp, mpType := multipartBody(t, part{name: "apikey", value: keyAlice}, part{name: "x", value: "1"}, part{name: "apikey", value: keyAlice})
	for _, tc := range []struct {
		name string
		call call
	}{
		{"header twice", call{hdr: []string{"apikey", keyAlice, "apikey", keyAlice}}},
		{"header twice, spelled differently", call{hdr: []string{"apikey", keyAlice, "APIKEY", keyAlice}}},
		{"header twice, one empty", call{hdr: []string{"apikey", keyAlice, "apikey", ""}}},
		{"query twice", call{path: "/?apikey=" + keyAlice + "&apikey=" + keyAlice}},
		{"query twice, one empty", call{path: "/?apikey=&apikey=" + keyAlice}},
		{"form twice", call{ctype: formType, body: "apikey=" + keyAlice + "&x=1&apikey=" + keyAlice}},
		{"JSON member twice", call{ctype: jsonType, body: `{"apikey": "` + keyAlice + `", "apikey": "` + keyAlice + `"}`}},
		{"JSON array", call{ctype: jsonType, body: `{"apikey": ["` + keyAlice + `"]}`}},
		{"JSON empty array", call{ctype: jsonType, body: `{"apikey": []}`}},
		{"JSON object", call{ctype: jsonType, body: `{"apikey": {"key": "` + keyAlice + `"}}`}},
		{"multipart field twice", call{ctype: mpType, body: string(mp)}},
		{"chunked form twice", call{ctype: formType, body: "apikey=" + keyAlice + "&apikey=" + keyAlice, chunked: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want401(t, tc.call.send(t, site), msgDuplicate)
		})
	}
}

// Rule 3: an empty value is no key.
func TestEmptyValues(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	mp, mpType := multipartBody(t, part{name: "apikey", value: ""})
	for _, tc := range []struct {
		name string
		call call
	}{
		{"empty header", call{hdr: []string{"apikey", ""}}},
		{"blank header", call{hdr: []string{"apikey", "   "}}},
		{"empty query value", call{path: "/?apikey="}},
		{"query without '='", call{path: "/?apikey"}},
		{"empty form field", call{ctype: formType, body: "apikey="}},
		{"empty JSON string", call{ctype: jsonType, body: `{"apikey": ""}`}},
		{"JSON number", call{ctype: jsonType, body: `{"apikey": 1234}`}},
		{"JSON boolean", call{ctype: jsonType, body: `{"apikey": true}`}},
		{"JSON null", call{ctype: jsonType, body: `{"apikey": null}`}},
		{"empty multipart field", call{ctype: mpType, body: string(mp)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want401(t, tc.call.send(t, site), msgNoKey)
		})
	}
}

// Rule 4: with Authorization among the key names, a Bearer key (the scheme
// in any case) and a bare key both work.
func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_names authorization apikey
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	for _, tc := range []struct {
		hdr  []string
		want outcome
	}{
		{[]string{"Authorization", "Bearer " + keyAlice}, pass(idAlice)},
		{[]string{"Authorization", "bearer " + keyAlice}, pass(idAlice)},
		{[]string{"Authorization", "BEARER " + keyAlice}, pass(idAlice)},
		{[]string{"Authorization", "bEaReR " + keyAlice}, pass(idAlice)},
		{[]string{"authorization", "Bearer   " + keyBob}, pass(idBob)},
		{[]string{"Authorization", "Bearer\t" + keyBob}, pass(idBob)},
		{[]string{"Authorization", keyAlice}, pass(idAlice)},
		{[]string{"Authorization", keySpecial}, pass(idAliceSpecial)},
		{[]string{"Authorization", "Bearer " + keySpecial}, pass(idAliceSpecial)},
		{[]string{"Authorization", "Bearer " + keyWrong}, reject(msgInvalid)},
		{[]string{"Authorization", "Basic " + keyAlice}, reject(msgInvalid)},
		{[]string{"Authorization", "Bearer" + keyAlice}, reject(msgInvalid)},
		{[]string{"Authorization", "Bearer"}, reject(msgNoKey)},
		{[]string{"Authorization", "Bearer "}, reject(msgNoKey)},
		{[]string{"Authorization", "Bearer " + keyAlice, "Authorization", "Bearer " + keyAlice}, reject(msgDuplicate)},
		{[]string{"Authorization", "Bearer " + keyWrong, "apikey", keyAlice}, reject(msgInvalid)},
		{[]string{"apikey", keyAlice}, pass(idAlice)},
	} {
		t.Run(strings.Join(tc.hdr, " "), func(t *testing.T) {
			tc.want.check(t, get(t, site+"/a", tc.hdr...), "Key")
		})
	}
	// The scheme is only dropped from the header.
	want401(t, get(t, site+"/a?authorization=Bearer%20"+keyAlice), msgInvalid)
	wantIdentity(t, get(t, site+"/a?authorization="+keyAlice), idAlice)
}
