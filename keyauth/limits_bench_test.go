package keyauth

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// limitsBenchStore is n consumers with one key each, and with the limits
// object given on each consumer ("" for none).
func limitsBenchStore(tb testing.TB, n int, limitsJSON string) (*consumers.Set, []string) {
	tb.Helper()
	base := loadBenchStore(tb, n)
	if limitsJSON == "" {
		return base.set, base.keys
	}
	limitSetsMu.Lock()
	defer limitSetsMu.Unlock()
	k := limitSetKey{n, limitsJSON}
	if set := limitSets[k]; set != nil {
		return set, base.keys
	}
	var doc bytes.Buffer
	doc.WriteString(`{"consumers": [{"username": "anon"}`)
	for i, k := range base.keys {
		fmt.Fprintf(&doc, `,{"username": "user-%d", "custom_id": "c-%d", "keys": [{"key": %q}], "limits": %s}`, i, i, k, limitsJSON)
	}
	doc.WriteString("]}")
	set, err := consumers.Parse(doc.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	limitSets[k] = set
	return set, base.keys
}

var (
	limitSetsMu sync.Mutex
	limitSets   = map[limitSetKey]*consumers.Set{}
)

type limitSetKey struct {
	n      int
	limits string
}

// localStore is a provisioned key_auth.limits.stores.local of a table of
// its own, saving (if it must) into a temporary data directory.
func localStore(tb testing.TB) LimitStore {
	tb.Helper()
	tb.Setenv("XDG_DATA_HOME", tb.TempDir())
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	s := &sources.LocalLimits{Table: fmt.Sprintf("bench%d", time.Now().UnixNano())}
	if err := s.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Cleanup() })
	return s
}

// limitsBenchCases are the cases of BenchmarkServeHTTPLimits: a key in a
// header, the consumer's limits and the route's costs.
var limitsBenchCases = []struct {
	name, limits string
	costs        []Cost
}{
	{"no_limits", "", nil},
	{"quota", `{"requests": {"max": 1000000000000, "per": "day"}}`, nil},
	{"quota_in_flight", `{"requests": {"max": 1000000000000, "per": "day"}, "in_flight": 1000}`, nil},
	{"quota_monthly_berlin", `{"requests": {"max": 1000000000000, "per": "month", "timezone": "Europe/Berlin"}}`, nil},
	{"token_budget", `{"tokens": {"max": 1000000000000, "per": "month"}}`, []Cost{{Meter: "tokens", Amount: "1000", Usage: true}}},
}

func limitsBenchHandler(tb testing.TB, n int, limitsJSON string, costs []Cost) (*Handler, []string) {
	tb.Helper()
	set, keys := limitsBenchStore(tb, n, limitsJSON)
	h := newBenchHandler(tb, &Handler{}, set)
	if limitsJSON != "" {
		h.Limits = &Limits{Costs: costs}
		h.limiter = newLimiter(h.Limits, localStore(tb), zap.NewNop())
	}
	return h, keys
}

// BenchmarkServeHTTPLimits is ServeHTTP as BenchmarkServeHTTP measures it,
// with a limits block counting in store local against the consumer's limits,
// and the same consumers without limits through a handler without one:
// the difference is what limits cost a request.
//
//	go test -run '^$' -bench ServeHTTPLimits -benchtime 300000x ./keyauth
func BenchmarkServeHTTPLimits(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		for _, c := range limitsBenchCases {
			b.Run(fmt.Sprintf("%s/consumers=%d", c.name, n), func(b *testing.B) {
				h, keys := limitsBenchHandler(b, n, c.limits, c.costs)
				r := benchCases()[0].request(keys[n/2])
				b.ResetTimer()
				serveBench(b, h, r, 0)
			})
		}
	}
}

// TestLimitsAllocs holds a request with limits counted in store local to
// the allocations of one without: the run holds the request's identity, its
// charges, its headers and its settlement.
func TestLimitsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop what it holds: the runs and the store's tickets allocate")
	}
	for _, c := range limitsBenchCases {
		t.Run(c.name, func(t *testing.T) {
			h, keys := limitsBenchHandler(t, 1_000, c.limits, c.costs)
			const n = 1000
			reqs := copier(benchCases()[0].request(keys[7]))(n)
			w := &discardWriter{h: http.Header{}}
			// Warm the store's pool of tickets and its counters.
			for _, r := range copier(benchCases()[0].request(keys[7]))(10) {
				_ = h.ServeHTTP(w, r, nextOK)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for _, r := range reqs {
				_ = h.ServeHTTP(w, r, nextOK)
			}
			runtime.ReadMemStats(&after)
			if got := (after.Mallocs - before.Mallocs + n/2) / n; got > hotPathAllocs {
				t.Errorf("%d allocations per request, want at most %d, as without limits", got, hotPathAllocs)
			}
			if c.limits != "" && w.h.Get("RateLimit") == "" {
				t.Error("no RateLimit header: the limits were not charged")
			}
		})
	}
}
