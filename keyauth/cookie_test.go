package keyauth

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/internal/cookieread"
)

func TestCookieValue(t *testing.T) {
	tests := []struct {
		lines []string
		name  string
		want  string
		n     int
	}{
		{[]string{"apikey=k"}, "apikey", "k", 1},
		{[]string{"a=1; apikey=k; b=2"}, "apikey", "k", 1},
		{[]string{"a=1;apikey=k;b=2"}, "apikey", "k", 1},
		{[]string{"a=1;  apikey=k\t; b=2"}, "apikey", "k", 1},
		{[]string{`apikey="k"`}, "apikey", "k", 1}, // a quoted cookie value
		{[]string{`apikey="`}, "apikey", `"`, 1},
		{[]string{"apikey=k=v"}, "apikey", "k=v", 1},
		{[]string{"apikey=a%2Bb"}, "apikey", "a%2Bb", 1}, // not percent-decoded
		{[]string{"apikey="}, "apikey", "", 1},
		{[]string{"apikey=k1; apikey=k2"}, "apikey", "k1", 2},
		{[]string{"apikey=k1", "x=1; apikey=k2"}, "apikey", "k1", 2}, // across lines
		{[]string{"apikey=; apikey=k"}, "apikey", "", 2},
		{[]string{"apikey"}, "apikey", "", 0},             // no '=': no value
		{[]string{"Apikey=k; APIKEY=k"}, "apikey", "", 0}, // names are case-sensitive
		{[]string{"xapikey=k; apikeyx=k; api-key=k"}, "apikey", "", 0},
		// White space around the name is trimmed, as Go's net/http, Python,
		// Werkzeug, Django and browsers do (issue 16, item 15); it was
		// another name before.
		{[]string{"apikey =k"}, "apikey", "k", 1},
		{[]string{" apikey=k"}, "apikey", "k", 1},
		{[]string{"apikey\t=\tk"}, "apikey", "k", 1},
		{[]string{"a=1; apikey = \"k\" ; b=2"}, "apikey", "k", 1},
		{[]string{"apikey\u00a0=k"}, "apikey", "k", 1},
		{[]string{"apikey\xa0=k"}, "apikey", "k", 1},
		{[]string{"apikey=k1; apikey =k2"}, "apikey", "k1", 2}, // a duplicate however spelled
		{[]string{"apikey=k1", "\tapikey=k2"}, "apikey", "k1", 2},
		{[]string{"api key=k; apikeyx =k; x apikey=k"}, "apikey", "", 0},
		{[]string{"x=1 apikey=k"}, "apikey", "", 0}, // cookie x, as Go and browsers read it
		{[]string{"x=1,apikey=k"}, "apikey", "", 0},
		{[]string{"apikey=\" k \""}, "apikey", " k ", 1}, // white space inside the quotes stays
		{[]string{"api_key=k"}, "api_key", "k", 1},
		{[]string{"api-key=k"}, "api_key", "", 0}, // no dash spelling outside headers
		{[]string{""}, "apikey", "", 0},
		{nil, "apikey", "", 0},
	}
	for _, tt := range tests {
		v, n := cookieValue(tt.lines, tt.name)
		if v != tt.want || n != tt.n {
			t.Errorf("cookieValue(%q, %q) = %q, %d; want %q, %d", tt.lines, tt.name, v, n, tt.want, tt.n)
		}
	}
}

