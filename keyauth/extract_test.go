package keyauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// provisioned sets h up for requests as Provision does, without loading a
// consumers source.
func provisioned(t *testing.T, h *Handler) *Handler {
	t.Helper()
	h.configure(zap.NewNop())
	return h
}

func ptr[T any](v T) *T { return &v }

func TestLookupParam(t *testing.T) {
	tests := []struct {
		raw, name string
		want      string
		n         int
	}{
		{"apikey=k", "apikey", "k", 1},
		{"a=1&apikey=k&b=2", "apikey", "k", 1},
		{"apikey=k1&apikey=k2", "apikey", "k1", 2},
		{"apikey=k&x=1&apikey=k", "apikey", "k", 2},
		{"apikey=", "apikey", "", 1},
		{"apikey=&apikey=k", "apikey", "", 2},
		{"apikey", "apikey", "", 0},           // no '=': absent
		{"apikey&apikey=k", "apikey", "k", 1}, // only the pair with '=' counts
		{"apikey=k&apikey", "apikey", "k", 1}, //
		{"api%6Bey=k", "apikey", "k", 1},      // name percent-decoded
		{"api%6b%65%79=k", "apikey", "k", 1},  // lower-case hex too
		{"%61%70%69%6B%65%79=k", "apikey", "k", 1},
		{"apikey=k&api%6Bey=l", "apikey", "k", 2}, // two spellings, one name
		{"api+key=k", "api key", "k", 1},
		{"api%20key=k", "api key", "k", 1},
		{"api%zzkey=k", "apikey", "", 0},    // bad escape in a name matches nothing
		{"api%zzkey=k", "api%zzkey", "", 0}, //
		{"apikey=a%2Bb", "apikey", "a+b", 1},
		{"apikey=a+b", "apikey", "a b", 1},
		{"apikey=%E2%9C%93", "apikey", "✓", 1},
		{"apikey=%zz", "apikey", "%zz", 1}, // kept raw; it is no valid encoding of any key
		{"apikey=k=v", "apikey", "k=v", 1},
		{"apikey=k;x=y", "apikey", "k;x=y", 1},
		{"&&apikey=k&&", "apikey", "k", 1},
		{"APIKEY=k", "apikey", "", 0}, // query names match exactly
		{"ApiKey=k", "apikey", "", 0},
		{"xapikey=k&apikeyx=k&apikey_=k", "apikey", "", 0},
		{"api_key=k", "api_key", "k", 1},
		{"api-key=k", "api_key", "", 0}, // no dash spelling outside headers
		{"api_key=k", "api-key", "", 0},
		{"=k", "apikey", "", 0},
		{"=k", "", "k", 1},
		{"", "apikey", "", 0},
	}
	for _, tt := range tests {
		v, n := lookupParam(tt.raw, tt.name)
		if v != tt.want || n != tt.n {
			t.Errorf("lookupParam(%q, %q) = %q, %d; want %q, %d", tt.raw, tt.name, v, n, tt.want, tt.n)
		}
	}
}

func TestRemoveParam(t *testing.T) {
	tests := []struct {
		raw, name string
		want      string
		removed   bool
	}{
		{"apikey=k", "apikey", "", true},
		{"a=1&apikey=k&b=2", "apikey", "a=1&b=2", true},
		{"apikey=k&a=1", "apikey", "a=1", true},
		{"a=1&apikey=k", "apikey", "a=1", true},
		{"z=1&a=2&apikey=k&m=3", "apikey", "z=1&a=2&m=3", true}, // order kept, not sorted
		{"apikey=1&x=2&apikey=3", "apikey", "x=2", true},
		{"api%6B%65%79=k&x=1", "apikey", "x=1", true},
		{"a=%20x+y%2b&apikey=k&b=%zz&c", "apikey", "a=%20x+y%2b&b=%zz&c", true}, // others byte for byte
		{"apikey=&x=1", "apikey", "x=1", true},
		{"a=1&&apikey=k&b", "apikey", "a=1&&b", true},
		{"apikeyx=1&apikey=2&xapikey=3", "apikey", "apikeyx=1&xapikey=3", true},
		{"apikey&x=1", "apikey", "apikey&x=1", false}, // no '=': absent, kept
		{"apikey&apikey=k", "apikey", "apikey", true},
		{"APIKEY=k", "apikey", "APIKEY=k", false},
		{"x=1", "apikey", "x=1", false},
		{"", "apikey", "", false},
	}
	for _, tt := range tests {
		got, removed := removeParam(tt.raw, tt.name)
		if got != tt.want || removed != tt.removed {
			t.Errorf("removeParam(%q, %q) = %q, %v; want %q, %v", tt.raw, tt.name, got, removed, tt.want, tt.removed)
		}
	}
}

