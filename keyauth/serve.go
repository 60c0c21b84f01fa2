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

	"github.com/keyauth/caddy-keyauth/consumers"
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
		if h.HideCredentials && h.inHeader {
			for i := range h.names {
				if sameFolded(name, h.names[i].folded) {
					delete(hdr, name)
					break
				}
			}
		}
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
	errNoKey     = newFailure(http.StatusUnauthorized, "No API key found in request", outcomeMissing)
	errDuplicate = newFailure(http.StatusUnauthorized, "Duplicate API key found", outcomeDuplicate)
	// errInvalid is Kong 3.7+'s answer to an unknown or expired key
	// (ERR_INVALID_AUTH_CRED in kong/plugins/key-auth/handler.lua); 3.6 and
	// earlier said "Invalid authentication credentials".
	errInvalid      = newFailure(http.StatusUnauthorized, "Unauthorized", outcomeInvalid)
	errNotLoaded    = newFailure(http.StatusServiceUnavailable, "consumers are not loaded yet", outcomeError)
	errUnexpected   = newFailure(http.StatusInternalServerError, "An unexpected error occurred", outcomeError)
	errBodyTooLarge = newFailure(http.StatusRequestEntityTooLarge, "Request body too large", outcomeError)
	errBodyRead     = newFailure(http.StatusBadRequest, "Could not read request body", outcomeError)
	errBodyTimeout  = newFailure(http.StatusRequestTimeout, "Request timeout", outcomeError)
	// errClientGone is a client that went away mid-body: nobody reads the
	// answer, and the access log shows 499 (client closed request), as
	// reverse_proxy records a client that leaves.
	errClientGone = newFailure(statusClientClosedRequest, "Client closed request", outcomeError)
	// errForbidden is Kong's acl plugin's answer to a consumer its list
	// refuses (kong/plugins/acl/handler.lua).
	errForbidden = newFailure(http.StatusForbidden, "You cannot consume this service", outcomeForbidden)
	// errAnonymousNoGroups is Kong's acl answer to an anonymous consumer
	// without groups under allow: kong.response.error(401), whose body is
	// "Unauthorized", the body of an unknown key here too, with the
	// challenge: it never authenticated.
	errAnonymousNoGroups = newFailure(http.StatusUnauthorized, "Unauthorized", outcomeForbidden)
)

// errCanary answers a canary key exactly as errInvalid an unknown one, so
// its holder cannot tell it tripped a wire; only the count differs.
var errCanary = &failure{status: errInvalid.status, message: errInvalid.message, outcome: outcomeCanary, body: errInvalid.body}

const statusClientClosedRequest = 499

// errUnavailable is a source that looks keys up (Redis) and cannot answer
// now: the key may be good, so never 401.
var errUnavailable = newFailure(http.StatusServiceUnavailable, "consumers source unavailable", outcomeError)

var jsonContentType = []string{"application/json"}

