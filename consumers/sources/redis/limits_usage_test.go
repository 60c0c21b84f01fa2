package redis

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

// TestRedisLimitsUsage: reading, resetting and topping up counters, seen
// by a second instance on the same Redis.
func TestRedisLimitsUsage(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestLimits(t, 0, srv.Addr()), newTestLimits(t, 0, srv.Addr())
	ctx := context.Background()
	q := quota(limits.Consumer, "alice", "requests", 3, 1)
	fl := slot(limits.Consumer, "alice", 5)
	let := func(c *limitsClient, n int) int {
		ok := 0
		for range n {
			ad := admitOK(t, c, q)
			if ad.Allowed {
				ok++
			}
			settleOK(t, c, ad)
		}
		return ok
	}
	if got := let(a, 5); got != 3 {
		t.Fatalf("a quota of 3 let %d in", got)
	}
	held := admitOK(t, a, fl)
	if u, err := b.usage(ctx, []limits.Charge{q, fl, quota(limits.Group, "none", "requests", 1, 1)}); err != nil || !slices.Equal(u, []int64{3, 1, 0}) {
		t.Fatalf("usage %v, %v; want [3 1 0]", u, err)
	}
	settleOK(t, a, held)

	if used, err := b.topUp(ctx, q, 2); err != nil || used != 1 {
		t.Fatalf("top-up: %d, %v", used, err)
	}
	if got := let(a, 5); got != 2 {
		t.Fatalf("a top-up of 2 let %d more in", got)
	}
	if err := b.reset(ctx, []limits.Charge{q}); err != nil {
		t.Fatal(err)
	}
	if got := let(a, 5); got != 3 {
		t.Fatalf("after a reset a quota of 3 let %d in", got)
	}

	// Beyond the usage: below zero, more room than the max this window.
	fresh := quota(limits.Credential, "bob-ci", "requests", 3, 1)
	if used, err := a.topUp(ctx, fresh, 4); err != nil || used != -4 {
		t.Fatalf("top-up of a fresh counter: %d, %v", used, err)
	}
	if ttl, _ := rdo(t, srv.Addr())("PTTL", a.keyOf(&fresh)).AsInt64(); ttl <= 0 {
		t.Fatalf("a topped-up counter does not expire with its window: pttl %d", ttl)
	}
	ad := admitOK(t, b, fresh)
	if !ad.Allowed || ad.Remaining[0] != 6 {
		t.Fatalf("after a top-up of 4: %+v", ad)
	}
	settleOK(t, b, ad)

	// A reservation settled after a reset gives its unused part back to
	// the new count, never below zero.
	tok := quota(limits.Consumer, "carol", "tokens", 100, 50)
	r := admitOK(t, a, tok)
	if err := a.reset(ctx, []limits.Charge{tok}); err != nil {
		t.Fatal(err)
	}
	r2 := admitOK(t, a, tok) // 50
	settleOK(t, a, r, 10)    // -40
	settleOK(t, a, r2)
	if u, _ := a.usage(ctx, []limits.Charge{tok}); u[0] != 10 {
		t.Fatalf("usage %d, want 10", u[0])
	}

	if err := a.reset(ctx, []limits.Charge{fl}); !errors.Is(err, limits.ErrInFlight) {
		t.Fatalf("reset of in_flight: %v", err)
	}
	if _, err := a.topUp(ctx, fl, 1); !errors.Is(err, limits.ErrInFlight) {
		t.Fatalf("top-up of in_flight: %v", err)
	}
}