func TestKeyNameSpellings(t *testing.T) {
	h := provisioned(t, &Handler{KeyNames: []string{"apikey", "api_key", "X-API-KEY", "authorization", "my_api_key"}})
	want := []keyName{
		{name: "apikey", header: "Apikey", folded: "apikey"},
		{name: "api_key", header: "Api_key", dashHeader: "Api-Key", folded: "api-key"},
		{name: "X-API-KEY", header: "X-Api-Key", folded: "x-api-key"},
		{name: "authorization", header: "Authorization", authorization: true, folded: "authorization"},
		{name: "my_api_key", header: "My_api_key", dashHeader: "My-Api-Key", folded: "my-api-key"},
	}
	if len(h.names) != len(want) {
		t.Fatalf("got %d names, want %d", len(h.names), len(want))
	}
	for i := range want {
		if h.names[i] != want[i] {
			t.Errorf("names[%d] = %+v, want %+v", i, h.names[i], want[i])
		}
	}
}

func TestHeaderValue(t *testing.T) {
	h := provisioned(t, &Handler{KeyNames: []string{"apikey", "api_key", "Authorization", "x-api-key"}})
	byName := map[string]*keyName{}
	for i := range h.names {
		byName[h.names[i].name] = &h.names[i]
	}
	type hdr [2]string
	tests := []struct {
		name    string
		headers []hdr // added in order, with net/http's canonical spelling
		want    string
		n       int
	}{
		{"apikey", []hdr{{"apikey", "k"}}, "k", 1},
		{"apikey", []hdr{{"APIKEY", "k"}}, "k", 1},
		{"apikey", []hdr{{"ApiKey", "k"}}, "k", 1},
		{"apikey", []hdr{{"apikey", "k1"}, {"Apikey", "k2"}}, "k1", 2},
		{"apikey", []hdr{{"apikey", ""}}, "", 1},
		{"apikey", []hdr{{"apikey", "Bearer k"}}, "Bearer k", 1}, // the scheme is only dropped for Authorization
		{"apikey", []hdr{{"api-key", "k"}}, "", 0},               // no underscore, no dash spelling
		{"apikey", []hdr{{"other", "k"}}, "", 0},
		{"apikey", nil, "", 0},

		{"api_key", []hdr{{"api_key", "k"}}, "k", 1},
		{"api_key", []hdr{{"API_KEY", "k"}}, "k", 1},
		{"api_key", []hdr{{"api-key", "k"}}, "k", 1},
		{"api_key", []hdr{{"Api-Key", "k"}}, "k", 1},
		{"api_key", []hdr{{"API-KEY", "k"}}, "k", 1},
		{"api_key", []hdr{{"api_key", "a"}, {"api-key", "b"}}, "a", 2},
		{"api_key", []hdr{{"api-key", "b"}, {"api_key", "a"}}, "a", 2}, // the exact spelling comes first
		{"api_key", []hdr{{"api-key", "a"}, {"api-key", "b"}}, "a", 2},
		{"api_key", []hdr{{"api-key", ""}}, "", 1},
		{"api_key", []hdr{{"apikey", "k"}}, "", 0},

		{"x-api-key", []hdr{{"X-API-KEY", "k"}}, "k", 1},
		{"x-api-key", []hdr{{"x_api_key", "k"}}, "", 0}, // a dash never matches an underscore

		{"Authorization", []hdr{{"Authorization", "Bearer k"}}, "k", 1},
		{"Authorization", []hdr{{"authorization", "bearer k"}}, "k", 1},
		{"Authorization", []hdr{{"AUTHORIZATION", "BEARER k"}}, "k", 1},
		{"Authorization", []hdr{{"Authorization", "Bearer\tk"}}, "k", 1},
		{"Authorization", []hdr{{"Authorization", "k"}}, "k", 1},
		{"Authorization", []hdr{{"Authorization", "Bearer "}}, "", 1},
		{"Authorization", []hdr{{"Authorization", "Bearer"}}, "", 1}, // the bare scheme carries no key
		{"Authorization", []hdr{{"Authorization", "Bearer a"}, {"Authorization", "Bearer b"}}, "a", 2},
		{"Authorization", []hdr{{"Authorization", "Basic dXNlcjpwYXNz"}}, "Basic dXNlcjpwYXNz", 1},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, kv := range tt.headers {
			r.Header.Add(kv[0], kv[1])
		}
		v, n := headerValue(r.Header, byName[tt.name])
		if v != tt.want || n != tt.n {
			t.Errorf("headerValue(%v, %s) = %q, %d; want %q, %d", tt.headers, tt.name, v, n, tt.want, tt.n)
		}
	}
}