// ServeHTTP authenticates the request. The work per request is a SHA-256 of
// the key, a lookup in the digest index and a few headers.
//
// A request goes on by one of four ways: authenticated, as the anonymous
// consumer, as a preflight let through, or as a failure handed to the
// error routes. Each of them goes through identify or identifyNobody,
// which set or remove every identity header, and, with hide_credentials,
// through hideAll first.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var req request
	req.r = r
	hdr := r.Header
	if !h.runPreflight && r.Method == http.MethodOptions &&
		len(hdr["Origin"]) > 0 && len(hdr["Access-Control-Request-Method"]) > 0 {
		if err := h.hide(&req); err != nil {
			return h.fail(w, &req, errUnexpected)
		}
		h.identifyNobody(r)
		return next.ServeHTTP(w, r)
	}

	if !h.ready() {
		// Fail closed: without consumers not even the anonymous one is known.
		return h.fail(w, &req, errNotLoaded)
	}

	key, f := h.find(&req)
	if f == nil {
		if len(key) > consumers.MaxKeyLength {
			f = errInvalid
		} else {
			digest := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
			cred, ok, err := h.lookup(r.Context(), digest)
			if err != nil {
				return h.fail(w, &req, errUnavailable)
			}
			switch {
			case !ok:
				f = errInvalid
			case cred.Canary():
				h.logCanary(r, &req, cred)
				f = errCanary
			case cred.Expires() && cred.ExpiredAt(time.Now()):
				if ce := h.logger.Check(zapcore.DebugLevel, "credential expired"); ce != nil {
					ce.Write(zap.String("credential_id", cred.ID()))
				}
				f = errInvalid
			case cred.Disabled() || cred.Consumer().Disabled():
				// Refused exactly as an unknown key, so a client cannot
				// tell a disabled key from a wrong one.
				if ce := h.logger.Check(zapcore.DebugLevel, "credential or consumer disabled"); ce != nil {
					ce.Write(zap.String("credential_id", cred.ID()), zap.String("consumer", cred.Consumer().Username()))
				}
				f = errInvalid
			default:
				c := cred.Consumer()
				if f := h.refuse(c, false); f != nil {
					return h.fail(w, &req, f)
				}
				if err := h.hide(&req); err != nil {
					return h.fail(w, &req, errUnexpected)
				}
				h.identify(r, c, cred.ID(), false)
				outcomes[outcomeAuthenticated].Inc()
				return next.ServeHTTP(w, r)
			}
		}
	}
	if f.status != http.StatusUnauthorized {
		return h.fail(w, &req, f)
	}
	if ce := h.logger.Check(zapcore.DebugLevel, "request rejected"); ce != nil {
		fields := []zap.Field{zap.String("reason", f.message)}
		if req.found.name != nil {
			fields = append(fields, zap.String("key_name", req.found.name.name), zap.String("location", req.found.loc.String()))
		}
		ce.Write(fields...)
	}
	if h.Anonymous == "" {
		return h.fail(w, &req, f)
	}
	anon, ok, err := h.anonymousConsumer(r.Context())
	if err != nil {
		return h.fail(w, &req, errUnavailable)
	}
	if !ok {
		return h.fail(w, &req, &failure{
			status:  http.StatusInternalServerError,
			message: "anonymous consumer " + h.Anonymous + " is configured but doesn't exist",
			outcome: outcomeError,
		})
	}
	if anon.Disabled() {
		return h.fail(w, &req, &failure{
			status:  http.StatusInternalServerError,
			message: "anonymous consumer " + h.Anonymous + " is configured but disabled",
			outcome: outcomeError,
		})
	}
	before, earlier := authenticatedBefore(r)
	switch before {
	case byKeyAuth:
		// Kong's logical OR of auth methods: a handler with an anonymous
		// consumer leaves a request an earlier one authenticated as it is
		// (its headers are set already); the lists here apply to that
		// consumer.
		if f := h.refuse(earlier.consumer, false); f != nil {
			return h.fail(w, &req, f)
		}
		if err := h.hide(&req); err != nil {
			return h.fail(w, &req, errUnexpected)
		}
	case byOther:
		// Another auth handler's user stays the request's. It has no
		// consumer, so no groups: allow refuses it, deny lets it on.
		if h.acl == aclAllow {
			return h.fail(w, &req, errForbidden)
		}
		if err := h.hide(&req); err != nil {
			return h.fail(w, &req, errUnexpected)
		}
		// The identity headers, which it does not set, must not be a
		// client's, and the consumer placeholders are nobody's (its static
		// user id comes first).
		h.identifyNobodyHeaders(r)
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Map(nobodyPlaceholders)
		}
	default:
		if f := h.refuse(anon, true); f != nil {
			return h.fail(w, &req, f)
		}
		if err := h.hide(&req); err != nil {
			return h.fail(w, &req, errUnexpected)
		}
		h.identify(r, anon, "", true)
	}
	o := outcomeAnonymous
	if f.outcome == outcomeCanary {
		o = outcomeCanary // counted as what it is, whatever it goes on as
	}
	outcomes[o].Inc()
	return next.ServeHTTP(w, r)
}

// refuse applies the allow or deny list to the consumer a request would go
// on as, the way Kong 3.x's acl plugin does (kong/plugins/acl/handler.lua).
// The lists are a few names, each tested against the consumer's groups,
// which were joined at load: nothing is allocated.
func (h *Handler) refuse(c consumers.Consumer, anonymous bool) *failure {
	switch h.acl {
	case aclAllow:
		if c.HasGroups() {
			for _, g := range h.groups {
				if c.InGroup(g) {
					return nil
				}
			}
		} else if anonymous {
			return errAnonymousNoGroups
		}
		return errForbidden
	case aclDeny:
		if c.HasGroups() {
			for _, g := range h.groups {
				if c.InGroup(g) {
					return errForbidden
				}
			}
		}
	}
	return nil
}

