package keyauth

import (
	"crypto/sha256"
	"net/http"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// ServeHTTP authenticates the request. The work per request is a SHA-256 of
// the key, a lookup in the digest index and a few headers.
//
// It first decides how the request goes on (decide, which changes nothing
// in the request), then applies that verdict (apply), the one place that
// lets a request go on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var q request
	q.r = r
	var v verdict
	h.decide(&q, &v)
	return h.apply(w, &q, &v, next)
}

// verdict is how a request goes on: as a consumer, as nobody, with the
// identity an earlier auth handler gave it, or not at all (fail).
type verdict struct {
	way       way
	consumer  consumers.Consumer   // goConsumer, goEarlier
	cred      consumers.Credential // goConsumer, not anonymous
	view      View                 // where cred was found
	anonymous bool                 // goConsumer: the anonymous fallback
	fail      *failure             // goFail
	outcome   outcome              // counted when the request goes on
}

// way is how a request goes on.
type way uint8

const (
	goFail      way = iota // a failure: answered, or handed to the error routes
	goConsumer             // authenticated, or as the anonymous consumer
	goNobody               // a preflight let through: no identity
	goEarlier              // an earlier key_auth's consumer stays (Kong's OR)
	goOtherAuth            // another auth handler's user stays; no consumer
)

// notCounted is the outcome of a request the counter does not see: a
// preflight let through.
const notCounted outcome = -1

func failed(f *failure) verdict { return verdict{way: goFail, fail: f} }

// decide works out the verdict on a request into v, which starts zero: the
// key, the credential, the anonymous fallback and the allow or deny list.
// It reads the request (and its body, when the key may be there) but
// changes nothing the upstream sees; it logs what it refused. (Filled in
// place: a verdict returned by value cost a rejection about 20 ns more.)
func (h *Handler) decide(q *request, v *verdict) {
	r := q.r
	if !h.runPreflight && r.Method == http.MethodOptions &&
		len(r.Header["Origin"]) > 0 && len(r.Header["Access-Control-Request-Method"]) > 0 {
		*v = verdict{way: goNobody, outcome: notCounted}
		return
	}
	// One view of the source for the whole request: the anonymous consumer
	// comes from the consumers that refused the key.
	src := h.view()
	if src == nil {
		// Fail closed: without consumers not even the anonymous one is known.
		v.fail = errNotLoaded
		return
	}
	cred, f := h.authenticate(q, src)
	switch {
	case f == nil:
		h.used(src, cred)
		*v = verdict{way: goConsumer, consumer: cred.Consumer(), cred: cred, view: src, outcome: outcomeAuthenticated}
	case f.status != http.StatusUnauthorized || h.Anonymous == "":
		h.logRejected(q, f)
		v.fail = f
		return
	default:
		h.logRejected(q, f)
		*v = h.fallback(r, src, f)
	}
	if v.way != goFail {
		if f := h.refuse(v); f != nil {
			*v = verdict{fail: f}
		}
	}
}

// authenticate finds the request's key and the credential it belongs to:
// a credential that lets the request on, or why not.
func (h *Handler) authenticate(q *request, src View) (consumers.Credential, *failure) {
	key, f := h.find(q)
	if f != nil {
		return consumers.Credential{}, f
	}
	if len(key) > consumers.MaxKeyLength {
		return consumers.Credential{}, errInvalid
	}
	digest := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
	cred, ok, err := h.lookup(q.r.Context(), src, digest)
	switch {
	case err != nil:
		return cred, errUnavailable
	case !ok:
		return cred, errInvalid
	case cred.Canary():
		h.logCanary(q, cred)
		return cred, errCanary
	case cred.Expires() && cred.ExpiredAt(time.Now()):
		if ce := h.logger.Check(zapcore.DebugLevel, "credential expired"); ce != nil {
			ce.Write(zap.String("credential_id", cred.ID()))
		}
		return cred, errInvalid
	case h.maxIdle > 0 && h.idle(src, cred):
		if ce := h.logger.Check(zapcore.DebugLevel, "credential idle"); ce != nil {
			ce.Write(zap.String("credential_id", cred.ID()))
		}
		return cred, errInvalid
	case cred.Disabled() || cred.Consumer().Disabled():
		// Refused exactly as an unknown key, so a client cannot tell a
		// disabled key from a wrong one.
		if ce := h.logger.Check(zapcore.DebugLevel, "credential or consumer disabled"); ce != nil {
			ce.Write(zap.String("credential_id", cred.ID()), zap.String("consumer", cred.Consumer().Username()))
		}
		return cred, errInvalid
	}
	return cred, nil
}

// idle reports whether cred has been unused for max_idle: since its last
// use, or since its created_at when the view knows of no use. A key with
// neither, or from a view that keeps no record of use, is never idle.
func (h *Handler) idle(src View, cred consumers.Credential) bool {
	u, ok := src.(UsageView)
	if !ok {
		return false
	}
	var since time.Time
	if m := u.LastUsed(cred); m != 0 {
		since = time.Unix(int64(m)*60, 0)
	} else if since, ok = cred.CreatedAt(); !ok {
		return false
	}
	return h.now().Sub(since) >= h.maxIdle
}

