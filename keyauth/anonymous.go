package keyauth

import (
	"weak"

	"github.com/keyauth/caddy-keyauth/consumers"
)

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
