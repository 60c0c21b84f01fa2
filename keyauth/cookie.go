package keyauth

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Cookies are read without parsing the ones that are not a key (the
// Request.Cookies way would allocate every cookie of every request), and in
// two ways:
//
//   - finding reads a pair as a key when its name is a key name once white
//     space is trimmed (cookieNameIs): as Go's net/http (and so Caddy's
//     {http.request.cookie.*}), Python's http.cookies, Werkzeug, Django,
//     Starlette and Node's cookie read names, and as browsers store them
//     (RFC 6265, section 5.2). So "apikey=K1; apikey =K2" is a duplicate,
//     not K1 here and K2 to an upstream that keeps the last.
//   - hiding also removes a pair that holds a key name after white space or
//     a comma (cookieHoldsName): Python's http.cookies reads "x=1 apikey=K"
//     as two cookies, apikey among them, and Java's old RFC 2965 parsers
//     split "x=1,apikey=K" at the comma. Finding does not read those: Go,
//     browsers, Werkzeug and Django see one cookie, x.

// cookieValue finds the cookie named name in the Cookie header lines. It
// returns the first value and how many cookies have the name, in one line
// or several. Names match exactly, as cookie names are case-sensitive (RFC
// 6265, section 5.4), but for white space around them (cookieNameIs); a pair
// without '=' has no value and counts as absent. The value is taken as
// sent but for white space around it and the double quotes a cookie value
// may be wrapped in; it is not percent-decoded, as cookies are not.
func cookieValue(lines []string, name string) (string, int) {
	var v string
	n := 0
	for _, line := range lines {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			k, val, ok := strings.Cut(pair, "=")
			if !ok || !cookieNameIs(k, name) {
				continue
			}
			if n == 0 {
				val = trimCookieSpace(val)
				if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				v = val
			}
			n++
		}
	}
	return v, n
}

// cookieNameIs reports whether the name of a pair, as sent, is name once
// white space is trimmed from both ends.
func cookieNameIs(k, name string) bool {
	if k == name {
		return true
	}
	return len(k) > len(name) && trimCookieSpace(k) == name
}

