package manage

import (
	"context"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// consumerView is a consumer as the API shows it: the document's fields
// but its keys' secrets, and each key's last use.
type consumerView struct {
	Username string            `json:"username"`
	ID       string            `json:"id"`
	CustomID string            `json:"custom_id,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
	Groups   []string          `json:"groups,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Disabled bool              `json:"disabled"`
	// Limits are the consumer's own limits, as the document holds them:
	// a PUT of what a GET showed keeps them.
	Limits consumers.LimitsEntry `json:"limits,omitempty"`
	Keys   []keyView             `json:"keys"`
}

// keyView is a credential without its key or hash.
type keyView struct {
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at,omitempty"`
	CreatedAt string `json:"created_at,omitempty"`
	// LastUsed is the minute the key last let a request in, as the source
	// records it; absent for never.
	LastUsed string `json:"last_used,omitempty"`
	Disabled bool   `json:"disabled"`
	Canary   bool   `json:"canary,omitempty"`
	// Limits are the key's own limits.
	Limits consumers.LimitsEntry `json:"limits,omitempty"`
	// Previous are the secrets a roll replaced, still valid until their
	// expires_at: their expiry alone.
	Previous []previousView `json:"previous,omitempty"`
}

type previousView struct {
	ExpiresAt string `json:"expires_at"`
}

// newKeyView shows key i of c; lastUsed is its last use, zero for never.
func newKeyView(c *consumers.ConsumerEntry, i int, lastUsed time.Time) keyView {
	k := &c.Keys[i]
	v := keyView{ID: c.CredentialID(i), ExpiresAt: k.ExpiresAt, CreatedAt: k.CreatedAt,
		Disabled: k.Disabled, Canary: k.Canary, Limits: k.Limits, LastUsed: formatTime(lastUsed)}
	for _, p := range k.Previous {
		v.Previous = append(v.Previous, previousView{ExpiresAt: p.ExpiresAt})
	}
	return v
}

// formatTime is t in RFC 3339, UTC, or "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// views shows consumers with their keys' last use, asked of the source
// at once for all of them.
func (h *Handler) views(ctx context.Context, cs []*consumers.ConsumerEntry) ([]consumerView, error) {
	var ids []string
	for _, c := range cs {
		for i := range c.Keys {
			ids = append(ids, c.CredentialID(i))
		}
	}
	var used []time.Time
	if len(ids) > 0 {
		var err error
		if used, err = h.writer.LastUsed(ctx, ids); err != nil {
			return nil, err
		}
	}
	out := make([]consumerView, 0, len(cs))
	n := 0
	for _, c := range cs {
		v := consumerView{Username: c.Username, ID: c.ConsumerID(), CustomID: c.CustomID, Tags: c.Tags,
			Groups: c.Groups, Labels: c.Labels, Disabled: c.Disabled, Limits: c.Limits, Keys: make([]keyView, 0, len(c.Keys))}
		for i := range c.Keys {
			var t time.Time
			if n < len(used) {
				t = used[n]
			}
			n++
			v.Keys = append(v.Keys, newKeyView(c, i, t))
		}
		out = append(out, v)
	}
	return out, nil
}

// view shows one consumer.
func (h *Handler) view(ctx context.Context, c *consumers.ConsumerEntry) (consumerView, error) {
	vs, err := h.views(ctx, []*consumers.ConsumerEntry{c})
	if err != nil {
		return consumerView{}, err
	}
	return vs[0], nil
}
