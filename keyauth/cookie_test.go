package keyauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
		{[]string{"apikey =k"}, "apikey", "", 0}, // a name with a space is another name
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
