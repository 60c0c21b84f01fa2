package integration

// Keys in cookies (README: the options table, Keys in cookies): the
// spellings of a key name's cookie that an upstream may read, which
// hide_credentials removes and finding reads where Go's net/http does; and
// cookie_cross_site, without which a browser cannot be made to spend the
// cookie from another site. Elsewhere: where a cookie is searched and its
// duplicates (TestKeyInCookie), hiding it on every path a request goes on
// by (TestHideCredentialsCookie).

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/internal/cookieread"
)

// Every spelling of a key name's cookie that some upstream parser reads as
// the name is gone from what the upstream gets (the readers of
// internal/cookieread: Go's net/http, Python's http.cookies, Werkzeug,
// Django, Starlette, RFC 2965 parsers), and the other cookies reach it byte
// for byte. A name padded with white space is the key's cookie to key_auth
// too, as to Go's net/http, so it authenticates, and counts as a duplicate.
func TestCookieSpellingsHidden(t *testing.T) {
	newCookieEnv(t)
	const k = cookieAliceKey
	for _, tc := range []struct {
		name   string
		base   string
		hdr    []string
		who    identity
		cookie []string // the Cookie lines the upstream must get
	}{
		{name: "space after the name", base: cookieSite,
			hdr: []string{"Cookie", "a=1; apikey =" + k + "; b=2"}, who: cookieAlice, cookie: []string{"a=1; b=2"}},
		{name: "spaces around the name and the value", base: cookieSite,
			hdr: []string{"Cookie", "a=1;   apikey  =  " + k + "  ;b=2"}, who: cookieAlice, cookie: []string{"a=1;b=2"}},
		{name: "tabs", base: cookieSite,
			hdr: []string{"Cookie", "a=1;\tapikey\t=\t" + k}, who: cookieAlice, cookie: []string{"a=1"}},
		{name: "several Cookie headers, the second name", base: cookieSite,
			hdr: []string{"Cookie", "a=1", "Cookie", "token =" + k + "; b=2", "Cookie", "c=3"}, who: cookieAlice,
			cookie: []string{"a=1", "b=2", "c=3"}},
		{name: "quoted values", base: cookieSite,
			hdr: []string{"Cookie", `theme="dark mode"; apikey = "` + k + `"; z=%20; q=""`},
			who: cookieAlice, cookie: []string{`theme="dark mode"; z=%20; q=""`}},
		{name: "no-break spaces", base: cookieSite,
			hdr: []string{"Cookie", "apikey\u00a0=" + k + "; a=1", "Cookie", "b=2;\xa0token=" + k}, who: cookieAlice,
			cookie: []string{"a=1", "b=2"}},
		{name: "after white space inside a pair (Python's http.cookies)", base: cookieSite,
			hdr: []string{"apikey", k, "Cookie", "a=1; x=1 apikey=other; b=2", "Cookie", "y=1\ttoken=other"}, who: cookieAlice,
			cookie: []string{"a=1; b=2"}},
		{name: "after a comma inside a pair (RFC 2965)", base: cookieSite,
			hdr: []string{"apikey", k, "Cookie", "a=1; x=1,token=other", "Cookie", "y=2, apikey =other; b=2"}, who: cookieAlice,
			cookie: []string{"a=1", "b=2"}},
		{name: "names that only contain a key name stay", base: cookieSite,
			hdr: []string{"apikey", k, "Cookie", "apikeys=1; xapikey=2; api_key=3; tokens =4; b=apikey; c=x=token=5"}, who: cookieAlice,
			cookie: []string{"apikeys=1; xapikey=2; api_key=3; tokens =4; b=apikey; c=x=token=5"}},
		{name: "a duplicate spelled with a space, anonymous", base: cookieSiteAnon,
			hdr: []string{"Cookie", "apikey=" + k + "; a=1; apikey =" + k}, who: cookieGuest, cookie: []string{"a=1"}},
		{name: "rejected, handed to handle_errors", base: cookieSiteErrors,
			hdr: []string{"Cookie", "apikey =wrong; a=1; x=2 token=" + k}, who: cookieNobody, cookie: []string{"a=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wantIdentity(t, do(t, req(http.MethodGet, tc.base+"/p", nil, tc.hdr...)), tc.who)
			c := cookies(got)
			if !slices.Equal(c, tc.cookie) {
				t.Errorf("upstream got Cookie %q, want %q", c, tc.cookie)
			}
			for _, name := range []string{"apikey", "token"} {
				if who := cookieread.Holds(c, name); len(who) > 0 {
					t.Errorf("%s would read a cookie %s in what the upstream got: %q", strings.Join(who, ", "), name, c)
				}
			}
			for name, v := range got.Header {
				if strings.Contains(strings.Join(v, ","), k) {
					t.Errorf("upstream got the key in %s", name)
				}
			}
		})
	}

	// A duplicate however spelled is refused, as two cookies of the name.
	want401(t, get(t, cookieSite+"/", "Cookie", "apikey="+cookieAliceKey+"; apikey\t="+cookieAliceKey), msgDuplicate)
	// Without hide_credentials the spellings reach the upstream as sent.
	const sent = "a=1; apikey =" + cookieAliceKey + "; x=1 token=2"
	got := wantIdentity(t, get(t, cookieSiteKeep+"/", "Cookie", sent), cookieAlice)
	if c := cookies(got); len(c) != 1 || c[0] != sent {
		t.Errorf("upstream got Cookie %q without hide_credentials", c)
	}
}

