package keyauth

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"time"
	"unsafe"
	"weak"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keyauth/caddy-keyauth/consumers/model"
)

// The identity headers, in canonical form. They are removed from every
// request first, so a client can never forge them.
const (
	headerConsumerID   = "X-Consumer-Id"
	headerCustomID     = "X-Consumer-Custom-Id"
	headerUsername     = "X-Consumer-Username"
	headerCredentialID = "X-Credential-Identifier"
	headerAnonymous    = "X-Anonymous-Consumer"
)

// identityHeaders are the headers this handler sets, which a client must
// never get to forge.
var identityHeaders = [...]string{headerConsumerID, headerCustomID, headerUsername, headerCredentialID, headerAnonymous}

func isIdentityHeader(name string) bool {
	for _, h := range identityHeaders {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// scrubConnection drops the identity headers from the Connection header.
// A proxy after this handler removes the headers named there as hop-by-hop,
// so a client could otherwise have the ones set here taken away:
// "Connection: X-Anonymous-Consumer" would make an anonymous request look
// authenticated to the upstream.
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

// failure is a way a request can fail, with its answer written once.
type failure struct {
	status  int
	message string
	outcome outcome
	body    []byte
}

func newFailure(status int, message string, o outcome) *failure {
	body, _ := jsonMessage(message)
	return &failure{status: status, message: message, outcome: o, body: body}
}

// jsonMessage is the body of a failure answered as JSON, as Kong's.
func jsonMessage(m string) ([]byte, error) {
	return json.Marshal(struct {
		Message string `json:"message"`
	}{m})
}

var (
	errNoKey        = newFailure(http.StatusUnauthorized, "No API key found in request", outcomeMissing)
	errDuplicate    = newFailure(http.StatusUnauthorized, "Duplicate API key found", outcomeDuplicate)
	errInvalid      = newFailure(http.StatusUnauthorized, "Invalid authentication credentials", outcomeInvalid)
	errNotLoaded    = newFailure(http.StatusServiceUnavailable, "consumers are not loaded yet", outcomeError)
	errUnexpected   = newFailure(http.StatusInternalServerError, "An unexpected error occurred", outcomeError)
	errBodyTooLarge = newFailure(http.StatusRequestEntityTooLarge, "Request body too large", outcomeError)
	errBodyRead     = newFailure(http.StatusBadRequest, "Could not read request body", outcomeError)
)

var jsonContentType = []string{"application/json"}

// ServeHTTP authenticates the request. The work per request is a SHA-256 of
// the key, a lookup in the digest index and a few headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// A client must never get to forge the identity headers. A request that
	// goes on has them set or removed by identify; the others are answered
	// here, so rejecting costs no header work.
	hdr := r.Header
	if !h.runPreflight && r.Method == http.MethodOptions &&
		len(hdr["Origin"]) > 0 && len(hdr["Access-Control-Request-Method"]) > 0 {
		h.identifyNobody(r)
		return next.ServeHTTP(w, r)
	}

	set := h.store.Set()
	if set == nil {
		// Fail closed: without consumers not even the anonymous one is known.
		return h.fail(w, r, errNotLoaded)
	}

	var req request
	req.r = r
	key, f := h.find(&req)
	if f == nil {
		if len(key) > model.MaxKeyLength {
			f = errInvalid
		} else {
			digest := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
			cred, ok := set.Lookup(&digest)
			switch {
			case !ok:
				f = errInvalid
			case cred.Expires() && cred.ExpiredAt(time.Now()):
				if ce := h.logger.Check(zapcore.DebugLevel, "credential expired"); ce != nil {
					ce.Write(zap.String("credential_id", cred.ID()))
				}
				f = errInvalid
			default:
				if h.HideCredentials {
					if err := req.hide(req.found); err != nil {
						return h.fail(w, r, errUnexpected)
					}
				}
				h.identify(r, cred.Consumer(), cred.ID(), false)
				outcomes[outcomeAuthenticated].Inc()
				return next.ServeHTTP(w, r)
			}
		}
	}
	if f.status != http.StatusUnauthorized {
		return h.fail(w, r, f)
	}
	if ce := h.logger.Check(zapcore.DebugLevel, "request rejected"); ce != nil {
		fields := []zap.Field{zap.String("reason", f.message)}
		if req.found.name != nil {
			fields = append(fields, zap.String("key_name", req.found.name.name), zap.String("location", req.found.loc.String()))
		}
		ce.Write(fields...)
	}
	if h.Anonymous == "" {
		return h.fail(w, r, f)
	}
	anon, ok := h.anonymous(set)
	if !ok {
		return h.fail(w, r, &failure{
			status:  http.StatusInternalServerError,
			message: "anonymous consumer " + h.Anonymous + " is configured but doesn't exist",
			outcome: outcomeError,
		})
	}
	if h.HideCredentials {
		if err := req.hideAll(h); err != nil {
			return h.fail(w, r, errUnexpected)
		}
	}
	h.identify(r, anon, "", true)
	outcomes[outcomeAnonymous].Inc()
	return next.ServeHTTP(w, r)
}

// fail answers a failed request: JSON by default, or through the server's
// error routes with handle_errors.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, f *failure) error {
	outcomes[f.outcome].Inc()
	wh := w.Header()
	if f.status == http.StatusUnauthorized {
		wh["Www-Authenticate"] = h.challenge
	}
	if h.HandleErrors {
		// The error routes may pass the request on, to an upstream even.
		h.identifyNobody(r)
		return caddyhttp.Error(f.status, errors.New(f.message))
	}
	body := f.body
	if body == nil {
		body, _ = jsonMessage(f.message)
	}
	wh["Content-Type"] = jsonContentType
	w.WriteHeader(f.status)
	_, _ = w.Write(body)
	return nil
}

