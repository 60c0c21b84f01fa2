package keyauth

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// location is a place a key may be sent: one entry of locations.
type location uint8

const (
	locNone location = iota
	locHeader
	locCookie
	locQuery
	locBody
)

// locator is one location a key may be sent in: how to turn it on, find a
// key name's values there, and remove them. locations lists them all, so
// searching, hiding, the options and their warning never list them by
// hand.
type locator struct {
	loc    location
	name   string // in logs: "header"
	option string // the option that turns it on, in JSON and the Caddyfile
	// bare is the option's value when the Caddyfile gives it no argument;
	// false when it needs one.
	bare bool
	// enabled reads the option from the handler's configuration, and set
	// writes it.
	enabled func(h *Handler) bool
	set     func(h *Handler, on bool)
	// readsBody: value and hide are handed the request's body, read once
	// for all names (nil until it is read).
	readsBody bool
	// ambient: a browser sends it by itself, to whichever site the page
	// asks, so a key found here counts only when cookieAllowed.
	ambient bool
	// value returns the first value of the name here and how many values
	// there are.
	value func(r *http.Request, b *body, kn *keyName) (string, int)
	// hide removes every value of the name from here.
	hide func(r *http.Request, b *body, kn *keyName) error
}

// locations are the places a key may be sent, in the order they are
// searched for each key name.
var locations = [...]locator{
	{
		loc: locHeader, name: "header", option: "key_in_header",
		enabled: func(h *Handler) bool { return h.KeyInHeader == nil || *h.KeyInHeader },
		set:     func(h *Handler, on bool) { h.KeyInHeader = &on },
		value: func(r *http.Request, _ *body, kn *keyName) (string, int) {
			return headerValue(r.Header, kn)
		},
		hide: func(r *http.Request, _ *body, kn *keyName) error {
			delete(r.Header, kn.header)
			if kn.dashHeader != "" {
				delete(r.Header, kn.dashHeader)
			}
			return nil
		},
	},
	{
		loc: locCookie, name: "cookie", option: "key_in_cookie", bare: true, ambient: true,
		enabled: func(h *Handler) bool { return h.KeyInCookie },
		set:     func(h *Handler, on bool) { h.KeyInCookie = on },
		value: func(r *http.Request, _ *body, kn *keyName) (string, int) {
			return cookieValue(r.Header["Cookie"], kn.name)
		},
		hide: func(r *http.Request, _ *body, kn *keyName) error {
			removeCookie(r.Header, kn.name)
			return nil
		},
	},
	{
		loc: locQuery, name: "query", option: "key_in_query",
		enabled: func(h *Handler) bool { return h.KeyInQuery == nil || *h.KeyInQuery },
		set:     func(h *Handler, on bool) { h.KeyInQuery = &on },
		value: func(r *http.Request, _ *body, kn *keyName) (string, int) {
			return lookupParam(r.URL.RawQuery, kn.name)
		},
		hide: func(r *http.Request, _ *body, kn *keyName) error {
			if r.URL.RawQuery == "" {
				return nil
			}
			if raw, ok := removeParam(r.URL.RawQuery, kn.name); ok {
				setQuery(r, raw)
			}
			return nil
		},
	},
	{
		loc: locBody, name: "body", option: "key_in_body", readsBody: true,
		enabled: func(h *Handler) bool { return h.KeyInBody },
		set:     func(h *Handler, on bool) { h.KeyInBody = on },
		value: func(_ *http.Request, b *body, kn *keyName) (string, int) {
			return b.lookup(kn.name)
		},
		hide: func(r *http.Request, b *body, kn *keyName) error {
			// Only a body that was read was searched, and is scrubbed.
			if b == nil {
				return nil
			}
			return b.remove(r, kn.name)
		},
	},
}

// locatorOf is the location an option turns on, or nil.
func locatorOf(option string) *locator {
	for i := range locations {
		if locations[i].option == option {
			return &locations[i]
		}
	}
	return nil
}

// allOffWarning is logged by a handler that searches no location.
var allOffWarning = func() string {
	var opts []string
	for _, l := range locations {
		opts = append(opts, l.option)
	}
	return strings.Join(opts[:len(opts)-1], ", ") + " and " + opts[len(opts)-1] +
		" are all off: every request is rejected or anonymous"
}()

func (l location) String() string {
	for i := range locations {
		if locations[i].loc == l {
			return locations[i].name
		}
	}
	return "none"
}

// searches reports whether h looks for keys in l: a scan of its few
// locations, not a second record of them to keep in step.
func (h *Handler) searches(l location) bool {
	for _, x := range h.locs {
		if x.loc == l {
			return true
		}
	}
	return false
}

// found is the key name and location that decided a request.
type found struct {
	name *keyName
	loc  location
}

