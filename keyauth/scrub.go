package keyauth

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The identity headers, in canonical form. They are removed from every
// request first, so a client can never forge them.
const (
	headerConsumerID   = "X-Consumer-Id"
	headerCustomID     = "X-Consumer-Custom-Id"
	headerUsername     = "X-Consumer-Username"
	headerCredentialID = "X-Credential-Identifier"
	headerAnonymous    = "X-Anonymous-Consumer"
	headerGroups       = "X-Consumer-Groups"
)

// identityHeaders are the headers this handler sets, which a client must
// never get to forge.
var identityHeaders = [...]string{headerConsumerID, headerCustomID, headerUsername, headerCredentialID, headerAnonymous, headerGroups}

// foldedIdentityHeaders are identityHeaders folded (see sameFolded).
var foldedIdentityHeaders = func() (f [len(identityHeaders)]string) {
	for i, h := range identityHeaders {
		f[i] = fold(h)
	}
	return f
}()

// fold spells a header name the way CGI-style upstreams (CGI, WSGI, Rack,
// PHP) see it, up to their case and separator: lower case, with '_' and
// '.' as '-'. Two names that fold alike are one header to such an upstream.
func fold(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if c == '_' || c == '.' {
			b[i] = '-'
		}
	}
	return string(b)
}

// sameFolded reports whether name folds to folded, without allocating.
func sameFolded(name, folded string) bool {
	if len(name) != len(folded) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c == '.':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != folded[i] {
			return false
		}
	}
	return true
}

func isIdentityHeader(name string) bool {
	for _, h := range foldedIdentityHeaders {
		if sameFolded(name, h) {
			return true
		}
	}
	return false
}

// scrubConnection drops the identity headers, in any spelling, from the
// Connection header. A proxy after this handler removes the headers named
// there as hop-by-hop, so a client could otherwise have the ones set here
// taken away: "Connection: X-Anonymous-Consumer" would make an anonymous
// request look authenticated to the upstream.
func scrubConnection(hdr http.Header) {
	var kept []string
	scrubbed := false
	for _, v := range hdr["Connection"] {
		var toks []string
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); isIdentityHeader(tok) {
				scrubbed = true
			} else if tok != "" {
				toks = append(toks, tok)
			}
		}
		if len(toks) > 0 {
			kept = append(kept, strings.Join(toks, ", "))
		}
	}
	switch {
	case !scrubbed: // the usual case: the header stays as it came
	case len(kept) == 0:
		delete(hdr, "Connection")
	default:
		hdr["Connection"] = kept
	}
}

// serverKeepsOddNames reports whether the request's server lets header
// names with '_' or '.' through (expected_underscore_headers,
// expected_dot_headers). By default Caddy drops them before any handler
// runs, so only such a server needs its requests' names scanned.
func serverKeepsOddNames(r *http.Request) bool {
	s, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && (len(s.ExpectedUnderscoreHeaders) > 0 || len(s.ExpectedDotHeaders) > 0)
}

// scrubOddSpellings removes the headers whose names have a '_' or a '.' and
// fold to an identity header, or, with hide_credentials, to a key name's
// header: an upstream that folds names would take them for the real ones.
func (h *Handler) scrubOddSpellings(hdr http.Header) {
	for name := range hdr {
		if strings.IndexByte(name, '_') < 0 && strings.IndexByte(name, '.') < 0 {
			continue
		}
		if isIdentityHeader(name) {
			delete(hdr, name)
			continue
		}
		if h.HideCredentials && h.searches(locHeader) {
			for i := range h.names {
				if sameFolded(name, h.names[i].folded) {
					delete(hdr, name)
					break
				}
			}
		}
	}
}

// scrub removes what identify and identifyNobody do not set: identity
// headers named in Connection, and, on a server that keeps names with '_'
// or '.', the other spellings of identity headers and key names.
func (h *Handler) scrub(r *http.Request) {
	hdr := r.Header
	if _, ok := hdr["Connection"]; ok {
		scrubConnection(hdr)
	}
	if serverKeepsOddNames(r) {
		h.scrubOddSpellings(hdr)
	}
}