// logCanary reports a canary key at WARN: a key issued to nobody, so
// whoever sends it found it where it was planted. The line says who sent
// it from where, never the key, nor the query, which may hold it.
func (h *Handler) logCanary(r *http.Request, q *request, cred consumers.Credential) {
	fields := make([]zap.Field, 0, 9)
	fields = append(fields,
		zap.String("credential_id", cred.ID()),
		zap.String("consumer", cred.Consumer().Username()),
		zap.String("remote_addr", r.RemoteAddr),
	)
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		// The client's address through trusted proxies, as in the
		// access log.
		fields = append(fields, zap.String("client_ip", ip))
	}
	fields = append(fields,
		zap.String("method", r.Method),
		zap.String("host", r.Host),
		zap.String("path", r.URL.Path),
		zap.String("key_name", q.found.name.name),
		zap.String("location", q.found.loc.String()),
	)
	h.logger.Warn("canary key used", fields...)
}

// authenticatedBefore tells whether an earlier handler authenticated the
// request: a key_auth handler (an identity with a consumer that is not
// anonymous), whose identity it returns, or another auth handler
// (basic_auth sets a static {http.auth.user.id}, which comes before every
// provider, so one Get answers both).
func authenticatedBefore(r *http.Request) (authBefore, *identity) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return notBefore, nil
	}
	v, ok := repl.Get(userIDPlaceholder)
	if !ok {
		return notBefore, nil
	}
	if u, mine := v.(*user); mine {
		if u.id().hasConsumer && !u.id().anonymous {
			return byKeyAuth, u.id()
		}
		return notBefore, nil
	}
	if caddy.ToString(v) != "" {
		return byOther, nil
	}
	return notBefore, nil
}

type authBefore uint8

const (
	notBefore authBefore = iota
	byKeyAuth
	byOther
)

// hide applies hide_credentials to a request that goes on.
func (h *Handler) hide(q *request) error {
	if !h.HideCredentials {
		return nil
	}
	return q.hideAll(h)
}

