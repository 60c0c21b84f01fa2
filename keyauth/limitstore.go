package keyauth

import (
	"context"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// LimitStore counts what requests charge against their limits: what every
// module of the key_auth.limits.stores namespace implements (local: in
// memory, saved to Caddy's data directory; redis: counters shared by a
// fleet). A key_auth handler with a limits block holds one; a store is
// shared across config reloads, so counts survive them.
type LimitStore interface {
	// Admit checks that every charge has room and takes them all in one
	// atomic step, or none. err means the store cannot answer (on_error
	// decides: 503 or let on uncounted).
	Admit(ctx context.Context, charges []limits.Charge) (limits.Admission, error)

	// Settle ends an admitted request, once, however it ended: it gives
	// back its in-flight slots and settles its reservations.
	Settle(ctx context.Context, a limits.Admission, s limits.Settlement) error
}
