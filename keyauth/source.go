package keyauth

import (
	"context"
	"time"

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
// A source that can be changed at runtime implements Writer as well (the
// management API, key_auth_api, asks for it with a type assertion); one
// that does not (the HTTP source, a third-party one without it) is
// read-only there.
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

// Writer is a Source that the management API (key_auth_api) can change:
// the file source rewrites its document, the Redis source writes the layout
// the source reads and push writes. A change reaches the handlers that share
// the source at once (a file source's store swaps its set; the Redis source
// drops what its cache held of the consumer), so Lookup answers it without
// waiting for a refresh; the request path is untouched.
//
// A source module implements Writer, or not, by its type: the file and
// Redis sources do, the HTTP source and a source of another package that
// embeds sources.Handle without writing methods of its own do not, and are
// read-only for the management API.
//
// Entries are in the document's own shape (consumers.ConsumerEntry). Edit's
// change gets a consumer's keys as the source holds them: a key in plain
// text where the document has one. Consumers and ReadConsumer, which answer
// from what the source serves, give every key as its hash (Hash) and every
// credential's id written out (a derived one too). The management API never
// answers with a key or a hash.
//
// The errors of Edit, for an answer: the change's own error as it is;
// ErrRefused (400: the entry would be refused, the message names the
// field); ErrCredentialTaken (409); ErrConflict (409, nothing written, read
// again); any other error (503: the source unreachable, a full disk),
// nothing written.
type Writer interface {
	Source

	// Consumers calls yield with the source's consumers in bytewise
	// username order, starting with the first username greater than after
	// ("" for the first), until yield returns false or none is left. It
	// answers from what the source serves, without reading the whole
	// source for a page.
	Consumers(ctx context.Context, after string, yield func(*consumers.ConsumerEntry) bool) error

	// ReadConsumer is the consumer named username, nil when there is none.
	ReadConsumer(ctx context.Context, username string) (*consumers.ConsumerEntry, error)

	// Edit changes the consumer named username atomically: change gets a
	// copy of its entry (nil when there is none) and returns the entry to
	// write (nil deletes the consumer; a returned error, written nothing,
	// comes back from Edit as it is). The entry written keeps username
	// (another is refused). What is written passes the checks a load makes
	// (a refusal is ErrRefused and wraps consumers' error, naming the
	// field); a credential id or key that another consumer's credential
	// has is ErrCredentialTaken. A change that another writer made
	// meanwhile is never lost: Edit retries change on the newer entry (so
	// change may run more than once, and must not act beyond returning the
	// entry), and fails with ErrConflict after a few tries. Another error
	// means nothing was written (the store unreachable, a full disk). When
	// Edit returns nil, the handlers sharing the source answer the change.
	Edit(ctx context.Context, username string, change func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) error

	// LastUsed is when each credential of ids last let a request in, to
	// the minute, in ids' order; the zero time for never or unknown.
	LastUsed(ctx context.Context, ids []string) ([]time.Time, error)
}

// ErrConflict is a write that another writer's change made meanwhile
// refused: nothing was written, and the caller may read again and retry.
// It is consumers.ErrConflict, which the sources return.
var ErrConflict = consumers.ErrConflict

// ErrCredentialTaken is a write that gives a credential an id, or a key,
// that a credential of another consumer of the source already has. It is
// consumers.ErrCredentialTaken.
var ErrCredentialTaken = consumers.ErrCredentialTaken

// ErrRefused is a write of a consumer that a load would refuse; its message
// names the field. It is consumers.ErrRefused.
var ErrRefused = consumers.ErrRefused
