package integration

// hide_credentials (README: Caddyfile, the options table): no copy of the
// key reaches the upstream on any path a request goes on by (authenticated,
// anonymous, preflight, handle_errors), from any location, however hostile
// the request; everything else reaches it as sent. Elsewhere: the same over
// HTTP/2 (the /hide/ cases of TestKeyLocationsOverHTTP2), and that it hides
// the key from the upstream, never from Caddy's access log (logs_test.go).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// hide_credentials removes every value of every key name from every
// location searched; the rest of the request reaches the upstream
// untouched.
func TestHideCredentials(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
(auth) {
	key_auth {
		key_names apikey api_key authorization
		key_in_body true
		hide_credentials {args[0]}
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site}} {
	import auth true
}
{{.Site2}} {
	import auth false
}
`, "caddyfile")
	const k = keyAlice
	mp, mpType := multipartBody(t,
		part{name: "note", value: "kept"},
		part{name: "apikey", value: k},
		part{name: "upload", file: "f.txt", value: "file body, apikey=" + k},
	)
	for _, tc := range []struct {
		name     string
		call     call
		uri      string // what the upstream gets, when hidden
		body     string // what the upstream gets, when hidden and not multipart
		jsonBody bool   // compare body as JSON
		gone     string // the header that must be gone, when hidden
	}{
		{name: "header", call: call{path: "/h", hdr: []string{"apikey", k, "X-Other", "kept"}}, uri: "/h", gone: "Apikey"},
		{name: "dashed header", call: call{path: "/h", hdr: []string{"Api-Key", k}}, uri: "/h", gone: "Api-Key"},
		{name: "bearer", call: call{path: "/h", hdr: []string{"Authorization", "Bearer " + k}}, uri: "/h", gone: "Authorization"},
		{name: "header, and every other copy, the query's too",
			call: call{path: "/h?apikey=other&x=1", hdr: []string{"apikey", k}}, uri: "/h?x=1", gone: "Apikey"},
		{name: "query, the rest byte for byte and in order",
			call: call{path: "/q/a%2Fb?z=1&a=%2F&apikey=" + k + "&m=a+b&e=&n&z=2&u=%C3%A9"}, uri: "/q/a%2Fb?z=1&a=%2F&m=a+b&e=&n&z=2&u=%C3%A9"},
		{name: "query, encoded name", call: call{path: "/q?api%6B%65%79=" + k + "&x=1"}, uri: "/q?x=1"},
		{name: "query, encoded value", call: call{path: "/q?x=1&apikey=" + escapeAll(k)}, uri: "/q?x=1"},
		{name: "query, the only parameter", call: call{path: "/q?apikey=" + k}, uri: "/q"},
		{name: "query, last", call: call{path: "/q?x=%20&apikey=" + k}, uri: "/q?x=%20"},
		{name: "query, underscore name", call: call{path: "/q?api_key=" + k + "&apikey_=1"}, uri: "/q?apikey_=1"},
		{name: "form", call: call{path: "/b", ctype: formType, body: "a=1&apikey=" + k + "&b=%202"}, uri: "/b", body: "a=1&b=%202"},
		{name: "form, first", call: call{path: "/b", ctype: formType, body: "apikey=" + k + "&b=2"}, uri: "/b", body: "b=2"},
		{name: "form, only", call: call{path: "/b", ctype: formType, body: "apikey=" + k}, uri: "/b", body: ""},
		{name: "form, encoded name", call: call{path: "/b", ctype: formType, body: "x=1&api%6Bey=" + k}, uri: "/b", body: "x=1"},
		{name: "form, chunked", call: call{path: "/b", ctype: formType, body: "a=1&apikey=" + k + "&b=2", chunked: true}, uri: "/b", body: "a=1&b=2"},
		{name: "JSON", call: call{path: "/j", ctype: jsonType, body: `{"a": 1, "apikey": "` + k + `", "b": [1, 2]}`}, uri: "/j", body: `{"a": 1, "b": [1, 2]}`},
		{name: "JSON, first", call: call{path: "/j", ctype: jsonType, body: `{"apikey":"` + k + `","a":{"apikey":"x"}}`}, uri: "/j", body: `{"a":{"apikey":"x"}}`},
		{name: "JSON, last", call: call{path: "/j", ctype: jsonType, body: `{"a":true,"apikey":"` + k + `"}`}, uri: "/j", body: `{"a":true}`},
		{name: "JSON, only", call: call{path: "/j", ctype: jsonType, body: "{ \"apikey\" : \"" + k + "\" }\n"}, uri: "/j", body: `{}`, jsonBody: true},
		{name: "JSON, chunked", call: call{path: "/j", ctype: jsonType, body: `{"x": "y", "apikey": "` + k + `"}`, chunked: true}, uri: "/j", body: `{"x": "y"}`},
		{name: "multipart", call: call{path: "/m", ctype: mpType, body: string(mp)}, uri: "/m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not hidden: everything as sent.
			got := wantIdentity(t, tc.call.send(t, site2), idAlice)
			if got.URI != tc.call.pathOr() {
				t.Errorf("without hide_credentials the upstream got %q, want %q", got.URI, tc.call.pathOr())
			}
			wantBody(t, got, []byte(tc.call.body))
			if tc.gone != "" && !got.has(tc.gone) {
				t.Errorf("without hide_credentials the upstream did not get %s", tc.gone)
			}

			// Hidden.
			got = wantIdentity(t, tc.call.send(t, site), idAlice)
			if got.URI != tc.uri {
				t.Errorf("upstream got URI %q, want %q", got.URI, tc.uri)
			}
			if tc.gone != "" && got.has(tc.gone) {
				t.Errorf("upstream got %s: %q", tc.gone, got.Header.Values(tc.gone))
			}
			for _, h := range tc.call.hdr {
				if h == "X-Other" && got.Header.Get("X-Other") != "kept" {
					t.Errorf("upstream lost X-Other")
				}
			}
			if bytes.Contains(got.Body, []byte(k)) && tc.call.ctype != mpType {
				t.Errorf("upstream got the key in the body: %q", got.Body)
			}
			if got.ContentLength != int64(len(got.Body)) && !(tc.call.body == "" && got.ContentLength <= 0) {
				t.Errorf("upstream got Content-Length %d for %d bytes", got.ContentLength, len(got.Body))
			}
			if cl := got.Header.Get("Content-Length"); tc.call.body != "" && cl != "" && cl != strconv.Itoa(len(got.Body)) {
				t.Errorf("upstream got a Content-Length header %s for %d bytes", cl, len(got.Body))
			}
			switch {
			case tc.call.ctype == mpType:
				checkMultipart(t, got, k)
			case tc.jsonBody:
				wantJSONEqual(t, got.Body, tc.body)
			case tc.call.ctype != "":
				if string(got.Body) != tc.body {
					t.Errorf("upstream got body %q, want %q", got.Body, tc.body)
				}
			}
		})
	}
}

// checkMultipart checks a multipart body whose apikey field was hidden:
// the other field and the file are there as sent.
func checkMultipart(t *testing.T, got *echo, key string) {
	t.Helper()
	_, params, err := mime.ParseMediaType(got.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(got.Body), params["boundary"])
	fields := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("upstream got a broken multipart body: %v\n%q", err, got.Body)
		}
		b, _ := io.ReadAll(p)
		fields[p.FormName()+"|"+p.FileName()] = string(b)
	}
	want := map[string]string{"note|": "kept", "upload|f.txt": "file body, apikey=" + key}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("upstream got parts %q, want %q", fields, want)
	}
}

func wantJSONEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("upstream got a body that is not JSON: %q", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("upstream got body %s, want %s", got, want)
	}
}

// On the anonymous fallback, the rejected key is removed from every
// location searched.
func TestHideCredentialsAnonymous(t *testing.T) {
	e := newEnv(t)
	e.site("key_names apikey token", "key_in_body true", "hide_credentials", "anonymous guest")
	for _, tc := range []struct {
		name string
		call call
		uri  string
		body string
	}{
		{"wrong key everywhere",
			call{path: "/a?x=1&apikey=" + keyWrong + "&token=t&y=%20", hdr: []string{"apikey", keyWrong, "Token", "t", "X-Other", "kept"}},
			"/a?x=1&y=%20", ""},
		{"right key under a later name, rejected with the rest",
			call{path: "/a?token=" + keyAlice, hdr: []string{"apikey", keyWrong}},
			"/a", ""},
		{"duplicate query", call{path: "/a?apikey=" + keyWrong + "&x=1&apikey=" + keyAlice}, "/a?x=1", ""},
		{"empty header", call{path: "/a?x", hdr: []string{"apikey", ""}}, "/a?x", ""},
		{"wrong key in a form", call{path: "/a", ctype: formType, body: "apikey=" + keyWrong + "&x=1&token=t"}, "/a", "x=1"},
		{"duplicate in JSON", call{path: "/a", ctype: jsonType, body: `{"apikey": ["` + keyWrong + `"], "x": 1}`}, "/a", `{"x": 1}`},
		{"no key, body untouched", call{path: "/a?q=1", ctype: formType, body: "x=1&y=2"}, "/a?q=1", "x=1&y=2"},
		// The header decides, so the body is not searched (Request handling, rule 5); whether
		// its copy of the key should be scrubbed is left open: body "-" is
		// not checked.
		{"wrong key in the header and the body",
			call{path: "/a", hdr: []string{"apikey", keyWrong}, ctype: formType, body: "apikey=" + keyWrong + "&x=1"},
			"/a", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wantIdentity(t, tc.call.send(t, site), idGuest)
			if got.URI != tc.uri {
				t.Errorf("upstream got URI %q, want %q", got.URI, tc.uri)
			}
			for _, h := range []string{"Apikey", "Token"} {
				if got.has(h) {
					t.Errorf("upstream got %s: %q", h, got.Header.Values(h))
				}
			}
			if tc.call.ctype != "" && tc.body != "-" {
				wantBody(t, got, []byte(tc.body))
			}
			for i, h := range tc.call.hdr {
				if h == "X-Other" && got.Header.Get(h) != tc.call.hdr[i+1] {
					t.Errorf("upstream lost %s", h)
				}
			}
		})
	}
}

// pathOr is the call's path and query as sent.
func (c call) pathOr() string {
	if c.path == "" {
		return "/"
	}
	return c.path
}

// With hide_credentials, no copy of the key reaches the upstream,
// whichever way the request went on; the rest of the query and body stay
// byte for byte.
func TestHideCredentialsEveryPath(t *testing.T) {
	e := newSmallEnv(t)
	e.load(`{{.Global}}
(auth) {
	key_auth {
		key_names apikey authorization
		key_in_body true
		hide_credentials
		consumers file {{.Consumers}}
		{args[:]}
	}
	reverse_proxy {{.Up}}
}
`+fourWays, "caddyfile")
	for _, tc := range []struct {
		name   string
		base   string
		method string
		call   call
		uri    string // what the upstream must get
		body   string
		who    identity
	}{
		{name: "authenticated, header and query copies", base: site,
			call: call{path: "/orders?apikey=" + smallKey + "&page=2", hdr: []string{"apikey", smallKey}}, uri: "/orders?page=2", who: smallAlice},
		{name: "authenticated by bearer, query copy", base: site,
			call: call{path: "/orders?apikey=" + smallKey + "&page=2", hdr: []string{"Authorization", "Bearer " + smallKey}}, uri: "/orders?page=2", who: smallAlice},
		{name: "authenticated, encoded query spelling", base: site,
			call: call{path: "/orders?z=%20&%61pikey=" + smallKey + "&api%6Bey=x&page=2", hdr: []string{"apikey", smallKey}}, uri: "/orders?z=%20&page=2", who: smallAlice},
		{name: "authenticated in the body, bearer copy", base: site,
			call: call{path: "/b?page=2", ctype: formType, body: "a=1&apikey=" + smallKey + "&b=%202", hdr: []string{"Authorization", "Bearer " + smallKey}},
			uri:  "/b?page=2", body: "a=1&b=%202", who: smallAlice},
		{name: "authenticated in a JSON body, query absent", base: site,
			call: call{path: "/j", ctype: jsonType, body: `{"x": 1, "apikey": "` + smallKey + `", "authorization": "` + smallKey + `"}`},
			uri:  "/j", body: `{"x": 1}`, who: smallAlice},
		{name: "anonymous, wrong key and a copy of the right one", base: site2,
			call: call{path: "/orders?apikey=" + smallKey + "&page=2", hdr: []string{"apikey", "wrong", "Authorization", "Bearer " + smallKey}}, uri: "/orders?page=2", who: smallGuest},
		{name: "anonymous, duplicate", base: site2,
			call: call{path: "/orders?page=2&apikey=" + smallKey + "&apikey=" + smallKey}, uri: "/orders?page=2", who: smallGuest},
		{name: "preflight let through", base: site3, method: http.MethodOptions,
			call: call{path: "/orders?apikey=" + smallKey + "&page=2", hdr: []string{"apikey", smallKey, "Origin", "https://app.example", "Access-Control-Request-Method", "GET"}},
			uri:  "/orders?page=2", who: smallNobody},
		{name: "rejected, handed to handle_errors", base: siteURL(3),
			call: call{path: "/orders?apikey=wrong&page=2", hdr: []string{"Authorization", "Bearer " + smallKey}}, uri: "/orders?page=2", who: smallNobody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res *response
			if tc.method != "" {
				res = do(t, req(tc.method, tc.base+tc.call.path, nil, tc.call.hdr...))
			} else {
				res = tc.call.send(t, tc.base)
			}
			got := wantIdentity(t, res, tc.who)
			if got.URI != tc.uri {
				t.Errorf("upstream got URI %q, want %q", got.URI, tc.uri)
			}
			if tc.call.ctype != "" {
				wantBody(t, got, []byte(tc.body))
			}
			noKeyAnywhere(t, got)
			for _, h := range []string{"Apikey", "Authorization"} {
				if got.has(h) {
					t.Errorf("upstream got %s", h)
				}
			}
		})
	}
}

// With hide_credentials, the key's cookie is removed on every path a
// request goes on by, and the other cookies reach the upstream as sent.
func TestHideCredentialsCookie(t *testing.T) {
	newCookieEnv(t)
	const others = `session=s1;theme="dark mode"; lang=en`
	for _, tc := range []struct {
		name   string
		base   string
		method string
		hdr    []string
		cookie []string // the Cookie lines the upstream must get
		who    identity
	}{
		{name: "authenticated by the cookie", base: cookieSite,
			hdr:    []string{"Cookie", "session=s1;apikey=" + cookieAliceKey + `;theme="dark mode"; lang=en`},
			cookie: []string{others}, who: cookieAlice},
		{name: "authenticated by the header, cookie copy first", base: cookieSite,
			hdr:    []string{"apikey", cookieAliceKey, "Cookie", "apikey=" + cookieAliceKey + "; " + others},
			cookie: []string{others}, who: cookieAlice},
		{name: "authenticated, copies under both names in two Cookie headers", base: cookieSite,
			hdr:    []string{"Cookie", "token=" + cookieAliceKey + "; a=1", "Cookie", "b=2; apikey=" + cookieAliceKey},
			cookie: []string{"a=1", "b=2"}, who: cookieAlice},
		{name: "authenticated, the only cookie", base: cookieSite,
			hdr: []string{"Cookie", "apikey=" + cookieAliceKey}, who: cookieAlice},
		{name: "anonymous, wrong key and a copy of the right one", base: cookieSiteAnon,
			hdr:    []string{"apikey", "wrong", "Cookie", others + "; apikey=" + cookieAliceKey},
			cookie: []string{others}, who: cookieGuest},
		{name: "anonymous, duplicate cookie", base: cookieSiteAnon,
			hdr:    []string{"Cookie", "apikey=" + cookieAliceKey + "; " + others + "; apikey=" + cookieAliceKey},
			cookie: []string{others}, who: cookieGuest},
		{name: "preflight let through", base: cookieSitePreflight, method: http.MethodOptions,
			hdr:    []string{"Origin", "https://app.example", "Access-Control-Request-Method", "GET", "Cookie", others + ";apikey=" + cookieAliceKey},
			cookie: []string{others}, who: cookieNobody},
		{name: "rejected, handed to handle_errors", base: cookieSiteErrors,
			hdr:    []string{"Cookie", "apikey=wrong; " + others + "; token=" + cookieAliceKey},
			cookie: []string{others}, who: cookieNobody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			got := wantIdentity(t, do(t, req(method, tc.base+"/p?x=1&apikey="+cookieAliceKey, nil, tc.hdr...)), tc.who)
			if c := cookies(got); strings.Join(c, "\n") != strings.Join(tc.cookie, "\n") {
				t.Errorf("upstream got Cookie %q, want %q", c, tc.cookie)
			}
			if got.URI != "/p?x=1" {
				t.Errorf("upstream got URI %q", got.URI)
			}
			for name, v := range got.Header {
				if strings.Contains(strings.Join(v, ","), cookieAliceKey) {
					t.Errorf("upstream got the key in %s", name)
				}
			}
		})
	}
}

// Hostile requests (the kinds of TestHostileKeyValues and TestHostileBodies)
// where the key is hidden from the upstream, or the anonymous consumer takes
// over, and a body limit before key_auth answers 413.
func TestHideCredentialsHostile(t *testing.T) {
	newHostileEnv(t)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	many := manyParams(10000)
	enc := escapeAll(keyAlice)
	upQuery := func(want string) func(testing.TB, *echo) {
		return func(t testing.TB, e *echo) {
			t.Helper()
			if e.URI != want {
				t.Errorf("upstream got URI %.200q (%d bytes), want %.200q (%d bytes)", e.URI, len(e.URI), want, len(want))
			}
		}
	}
	noKey := func(t testing.TB, e *echo) {
		t.Helper()
		if e.has("Apikey") || strings.Contains(e.URI, enc) || bytes.Contains(e.Body, []byte(keyAlice)) || bytes.Contains(e.Body, []byte(oddCtlKey)) {
			t.Errorf("the key reached the upstream: %s %v %.300q", e.URI, e.Header, e.Body)
		}
		if e.ContentLength >= 0 && e.ContentLength != int64(e.BodyLen) {
			t.Errorf("Content-Length %d for %d bytes", e.ContentLength, e.BodyLen)
		}
	}
	both := func(fs ...func(testing.TB, *echo)) func(testing.TB, *echo) {
		return func(t testing.TB, e *echo) {
			t.Helper()
			for _, f := range fs {
				f(t, e)
			}
		}
	}
	var many5000 []part
	for i := range 5000 {
		many5000 = append(many5000, part{name: fmt.Sprintf("f%d", i), value: "x"})
	}
	mpBody := rawMultipart(true, append(many5000, part{name: "apikey", value: keyAlice})...)
	deep := strings.Repeat(`{"a":[`, 4000) + strings.Repeat(`]}`, 4000)
	var repeated []string
	for range 300 {
		repeated = append(repeated, "Apikey", keyWrong)
	}
	cases := []testCase{
		getCase("encoded name hidden, rest kept", "/?x=1&api%6Bey="+enc+"&y=%zz", pass(idAlice).then(both(noKey, upQuery("/?x=1&y=%zz")))),
		getCase("10000 params kept in order", "/?"+many+"&apikey="+enc, pass(idAlice).then(both(noKey, upQuery("/?"+many)))),
		postCase("deep JSON re-encoded", "/", jsonType, []byte(`{"deep": `+deep+`, "apikey": "`+keyAlice+`"}`), false,
			pass(idAlice).then(both(noKey, func(t testing.TB, e *echo) {
				if string(e.Body) != `{"deep": `+deep+`}` {
					t.Errorf("upstream got %.200q", e.Body)
				}
			}))),
		postCase("5000 parts re-encoded", "/", multipartType, mpBody, true, pass(idAlice).then(both(noKey, func(t testing.TB, e *echo) {
			if want := len(mpBody) - len(rawMultipart(false, part{name: "apikey", value: keyAlice})); e.BodyLen != want {
				t.Errorf("upstream got %d bytes, want %d", e.BodyLen, want)
			}
		}))),
		postCase("control key in a form", "/?x", formType, []byte("a=1&apikey="+escapeAll(oddCtlKey)+"&b=2"), false,
			pass(idOddCtl).then(both(noKey, func(t testing.TB, e *echo) {
				if string(e.Body) != "a=1&b=2" {
					t.Errorf("upstream got %q", e.Body)
				}
			}))),
		// The anonymous fallback removes a rejected key from everywhere.
		getCase("anonymous: 300 wrong header keys", "/", pass(idGuest).then(func(t testing.TB, e *echo) {
			if e.has("Apikey") {
				t.Error("the rejected keys reached the upstream")
			}
		}), repeated...),
		getCase("anonymous: 100 KB key", "/?apikey="+longKey(100<<10)+"&z=1", pass(idGuest).then(upQuery("/?z=1"))),
		postCase("anonymous: invalid UTF-8 in JSON", "/", jsonType, []byte("{\"apikey\": \"\xff\", \"z\": 1}"), false,
			pass(idGuest).then(func(t testing.TB, e *echo) {
				if string(e.Body) != `{"z": 1}` {
					t.Errorf("upstream got %q", e.Body)
				}
			})),
		postCase("anonymous: no closing boundary", "/", multipartType, rawMultipart(false, part{name: "apikey", value: keyAlice}), false,
			pass(idGuest).then(bodyIs(rawMultipart(false, part{name: "apikey", value: keyAlice})))),
	}
	runCases(t, cl, hostileHideSite, cases)

	// A body limit before key_auth: the search runs into it, 413.
	over := rawMultipart(true, append(many5000, part{name: "apikey", value: keyAlice})...)
	runCases(t, cl, hostileCapSite, []testCase{
		postCase("5000 parts over request_body, chunked", "/", multipartType, over, true,
			outcome{status: http.StatusRequestEntityTooLarge, message: "Request body too large"}),
		postCase("JSON over request_body, chunked", "/", jsonType, []byte(`{"pad": "`+strings.Repeat("x", 100<<10)+`"}`), true,
			outcome{status: http.StatusRequestEntityTooLarge, message: "Request body too large"}),
		postCase("under request_body", "/", jsonType, []byte(`{"apikey": "`+keyAlice+`"}`), true, pass(idAlice)),
	})
	// request_body itself refuses a declared length over its limit, before
	// key_auth runs: Caddy's own empty 413.
	r, err := send(cl, req(http.MethodPost, hostileCapSite+"/", bytes.NewReader(over), "Content-Type", multipartType))
	if err != nil || r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a declared length over request_body: %v %v", r, err)
	}
}