func TestFind(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name     string
		h        Handler
		target   string
		headers  [][2]string
		ctype    string
		body     string
		want     string
		fail     *failure
		loc      location
		keyName  string
		readBody bool // whether the body had to be read
	}{
		{name: "header", target: "/", headers: [][2]string{{"apikey", "h"}}, want: "h", loc: locHeader, keyName: "apikey"},
		{name: "query", target: "/?apikey=q", want: "q", loc: locQuery, keyName: "apikey"},
		{name: "header before query", target: "/?apikey=q", headers: [][2]string{{"apikey", "h"}}, want: "h", loc: locHeader, keyName: "apikey"},
		{name: "nothing", target: "/?x=1", fail: errNoKey},
		{name: "empty header decides", target: "/?apikey=q", headers: [][2]string{{"apikey", ""}}, fail: errNoKey, loc: locHeader, keyName: "apikey"},
		{name: "empty query", target: "/?apikey=", fail: errNoKey, loc: locQuery, keyName: "apikey"},
		{name: "query without =", target: "/?apikey", fail: errNoKey},
		{name: "duplicate query", target: "/?apikey=a&apikey=b", fail: errDuplicate, loc: locQuery, keyName: "apikey"},
		{name: "duplicate query encoded", target: "/?apikey=a&api%6Bey=a", fail: errDuplicate, loc: locQuery, keyName: "apikey"},
		{name: "encoded query name", target: "/?api%6B%65%79=q", want: "q", loc: locQuery, keyName: "apikey"},
		{name: "encoded query value", target: "/?apikey=a%26b%3Dc", want: "a&b=c", loc: locQuery, keyName: "apikey"},

		{name: "header off", h: Handler{KeyInHeader: ptr(false)}, target: "/", headers: [][2]string{{"apikey", "h"}}, fail: errNoKey},
		{name: "header off, query", h: Handler{KeyInHeader: ptr(false)}, target: "/?apikey=q", headers: [][2]string{{"apikey", "h"}}, want: "q", loc: locQuery, keyName: "apikey"},
		{name: "query off", h: Handler{KeyInQuery: ptr(false)}, target: "/?apikey=q", fail: errNoKey},
		{name: "all off", h: Handler{KeyInHeader: ptr(false), KeyInQuery: ptr(false)}, target: "/?apikey=q", headers: [][2]string{{"apikey", "h"}}, ctype: form, body: "apikey=b", fail: errNoKey},

		{name: "names in order", h: Handler{KeyNames: []string{"apikey", "token"}}, target: "/?token=q", headers: [][2]string{{"apikey", "h"}}, want: "h", loc: locHeader, keyName: "apikey"},
		{name: "first name anywhere beats second name in header", h: Handler{KeyNames: []string{"apikey", "token"}}, target: "/?apikey=q", headers: [][2]string{{"token", "h"}}, want: "q", loc: locQuery, keyName: "apikey"},
		{name: "second name when first absent", h: Handler{KeyNames: []string{"apikey", "token"}}, target: "/?token=q", want: "q", loc: locQuery, keyName: "token"},
		{name: "first name empty does not fall through", h: Handler{KeyNames: []string{"apikey", "token"}}, target: "/?apikey=&token=q", fail: errNoKey, loc: locQuery, keyName: "apikey"},
		{name: "first name duplicate does not fall through", h: Handler{KeyNames: []string{"apikey", "token"}}, target: "/?token=q", headers: [][2]string{{"apikey", "a"}, {"APIKEY", "b"}}, fail: errDuplicate, loc: locHeader, keyName: "apikey"},
		{name: "duplicate across spellings", h: Handler{KeyNames: []string{"api_key"}}, target: "/", headers: [][2]string{{"api_key", "a"}, {"api-key", "a"}}, fail: errDuplicate, loc: locHeader, keyName: "api_key"},
		{name: "dash spelling", h: Handler{KeyNames: []string{"api_key"}}, target: "/", headers: [][2]string{{"Api-Key", "h"}}, want: "h", loc: locHeader, keyName: "api_key"},
		{name: "bearer", h: Handler{KeyNames: []string{"authorization"}}, target: "/", headers: [][2]string{{"Authorization", "bearer h"}}, want: "h", loc: locHeader, keyName: "authorization"},
		{name: "bearer in the query is the value", h: Handler{KeyNames: []string{"authorization"}}, target: "/?authorization=Bearer+q", want: "Bearer q", loc: locQuery, keyName: "authorization"},

		{name: "body", h: Handler{KeyInBody: true}, target: "/", ctype: form, body: "apikey=b", want: "b", loc: locBody, keyName: "apikey", readBody: true},
		{name: "body off", target: "/", ctype: form, body: "apikey=b", fail: errNoKey},
		{name: "header before body", h: Handler{KeyInBody: true}, target: "/", headers: [][2]string{{"apikey", "h"}}, ctype: form, body: "apikey=b", want: "h", loc: locHeader, keyName: "apikey"},
		{name: "query before body", h: Handler{KeyInBody: true}, target: "/?apikey=q", ctype: form, body: "apikey=b", want: "q", loc: locQuery, keyName: "apikey"},
		{name: "body of first name before header of second", h: Handler{KeyInBody: true, KeyNames: []string{"apikey", "token"}}, target: "/", headers: [][2]string{{"token", "h"}}, ctype: "application/json", body: `{"apikey":"b"}`, want: "b", loc: locBody, keyName: "apikey", readBody: true},
		{name: "body read once for two names", h: Handler{KeyInBody: true, KeyNames: []string{"apikey", "token"}}, target: "/", ctype: form, body: "token=b", want: "b", loc: locBody, keyName: "token", readBody: true},
		{name: "body duplicate", h: Handler{KeyInBody: true}, target: "/", ctype: "application/json", body: `{"apikey":["a","b"]}`, fail: errDuplicate, loc: locBody, keyName: "apikey", readBody: true},
		{name: "body empty value", h: Handler{KeyInBody: true}, target: "/", ctype: form, body: "apikey=", fail: errNoKey, loc: locBody, keyName: "apikey", readBody: true},
		{name: "body null", h: Handler{KeyInBody: true}, target: "/", ctype: "application/json", body: `{"apikey":null}`, fail: errNoKey, readBody: true},
		{name: "body unparsable", h: Handler{KeyInBody: true}, target: "/", ctype: "application/json", body: `{"apikey":"b"`, fail: errNoKey, readBody: true},
		{name: "body of another type", h: Handler{KeyInBody: true}, target: "/", ctype: "text/plain", body: "apikey=b", fail: errNoKey},
		{name: "body too large", h: Handler{KeyInBody: true, MaxBodySize: 4}, target: "/", ctype: form, body: "apikey=b", fail: errNoKey},
		{name: "body at the limit", h: Handler{KeyInBody: true, MaxBodySize: 8}, target: "/", ctype: form, body: "apikey=b", want: "b", loc: locBody, keyName: "apikey", readBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := provisioned(t, &tt.h)
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := httptest.NewRequest(http.MethodPost, tt.target, body)
			for _, kv := range tt.headers {
				r.Header.Add(kv[0], kv[1])
			}
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			origBody := r.Body
			q := &request{r: r}
			key, f := h.find(q)
			if key != tt.want || f != tt.fail {
				t.Errorf("find = %q, %v; want %q, %v", key, f, tt.want, tt.fail)
			}
			if q.found.loc != tt.loc {
				t.Errorf("found in %s, want %s", q.found.loc, tt.loc)
			}
			if tt.keyName != "" && (q.found.name == nil || q.found.name.name != tt.keyName) {
				t.Errorf("found name %+v, want %s", q.found.name, tt.keyName)
			}
			if read := r.Body != origBody; read != tt.readBody {
				t.Errorf("body read: %v, want %v", read, tt.readBody)
			}
			// Whatever happened, the upstream gets the body as it came.
			got, err := io.ReadAll(r.Body)
			if err != nil || string(got) != tt.body {
				t.Errorf("body after find = %q, %v; want %q", got, err, tt.body)
			}
		})
	}
}