func TestRemoveCookie(t *testing.T) {
	tests := []struct {
		lines []string
		want  []string // nil: no Cookie header left
	}{
		{[]string{"apikey=k"}, nil},
		{[]string{"a=1; apikey=k; b=2"}, []string{"a=1; b=2"}},
		{[]string{"apikey=k; a=1; b=2"}, []string{"a=1; b=2"}},
		{[]string{"a=1; b=2; apikey=k"}, []string{"a=1; b=2"}},
		{[]string{"a=1;apikey=k;b=2"}, []string{"a=1;b=2"}},               // separators kept as sent
		{[]string{`z="q x";  apikey=k;b=%20`}, []string{`z="q x";b=%20`}}, // the others byte for byte
		{[]string{"apikey=1; x=2; apikey=3"}, []string{"x=2"}},
		{[]string{"apikey=k", "a=1"}, []string{"a=1"}},
		{[]string{"a=1", "apikey=k; b=2", "c=3"}, []string{"a=1", "b=2", "c=3"}},
		{[]string{"apikey=k", "apikey=l"}, nil},
		{[]string{"apikey=k; ;b=2"}, []string{"b=2"}},
		{[]string{"apikey; a=1"}, []string{"apikey; a=1"}}, // no '=': absent, kept
		{[]string{"Apikey=k; a=1"}, []string{"Apikey=k; a=1"}},
		{[]string{"a=1;;b=2"}, []string{"a=1;;b=2"}},
		// Every spelling an upstream may read as the name (issue 16, item
		// 15); the other cookies byte for byte.
		{[]string{"a=1; apikey =k; b=2"}, []string{"a=1; b=2"}},
		{[]string{" apikey=k;b=2"}, []string{"b=2"}},
		{[]string{"a=1;\tapikey\t=\tk"}, []string{"a=1"}},
		{[]string{"apikey\u00a0=k; a=1", "\u3000apikey=k"}, []string{"a=1"}},
		{[]string{`t="dark mode"; apikey = "k"; z=%20`}, []string{`t="dark mode"; z=%20`}},
		{[]string{"x=1 apikey=k; a=1"}, []string{"a=1"}},   // Python's http.cookies reads apikey in it
		{[]string{"a=1; x=1,apikey=k"}, []string{"a=1"}},   // so do RFC 2965 parsers
		{[]string{"a=1; x=1, apikey =k"}, []string{"a=1"}}, // and both
		{[]string{"x=see apikey=1"}, nil},                  // the price: a value that looks like one
		{[]string{"x=apikey=1; y=1apikey=2; z=api key=3"}, []string{"x=apikey=1; y=1apikey=2; z=api key=3"}},
		{[]string{"x=1 apikeys=k; apikey; b=apikey"}, []string{"x=1 apikeys=k; apikey; b=apikey"}},
	}
	for _, tt := range tests {
		hdr := http.Header{"Cookie": append([]string(nil), tt.lines...), "Other": {"o"}}
		removeCookie(hdr, "apikey")
		got, ok := hdr["Cookie"]
		if (tt.want == nil) != !ok || strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("removeCookie(%q) = %q (present %v), want %q", tt.lines, got, ok, tt.want)
		}
		if hdr.Get("Other") != "o" {
			t.Errorf("removeCookie(%q) touched another header", tt.lines)
		}
	}
}

// A line without the cookie is not copied.
func TestRemoveCookieKeepsUntouched(t *testing.T) {
	hdr := http.Header{"Cookie": {"a=1; b=2"}}
	before := &hdr["Cookie"][0]
	removeCookie(hdr, "apikey")
	if &hdr["Cookie"][0] != before {
		t.Errorf("the Cookie header was replaced though it held no key")
	}
	if allocs := testing.AllocsPerRun(100, func() { removeCookie(hdr, "apikey") }); allocs != 0 {
		t.Errorf("removeCookie without the cookie allocates %v times", allocs)
	}
}

func TestCookieValueAllocs(t *testing.T) {
	lines := []string{"session=abc; theme=dark; apikey=k; lang=en", "x=1"}
	if allocs := testing.AllocsPerRun(100, func() { cookieValue(lines, "apikey") }); allocs != 0 {
		t.Errorf("cookieValue allocates %v times", allocs)
	}
}