// hasErrorRoutes reports whether the request's server has error routes
// (true outside a server, where the caller handles the error).
func hasErrorRoutes(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return !ok || srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// fail answers a failed request: JSON by default, or through the server's
// error routes with handle_errors.
func (h *Handler) fail(w http.ResponseWriter, q *request, f *failure) error {
	outcomes[f.outcome].Inc()
	wh := w.Header()
	if f.status == http.StatusUnauthorized {
		wh["Www-Authenticate"] = h.challenge
	}
	if h.HandleErrors {
		// The error routes may pass the request on, to an upstream even,
		// so it goes on as any other: no key and no identity.
		if err := h.hide(q); err != nil {
			// The body could not be re-encoded without its key: the
			// error routes get none.
			q.r.Body, q.r.ContentLength = http.NoBody, 0
			delete(q.r.Header, "Content-Length")
		}
		if h.HideCredentials && h.inQuery {
			hideOriginalQuery(h, q.r)
		}
		h.identifyNobody(q.r)
		if f.status >= http.StatusInternalServerError && !hasErrorRoutes(q.r) {
			// What Caddy would answer, without its ERROR line: that line
			// holds the request as it arrived, key included when it came
			// in a header other than Authorization or in the query. (With
			// error routes, or below 500, Caddy logs it at DEBUG, as the
			// README says.)
			w.WriteHeader(f.status)
			return nil
		}
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

// hideOriginalQuery removes the key names from the query of the original
// request Caddy keeps: before the error routes run, the server puts the
// original URL back (caddyhttp.OriginalRequestCtxKey, issue caddy#3717),
// which would hand them the key hide_credentials removed. Its
// {http.request.orig_uri*} placeholders lose the key too, which they
// should; the access log has its own copy.
func hideOriginalQuery(h *Handler, r *http.Request) {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil {
		return
	}
	for i := range h.names {
		if raw, ok := removeParam(orig.URL.RawQuery, h.names[i].name); ok {
			orig.URL.RawQuery = raw
		}
	}
}

// identity holds the values of one request's identity headers and
// placeholders. The headers' values point into it and its placeholder
// method serves the placeholders, so a request's identity costs two small
// allocations: this and the method value handed to the replacer. (Seven
// Replacer.Set calls would cost a lock and a map insert each, and the
// growth of the request's empty placeholder map: measured, three times
// the time and four times the bytes.)
//
// A request has at most one: a key_auth handler after the first finds it
// through the replacer ({http.auth.user.id} is its user) and overwrites
// it, so whichever handler identifies a request last is its identity in
// every header, placeholder and the access log's user_id. (Keeping it in
// the request's vars instead was measured slower: a replacer miss costs
// about 60 ns, and it also answers whether another auth handler set a
// static user; the vars map lookup and insert plus a sweep of the static
// placeholders cost about 95 ns.)
type identity struct {
	// vals are the username, consumer id, custom id, credential id,
	// anonymous and groups. They come first: &vals[0] is the user, which
	// leads back here.
	vals     [6]string
	repl     *caddy.Replacer
	consumer consumers.Consumer // valid when hasConsumer
	// hasConsumer is false for nobody: a request let on without a consumer.
	hasConsumer bool
	anonymous   bool
	// static is set when the identity's placeholders are static values,
	// because a provider that cannot be removed answers before its own.
	static bool
}

// clear makes the identity nobody's: a request that goes on without a
// consumer has empty placeholders and no consumer.
func (id *identity) clear() {
	id.vals = nobodyVals
	id.consumer, id.hasConsumer, id.anonymous = consumers.Consumer{}, false, false
	if id.static {
		// The shared nobody, mapped before, answers once these are gone.
		id.repl.DeleteByPrefix(placeholderPrefix)
	}
}

// nobodyVals are the values of a request without a consumer.
var nobodyVals = [6]string{4: "false"}

// placeholder makes a string in identity a placeholder value without
// boxing a copy of it.
type placeholder string

func (p *placeholder) String() string { return string(*p) }

// user is the value of {http.auth.user.id}: the username, and the way a
// later handler finds the request's identity through the replacer. A *user
// is the address of an identity's vals[0], so the identity is at the same
// address; its kind is string, so CEL (`expression {http.auth.user.id} ==
// 'alice'`) reads it as the string it is, where it refused a struct.
type user string

func (u *user) String() string { return string(*u) }

// id is the identity whose username u is.
func (u *user) id() *identity { return (*identity)(unsafe.Pointer(u)) }

// userOf is the value of id's {http.auth.user.id}.
func userOf(id *identity) *user { return (*user)(&id.vals[0]) }

// user must be the first bytes of an identity.
var _ [0]struct{} = [unsafe.Offsetof(identity{}.vals)]struct{}{}

const (
	placeholderPrefix = "http.auth.user."
	userIDPlaceholder = placeholderPrefix + "id"
	labelsPrefix      = "labels."
)

// emptyPlaceholder is the value of a placeholder of nobody.
var emptyPlaceholder = new(placeholder)

// placeholder serves {http.auth.user.*}: id, consumer_id, custom_id,
// credential_id, anonymous, groups, tags and labels.<name>.
func (id *identity) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		return nil, false
	}
	var i int
	switch name {
	case "id":
		// Static values (Replacer.Set) come before every provider, so
		// when another auth handler (basic_auth) identified the request
		// after this one, its user is the one served.
		return userOf(id), true
	case "consumer_id":
		i = 1
	case "custom_id":
		i = 2
	case "credential_id":
		i = 3
	case "anonymous":
		i = 4
	case "groups":
		i = 5
	case "tags":
		if !id.hasConsumer || id.supersededBy() {
			return emptyPlaceholder, true
		}
		return id.consumer.TagsJoined(), true
	default:
		label, ok := strings.CutPrefix(name, labelsPrefix)
		if !ok {
			return nil, false
		}
		if !id.hasConsumer || id.supersededBy() {
			return emptyPlaceholder, true
		}
		v, _ := id.consumer.Label(label)
		return v, true
	}
	if id.supersededBy() {
		// The request's user is another auth handler's, which has no
		// consumer: these placeholders are nobody's, not a stale one's.
		return (*placeholder)(&nobodyVals[i]), true
	}
	return (*placeholder)(&id.vals[i]), true
}

// supersededBy reports whether another auth handler set
// {http.auth.user.id} after this identity was given: a static value, which
// comes before this provider.
func (id *identity) supersededBy() bool {
	if id.repl == nil {
		return false
	}
	v, ok := id.repl.Get(userIDPlaceholder)
	u, mine := v.(*user)
	return ok && (!mine || u.id() != id)
}

// requestIdentity returns the identity the request's replacer serves,
// giving it one if none does; nil when the shared nobody serves it and
// nobody is what is wanted, or the request has no replacer. An earlier
// key_auth handler's identity is reused; another auth handler's
// placeholders (basic_auth's static http.auth.user.*) are removed, so they
// do not outlive the identity that replaces them.
func requestIdentity(r *http.Request, nobody bool) *identity {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return nil
	}
	v, ok := repl.Get(userIDPlaceholder)
	if ok {
		if _, mine := v.(*user); !mine {
			repl.DeleteByPrefix(placeholderPrefix)
			v, ok = repl.Get(userIDPlaceholder)
		}
	}
	u, mine := v.(*user)
	switch {
	case !ok && nobody:
		repl.Map(nobodyPlaceholders)
		return nil
	case !ok:
		id := &identity{repl: repl}
		repl.Map(id.placeholder)
		return id
	case mine && u.id() != nobodyIdentity:
		return u.id()
	case mine && nobody:
		return nil // the shared nobody already answers
	}
	// A provider that cannot be removed answers first: the shared nobody,
	// or another module's. Static values come before every provider; set
	// by setStatic once the identity has its values.
	id := &identity{repl: repl, static: true}
	return id
}

