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
// (Redis) look the same from here. Package sources gives a module all of it
// (sources.Handle) from a loader of a consumers document.
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
// hash per group). So Source keeps its three methods, and limits are read
// where the handler reads the consumer now.
type Source interface {
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

	// Ready is false until the source has consumers to look keys up in
	// (fail closed: 503, and no anonymous fallback either).
	Ready() bool
}

// The handler's only ways to its source. The request flow calls these three
// and nothing else of the source.

// ready reports whether the source can answer: false before a first load.
func (h *Handler) ready() bool { return h.src.Ready() }

// lookup finds the credential of a key digest.
func (h *Handler) lookup(ctx context.Context, d consumers.Digest) (consumers.Credential, bool, error) {
	return h.src.Lookup(ctx, d)
}

// anonymousConsumer finds the anonymous consumer.
func (h *Handler) anonymousConsumer(ctx context.Context) (consumers.Consumer, bool, error) {
	return h.src.Consumer(ctx, h.Anonymous)
}