// Each name is looked for in the header, a cookie, the query and the body,
// in this order; the first location holding it decides.
func TestFindCookie(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	on := Handler{KeyInCookie: true, KeyInBody: true}
	tests := []struct {
		name    string
		h       Handler
		target  string
		headers [][2]string
		body    string
		want    string
		fail    *failure
		loc     location
		keyName string
	}{
		{name: "cookie", h: on, target: "/", headers: [][2]string{{"Cookie", "a=1; apikey=c"}}, want: "c", loc: locCookie, keyName: "apikey"},
		{name: "cookie off", h: Handler{KeyInBody: true}, target: "/", headers: [][2]string{{"Cookie", "apikey=c"}}, fail: errNoKey},
		{name: "header before cookie", h: on, target: "/", headers: [][2]string{{"Apikey", "h"}, {"Cookie", "apikey=c"}}, want: "h", loc: locHeader, keyName: "apikey"},
		{name: "cookie before query", h: on, target: "/?apikey=q", headers: [][2]string{{"Cookie", "apikey=c"}}, want: "c", loc: locCookie, keyName: "apikey"},
		{name: "cookie before body", h: on, target: "/", headers: [][2]string{{"Cookie", "apikey=c"}}, body: "apikey=b", want: "c", loc: locCookie, keyName: "apikey"},
		{name: "query before body", h: on, target: "/?apikey=q", body: "apikey=b", want: "q", loc: locQuery, keyName: "apikey"},
		{name: "body last", h: on, target: "/", headers: [][2]string{{"Cookie", "other=c"}}, body: "apikey=b", want: "b", loc: locBody, keyName: "apikey"},
		{name: "all four: the header", h: on, target: "/?apikey=q", headers: [][2]string{{"Apikey", "h"}, {"Cookie", "apikey=c"}}, body: "apikey=b", want: "h", loc: locHeader, keyName: "apikey"},
		{name: "duplicate cookie", h: on, target: "/?apikey=q", headers: [][2]string{{"Cookie", "apikey=a; apikey=a"}}, fail: errDuplicate, loc: locCookie, keyName: "apikey"},
		{name: "duplicate across Cookie lines", h: on, target: "/", headers: [][2]string{{"Cookie", "apikey=a"}, {"Cookie", "apikey=b"}}, fail: errDuplicate, loc: locCookie, keyName: "apikey"},
		{name: "empty cookie decides", h: on, target: "/?apikey=q", headers: [][2]string{{"Cookie", "apikey="}}, fail: errNoKey, loc: locCookie, keyName: "apikey"},
		{name: "cookie name case", h: on, target: "/?apikey=q", headers: [][2]string{{"Cookie", "ApiKey=c"}}, want: "q", loc: locQuery, keyName: "apikey"},
		{name: "first name in a cookie beats second in header", h: Handler{KeyInCookie: true, KeyNames: []string{"apikey", "token"}}, target: "/", headers: [][2]string{{"Token", "h"}, {"Cookie", "apikey=c"}}, want: "c", loc: locCookie, keyName: "apikey"},
		{name: "second name's cookie", h: Handler{KeyInCookie: true, KeyNames: []string{"apikey", "token"}}, target: "/", headers: [][2]string{{"Cookie", "token=c"}}, want: "c", loc: locCookie, keyName: "token"},
		{name: "cookie named authorization is no bearer", h: Handler{KeyInCookie: true, KeyNames: []string{"authorization"}}, target: "/", headers: [][2]string{{"Cookie", "authorization=Bearer%20c"}}, want: "Bearer%20c", loc: locCookie, keyName: "authorization"},
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
			if tt.body != "" {
				r.Header.Set("Content-Type", form)
			}
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
		})
	}
}

// With hide_credentials, the key's cookie goes, whichever location decided,
// and the other cookies stay as sent.
func TestHideCookie(t *testing.T) {
	h := provisioned(t, &Handler{KeyInCookie: true, KeyNames: []string{"apikey", "token"}})
	r := httptest.NewRequest(http.MethodGet, "/p?apikey=q&x=1", nil)
	r.Header.Add("Apikey", "h")
	r.Header.Add("Cookie", "session=s1; apikey=c;theme=\"dark mode\"")
	r.Header.Add("Cookie", "token=t; lang=en")
	q := &request{r: r}
	if key, f := h.find(q); key != "h" || f != nil {
		t.Fatalf("find = %q, %v", key, f)
	}
	if err := q.hideAll(h); err != nil {
		t.Fatal(err)
	}
	if want := []string{"session=s1;theme=\"dark mode\"", "lang=en"}; strings.Join(r.Header["Cookie"], "\n") != strings.Join(want, "\n") {
		t.Errorf("Cookie = %q, want %q", r.Header["Cookie"], want)
	}
	if r.RequestURI != "/p?x=1" || r.Header.Get("Apikey") != "" {
		t.Errorf("RequestURI %q, Apikey %q", r.RequestURI, r.Header.Get("Apikey"))
	}

	// With key_in_cookie off, cookies are not a location: they stay.
	h = provisioned(t, &Handler{})
	r = httptest.NewRequest(http.MethodGet, "/p", nil)
	r.Header.Add("Apikey", "h")
	r.Header.Add("Cookie", "apikey=c")
	q = &request{r: r}
	if _, f := h.find(q); f != nil {
		t.Fatal(f)
	}
	if err := q.hideAll(h); err != nil {
		t.Fatal(err)
	}
	if got := r.Header["Cookie"]; len(got) != 1 || got[0] != "apikey=c" {
		t.Errorf("Cookie = %q with key_in_cookie off", got)
	}
}