// fallback is the verdict on a request refused with f (a 401) when an
// anonymous consumer is configured: it goes on as that consumer, or, when
// an earlier auth handler authenticated it, as that handler left it.
func (h *Handler) fallback(r *http.Request, src View, f *failure) verdict {
	anon, ok, err := h.anonymousConsumer(r.Context(), src)
	switch {
	case err != nil:
		return failed(errUnavailable)
	case !ok:
		return failed(h.anonMissing)
	case anon.Disabled():
		return failed(h.anonDisabled)
	}
	o := outcomeAnonymous
	if f.outcome == outcomeCanary {
		o = outcomeCanary // counted as what it is, whatever it goes on as
	}
	switch before, earlier := authenticatedBefore(r); before {
	case byKeyAuth:
		// Kong's logical OR of auth methods: a handler with an anonymous
		// consumer leaves a request an earlier one authenticated as it is
		// (its headers are set already); the lists here apply to that
		// consumer, and so do the limits of a handler with a limits block.
		return verdict{way: goEarlier, consumer: earlier.consumer, cred: earlier.cred, view: earlier.view, outcome: o}
	case byOther:
		// Another auth handler's user stays the request's.
		return verdict{way: goOtherAuth, outcome: o}
	}
	return verdict{way: goConsumer, consumer: anon, anonymous: true, outcome: o}
}

// apply lets a request go on as its verdict says, or answers its failure.
// It is the one place a request leaves this handler, and it keeps the
// handler's promise: whichever way a request goes on (authenticated, as
// the anonymous consumer, as a preflight let through, with an earlier auth
// handler's identity, or as a failure handed to the error routes), it
// carries no key, with hide_credentials, no identity header or placeholder
// but the ones set here, and no forged spelling of them.
//
// A handler with limits charges a request that goes on as a consumer here,
// the last thing before it goes on (nothing after can fail it): a request
// over a limit fails like any other (429, or the error routes), and the
// others carry the RateLimit headers and settle when they end.
func (h *Handler) apply(w http.ResponseWriter, q *request, v *verdict, next caddyhttp.Handler) (err error) {
	r := q.r
	way, f := v.way, v.fail
	if f == nil && h.HideCredentials {
		if err := q.hideAll(h); err != nil {
			f = errUnexpected
		}
	}
	var li *limitIdentity
	var run *limitRun
	if f == nil && h.limiter != nil && (way == goConsumer || way == goEarlier) {
		li, run, f = h.admit(w, q, v)
		if run != nil {
			// Armed as soon as the slots are taken, not when the request
			// is passed on: a panic on the way there (identifyWith,
			// scrub) gives them back all the same.
			defer func() { run.end(r.Context(), err); run.release() }()
		}
	}
	if f != nil {
		outcomes[f.outcome].Inc()
		if !h.HandleErrors {
			return h.answer(w, f)
		}
		// The error routes may pass the request on, to an upstream even,
		// so it goes on as any other: no key and no identity.
		h.hideForErrorRoutes(q)
		way = goNobody
	}
	switch way {
	case goConsumer:
		var credID string
		if v.view != nil {
			credID = v.cred.ID()
		}
		id := h.identifyWith(r, v.consumer, credID, v.anonymous, li)
		id.cred, id.view = v.cred, v.view
	case goNobody:
		identifyNobody(r)
	case goEarlier:
		// The earlier handler's identity headers and placeholders stay;
		// the limits placeholders are this handler's.
		if li != nil {
			if _, id := authenticatedBefore(r); id != nil {
				id.lim = &li.view
			}
		}
	case goOtherAuth:
		identifyOtherUser(r)
	}
	h.scrub(r)
	if f != nil {
		return h.toErrorRoutes(w, r, f)
	}
	if v.outcome != notCounted {
		outcomes[v.outcome].Inc()
	}
	if run != nil {
		return run.serve(w, r, next)
	}
	return next.ServeHTTP(w, r)
}

// logRejected notes at DEBUG why a request was refused, and where its key
// was found; never the key.
func (h *Handler) logRejected(q *request, f *failure) {
	if f.status != http.StatusUnauthorized {
		return
	}
	if ce := h.logger.Check(zapcore.DebugLevel, "request rejected"); ce != nil {
		fields := []zap.Field{zap.String("reason", f.message)}
		if q.found.name != nil {
			fields = append(fields, zap.String("key_name", q.found.name.name), zap.String("location", q.found.loc.String()))
		}
		ce.Write(fields...)
	}
}

// logCanary reports a canary key at WARN: a key issued to nobody, so
// whoever sends it found it where it was planted. The line says who sent
// it from where, never the key, nor the query, which may hold it.
func (h *Handler) logCanary(q *request, cred consumers.Credential) {
	r := q.r
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
