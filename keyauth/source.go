package keyauth

import (
	"context"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// Source is where a handler's consumers come from: what every module of the
// key_auth.sources namespace implements, as caddyauth.Authenticator is what
// http.authentication.providers implement. The handler holds a Source and
// never asks what kind it is: a source that holds its consumers whole (a
// file, an HTTP document) and one that looks each key up where it lives
// (Redis) look the same from here, and each request sees one snapshot of it
// (Now). Package sources gives a module all of it (sources.Handle) from a
// loader of a consumers document.
//
// A Source is shared by the handlers of every config that names it the same
// way and is called concurrently. Lookup and Consumer are on the request
// path: a source that must ask a server bounds the time it takes.
//
// Room for what comes next, without the handler changing again.
//
// Writing (issue 17, the management API): a source that can be written will
// also implement an interface declared here beside Source, shaped like
//
//	type Writer interface {
//		Source
//		// Write applies one change to the document atomically: a file
//		// rewritten and renamed, a Redis transaction in the layout push
//		// writes.
//		Write(ctx context.Context, change func(*consumers.Document) error) error
//	}
//
// The management handler, which loads its own key_auth.sources module as
// key_auth does, asks for it with a type assertion; a source without it (HTTP,
// a third-party one) is read-only. A written change reaches the handlers
// through the live state they share (package sources: a Store swaps its set),
// so Lookup answers it at once; the request path is untouched.
//
// Limits (issue 18): what limits a request travels with the values Lookup and
// Consumer return, as groups and labels do today. A credential's and a
// consumer's limits, and those of the consumer's groups (the document's
// top-level groups), are read through accessors of consumers.Credential and
// consumers.Consumer: a whole-set source has them in its Set, and the Redis
// source decodes them with the consumer (its layout gains the fields and a
// hash per group). So Source keeps its methods, and limits are read
// where the handler reads the consumer now.
type Source interface {
	// Lookup and Consumer answer from what the source holds at the time of
	// the call: for a tool, a warning at provision. A request asks Now.
	View

	// Now is the source as one request sees it: every answer of the View
	// it returns comes from the same consumers, so a request that a key's
	// lookup refuses falls back to the anonymous consumer of the very set
	// that refused it, never of a set swapped in meanwhile. Now is nil
	// until the source has consumers (fail closed: 503, and no anonymous
	// fallback either). A source whose answers do not come in whole sets
	// (Redis) returns itself.
	Now() View
}

// View answers a request's questions to its source.
//
// It is an alias of an interface literal, so that a source implements
// Source (whose Now returns a View) without importing this package: package
// sources declares the same alias.
type View = interface {
	// Lookup finds the credential of a key digest. ok=false is an unknown
	// key; err means the source cannot answer now (503, never 401). d is a
	// value, so the caller's digest stays on its stack. A source may refuse
	// disabled credentials here (as unknown keys); the handler checks
	// Disabled, Canary and the expiry either way.
	Lookup(ctx context.Context, d consumers.Digest) (cred consumers.Credential, ok bool, err error)

	// Consumer finds a consumer by username, then by id: the anonymous one.
	// A disabled consumer is found (ok=true): the caller checks Disabled.
	// err means the source cannot answer now.
	Consumer(ctx context.Context, nameOrID string) (c consumers.Consumer, ok bool, err error)
}

// UsageView is a View that records when each of its credentials last let a
// request in (last_used), to the minute: a sources.Store's set does. The
// handler records every authenticated request on it and counts max_idle
// from it. Use must not lock, do I/O or allocate: it is on every request.
// It is an alias of an interface literal, as View is.
type UsageView = interface {
	// Use records that cred, found by this view, let a request in now.
	Use(cred consumers.Credential)
	// LastUsed is the minute since the Unix epoch cred, found by this
	// view, last let a request in, 0 for never.
	LastUsed(cred consumers.Credential) uint32
}

// The request flow reaches its source only through these: view once per
// request, then lookup and anonymousConsumer on what view returned.

// view is the source as this request sees it, or nil before a first load.
func (h *Handler) view() View { return h.src.Now() }

// lookup finds the credential of a key digest in the request's view.
func (h *Handler) lookup(ctx context.Context, v View, d consumers.Digest) (consumers.Credential, bool, error) {
	return v.Lookup(ctx, d)
}

// used records that cred let the request in, where the view keeps such a
// record.
func (h *Handler) used(v View, cred consumers.Credential) {
	if u, ok := v.(UsageView); ok {
		u.Use(cred)
	}
}

// anonymousConsumer finds the anonymous consumer in the request's view.
func (h *Handler) anonymousConsumer(ctx context.Context, v View) (consumers.Consumer, bool, error) {
	return v.Consumer(ctx, h.Anonymous)
}