func TestHide(t *testing.T) {
	tests := []struct {
		name        string
		h           Handler
		target      string
		headers     [][2]string
		wantURI     string
		wantHeaders http.Header
	}{
		{
			name:        "header",
			target:      "/p?apikey=q&x=1",
			headers:     [][2]string{{"apikey", "h"}, {"Other", "o"}},
			wantURI:     "/p?x=1", // every copy, not only the one used
			wantHeaders: http.Header{"Other": {"o"}},
		},
		{
			name:        "header, dash spelling",
			h:           Handler{KeyNames: []string{"api_key"}},
			target:      "/p",
			headers:     [][2]string{{"Api-Key", "h"}, {"Apikey", "o"}},
			wantURI:     "/p",
			wantHeaders: http.Header{"Apikey": {"o"}},
		},
		{
			name:        "bearer",
			h:           Handler{KeyNames: []string{"Authorization"}},
			target:      "/p",
			headers:     [][2]string{{"Authorization", "Bearer h"}},
			wantURI:     "/p",
			wantHeaders: http.Header{},
		},
		{
			name:        "query",
			target:      "/p?b=2&apikey=q&a=%20x+y",
			headers:     [][2]string{{"Other", "o"}},
			wantURI:     "/p?b=2&a=%20x+y",
			wantHeaders: http.Header{"Other": {"o"}},
		},
		{
			name:        "query, encoded name",
			target:      "/p?x=1&api%6B%65%79=q",
			wantURI:     "/p?x=1",
			wantHeaders: http.Header{},
		},
		{
			name:        "query, only parameter",
			target:      "/p?apikey=q",
			wantURI:     "/p",
			wantHeaders: http.Header{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := provisioned(t, &tt.h)
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for _, kv := range tt.headers {
				r.Header.Add(kv[0], kv[1])
			}
			q := &request{r: r}
			if _, f := h.find(q); f != nil {
				t.Fatalf("find: %v", f)
			}
			if err := q.hideAll(h); err != nil {
				t.Fatalf("hide: %v", err)
			}
			if r.RequestURI != tt.wantURI || r.URL.RequestURI() != tt.wantURI {
				t.Errorf("RequestURI = %q, URL = %q; want %q", r.RequestURI, r.URL.RequestURI(), tt.wantURI)
			}
			if !equalHeader(r.Header, tt.wantHeaders) {
				t.Errorf("headers = %v, want %v", r.Header, tt.wantHeaders)
			}
		})
	}
}

