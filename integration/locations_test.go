package integration

// Where a key is found (README: Request handling, rules 2 to 4): key names
// in order, header, cookie, query and body, duplicates and empty values,
// Authorization, over HTTP/1.1 and HTTP/2, and hostile key values. The
// on/off matrix of locations is in matrix_test.go.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Request handling, rule 2: key names in order, header then query then body;
// the first location where a name is present decides, and the next name is
// tried only when one is absent everywhere. Also rule 3's "absent" values.
func TestKeyNameOrderAndLocations(t *testing.T) {
	e := newEnv(t)
	e.site("key_names apikey token", "key_in_body true")
	for _, tc := range []testCase{
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

// Request handling, rule 2: header names match case-insensitively, and an
// underscore in a key name matches a dash in a header; Caddy drops
// underscored headers unless the server expects them, and then drops the
// dashed spelling.
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

// Request handling, rule 2: query names and values match after
// percent-decoding.
func TestQueryDecoding(t *testing.T) {
	e := newEnv(t)
	e.site()
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

// Request handling, rule 3: a key given more than once is a duplicate,
// wherever it is, even when every copy is right.
func TestDuplicates(t *testing.T) {
	e := newEnv(t)
	e.site("key_in_body true")
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

// Request handling, rule 3: an empty value is no key.
func TestEmptyValues(t *testing.T) {
	e := newEnv(t)
	e.site("key_in_body true")
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

// Request handling, rule 4: with Authorization among the key names, a Bearer
// key (the scheme in any case) and a bare key both work.
func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	e.site("key_names authorization apikey")
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

// A key in a cookie authenticates; the header comes before it and it comes
// before the query; two cookies of the name are a duplicate.
func TestKeyInCookie(t *testing.T) {
	e := newCookieEnv(t)
	for _, tc := range []struct {
		name string
		base string
		path string
		hdr  []string
		want outcome
	}{
		{"cookie", cookieSite, "/", []string{"Cookie", "session=s1; apikey=" + cookieAliceKey + "; theme=dark"}, pass(cookieAlice)},
		{"second key name's cookie", cookieSite, "/", []string{"Cookie", "token=" + cookieAliceKey}, pass(cookieAlice)},
		{"quoted cookie value", cookieSite, "/", []string{"Cookie", `apikey="` + cookieAliceKey + `"`}, pass(cookieAlice)},
		{"wrong key in a cookie", cookieSite, "/", []string{"Cookie", "apikey=wrong"}, reject(msgInvalid)},
		{"header before cookie: header decides", cookieSite, "/", []string{"apikey", "wrong", "Cookie", "apikey=" + cookieAliceKey}, reject(msgInvalid)},
		{"header before cookie: right header", cookieSite, "/", []string{"apikey", cookieAliceKey, "Cookie", "apikey=wrong"}, pass(cookieAlice)},
		{"cookie before query: cookie decides", cookieSite, "/?apikey=" + cookieAliceKey, []string{"Cookie", "apikey=wrong"}, reject(msgInvalid)},
		{"cookie before query: right cookie", cookieSite, "/?apikey=wrong", []string{"Cookie", "apikey=" + cookieAliceKey}, pass(cookieAlice)},
		{"first name's cookie before second name's header", cookieSite, "/", []string{"token", "wrong", "Cookie", "apikey=" + cookieAliceKey}, pass(cookieAlice)},
		{"cookie names are case-sensitive", cookieSite, "/", []string{"Cookie", "ApiKey=" + cookieAliceKey}, reject(msgNoKey)},
		{"empty cookie decides", cookieSite, "/?apikey=" + cookieAliceKey, []string{"Cookie", "apikey="}, reject(msgNoKey)},
		{"duplicate in one Cookie header", cookieSite, "/", []string{"Cookie", "apikey=" + cookieAliceKey + "; x=1; apikey=" + cookieAliceKey}, reject(msgDuplicate)},
		{"duplicate across Cookie headers", cookieSite, "/", []string{"Cookie", "apikey=" + cookieAliceKey, "Cookie", "apikey=" + cookieAliceKey}, reject(msgDuplicate)},
		{"duplicate cookie, anonymous", cookieSiteAnon, "/", []string{"Cookie", "apikey=" + cookieAliceKey + "; apikey=" + cookieAliceKey}, pass(cookieGuest)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, get(t, tc.base+tc.path, tc.hdr...), "Key")
		})
	}

	// Without hide_credentials the cookies reach the upstream as sent.
	got := wantIdentity(t, get(t, cookieSiteKeep+"/", "Cookie", "a=1;apikey="+cookieAliceKey+"; b=2"), cookieAlice)
	if c := cookies(got); len(c) != 1 || c[0] != "a=1;apikey="+cookieAliceKey+"; b=2" {
		t.Errorf("upstream got Cookie %q without hide_credentials", c)
	}

	// Caddy's access log redacts the Cookie header: a key there is not
	// logged.
	get(t, cookieSite+"/logged", "Cookie", "apikey="+cookieAliceKey)
	le := e.waitLog("access.log", func(le logEntry) bool {
		r, _ := le["request"].(map[string]any)
		return r != nil && r["uri"] == "/logged"
	})
	hdrs, _ := le["request"].(map[string]any)["headers"].(map[string]any)
	if c, _ := hdrs["Cookie"].([]any); len(c) != 1 || c[0] != "REDACTED" {
		t.Errorf("access log Cookie %v, want [REDACTED]", hdrs["Cookie"])
	}
	for _, l := range e.logLines("access.log") {
		if strings.Contains(l, `"uri":"/logged"`) && strings.Contains(l, cookieAliceKey) {
			t.Errorf("the access log holds the cookie's key: %s", l)
		}
	}
}

// oddByteCases: keys with invalid UTF-8, NUL and control bytes in every
// location. Go's server refuses a control byte in the request line or a
// header (400) before any handler; a byte of 0x80 and up reaches the module.
func oddByteCases() []testCase {
	q := func(v string) string { return "/?apikey=" + v }
	return []testCase{
		getCase("query invalid UTF-8", q("%ff%fe%fd"), reject(msgInvalid)),
		getCase("query NUL alone", q("%00"), reject(msgInvalid)),
		getCase("query key then NUL", q(escapeAll(keyAlice+"\x00")), reject(msgInvalid)),
		getCase("query overlong NUL", q("%C0%80"), reject(msgInvalid)),
		getCase("query lone surrogate", q("%ED%A0%80"), reject(msgInvalid)),
		getCase("query broken escape", q("%zz%"), reject(msgInvalid)),
		getCase("query control key", q(escapeAll(oddCtlKey)), pass(idOddCtl)),
		getCase("query UTF-8 key", q(url.QueryEscape(oddUTF8Key)), pass(idOddUTF8)),
		rawCase("raw request line with 0xff", "/?apikey=\xff\xfe", reject(msgInvalid)),
		rawCase("raw request line with NUL", "/?apikey=a\x00b", serverRefuses(http.StatusBadRequest)),
		rawCase("raw request line with DEL", "/?apikey=a\x7fb", serverRefuses(http.StatusBadRequest)),
		rawCase("raw header invalid UTF-8", "/", reject(msgInvalid), "Apikey", "\xff\xfe\x80"),
		rawCase("raw header NUL", "/", serverRefuses(http.StatusBadRequest), "Apikey", keyAlice+"\x00"),
		rawCase("raw header control byte", "/", serverRefuses(http.StatusBadRequest), "Apikey", "a\x01b"),
		rawCase("raw header DEL", "/", serverRefuses(http.StatusBadRequest), "Apikey", "a\x7fb"),
		rawCase("raw header bare CR", "/", serverRefuses(http.StatusBadRequest), "Apikey", "a\rb"),
		rawCase("raw header UTF-8 key", "/", pass(idOddUTF8), "apikey", oddUTF8Key),
		rawCase("raw header tab inside", "/", reject(msgInvalid), "Apikey", "alice\tsecret"),
		// Leading and trailing white space is no part of a header value.
		rawCase("raw header padded with tabs", "/", pass(idAlice), "Apikey", "\t "+keyAlice+" \t"),
		rawCase("raw header name with a space", "/", serverRefuses(http.StatusBadRequest), "Api key", keyAlice),
		// Go's server joins a folded line with a space: "alice secret-0001".
		rawCase("raw header folded", "/", reject(msgInvalid), "Apikey", "alice\r\n secret-0001"),
		rawCase("raw header name with a space before the colon", "/", serverRefuses(http.StatusBadRequest), "Apikey ", keyAlice),
		rawCase("raw header name with 0xff", "/", serverRefuses(http.StatusBadRequest), "Apikey\xff", keyAlice),
		rawCase("raw Authorization invalid UTF-8", "/", reject(msgInvalid), "Authorization", "Bearer \xc3\x28"),
		postCase("form invalid UTF-8 and NUL", "/", formType, []byte("apikey=%ff%00%01"), false, reject(msgInvalid)),
		postCase("form raw bytes", "/", formType, []byte("apikey=\xff\x00\x01"), false, reject(msgInvalid)),
		postCase("form control key", "/", formType, []byte("apikey="+escapeAll(oddCtlKey)), false, pass(idOddCtl)),
		postCase("JSON NUL", "/", jsonType, []byte(`{"apikey": "\u0000"}`), false, reject(msgInvalid)),
		// No key with control bytes can be loaded: never a match.
		postCase("JSON control key", "/", jsonType, []byte(`{"apikey": "ctl\u0000\u0001\u001f\u007f-key"}`), false, reject(msgInvalid)),
		postCase("JSON escaped key", "/", jsonType, []byte(`{"apikey": "ctl \"\\%00+&=;#?<>'\u0060-key"}`), false, pass(idOddCtl)),
		postCase("JSON raw invalid UTF-8", "/", jsonType, []byte("{\"apikey\": \""+keyAlice+"\xff\"}"), false, reject(msgInvalid)),
		postCase("JSON lone surrogate", "/", jsonType, []byte(`{"apikey": "\ud800"}`), false, reject(msgInvalid)),
		// A raw control byte in a JSON string is not JSON: no key.
		postCase("JSON raw control byte", "/", jsonType, []byte("{\"apikey\": \"a\x01\"}"), false, reject(msgNoKey)),
		postCase("JSON UTF-8 key", "/", jsonType, []byte(`{"apikey": "`+oddUTF8Key+`"}`), false, pass(idOddUTF8)),
		postCase("multipart control key", "/", multipartType, rawMultipart(true, part{name: "apikey", value: oddCtlKey}), false, pass(idOddCtl)),
		postCase("multipart invalid UTF-8", "/", multipartType, rawMultipart(true, part{name: "apikey", value: "\xff\xfe\x00"}), false, reject(msgInvalid)),
		postCase("multipart name with NUL", "/", multipartType, rawMultipart(true, part{name: "apikey\x00", value: keyAlice}), false, reject(msgNoKey)),
	}
}

// longKeyCases: keys far over consumers.MaxKeyLength in every location,
// and the longest valid one.
func longKeyCases() []testCase {
	huge := longKey(100 << 10)
	return []testCase{
		getCase("header 100 KB", "/", reject(msgInvalid), "Apikey", huge),
		getCase("Bearer 100 KB", "/", reject(msgInvalid), "Authorization", "Bearer "+huge),
		getCase("query 100 KB", "/?apikey="+huge, reject(msgInvalid)),
		getCase("query 100 KB percent-encoded", "/?apikey="+escapeAll(huge[:40<<10]), reject(msgInvalid)),
		postCase("form 100 KB", "/", formType, []byte("apikey="+huge), false, reject(msgInvalid)),
		postCase("JSON 100 KB", "/", jsonType, []byte(`{"apikey": "`+huge+`"}`), false, reject(msgInvalid)),
		postCase("multipart 100 KB", "/", multipartType, rawMultipart(true, part{name: "apikey", value: huge}), true, reject(msgInvalid)),
		getCase("header at the cap", "/", pass(idOddLong), "Apikey", oddLongKey),
		getCase("query at the cap", "/?apikey="+oddLongKey, pass(idOddLong)),
		postCase("JSON at the cap", "/", jsonType, []byte(`{"apikey": "`+oddLongKey+`"}`), false, pass(idOddLong)),
		getCase("header one over the cap", "/", reject(msgInvalid), "Apikey", oddLongKey+"x"),
		getCase("query one over the cap", "/?apikey="+oddLongKey+"x", reject(msgInvalid)),
		// Over max_header_size, Go's server answers before any handler.
		getCase("header over max_header_size", "/", serverRefuses(http.StatusRequestHeaderFieldsTooLarge), "Apikey", longKey(1100<<10)),
	}
}

// repeatCases: names repeated hundreds of times, ten thousand query
// parameters and key names percent-encoded in several spellings.
func repeatCases() []testCase {
	var repeated, spellings []string
	for range 500 {
		repeated = append(repeated, "Apikey", keyAlice)
	}
	for i := range 300 {
		spellings = append(spellings, []string{"apikey", "APIKEY", "ApiKey"}[i%3], keyAlice)
	}
	var bearers []string
	for range 300 {
		bearers = append(bearers, "Authorization", "Bearer "+keyAlice)
	}
	var others, connection []string
	for i := range 10000 {
		others = append(others, fmt.Sprintf("X-H%d", i), "v")
	}
	others = append(others, "Apikey", keyAlice)
	for range 500 {
		connection = append(connection, "Connection", "X-Consumer-Id, x-anonymous-consumer, X-Credential-Identifier")
	}
	connection = append(connection, "Apikey", keyAlice)
	many := manyParams(10000)
	dups := strings.Repeat("apikey="+keyAlice+"&", 9999) + "apikey=" + keyAlice
	enc := escapeAll(keyAlice)
	return []testCase{
		getCase("header 500 times", "/", reject(msgDuplicate), repeated...),
		getCase("header 300 times in three spellings", "/", reject(msgDuplicate), spellings...),
		getCase("Authorization 300 times", "/", reject(msgDuplicate), bearers...),
		getCase("10000 other headers", "/", pass(idAlice), others...),
		getCase("500 Connection headers naming the identity headers", "/", pass(idAlice), connection...),
		getCase("10000 params, key last", "/?"+many+"&apikey="+keyAlice, pass(idAlice).then(queryIs(many+"&apikey="+keyAlice))),
		getCase("10000 params, key first", "/?apikey="+keyAlice+"&"+many, pass(idAlice)),
		getCase("10000 params, no key", "/?"+many, reject(msgNoKey)),
		getCase("10000 params, wrong key", "/?"+many+"&apikey="+keyWrong, reject(msgInvalid)),
		getCase("10000 keys", "/?"+dups, reject(msgDuplicate)),
		getCase("10000 params without '='", "/?"+strings.Repeat("apikey&", 10000), reject(msgNoKey)),
		getCase("10000 empty pairs", "/?"+strings.Repeat("&", 10000)+"apikey="+keyAlice, pass(idAlice)),
		getCase("name api%6Bey", "/?api%6Bey="+enc, pass(idAlice)),
		getCase("name fully encoded", "/?%61%70%69%6b%65%79="+enc, pass(idAlice)),
		getCase("name plain and encoded", "/?apikey="+enc+"&api%6bey="+enc, reject(msgDuplicate)),
		getCase("name in three spellings", "/?api%6Bey=a&%61pikey=b&apik%65y=c", reject(msgDuplicate)),
		getCase("name double-encoded", "/?api%256Bey="+enc, reject(msgNoKey)),
		getCase("name with encoded NUL", "/?apikey%00="+enc, reject(msgNoKey)),
		getCase("name in upper case", "/?APIKEY="+enc, reject(msgNoKey)),
		getCase("name with a plus", "/?api+key="+enc, reject(msgNoKey)),
		getCase("name broken escape", "/?api%6="+enc, reject(msgNoKey)),
		postCase("form 10000 params, key last", "/", formType, []byte(many+"&apikey="+enc), false, pass(idAlice)),
		postCase("form name spellings", "/", formType, []byte("api%6Bey="+enc+"&apikey="+enc), false, reject(msgDuplicate)),
		postCase("form 10000 keys", "/", formType, []byte(dups), true, reject(msgDuplicate)),
	}
}

// h2Config serves the same routes over TLS (h1, h2) on the first site
// port and in clear text (h1, h2c) on the second. It has its own global
// options: Caddy's internal issuer needs automatic HTTPS, which the tests' usual global
// block turns off, and its storage stays in the test's directory.
const h2Config = `{
	admin {{.Admin}}
	persist_config off
	http_port {{.HTTPPort}}
	https_port {{.Port}}
	auto_https disable_redirects
	skip_install_trust
	storage file_system {{.Dir}}/storage
	log {
		output file {{.Dir}}/caddy.log
		format json
		level DEBUG
	}
	servers :{{.Port}} {
		protocols h1 h2
		max_header_size 1MB
	}
	servers :{{.Port2}} {
		protocols h1 h2c
		max_header_size 1MB
	}
}
(auth) {
	handle /hide/* {
		key_auth {
			key_names apikey api_key authorization
			key_in_body true
			hide_credentials
			anonymous guest
			consumers file {{.Consumers}}
		}
		reverse_proxy {{.Up}}
	}
	handle {
		key_auth {
			key_names apikey api_key authorization
			key_in_body true
			consumers file {{.Consumers}}
		}
		reverse_proxy {{.Up}}
	}
}
https://localhost:{{.Port}} {
	tls internal
	import auth
}
{{.Site2}} {
	import auth
}
`

// protoOnly fails every answer that did not come over the protocol asked
// for, so that no case passes by falling back to HTTP/1.1.
type protoOnly struct {
	rt    http.RoundTripper
	major int
}

func (p protoOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := p.rt.RoundTrip(r)
	if err == nil && res.ProtoMajor != p.major {
		res.Body.Close()
		return nil, fmt.Errorf("answered over %s, want HTTP/%d", res.Proto, p.major)
	}
	return res, err
}

// h2Cases are requests whose header names go out in lower case, as
// HTTP/2 has them.
func h2Cases() []testCase {
	enc := escapeAll(keyAlice)
	mp := rawMultipart(true, part{name: "x", value: "1"}, part{name: "apikey", value: keyAlice})
	hidden := func(t testing.TB, e *echo) {
		t.Helper()
		if e.has("Apikey") || e.has("Api-Key") || e.has("Authorization") || strings.Contains(e.URI, enc) || strings.Contains(string(e.Body), keyAlice) {
			t.Errorf("the key reached the upstream: %s %v %q", e.URI, e.Header, e.Body)
		}
		if e.ContentLength >= 0 && e.ContentLength != int64(e.BodyLen) {
			t.Errorf("Content-Length %d for %d bytes", e.ContentLength, e.BodyLen)
		}
	}
	lower := func(pairs ...string) []string {
		for i := 0; i < len(pairs); i += 2 {
			pairs[i] = strings.ToLower(pairs[i])
		}
		return pairs
	}
	forgedLower := lower(append([]string(nil), forged...)...)
	return []testCase{
		getCase("header", "/", pass(idAlice), "apikey", keyAlice),
		getCase("header in upper case", "/", pass(idAlice), "APIKEY", keyAlice),
		getCase("dash header for api_key", "/", pass(idAlice), "api-key", keyAlice),
		getCase("bearer in lower case", "/", pass(idAlice), "authorization", "bearer "+keyAlice),
		getCase("forged identity in lower case", "/", pass(idBob), append(forgedLower, "apikey", keyBob)...),
		getCase("forged identity, no key", "/", reject(msgNoKey), forgedLower...),
		getCase("query", "/?apikey="+enc, pass(idAlice)),
		getCase("query, encoded name", "/?api%6Bey="+enc, pass(idAlice)),
		postCase("form", "/", formType, []byte("apikey="+enc), false, pass(idAlice)),
		postCase("JSON, streamed", "/", jsonType, []byte(`{"apikey": "`+keyAlice+`"}`), true, pass(idAlice)),
		postCase("multipart", "/", multipartType, mp, false, pass(idAlice)),
		getCase("header twice", "/", reject(msgDuplicate), "apikey", keyAlice, "apikey", keyAlice),
		getCase("header in two cases", "/", reject(msgDuplicate), "apikey", keyAlice, "APIKEY", keyAlice),
		getCase("underscore and dash", "/", reject(msgNoKey), "api_key", keyAlice),
		getCase("header 500 times", "/", reject(msgDuplicate), repeatHeader(500, "apikey", keyAlice)...),
		getCase("header 100 KB", "/", reject(msgInvalid), "apikey", longKey(100<<10)),
		getCase("wrong key", "/", reject(msgInvalid), "apikey", keyWrong),
		getCase("no key", "/", reject(msgNoKey)),
		getCase("hidden header", "/hide/", pass(idAlice).then(hidden), "apikey", keyAlice, "x-other", "kept"),
		getCase("hidden dash header", "/hide/", pass(idAlice).then(hidden), "api-key", keyAlice),
		getCase("hidden bearer", "/hide/", pass(idAlice).then(hidden), "authorization", "Bearer "+keyAlice),
		getCase("hidden query", "/hide/?a=1&apikey="+enc+"&b=2", pass(idAlice).then(func(t testing.TB, e *echo) {
			hidden(t, e)
			if e.URI != "/hide/?a=1&b=2" {
				t.Errorf("upstream got %q", e.URI)
			}
		})),
		postCase("hidden form, streamed", "/hide/", formType, []byte("a=1&apikey="+enc), true, pass(idAlice).then(hidden)),
		postCase("hidden multipart", "/hide/", multipartType, mp, false, pass(idAlice).then(hidden)),
		getCase("anonymous, rejected key removed", "/hide/", pass(idGuest).then(func(t testing.TB, e *echo) {
			if e.has("Apikey") {
				t.Errorf("the rejected key reached the upstream")
			}
		}), "apikey", keyWrong),
	}
}

// repeatHeader is n copies of a header pair.
func repeatHeader(n int, name, value string) []string {
	var out []string
	for range n {
		out = append(out, name, value)
	}
	return out
}

// Keys in headers, query and body over HTTP/2, with TLS from Caddy's
// internal issuer and over h2c, where header names arrive in lower case.
func TestKeyLocationsOverHTTP2(t *testing.T) {
	e := newEnv(t)
	e.load(h2Config, "caddyfile")
	tlsSite := strings.Replace(site, "http://", "https://", 1)

	// The root of Caddy's internal CA, which signed the site's certificate.
	root := filepath.Join(e.dir, "storage", "pki", "authorities", "local", "root.crt")
	var pem []byte
	eventually(t, "the internal CA's root", func() bool {
		var err error
		pem, err = os.ReadFile(root)
		return err == nil && len(pem) > 0
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", root)
	}
	tlsTransport := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}
	defer tlsTransport.CloseIdleConnections()
	h2 := &http.Client{Transport: protoOnly{tlsTransport, 2}, Timeout: 20 * time.Second}
	// The certificate is issued in the background: wait for a handshake.
	eventually(t, "a TLS handshake with a certificate of the internal CA", func() bool {
		_, err := send(h2, req(http.MethodGet, tlsSite+"/", nil))
		return err == nil
	})

	// h2c: HTTP/2 with prior knowledge, in clear text.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2cTransport := &http.Transport{Protocols: &protos, DisableCompression: true}
	defer h2cTransport.CloseIdleConnections()
	h2c := &http.Client{Transport: protoOnly{h2cTransport, 2}, Timeout: 20 * time.Second}

	t.Run("TLS", func(t *testing.T) { runCases(t, h2, tlsSite, h2Cases()) })
	t.Run("h2c", func(t *testing.T) { runCases(t, h2c, site2, h2Cases()) })
	// And HTTP/1.1 on the same servers gets the same answers.
	h1 := &http.Client{Transport: protoOnly{&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}, 1}, Timeout: 20 * time.Second}
	t.Run("TLS HTTP/1.1", func(t *testing.T) { runCases(t, h1, tlsSite, h2Cases()) })
}

// Hostile key values in every location: bytes that need escaping or that
// Go's server refuses, keys far over the length cap, names repeated
// thousands of times. Each ends in a defined answer (200, 401, or a 4xx Go's
// server gives before any handler runs), never a 5xx or a hang; no body
// reaches the disk.
func TestHostileKeyValues(t *testing.T) {
	newHostileEnv(t)
	// The module never uses ReadForm, so nothing is spilled: had it been,
	// it would be here.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	start := time.Now()
	t.Run("bytes", func(t *testing.T) { runCases(t, cl, hostileSite, oddByteCases()) })
	t.Run("long", func(t *testing.T) { runCases(t, cl, hostileSite, longKeyCases()) })
	t.Run("repeat", func(t *testing.T) { runCases(t, cl, hostileSite, repeatCases()) })
	t.Logf("%d hostile requests in %s", len(oddByteCases())+len(longKeyCases())+len(repeatCases()), time.Since(start))
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
		t.Errorf("TMPDIR holds %d entries (%v): a body went to disk", len(ents), err)
	}
}