// trimCookieSpace trims from both ends of s what some cookie parser trims
// as white space: ASCII white space, the separators Python's str.strip
// also takes (0x1C to 0x1F), Unicode white space in UTF-8 (Werkzeug and
// Django decode the header as UTF-8, then strip), and the bytes 0x85 and
// 0xA0 alone (Starlette strips the header decoded as Latin-1). Go's server
// refuses control bytes in a header, but a name padded with a no-break
// space reaches a handler.
func trimCookieSpace(s string) string {
	for s != "" {
		c := s[0]
		if c < utf8.RuneSelf {
			if !asciiCookieSpace(c) {
				break
			}
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		if !(r == utf8.RuneError && size == 1 && latin1Space(c) || unicode.IsSpace(r)) {
			break
		}
		s = s[size:]
	}
	for s != "" {
		c := s[len(s)-1]
		if c < utf8.RuneSelf {
			if !asciiCookieSpace(c) {
				break
			}
			s = s[:len(s)-1]
			continue
		}
		r, size := utf8.DecodeLastRuneInString(s)
		if !(r == utf8.RuneError && size == 1 && latin1Space(c) || unicode.IsSpace(r)) {
			break
		}
		s = s[:len(s)-size]
	}
	return s
}

func asciiCookieSpace(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r' || 0x1c <= c && c <= 0x1f
}

func latin1Space(c byte) bool { return c == 0x85 || c == 0xa0 }

// cookieHoldsName reports whether an upstream may read the pair as a cookie
// named name: its name is name once white space is trimmed, or name
// follows white space or a comma in it and is followed by '=', white space
// allowed before the '='. The second way removes some values that merely
// look like a key name's pair ("x=see apikey=1"): no valid cookie value
// holds white space or a comma (RFC 6265, section 4.1.1), and one that does
// is a key to Python's http.cookies.
func cookieHoldsName(pair, name string) bool {
	if k, _, ok := strings.Cut(pair, "="); ok && cookieNameIs(k, name) {
		return true
	}
	for i := 1; i < len(pair); {
		j := strings.Index(pair[i:], name)
		if j < 0 {
			return false
		}
		start := i + j
		i = start + 1
		if c := pair[start-1]; c != ',' && !asciiCookieSpace(c) {
			continue
		}
		rest := pair[start+len(name):]
		for rest != "" && asciiCookieSpace(rest[0]) {
			rest = rest[1:]
		}
		if rest != "" && rest[0] == '=' {
			return true
		}
	}
	return false
}

// removeCookie removes every pair an upstream may read as a cookie named
// name (cookieHoldsName) from the Cookie header lines; the other cookies
// stay as sent, with their separators, and a line left empty goes. It
// allocates only when there is a cookie to remove.
func removeCookie(hdr http.Header, name string) {
	lines := hdr["Cookie"]
	var kept []string
	changed := false
	for i, line := range lines {
		nl, ok := removeCookieFromLine(line, name)
		if ok && !changed {
			changed = true
			kept = append(make([]string, 0, len(lines)), lines[:i]...)
		}
		if changed && nl != "" {
			kept = append(kept, nl)
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		delete(hdr, "Cookie")
	default:
		hdr["Cookie"] = kept
	}
}

// removeCookieFromLine removes the pairs holding name from one Cookie line.
func removeCookieFromLine(line, name string) (string, bool) {
	if !hasCookie(line, name) {
		return line, false
	}
	var b strings.Builder
	b.Grow(len(line))
	for rest, more := line, true; more; {
		var pair string
		pair, rest, more = strings.Cut(rest, ";")
		if cookieHoldsName(pair, name) {
			continue
		}
		if b.Len() == 0 {
			// The first pair kept loses the space that followed the
			// separator of a pair removed before it.
			pair = strings.TrimLeft(pair, " \t")
			if pair == "" {
				continue
			}
		} else {
			b.WriteByte(';')
		}
		b.WriteString(pair)
	}
	return b.String(), true
}

// hasCookie reports whether line holds a pair an upstream may read as a
// cookie named name.
func hasCookie(line, name string) bool {
	if !strings.Contains(line, name) {
		return false
	}
	for line != "" {
		var pair string
		pair, line, _ = strings.Cut(line, ";")
		if cookieHoldsName(pair, name) {
			return true
		}
	}
	return false
}

// cookieAllowed reports whether a key found in a cookie may be used: always
// with cookie_cross_site, otherwise only for a request a browser could not
// have been made to send from another site with the user's cookie (CSRF):
// a safe method, or a same-site one. The answer is kept for the request's
// other key names.
func (h *Handler) cookieAllowed(q *request) bool {
	if h.CookieCrossSite {
		return true
	}
	if q.cookieSite == siteUnknown {
		q.cookieSite = siteSame
		if !sameSiteOrSafe(q.r) {
			q.cookieSite = siteCross
			h.logCrossSite(q.r)
		}
	}
	return q.cookieSite == siteSame
}

// cookieSite is what a request's method and headers say of its site, for
// a key in a cookie.
type cookieSite uint8

const (
	siteUnknown cookieSite = iota // not worked out yet
	siteSame                      // a safe method, or same-site
	siteCross                     // an unsafe method from another site
)

// sameSiteOrSafe reports whether r has a safe method (RFC 9110, section
// 9.2.1), which must not change state, or comes from the request's own
// site: by Sec-Fetch-Site (same-origin, same-site, or none: typed by the
// user) when a browser sent it; else by Origin, which must be the
// request's own origin (scheme, host and port: telling a sibling host of
// the same site needs the public suffix list); else true. Browsers send
// Origin with every request of another method (the Fetch standard), so a
// request with neither comes from a client that is not a browser, which
// holds its cookie itself, or from a browser older than 2020.
func sameSiteOrSafe(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	if v := r.Header["Sec-Fetch-Site"]; len(v) > 0 {
		if len(v) > 1 {
			return false
		}
		switch v[0] {
		case "same-origin", "same-site", "none":
			return true
		}
		return false // cross-site, or a value no browser sends
	}
	if v := r.Header["Origin"]; len(v) > 0 {
		return len(v) == 1 && sameOrigin(v[0], r)
	}
	return true
}

// sameOrigin reports whether origin, as browsers send it in Origin, is the
// origin of r: the scheme Caddy received it by, and its Host, a default
// port left out on either side. "null" (an opaque origin) is no origin.
func sameOrigin(origin string, r *http.Request) bool {
	scheme, port := "http", ":80"
	if r.TLS != nil {
		scheme, port = "https", ":443"
	}
	rest, ok := cutPrefixFold(origin, scheme)
	if !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, "://"); !ok {
		return false
	}
	host := r.Host
	host = strings.TrimSuffix(host, port)
	rest = strings.TrimSuffix(rest, port)
	return host != "" && strings.EqualFold(rest, host)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// logCrossSite notes at DEBUG a key in a cookie left aside: the method and
// what the browser said of the request's site, never the cookie.
func (h *Handler) logCrossSite(r *http.Request) {
	if ce := h.logger.Check(zapcore.DebugLevel, "key in a cookie ignored: unsafe method from another site; see cookie_cross_site"); ce != nil {
		ce.Write(
			zap.String("method", r.Method),
			zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")),
			zap.String("origin", r.Header.Get("Origin")),
		)
	}
}