// Without cookie_cross_site, a key in a cookie counts on a POST (or any
// method but GET, HEAD, OPTIONS and TRACE) only when the browser says the
// request comes from the same site, or when it is no browser; otherwise
// the cookie is as absent, and still hidden.
func TestCookieCrossSite(t *testing.T) {
	e := newCookieEnv(t)
	const k = cookieAliceKey
	cookie := []string{"Cookie", "session=s1; apikey=" + k}
	crossSite := append([]string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, cookie...)
	with := func(hdr ...string) []string { return append(hdr, cookie...) }
	for _, tc := range []struct {
		name   string
		method string
		base   string
		hdr    []string
		want   outcome
	}{
		{"cross-site POST: no key", http.MethodPost, cookieSite, crossSite, reject(msgNoKey)},
		{"cross-site PUT by Origin alone: no key", http.MethodPut, cookieSite, with("Origin", "https://evil.example"), reject(msgNoKey)},
		{"cross-site DELETE from null: no key", http.MethodDelete, cookieSite, with("Origin", "null"), reject(msgNoKey)},
		{"POST from another port: no key", http.MethodPost, cookieSite, with("Origin", cookieSiteKeep), reject(msgNoKey)},
		{"cross-site POST, anonymous: the guest", http.MethodPost, cookieSiteAnon, crossSite, pass(cookieGuest)},
		{"cross-site POST, key in the query too: the query", http.MethodPost, cookieSite + "/?apikey=" + k + "&x=1", crossSite, pass(cookieAlice)},
		{"cross-site POST, key in a header: unaffected", http.MethodPost, cookieSite, append([]string{"apikey", k}, crossSite...), pass(cookieAlice)},
		{"cross-site POST with cookie_cross_site", http.MethodPost, cookieSiteCrossSite, crossSite, pass(cookieAlice)},
		{"cross-site GET", http.MethodGet, cookieSite, crossSite, pass(cookieAlice)},
		{"cross-site HEAD", http.MethodHead, cookieSite, crossSite, outcome{status: http.StatusOK}},
		{"same-origin POST", http.MethodPost, cookieSite, with("Sec-Fetch-Site", "same-origin", "Origin", cookieSite), pass(cookieAlice)},
		{"same-site POST", http.MethodPost, cookieSite, with("Sec-Fetch-Site", "same-site", "Origin", "http://www.localhost"), pass(cookieAlice)},
		{"POST typed in the address bar", http.MethodPost, cookieSite, with("Sec-Fetch-Site", "none"), pass(cookieAlice)},
		{"same-origin POST by Origin alone", http.MethodPatch, cookieSite, with("Origin", cookieSite), pass(cookieAlice)},
		{"POST with neither header: not a browser", http.MethodPost, cookieSite, cookie, pass(cookieAlice)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.base
			if !strings.Contains(url, "?") {
				url += "/p"
			}
			r := do(t, req(tc.method, url, strings.NewReader(""), tc.hdr...))
			if tc.method == http.MethodHead {
				if r.status != tc.want.status {
					t.Errorf("HEAD: status %d, want %d", r.status, tc.want.status)
				}
				return
			}
			if tc.want.status != http.StatusOK {
				want401(t, r, tc.want.message)
				return
			}
			got := wantIdentity(t, r, tc.want.who)
			// Counted or not, hide_credentials removed the cookie.
			if c := cookies(got); len(c) != 1 || c[0] != "session=s1" {
				t.Errorf("upstream got Cookie %q, want session=s1", c)
			}
		})
	}

	// Why the cookie was left aside is logged at DEBUG, without it.
	e.waitLog("caddy.log", func(le logEntry) bool {
		return strings.HasPrefix(le.str("msg"), "key in a cookie ignored") && le.str("method") == http.MethodPost &&
			le.str("sec_fetch_site") == "cross-site" && le.str("origin") == "https://evil.example"
	})
}

// cookie_cross_site without key_in_cookie is refused at load, saying why.
func TestCookieCrossSiteNeedsKeyInCookie(t *testing.T) {
	e := newEnv(t)
	msg := e.loadError("{{.Global}}\n"+keyAuthSite("{{.Site}}", "cookie_cross_site"), "caddyfile")
	if !strings.Contains(msg, "cookie_cross_site needs key_in_cookie") {
		t.Errorf("load error %q", msg)
	}
}