// hostileCookieLines are Cookie headers that spell the key names apikey and
// token the ways some parser reads them, beside cookies that must stay.
var hostileCookieLines = [][]string{
	{"apikey =k"},
	{"a=1; apikey =k; b=2"},
	{" apikey=k", "\tapikey\t=\tk"},
	{`a="x y"; apikey = "k" ; b=2`},
	{"a=1 apikey=k", "b=2,token=k", "c=3 ,  token =k"},
	{"apikey\u00a0=k; a=1", "\u3000token\u2003=k; b=2"},
	{"apikey\xa0=k; \x85token=k; a=1"},
	{"a=1;path=/; apikey=k"},
	{"$Version=1; apikey=k; $Path=/"},
	{"x=1", "apikey", "apikey=; token=\"\"; c=3"},
	{`z="a;apikey=k"; y=2`},
	{"session=s1;theme=\"dark mode\"; lang=en"},
}

// After hiding, no parser upstream reads a key name with a value (the
// readers of internal/cookieread, one line at a time and joined as
// upstreams join them), and a pair that never held one is kept byte for
// byte.
func TestHideCookieSpellings(t *testing.T) {
	for _, lines := range hostileCookieLines {
		checkCookiesHidden(t, lines)
	}
}

func checkCookiesHidden(t *testing.T, lines []string) {
	t.Helper()
	hdr := http.Header{"Cookie": slices.Clone(lines)}
	for _, name := range []string{"apikey", "token"} {
		removeCookie(hdr, name)
	}
	after := hdr["Cookie"]
	for _, name := range []string{"apikey", "token"} {
		if who := cookieread.Holds(after, name); len(who) > 0 {
			t.Errorf("%q: after hiding, %s read a cookie %s in %q", lines, strings.Join(who, ", "), name, after)
		}
	}
	var want []string
	for _, line := range lines {
		for pair := range strings.SplitSeq(line, ";") {
			if !strings.Contains(pair, "apikey") && !strings.Contains(pair, "token") && strings.TrimSpace(pair) != "" {
				want = append(want, strings.TrimLeft(pair, " \t"))
			}
		}
	}
	var got []string
	for _, line := range after {
		for pair := range strings.SplitSeq(line, ";") {
			if !strings.Contains(pair, "apikey") && !strings.Contains(pair, "token") && strings.TrimSpace(pair) != "" {
				got = append(got, strings.TrimLeft(pair, " \t"))
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%q: the other cookies became %q, want %q", lines, got, want)
	}
}

// FuzzHideCookie: whatever the Cookie header, no parser upstream reads a
// key name in what hiding leaves.
func FuzzHideCookie(f *testing.F) {
	for _, lines := range hostileCookieLines {
		f.Add(strings.Join(lines, "\n"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		var lines []string
		for l := range strings.SplitSeq(s, "\n") {
			// What Go's server hands a handler: no control bytes but tabs.
			if !strings.ContainsFunc(l, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				lines = append(lines, l)
			}
		}
		checkCookiesHidden(t, lines)
	})
}

func TestTrimCookieSpace(t *testing.T) {
	for in, want := range map[string]string{
		"apikey":                    "apikey",
		" \tapikey\t ":              "apikey",
		"\u00a0apikey\u3000\u2009":  "apikey",
		"\xa0apikey\x85":            "apikey", // Latin-1 no-break space and next line
		"apikey\xc3\xa0":            "apikey\xc3\xa0",
		"\x1capikey\x1f":            "apikey",
		"a pi key":                  "a pi key",
		" ":                         "",
		"\xff":                      "\xff",
		"api\u00a0key\u00a0\u00a0 ": "api\u00a0key",
	} {
		if got := trimCookieSpace(in); got != want {
			t.Errorf("trimCookieSpace(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCookieHoldsName(t *testing.T) {
	for pair, want := range map[string]bool{
		"apikey=k":            true,
		" apikey =k":          true,
		"apikey=":             true,
		"apikey":              false,
		"x=1 apikey=k":        true,
		"x=1\tapikey =k":      true,
		"x=1,apikey=k":        true,
		"x=1, apikey\t=k":     true,
		"x=1apikey=k":         false,
		"x=apikey=k":          false,
		"x=1 apikeys=k":       false,
		"x=1 apikey":          false,
		"x=1 apikey apikey=k": true,
		"apikeyapikey=k":      false,
	} {
		if got := cookieHoldsName(pair, "apikey"); got != want {
			t.Errorf("cookieHoldsName(%q) = %v, want %v", pair, got, want)
		}
	}
}

func TestSameSiteOrSafe(t *testing.T) {
	tests := []struct {
		name   string
		method string
		tls    bool
		host   string
		hdr    []string
		want   bool
	}{
		{"GET cross-site", "GET", false, "api.example", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, true},
		{"HEAD", "HEAD", false, "api.example", []string{"Sec-Fetch-Site", "cross-site"}, true},
		{"OPTIONS", "OPTIONS", false, "api.example", []string{"Sec-Fetch-Site", "cross-site"}, true},
		{"TRACE", "TRACE", false, "api.example", []string{"Sec-Fetch-Site", "cross-site"}, true},
		{"POST cross-site", "POST", true, "api.example", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://api.example"}, false},
		{"POST same-origin", "POST", true, "api.example", []string{"Sec-Fetch-Site", "same-origin", "Origin", "https://api.example"}, true},
		{"POST same-site", "POST", true, "api.example", []string{"Sec-Fetch-Site", "same-site", "Origin", "https://www.api.example"}, true},
		{"POST typed by the user", "POST", true, "api.example", []string{"Sec-Fetch-Site", "none"}, true},
		{"Sec-Fetch-Site decides over Origin", "PUT", true, "api.example", []string{"Sec-Fetch-Site", "same-origin", "Origin", "https://evil.example"}, true},
		{"unknown Sec-Fetch-Site", "POST", true, "api.example", []string{"Sec-Fetch-Site", "Same-Origin"}, false},
		{"two Sec-Fetch-Site", "POST", true, "api.example", []string{"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Site", "same-origin"}, false},
		{"Origin is the host", "POST", true, "api.example", []string{"Origin", "https://api.example"}, true},
		{"Origin, host with its default port", "POST", true, "api.example:443", []string{"Origin", "https://api.example"}, true},
		{"Origin with the default port", "POST", false, "api.example", []string{"Origin", "http://api.example:80"}, true},
		{"Origin, other case", "DELETE", false, "API.example:8080", []string{"Origin", "http://api.EXAMPLE:8080"}, true},
		{"Origin, other port", "POST", false, "api.example:8080", []string{"Origin", "http://api.example:8081"}, false},
		{"Origin, other scheme", "POST", false, "api.example", []string{"Origin", "https://api.example"}, false},
		{"Origin, http to https", "POST", true, "api.example", []string{"Origin", "http://api.example"}, false},
		{"Origin, sibling host", "POST", true, "api.example", []string{"Origin", "https://www.api.example"}, false},
		{"Origin, other site", "PATCH", true, "api.example", []string{"Origin", "https://evil.example"}, false},
		{"Origin null", "POST", true, "api.example", []string{"Origin", "null"}, false},
		{"Origin with a path", "POST", true, "api.example", []string{"Origin", "https://api.example/"}, false},
		{"Origin, host as a prefix", "POST", true, "api.example", []string{"Origin", "https://api.example.evil"}, false},
		{"two Origins", "POST", true, "api.example", []string{"Origin", "https://api.example", "Origin", "https://api.example"}, false},
		{"Origin, no Host", "POST", true, "", []string{"Origin", "https://"}, false},
		{"neither: not a browser", "POST", false, "api.example", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/", nil)
			r.Host = tt.host
			if !tt.tls {
				r.TLS = nil
			} else if r.TLS == nil {
				r.TLS = &tls.ConnectionState{}
			}
			for i := 0; i < len(tt.hdr); i += 2 {
				r.Header.Add(tt.hdr[i], tt.hdr[i+1])
			}
			if got := sameSiteOrSafe(r); got != tt.want {
				t.Errorf("sameSiteOrSafe = %v, want %v", got, tt.want)
			}
		})
	}
	r := httptest.NewRequest(http.MethodPost, "http://api.example:8080/", nil)
	r.Header.Set("Origin", "http://api.example:8080")
	if allocs := testing.AllocsPerRun(100, func() { sameSiteOrSafe(r) }); allocs != 0 {
		t.Errorf("sameSiteOrSafe allocates %v times", allocs)
	}
}

// A key in a cookie counts on an unsafe cross-site request only with
// cookie_cross_site; otherwise it is as absent: the query, the next key
// name, or no key at all decide. A header key is never affected.
func TestFindCookieCrossSite(t *testing.T) {
	cross := []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	tests := []struct {
		name   string
		h      Handler
		method string
		target string
		hdr    []string
		want   string
		fail   *failure
		loc    location
	}{
		{name: "POST cross-site: no key", method: "POST", target: "/", hdr: append([]string{"Cookie", "apikey=c"}, cross...), fail: errNoKey},
		{name: "POST cross-site: the query decides", method: "POST", target: "/?apikey=q", hdr: append([]string{"Cookie", "apikey=c"}, cross...), want: "q", loc: locQuery},
		{name: "POST cross-site: a duplicate cookie is absent too", method: "POST", target: "/?apikey=q", hdr: append([]string{"Cookie", "apikey=c; apikey=d"}, cross...), want: "q", loc: locQuery},
		{name: "POST cross-site: the next name's header", h: Handler{KeyNames: []string{"apikey", "token"}}, method: "POST", target: "/", hdr: append([]string{"Cookie", "apikey=c; token=t", "Token", "h"}, cross...), want: "h", loc: locHeader},
		{name: "POST cross-site: the header", method: "POST", target: "/", hdr: append([]string{"Cookie", "apikey=c", "Apikey", "h"}, cross...), want: "h", loc: locHeader},
		{name: "POST cross-site with cookie_cross_site", h: Handler{CookieCrossSite: true}, method: "POST", target: "/?apikey=q", hdr: append([]string{"Cookie", "apikey=c"}, cross...), want: "c", loc: locCookie},
		{name: "GET cross-site", method: "GET", target: "/?apikey=q", hdr: append([]string{"Cookie", "apikey=c"}, cross...), want: "c", loc: locCookie},
		{name: "POST same-origin", method: "POST", target: "/", hdr: []string{"Cookie", "apikey=c", "Sec-Fetch-Site", "same-origin"}, want: "c", loc: locCookie},
		{name: "POST from the same origin, by Origin", method: "POST", target: "http://api.example/", hdr: []string{"Cookie", "apikey=c", "Origin", "http://api.example"}, want: "c", loc: locCookie},
		{name: "POST, neither header", method: "POST", target: "/", hdr: []string{"Cookie", "apikey=c"}, want: "c", loc: locCookie},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.h.KeyInCookie, tt.h.HideCredentials = true, true
			h := provisioned(t, &tt.h)
			r := httptest.NewRequest(tt.method, tt.target, nil)
			for i := 0; i < len(tt.hdr); i += 2 {
				r.Header.Add(tt.hdr[i], tt.hdr[i+1])
			}
			q := &request{r: r}
			key, f := h.find(q)
			if key != tt.want || f != tt.fail || q.found.loc != tt.loc {
				t.Errorf("find = %q, %v in %s; want %q, %v in %s", key, f, q.found.loc, tt.want, tt.fail, tt.loc)
			}
			// Ignored or not, hide_credentials removes it.
			if err := q.hideAll(h); err != nil {
				t.Fatal(err)
			}
			if c := r.Header["Cookie"]; len(c) > 0 {
				t.Errorf("Cookie %q left", c)
			}
		})
	}
}

// cookie_cross_site without key_in_cookie is a mistake, refused at load.
func TestValidateCookieCrossSite(t *testing.T) {
	h := Handler{CookieCrossSite: true}
	if err := h.Validate(); err == nil || err.Error() != "cookie_cross_site needs key_in_cookie: without it no key is read from a cookie" {
		t.Errorf("Validate() = %v", err)
	}
	h.KeyInCookie = true
	if err := h.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}