// request is one request's search for its key.
type request struct {
	r     *http.Request
	found found
	body  *body // read at most once, and only when needed
	// cookieSite is worked out when a key is found in a cookie.
	cookieSite cookieSite
}

// find looks for the key, trying each name in order in each location the
// handler searches (header, cookie, query, body). The first location where
// a name is present decides; the next name is tried only when one is
// absent everywhere. A cookie a cross-site request may not use counts as
// absent, as if the browser had not sent it (cookieAllowed).
func (h *Handler) find(q *request) (string, *failure) {
	for i := range h.names {
		kn := &h.names[i]
		for _, l := range h.locs {
			var b *body
			if l.readsBody {
				var f *failure
				if b, f = q.readBody(h); f != nil {
					return "", f
				}
			}
			if v, n := l.value(q.r, b, kn); n > 0 {
				if l.ambient && !h.cookieAllowed(q) {
					continue
				}
				q.found = found{kn, l.loc}
				return decide(v, n)
			}
		}
	}
	return "", errNoKey
}

// decide turns what a location holds for a name into a key or a failure.
func decide(v string, n int) (string, *failure) {
	switch {
	case n > 1:
		return "", errDuplicate
	case v == "":
		return "", errNoKey
	}
	return v, nil
}

// headerValue returns the first value of the name's header and how many
// values its spellings hold.
func headerValue(hdr http.Header, kn *keyName) (string, int) {
	vals := hdr[kn.header]
	n := len(vals)
	if kn.dashHeader != "" {
		dash := hdr[kn.dashHeader]
		if n == 0 {
			vals = dash
		}
		n += len(dash)
	}
	if n == 0 {
		return "", 0
	}
	if kn.authorization {
		return consumers.StripBearer(vals[0]), n
	}
	return vals[0], n
}

// lookupParam finds name among the pairs of a query string or a form body,
// without parsing the rest into a map. It returns the first value and how
// many pairs name it; a pair without '=' counts as absent.
func lookupParam(raw, name string) (string, int) {
	var v string
	n := 0
	for raw != "" {
		var seg string
		seg, raw, _ = strings.Cut(raw, "&")
		k, val, ok := strings.Cut(seg, "=")
		if !ok || !paramNameIs(k, name) {
			continue
		}
		if n == 0 {
			v = unescapeParam(val)
		}
		n++
	}
	return v, n
}

// removeParam removes every pair named name, keeping the rest byte for byte
// and in order. It allocates only when there is a pair to remove.
func removeParam(raw, name string) (string, bool) {
	if !hasParam(raw, name) {
		return raw, false
	}
	var b strings.Builder
	b.Grow(len(raw))
	first := true
	for rest, more := raw, true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "&")
		if k, _, ok := strings.Cut(seg, "="); ok && paramNameIs(k, name) {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		b.WriteString(seg)
		first = false
	}
	return b.String(), true
}

// hasParam reports whether a pair named name, with a '=', is in raw.
func hasParam(raw, name string) bool {
	for raw != "" {
		var seg string
		seg, raw, _ = strings.Cut(raw, "&")
		if k, _, ok := strings.Cut(seg, "="); ok && paramNameIs(k, name) {
			return true
		}
	}
	return false
}

// paramNameIs compares a raw parameter name with a key name after
// percent-decoding, so api%6Bey is apikey.
func paramNameIs(raw, name string) bool {
	if strings.IndexByte(raw, '%') < 0 && strings.IndexByte(raw, '+') < 0 {
		return raw == name
	}
	dec, err := url.QueryUnescape(raw)
	return err == nil && dec == name
}

func unescapeParam(raw string) string {
	if strings.IndexByte(raw, '%') < 0 && strings.IndexByte(raw, '+') < 0 {
		return raw
	}
	if dec, err := url.QueryUnescape(raw); err == nil {
		return dec
	}
	return raw // matches no key, as it should
}

// setQuery replaces the request's query, in the URL the upstream is built
// from and in the request URI, which logs and placeholders read.
func setQuery(r *http.Request, raw string) {
	r.URL.RawQuery = raw
	if i := strings.IndexByte(r.RequestURI, '?'); i >= 0 {
		if raw == "" {
			r.RequestURI = r.RequestURI[:i]
		} else {
			r.RequestURI = r.RequestURI[:i+1] + raw
		}
	}
}

// hideAll removes every value of every key name from every location
// searched, whichever of them decided the request: a client may send the
// key twice, in the header and the query say, and only one is used. The
// body is only scrubbed when it was read. Header names with '_' or '.'
// that fold to a key name are removed by scrub, on the servers that keep
// them.
func (q *request) hideAll(h *Handler) error {
	for i := range h.names {
		for _, l := range h.locs {
			if err := l.hide(q.r, q.body, &h.names[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