// identity holds the values of one request's identity headers and
// placeholders. The headers' values point into it and its placeholder
// method serves the placeholders, so a request's identity costs two small
// allocations: this and the method value handed to the replacer. (Five
// Replacer.Set calls would cost a lock and a map insert each, and the
// growth of the request's empty placeholder map: measured, three times
// the time and four times the bytes.)
type identity struct {
	vals [5]string // username, consumer id, custom id, credential id, anonymous
}

// placeholder makes a string in identity a placeholder value without
// boxing a copy of it.
type placeholder string

func (p *placeholder) String() string { return string(*p) }

const placeholderPrefix = "http.auth.user."

// placeholder serves {http.auth.user.*}.
func (id *identity) placeholder(key string) (any, bool) {
	if len(key) <= len(placeholderPrefix) || key[:len(placeholderPrefix)] != placeholderPrefix {
		return nil, false
	}
	var i int
	switch key[len(placeholderPrefix):] {
	case "id":
		i = 0
	case "consumer_id":
		i = 1
	case "custom_id":
		i = 2
	case "credential_id":
		i = 3
	case "anonymous":
		i = 4
	default:
		return nil, false
	}
	return (*placeholder)(&id.vals[i]), true
}

// identify tells the upstream, the logs and later handlers who called. It
// sets every identity header that applies and removes the others, which a
// client may have sent.
func (h *Handler) identify(r *http.Request, c model.Consumer, credentialID string, anonymous bool) {
	id := &identity{vals: [5]string{c.Username(), c.ID(), c.CustomID(), credentialID, "false"}}
	hdr := r.Header
	hdr[headerUsername] = id.vals[0:1:1]
	hdr[headerConsumerID] = id.vals[1:2:2]
	if id.vals[2] != "" {
		hdr[headerCustomID] = id.vals[2:3:3]
	} else {
		delete(hdr, headerCustomID)
	}
	if anonymous {
		id.vals[4] = "true"
		hdr[headerAnonymous] = id.vals[4:5:5]
		delete(hdr, headerCredentialID)
	} else {
		hdr[headerCredentialID] = id.vals[3:4:4]
		delete(hdr, headerAnonymous)
	}
	if _, ok := hdr["Connection"]; ok {
		scrubConnection(hdr)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(id.placeholder)
	}
}

// identifyNobody readies a request that goes on without a consumer (a
// preflight, or a failure handed to the error routes): no identity headers,
// and empty placeholders rather than their literal names.
func (h *Handler) identifyNobody(r *http.Request) {
	hdr := r.Header
	for _, name := range identityHeaders {
		delete(hdr, name)
	}
	if _, ok := hdr["Connection"]; ok {
		scrubConnection(hdr)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(nobodyPlaceholders)
	}
}

// nobodyPlaceholders serves the empty identity of a request without a
// consumer; made once, it costs such a request nothing.
var nobodyPlaceholders = caddy.ReplacerFunc((&identity{vals: [5]string{4: "false"}}).placeholder)

// weakSet refers to a set without keeping it alive.
type weakSet = weak.Pointer[model.Set]

// anonymous finds the anonymous consumer in set, once per set.
func (h *Handler) anonymous(set *model.Set) (model.Consumer, bool) {
	if e := h.anon.Load(); e != nil && e.set.Value() == set {
		return set.ConsumerAt(e.index), e.ok
	}
	c, ok := set.FindConsumer(h.Anonymous)
	h.anon.Store(&anonEntry{set: weak.Make(set), index: c.Index(), ok: ok})
	return c, ok
}
