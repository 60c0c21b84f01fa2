package redis

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// newTestLimits is one instance's Redis limits store (one "Caddy"): two
// calls make two instances sharing the Redis at addrs.
func newTestLimits(t testing.TB, ttl time.Duration, addrs ...string) *limitsClient {
	t.Helper()
	cfg := LimitStore{Options: Options{Addresses: addrs}, LeaseTTL: caddy.Duration(ttl)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Options, _ = cfg.resolved()
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = caddy.Duration(DefaultLeaseTTL)
	}
	c := newLimitsClient(&cfg, "", nil)
	t.Cleanup(func() { _ = c.Destruct() })
	return c
}

func thisHour() (time.Time, time.Time) {
	start := time.Now().Truncate(time.Hour)
	return start, start.Add(time.Hour)
}

func quota(kind limits.ScopeKind, scope, meter string, max, cost int64) limits.Charge {
	start, end := thisHour()
	return limits.Charge{Kind: kind, Scope: scope, Meter: meter, Max: max, Cost: cost, Start: start, End: end}
}

func slot(kind limits.ScopeKind, scope string, max int64) limits.Charge {
	return limits.Charge{Kind: kind, Scope: scope, Meter: limits.InFlight, Max: max, Cost: 1}
}

func admitOK(t testing.TB, c *limitsClient, charges ...limits.Charge) limits.Admission {
	t.Helper()
	a, err := c.admit(context.Background(), charges)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func settleOK(t testing.TB, c *limitsClient, a limits.Admission, actual ...int64) {
	t.Helper()
	if err := c.settle(context.Background(), a, limits.Settlement{Actual: actual}); err != nil {
		t.Fatal(err)
	}
}

// exactly400 runs 400 concurrent admissions of a request that charges a
// credential, its consumer and its group's pool of 100, split over the
// instances: exactly 100 get in, and the pool's counter says so.
func exactly400(t *testing.T, do func(...string) rueidis.RedisResult, instances ...*limitsClient) {
	t.Helper()
	charges := []limits.Charge{
		quota(limits.Credential, "alice-ci", "requests", 1000, 1),
		quota(limits.Consumer, "alice", "requests", 1000, 1),
		quota(limits.Group, "acme:team", "requests", 100, 1),
	}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 400 {
		c := instances[i%len(instances)]
		wg.Go(func() {
			<-start
			a, err := c.admit(context.Background(), charges)
			if err != nil {
				t.Error(err)
				return
			}
			if a.Allowed {
				allowed.Add(1)
			} else if a.Refused != 2 || a.Remaining[2] != 0 {
				t.Errorf("refused: %+v, want charge 2 (the pool) with no room", a)
			}
			_ = c.settle(context.Background(), a, limits.Settlement{})
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 100 {
		t.Errorf("%d of 400 let in by a quota of 100", n)
	}
	key := instances[0].keyOf(&charges[2])
	if got, _ := do("GET", key).ToString(); got != "100" {
		t.Errorf("the pool's counter %s is %q, want 100", key, got)
	}
	if got, _ := do("GET", instances[0].keyOf(&charges[0])).ToString(); got != "100" {
		t.Errorf("the credential's counter is %q, want 100: a refused admission took from it", got)
	}
}

// rdo runs commands on the Redis (or the cluster) at addrs.
func rdo(t *testing.T, addrs ...string) func(...string) rueidis.RedisResult {
	c := redistest.Client(t, addrs...)
	return func(args ...string) rueidis.RedisResult { return redistest.Do(t, c, args...) }
}

func TestRedisLimitsExact(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestLimits(t, 0, srv.Addr()), newTestLimits(t, 0, srv.Addr())
	exactly400(t, rdo(t, srv.Addr()), a, b)
}

func TestRedisLimitsWindows(t *testing.T) {
	srv := redistest.Start(t)
	do := rdo(t, srv.Addr())
	c := newTestLimits(t, 0, srv.Addr())

	// Every window its counter, which expires at the window's end.
	q := quota(limits.Consumer, "bob", "requests", 2, 1)
	for range 2 {
		settleOK(t, c, admitOK(t, c, q))
	}
	if a := admitOK(t, c, q); a.Allowed || a.Remaining[0] != 0 {
		t.Fatalf("a full window lets in: %+v", a)
	}
	_, end := thisHour()
	if pttl, _ := do("PTTL", c.keyOf(&q)).AsInt64(); pttl <= 0 || pttl > time.Until(end).Milliseconds()+1000 {
		t.Errorf("the counter expires in %dms, want at the window's end, in %v", pttl, time.Until(end))
	}
	next := q
	next.Start, next.End = q.End, q.End.Add(time.Hour)
	if a := admitOK(t, c, next); !a.Allowed || a.Remaining[0] != 1 {
		t.Errorf("the next window is not fresh: %+v", a)
	}

	// A window that has ended counts in nothing.
	past := q
	past.Scope, past.Start, past.End = "old", q.Start.Add(-2*time.Hour), q.Start.Add(-time.Hour)
	admitOK(t, c, past)
	if n, _ := do("EXISTS", c.keyOf(&past)).AsInt64(); n != 0 {
		t.Error("an ended window's counter lives")
	}

	// A scope holding ':' is not another scope's meter.
	x := quota(limits.Consumer, "a:requests", "x", 5, 1)
	y := quota(limits.Consumer, "a", "requests:x", 5, 1)
	if c.keyOf(&x) == c.keyOf(&y) {
		t.Errorf("two counters share the key %s", c.keyOf(&x))
	}
}

func TestRedisLimitsSettle(t *testing.T) {
	srv := redistest.Start(t)
	do := rdo(t, srv.Addr())
	c := newTestLimits(t, 0, srv.Addr())
	tokens := quota(limits.Consumer, "carol", "tokens", 10000, 4000)
	get := func() string { v, _ := do("GET", c.keyOf(&tokens)).ToString(); return v }

	a := admitOK(t, c, tokens, quota(limits.Credential, "k", "requests", 10, 1))
	if !a.Allowed || a.Remaining[0] != 6000 || a.Remaining[1] != 9 {
		t.Fatalf("%+v", a)
	}
	settleOK(t, c, a, 1500)
	settleOK(t, c, a, 10) // once only
	if v := get(); v != "1500" {
		t.Errorf("settled to %s, want 1500", v)
	}
	settleOK(t, c, admitOK(t, c, tokens), -1)
	if v := get(); v != "5500" {
		t.Errorf("-1 did not keep the reservation: %s", v)
	}
	settleOK(t, c, admitOK(t, c, tokens), 9000)
	if a := admitOK(t, c, tokens); a.Allowed || a.Remaining[0] != 0 {
		t.Errorf("an overspent meter lets in: %+v", a)
	}
	if v := get(); v != "14500" {
		t.Errorf("used %s, want 14500", v)
	}
	// A settlement never leaves a counter below zero.
	small := quota(limits.Consumer, "dave", "tokens", 100, 10)
	a1, a2 := admitOK(t, c, small), admitOK(t, c, small)
	do("SET", c.keyOf(&small), "5", "KEEPTTL")
	settleOK(t, c, a1, 0)
	if v, _ := do("GET", c.keyOf(&small)).ToString(); v != "0" {
		t.Errorf("settled below zero: %s", v)
	}
	settleOK(t, c, a2)

	if _, err := c.admit(context.Background(), []limits.Charge{quota(limits.Consumer, "e", "requests", 1, -1)}); !errors.Is(err, limits.ErrBadCharge) {
		t.Errorf("a negative cost: %v", err)
	}
}

// TestRedisLimitsInFlight: an in_flight of 3 across two instances holds
// under load, and the slots come back when the requests end.
func TestRedisLimitsInFlight(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestLimits(t, 0, srv.Addr()), newTestLimits(t, 0, srv.Addr())
	s := slot(limits.Consumer, "eve", 3)
	var inside, peak, served atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		c := []*limitsClient{a, b}[i%2]
		wg.Go(func() {
			for range 10 {
				adm, err := c.admit(context.Background(), []limits.Charge{s, quota(limits.Consumer, "eve", "requests", 1e6, 1)})
				if err != nil {
					t.Error(err)
					return
				}
				if adm.Allowed {
					n := inside.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					served.Add(1)
					inside.Add(-1)
				}
				if err := c.settle(context.Background(), adm, limits.Settlement{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || served.Load() == 0 {
		t.Errorf("%d at once of 3 (%d served)", p, served.Load())
	}
	held := []limits.Admission{admitOK(t, a, s), admitOK(t, b, s), admitOK(t, a, s)}
	for i, h := range held {
		if !h.Allowed {
			t.Fatalf("slot %d refused after the load: %+v", i, h)
		}
	}
	if x := admitOK(t, b, s); x.Allowed || x.Remaining[0] != 0 {
		t.Fatalf("a fourth slot of 3: %+v", x)
	}
	if n := a.inFlight.Load() + b.inFlight.Load(); n != 3 {
		t.Errorf("the instances count %d slots held, want 3", n)
	}
	settleOK(t, a, held[0])
	if x := admitOK(t, b, s); !x.Allowed {
		t.Errorf("a slot given back is not free: %+v", x)
	}
}

// TestRedisLimitsLeases: an instance renews its leases while its requests
// run; one that stops (a crash) loses them within the TTL, and the slots
// come back for the others.
func TestRedisLimitsLeases(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 300 * time.Millisecond
	a, b := newTestLimits(t, ttl, srv.Addr()), newTestLimits(t, ttl, srv.Addr())
	s := slot(limits.Credential, "frank-ci", 3)
	for range 3 {
		if !admitOK(t, a, s).Allowed {
			t.Fatal("refused")
		}
	}
	// Renewed: several TTLs later, the slots are still a's.
	for start := a.renewals.Load(); a.renewals.Load() < start+7; {
		if x := admitOK(t, b, s); x.Allowed {
			t.Fatalf("a renewed lease expired after %d renewals", a.renewals.Load()-start)
		}
	}

	// a crashes: it neither renews nor settles.
	crashed := time.Now()
	a.cancel()
	a.renewing.Wait()
	var got limits.Admission
	waittest.Until(t, "the crashed instance's slots", func() bool {
		got = admitOK(t, b, s)
		return got.Allowed
	})
	if took := time.Since(crashed); took > ttl+ttl/3+500*time.Millisecond {
		t.Errorf("the slots came back after %v, TTL %v", took, ttl)
	}
	if got.Remaining[0] != 2 {
		t.Errorf("after the crash: %+v, want all three back", got)
	}
}

// TestRedisLimitsRoundTrips counts the scripts Redis ran: one per
// admission, one per settlement that has something to give back or
// correct, none for one that has not.
func TestRedisLimitsRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestLimits(t, 0, srv.Addr())
	charges := []limits.Charge{
		quota(limits.Credential, "k", "requests", 1e9, 1),
		quota(limits.Consumer, "c", "tokens", 1e12, 4000),
		slot(limits.Consumer, "c", 1e6),
	}
	settleOK(t, c, admitOK(t, c, charges...), -1, 1200) // loads the scripts
	const n = 20
	before := scriptCalls(t, srv.Addr())
	for range n {
		settleOK(t, c, admitOK(t, c, charges...), -1, 1200)
	}
	if got := scriptCalls(t, srv.Addr()) - before; got != 2*n {
		t.Errorf("%d round trips for %d admissions and settlements, want %d", got, n, 2*n)
	}
	before = scriptCalls(t, srv.Addr())
	for range n {
		settleOK(t, c, admitOK(t, c, charges[:2]...), -1, 4000)
	}
	if got := scriptCalls(t, srv.Addr()) - before; got != n {
		t.Errorf("%d round trips for %d admissions with nothing to settle, want %d", got, n, n)
	}
}

// scriptCalls is the number of scripts the Redis servers at addrs ran
// (EVALSHA and EVAL: what the store sends), and of every other command
// sent from outside a script, which must be none but INFO and the
// connection's own.
func scriptCalls(t testing.TB, addrs ...string) int64 {
	t.Helper()
	var n int64
	for _, addr := range addrs {
		host, port, _ := strings.Cut(addr, ":")
		out, err := exec.Command("redis-cli", "-h", host, "-p", port, "info", "commandstats").Output()
		if err != nil {
			t.Fatalf("redis-cli info commandstats: %v", err)
		}
		for line := range strings.Lines(string(out)) {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
				continue
			}
			calls, _, _ := strings.Cut(rest, ",")
			v, _ := strconv.ParseInt(calls, 10, 64)
			n += v
		}
	}
	return n
}

func TestRedisLimitsCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	a, b := newTestLimits(t, 0, cl.Addrs()...), newTestLimits(t, 0, cl.Addrs()...)
	exactly400(t, rdo(t, cl.Addrs()...), a, b)
	pool := quota(limits.Group, "acme:team", "requests", 100, 1)
	want := cl.KeySlot(t, a.keyOf(&pool))
	for _, ch := range []limits.Charge{quota(limits.Credential, "x", "requests", 1, 1), slot(limits.Consumer, "y", 1)} {
		if s := cl.KeySlot(t, a.keyOf(&ch)); s != want {
			t.Errorf("%s is in slot %d, the pool in %d", a.keyOf(&ch), s, want)
		}
	}
	charges := []limits.Charge{slot(limits.Consumer, "y", 1), quota(limits.Group, "acme:team", "tokens", 1e6, 10)}
	settleOK(t, b, admitOK(t, b, charges...), -1, 3) // loads the scripts on the slot's master
	before := scriptCalls(t, cl.Addrs()...)
	settleOK(t, b, admitOK(t, b, charges...), -1, 3)
	if got := scriptCalls(t, cl.Addrs()...) - before; got != 2 {
		t.Errorf("%d round trips in a cluster for an admission and its settlement, want 2", got)
	}
}

// TestRedisLimitsUnreachable: a store that cannot reach Redis answers
// errors at once, counts them, logs the cause once, and counts again once
// Redis is back.
func TestRedisLimitsUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestLimits(t, 0, srv.Addr())
	core, logs := observer.New(zap.InfoLevel)
	c.logger.Store(zap.New(core))
	q := quota(limits.Consumer, "gina", "requests", 10, 1)
	errsBefore := counted(c)

	srv.Stop()
	for range 5 {
		start := time.Now()
		if _, err := c.admit(context.Background(), []limits.Charge{q}); err == nil {
			t.Fatal("admitted with Redis down")
		} else if !strings.Contains(err.Error(), "limits store redis "+srv.Addr()) {
			t.Errorf("error %q does not name the store", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("an admission with Redis down took %v", d)
		}
	}
	if n := counted(c) - errsBefore; n != 5 {
		t.Errorf("%v errors counted, want 5", n)
	}
	if n := logs.FilterMessageSnippet("not connected").Len(); n != 1 {
		t.Errorf("%d log lines for one cause, want 1", n)
	}

	srv.Restart()
	waittest.Until(t, "the store to count again", func() bool {
		_, err := c.admit(context.Background(), []limits.Charge{q})
		return err == nil
	})

	// Connected, then lost: the connection comes back by itself.
	h := admitOK(t, c, q, slot(limits.Consumer, "gina", 5))
	srv.Stop()
	if _, err := c.admit(context.Background(), []limits.Charge{q}); err == nil {
		t.Fatal("admitted with Redis down")
	}
	if err := c.settle(context.Background(), h, limits.Settlement{}); err == nil {
		t.Error("settled with Redis down")
	}
	if c.inFlight.Load() != 0 {
		t.Error("a slot whose settlement failed is still counted as held (it expires in Redis)")
	}
	srv.Restart()
	waittest.Until(t, "the reconnection", func() bool {
		_, err := c.admit(context.Background(), []limits.Charge{q})
		return err == nil
	})
}

// TestRedisLimitsModule: stores of one configuration share a connection
// across a reload; the Caddyfile takes the Redis source's options and
// lease_ttl.
func TestRedisLimitsModule(t *testing.T) {
	srv := redistest.Start(t)
	provision := func(s *LimitStore) {
		t.Helper()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		if err := s.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	old := &LimitStore{Options: Options{Addresses: []string{srv.Addr()}}, LeaseTTL: caddy.Duration(time.Second)}
	provision(old)
	h, err := old.Admit(context.Background(), []limits.Charge{slot(limits.Consumer, "hal", 1)})
	if err != nil || !h.Allowed {
		t.Fatal(h, err)
	}
	reloaded := &LimitStore{Options: Options{Addresses: []string{srv.Addr()}}, LeaseTTL: caddy.Duration(time.Second)}
	provision(reloaded)
	if reloaded.live != old.live {
		t.Fatal("a reload made a new connection")
	}
	_ = old.Cleanup()
	// The lease of a request admitted before the reload is renewed on.
	for start := reloaded.live.renewals.Load(); reloaded.live.renewals.Load() < start+4; {
		if x, _ := reloaded.Admit(context.Background(), []limits.Charge{slot(limits.Consumer, "hal", 1)}); x.Allowed {
			t.Fatal("the reload lost a lease")
		}
	}
	if err := reloaded.Settle(context.Background(), h, limits.Settlement{}); err != nil {
		t.Fatal(err)
	}
	_ = reloaded.Cleanup()

	var s LimitStore
	err = s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`redis 10.0.0.1:7000 10.0.0.2:7000 {
		username  caddy
		password  {env.REDIS_PASSWORD}
		prefix    ka:
		timeout   250ms
		lease_ttl 10s
		tls {
			root_ca /etc/ca.pem
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got := string(caddyconfig.JSONModuleObject(s, "store", "redis", nil))
	want := `{"addresses":["10.0.0.1:7000","10.0.0.2:7000"],"lease_ttl":10000000000,"password":"{env.REDIS_PASSWORD}","prefix":"ka:","store":"redis","timeout":250000000,"tls":{"root_ca_pem_files":["/etc/ca.pem"]},"username":"caddy"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for name, tc := range map[string]struct{ input, want string }{
		"no address": {"redis", "wrong argument count"},
		"cache":      {"redis a:1 {\n  cache 1MB\n }", "unrecognized limits store redis option 'cache'"},
		"bad ttl":    {"redis a:1 {\n  lease_ttl soon\n }", "lease_ttl: invalid duration"},
		"ttl twice":  {"redis a:1 {\n  lease_ttl 1s\n  lease_ttl 2s\n }", "lease_ttl given twice"},
		"tls":        {"redis a:1 {\n  tls {\n   insecure\n  }\n }", "unrecognized limits store redis tls option 'insecure'"},
		"tls args":   {"redis a:1 {\n  tls {\n   root_ca\n  }\n }", "limits store redis tls: wrong argument count"},
	} {
		var s LimitStore
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%s: error %v, want %q with file:line", name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		s    LimitStore
		want string
	}{
		{LimitStore{}, "at least one Redis address"},
		{LimitStore{Options: Options{Addresses: []string{"a:1"}}, LeaseTTL: caddy.Duration(time.Millisecond)}, "lease_ttl must be at least 100ms"},
		{LimitStore{Options: Options{Addresses: []string{"a:1"}}, LeaseTTL: -1}, "lease_ttl must not be negative"},
		{LimitStore{Options: Options{Addresses: []string{"a:1"}, Prefix: "{x}"}}, "may not hold '{' or '}'"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
}

// The metric of the slots held reads the instance's count.
func TestRedisLimitsInFlightMetric(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := sources.RegisterLimitMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	c := newTestLimits(t, 0, srv.Addr())
	h := admitOK(t, c, slot(limits.Consumer, "ivy", 5), slot(limits.Group, "g", 5))
	gauge := func() float64 {
		families, err := ctx.GetMetricsRegistry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "caddy_key_auth_limits_in_flight" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == c.store {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	if g := gauge(); g != 2 {
		t.Errorf("in-flight gauge %v, want 2", g)
	}
	settleOK(t, c, h)
	if g := gauge(); g != 0 {
		t.Errorf("in-flight gauge %v after the settlement, want 0", g)
	}
}

func counted(c *limitsClient) float64 {
	var m dto.Metric
	_ = c.errs.Write(&m)
	return m.GetCounter().GetValue()
}

var _ keyauth.UsageStore = (*LimitStore)(nil)

// BenchmarkRedisLimits is a typical request's admission and settlement
// against a local redis-server (a credential's requests, a consumer's
// token reservation settled from the response, an in-flight slot), and the
// round trips each takes, counted by Redis.
//
//	go test -run '^$' -bench RedisLimits ./consumers/sources/redis
func BenchmarkRedisLimits(b *testing.B) {
	srv := redistest.Start(b)
	c := newTestLimits(b, 0, srv.Addr())
	charges := []limits.Charge{
		quota(limits.Credential, "alice-ci", "requests", 1<<50, 1),
		quota(limits.Consumer, "alice", "tokens", 1<<50, 4000),
		slot(limits.Consumer, "alice", 1<<20),
	}
	s := limits.Settlement{Actual: []int64{-1, 1200}}
	ctx := context.Background()
	a, _ := c.admit(ctx, charges)
	_ = c.settle(ctx, a, s)
	b.Run("time", func(b *testing.B) {
		for b.Loop() {
			a, err := c.admit(ctx, charges)
			if err != nil || !a.Allowed {
				b.Fatal(a, err)
			}
			if err := c.settle(ctx, a, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("round-trips", func(b *testing.B) {
		held := make([]limits.Admission, 0, b.N)
		before := scriptCalls(b, srv.Addr())
		for b.Loop() {
			a, err := c.admit(ctx, charges)
			if err != nil || !a.Allowed {
				b.Fatal(a, err)
			}
			held = append(held, a)
		}
		mid := scriptCalls(b, srv.Addr())
		for _, a := range held {
			if err := c.settle(ctx, a, s); err != nil {
				b.Fatal(err)
			}
		}
		n := float64(len(held))
		b.ReportMetric(float64(mid-before)/n, "round-trips/admission")
		b.ReportMetric(float64(scriptCalls(b, srv.Addr())-mid)/n, "round-trips/settlement")
	})
}

// limitsACLRules are the rights the README gives the limits store's Redis
// user: the scripts and what they run, on the store's keys only.
const limitsACLRules = "resetkeys ~{keyauth:limits}:* resetchannels -@all +hello +ping +select +evalsha +eval +time +get +incrby +set +exists +pexpire +pexpireat +zadd +zrem +zcard +zremrangebyscore +cluster|slots +cluster|shards"

// The README's ACL line is limitsACLRules, and a user with exactly those
// rights runs the store: admissions, settlements, renewals.
func TestRedisLimitsACLRights(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "ACL SETUSER caddy-limits on >CHANGE-ME "+limitsACLRules) {
		t.Errorf("the README's ACL line for the limits store is not %q", limitsACLRules)
	}
	srv := redistest.Start(t)
	do := rdo(t, srv.Addr())
	do(append([]string{"ACL", "SETUSER", "caddy-limits", "on", ">limits-pass"}, strings.Fields(limitsACLRules)...)...)
	cfg := LimitStore{Options: Options{Addresses: []string{srv.Addr()}, Username: "caddy-limits"}, LeaseTTL: caddy.Duration(300 * time.Millisecond)}
	cfg.Options, _ = cfg.resolved()
	c := newLimitsClient(&cfg, "limits-pass", nil)
	defer c.Destruct()
	core, logs := observer.New(zap.InfoLevel)
	c.logger.Store(zap.New(core))
	h := admitOK(t, c, quota(limits.Consumer, "a", "tokens", 1e6, 4000), slot(limits.Consumer, "a", 2))
	start := c.renewals.Load()
	waittest.Until(t, "two renewals", func() bool { return c.renewals.Load() >= start+2 })
	settleOK(t, c, h, 12)
	if got, _ := do("GET", c.keyOf(&limits.Charge{Kind: limits.Consumer, Scope: "a", Meter: "tokens", Start: thisHourStart()})).ToString(); got != "12" {
		t.Errorf("settled to %q, want 12", got)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("the store logged %d lines: %v", n, logs.All())
	}
	if n := counted(c); n != 0 {
		t.Errorf("%v errors", n)
	}
}

func thisHourStart() time.Time { s, _ := thisHour(); return s }