// setStatic sets the identity's placeholders as static values, for an
// identity whose provider would not be asked (see requestIdentity). Rare:
// a request let on as nobody by one key_auth and identified by a later one.
func (id *identity) setStatic() {
	repl := id.repl
	repl.DeleteByPrefix(placeholderPrefix)
	repl.Set(userIDPlaceholder, userOf(id))
	for i := 1; i < len(placeholderNames); i++ {
		repl.Set(placeholderPrefix+placeholderNames[i], (*placeholder)(&id.vals[i]))
	}
	repl.Set(placeholderPrefix+"tags", id.consumer.TagsJoined())
	// A label the consumer lacks is left to the shared nobody: empty.
	for name, value := range id.consumer.AllLabels() {
		repl.Set(placeholderPrefix+labelsPrefix+name, value)
	}
}

// placeholderNames are the placeholders served from identity.vals, after
// placeholderPrefix, in its order.
var placeholderNames = [...]string{"id", "consumer_id", "custom_id", "credential_id", "anonymous", "groups"}

// identify tells the upstream, the logs and later handlers who called. It
// sets every identity header that applies and removes the others, which a
// client may have sent, in any spelling.
func (h *Handler) identify(r *http.Request, c consumers.Consumer, credentialID string, anonymous bool) {
	id := requestIdentity(r, false)
	if id == nil {
		id = new(identity)
	}
	id.vals = [6]string{c.Username(), c.ID(), c.CustomID(), credentialID, "false", c.GroupsHeader()}
	id.consumer, id.hasConsumer, id.anonymous = c, true, anonymous
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
	if id.vals[5] != "" && !h.HideGroupsHeader {
		hdr[headerGroups] = id.vals[5:6:6]
	} else {
		delete(hdr, headerGroups)
	}
	if id.static {
		id.setStatic()
	}
	h.scrub(r)
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

// identifyNobody readies a request that goes on without a consumer (a
// preflight, or a failure handed to the error routes): no identity headers,
// and empty placeholders rather than their literal names. It replaces an
// identity an earlier handler gave the request: the request goes on as
// nobody.
func (h *Handler) identifyNobody(r *http.Request) {
	h.identifyNobodyHeaders(r)
	if id := requestIdentity(r, true); id != nil {
		id.clear()
	}
}

// nobodyIdentity is the empty identity of a request without a consumer;
// made once, it costs such a request nothing. It is never written to.
var nobodyIdentity = func() *identity {
	id := &identity{vals: nobodyVals}
	return id
}()

var nobodyPlaceholders = caddy.ReplacerFunc(nobodyIdentity.placeholder)

// identifyNobodyHeaders removes every identity header, in any spelling.
func (h *Handler) identifyNobodyHeaders(r *http.Request) {
	hdr := r.Header
	for _, name := range identityHeaders {
		delete(hdr, name)
	}
	h.scrub(r)
}

// weakSet refers to a set without keeping it alive.
type weakSet = weak.Pointer[consumers.Set]

// anonymous finds the anonymous consumer in set, once per set.
func (h *Handler) anonymous(set *consumers.Set) (consumers.Consumer, bool) {
	if e := h.anon.Load(); e != nil && e.set.Value() == set {
		return set.ConsumerAt(e.index), e.ok
	}
	c, ok := set.FindConsumer(h.Anonymous)
	h.anon.Store(&anonEntry{set: weak.Make(set), index: c.Index(), ok: ok})
	return c, ok
}
