package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"reflect"
	"strconv"
	"testing"
)

// Rule 9: hide_credentials removes every value of every key name from every
// location searched (issue 8); the rest of the request reaches the upstream
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

// Rule 9: on the anonymous fallback, the rejected key is removed from every
// location searched.
func TestHideCredentialsAnonymous(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_names apikey token
		key_in_body true
		hide_credentials
		anonymous guest
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
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
		// The header decides, so the body is not searched (rule 5); whether
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