func TestHideAll(t *testing.T) {
	h := provisioned(t, &Handler{KeyNames: []string{"apikey", "api_key"}, KeyInBody: true})
	r := httptest.NewRequest(http.MethodPost, "/p?apikey=a&x=1&api_key=b&api-key=keep",
		strings.NewReader("apikey=c&y=2&api_key=d"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Apikey", "e")
	r.Header.Set("Api-Key", "f")
	r.Header.Set("Other", "o")
	q := &request{r: r}
	// The header decides, so the body is never read, and it is not scrubbed.
	if key, f := h.find(q); key != "e" || f != nil {
		t.Fatalf("find = %q, %v", key, f)
	}
	if err := q.hideAll(h); err != nil {
		t.Fatal(err)
	}
	if r.RequestURI != "/p?x=1&api-key=keep" || r.URL.RawQuery != "x=1&api-key=keep" {
		t.Errorf("RequestURI = %q, RawQuery = %q", r.RequestURI, r.URL.RawQuery)
	}
	if want := (http.Header{"Other": {"o"}, "Content-Type": {"application/x-www-form-urlencoded"}}); !equalHeader(r.Header, want) {
		t.Errorf("headers = %v, want %v", r.Header, want)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != "apikey=c&y=2&api_key=d" {
		t.Errorf("unread body changed: %q", b)
	}

	// A body that was read is scrubbed of every name.
	r = httptest.NewRequest(http.MethodPost, "/p?x=1", strings.NewReader("apikey=c&y=2&api_key=d"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	q = &request{r: r}
	if key, f := h.find(q); key != "c" || f != nil {
		t.Fatalf("find = %q, %v", key, f)
	}
	if err := q.hideAll(h); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != "y=2" || r.ContentLength != 3 || r.Header.Get("Content-Length") != "3" {
		t.Errorf("body = %q, ContentLength = %d, Content-Length = %q", b, r.ContentLength, r.Header.Get("Content-Length"))
	}
	if r.RequestURI != "/p?x=1" {
		t.Errorf("RequestURI = %q", r.RequestURI)
	}
}

func TestSetQuery(t *testing.T) {
	tests := []struct{ uri, raw, want string }{
		{"/p?a=1", "b=2", "/p?b=2"},
		{"/p?a=1", "", "/p"},
		{"/p", "", "/p"},
		{"/p?", "", "/p"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, tt.uri, nil)
		setQuery(r, tt.raw)
		if r.RequestURI != tt.want || r.URL.RawQuery != tt.raw {
			t.Errorf("setQuery(%q, %q): RequestURI = %q, RawQuery = %q; want %q", tt.uri, tt.raw, r.RequestURI, r.URL.RawQuery, tt.want)
		}
	}
}

func TestLocationString(t *testing.T) {
	for l, want := range map[location]string{locNone: "none", locHeader: "header", locQuery: "query", locBody: "body"} {
		if l.String() != want {
			t.Errorf("%d.String() = %q, want %q", l, l.String(), want)
		}
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || strings.Join(va, "\x00") != strings.Join(vb, "\x00") {
			return false
		}
	}
	return true
}
