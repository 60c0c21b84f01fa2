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

// UsageStore is a LimitStore that also reads and changes the usage it
// counts: what the management API needs to show a consumer's limits and to
// reset or top them up. Both stores of this module implement it; a
// third-party store that does not leaves the API's usage endpoints
// answering 409.
//
// A counter is named by a charge's Kind, Scope, Meter and, but for
// limits.InFlight, its window (Start, End): the same charge a request
// makes, Max and Cost ignored.
type UsageStore interface {
	LimitStore

	// Usage reads the usage of counters, in their order: a window's usage
	// (0 for a counter never charged; below zero after a top-up larger
	// than the usage), or the slots in use of an in_flight counter.
	Usage(ctx context.Context, counters []limits.Charge) ([]int64, error)

	// Reset sets the usage of window counters to zero, top-ups included:
	// each window has its whole max again. An in_flight counter is refused
	// (limits.ErrInFlight): its slots are leases of requests under way,
	// given back when they end.
	Reset(ctx context.Context, counters []limits.Charge) error

	// TopUp gives a window counter n more room in its window (n > 0): it
	// lowers the usage by n, below zero if need be, so the room left may
	// exceed the max until the window ends; the next window starts from
	// zero. It returns the usage after. in_flight is refused as by Reset.
	TopUp(ctx context.Context, counter limits.Charge, n int64) (int64, error)
}
