package keyauth

import (
	"context"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// The handler's only ways to its source. The request flow calls these three
// and nothing else of the source, so the source's shape stays out of it.

// ready reports whether the source can answer: false before a first load
// (fail closed: 503).
func (h *Handler) ready() bool {
	return h.store.Set() != nil || h.looker != nil
}

// lookup finds the credential of a key digest. ok=false is an unknown key;
// err means the source cannot answer now (503, never 401). d is a value, so
// the caller's digest stays on its stack.
func (h *Handler) lookup(ctx context.Context, d consumers.Digest) (consumers.Credential, bool, error) {
	if h.looker != nil {
		return h.looker.Lookup(ctx, d)
	}
	cred, ok := h.store.Set().Lookup(&d)
	return cred, ok, nil
}

// anonymousConsumer finds the anonymous consumer.
func (h *Handler) anonymousConsumer(ctx context.Context) (consumers.Consumer, bool, error) {
	if h.looker != nil {
		return h.looker.Consumer(ctx, h.Anonymous)
	}
	c, ok := h.anonymous(h.store.Set())
	return c, ok, nil
}
