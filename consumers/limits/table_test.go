package limits

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	hour0 = time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)
	hour1 = hour0.Add(time.Hour)
	hour2 = hour1.Add(time.Hour)
)

func window(kind ScopeKind, scope, meter string, max, cost int64) Charge {
	return Charge{Kind: kind, Scope: scope, Meter: meter, Max: max, Cost: cost, Start: hour0, End: hour1}
}

func inFlight(kind ScopeKind, scope string, max int64) Charge {
	return Charge{Kind: kind, Scope: scope, Meter: InFlight, Max: max, Cost: 1}
}

func admit(t *testing.T, tb *Table, charges ...Charge) Admission {
	t.Helper()
	a, err := tb.Admit(charges)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func settle(t *testing.T, tb *Table, a Admission, actual ...int64) {
	t.Helper()
	if err := tb.Settle(a, Settlement{Actual: actual}); err != nil {
		t.Fatal(err)
	}
}

func TestAdmitAllOrNothing(t *testing.T) {
	tb := NewTable()
	cred := window(Credential, "alice-ci", "requests", 10, 1)
	pool := window(Group, "acme", "requests", 2, 1)
	for i := range 2 {
		a := admit(t, tb, cred, pool)
		if !a.Allowed || !slices.Equal(a.Remaining, []int64{9 - int64(i), 1 - int64(i)}) {
			t.Fatalf("admission %d: %+v", i, a)
		}
		settle(t, tb, a)
	}
	a := admit(t, tb, cred, pool)
	if a.Allowed || a.Refused != 1 || !slices.Equal(a.Remaining, []int64{8, 0}) {
		t.Fatalf("the full pool lets in: %+v", a)
	}
	settle(t, tb, a)
	if got := tb.Used(Credential, "alice-ci", "requests", hour0); got != 2 {
		t.Errorf("a refused admission charged the credential: used %d, want 2", got)
	}
	// The same name as another kind is another counter.
	if a := admit(t, tb, window(Credential, "acme", "requests", 2, 1)); !a.Allowed {
		t.Errorf("credential acme refused by group acme's pool: %+v", a)
	}
	// A refused first charge: the others are not looked at, yet their room is said.
	a = admit(t, tb, pool, cred)
	if a.Allowed || a.Refused != 0 || !slices.Equal(a.Remaining, []int64{0, 8}) {
		t.Errorf("refused on the first charge: %+v", a)
	}
	settle(t, tb, a)
}

func TestAdmitWindows(t *testing.T) {
	tb := NewTable()
	c := window(Consumer, "alice", "requests", 1, 1)
	settle(t, tb, admit(t, tb, c))
	if a := admit(t, tb, c); a.Allowed {
		t.Fatal("a full window lets in")
	}
	next := c
	next.Start, next.End = hour1, hour2
	if a := admit(t, tb, next); !a.Allowed || a.Remaining[0] != 0 {
		t.Fatalf("the next window is not fresh: %+v", a)
	}
	if tb.Len() != 2 {
		t.Errorf("%d counters, want one per window", tb.Len())
	}
	if n := tb.Sweep(hour1.Add(-time.Nanosecond)); n != 0 {
		t.Errorf("swept %d counters before the window ended", n)
	}
	if n := tb.Sweep(hour1); n != 1 || tb.Len() != 1 {
		t.Errorf("swept %d at the window's end, %d left; want 1 and 1", n, tb.Len())
	}
	if got := tb.Used(Consumer, "alice", "requests", hour1); got != 1 {
		t.Errorf("the current window lost its count: %d", got)
	}
}

func TestSettleReservations(t *testing.T) {
	tb := NewTable()
	tokens := window(Consumer, "alice", "tokens", 10000, 4000)
	a := admit(t, tb, tokens, window(Credential, "k", "tokens", 10000, 4000))
	if a.Remaining[0] != 6000 {
		t.Fatalf("remaining %v", a.Remaining)
	}
	settle(t, tb, a, 1500) // the second charge has no entry: kept
	if got := tb.Used(Consumer, "alice", "tokens", hour0); got != 1500 {
		t.Errorf("settled to %d, want 1500", got)
	}
	if got := tb.Used(Credential, "k", "tokens", hour0); got != 4000 {
		t.Errorf("an unsettled reservation became %d, want 4000 kept", got)
	}
	settle(t, tb, admit(t, tb, tokens), -1)
	if got := tb.Used(Consumer, "alice", "tokens", hour0); got != 5500 {
		t.Errorf("-1 did not keep the reservation: %d, want 5500", got)
	}
	// Beyond the reservation: the overshoot counts, and the next
	// admission that does not fit is refused.
	settle(t, tb, admit(t, tb, tokens), 9000)
	if got := tb.Used(Consumer, "alice", "tokens", hour0); got != 14500 {
		t.Errorf("used %d, want 14500", got)
	}
	a = admit(t, tb, tokens)
	if a.Allowed || a.Remaining[0] != 0 {
		t.Errorf("an overspent meter lets in: %+v", a)
	}
	settle(t, tb, a, 0) // refused: nothing to settle
	if got := tb.Used(Consumer, "alice", "tokens", hour0); got != 14500 {
		t.Errorf("settling a refused admission changed the count to %d", got)
	}
}

func TestInFlight(t *testing.T) {
	tb := NewTable()
	slot := inFlight(Credential, "k", 2)
	a1, a2 := admit(t, tb, slot), admit(t, tb, slot)
	if !a1.Allowed || !a2.Allowed || a2.Remaining[0] != 0 {
		t.Fatalf("%+v %+v", a1, a2)
	}
	if a := admit(t, tb, slot); a.Allowed {
		t.Fatal("a third slot of two")
	}
	if tb.InFlight() != 2 {
		t.Errorf("in flight %d, want 2", tb.InFlight())
	}
	settle(t, tb, a1)
	settle(t, tb, a1) // once only
	if a := admit(t, tb, slot); !a.Allowed || a.Remaining[0] != 0 {
		t.Fatalf("a slot given back twice, or not at all: %+v", a)
	}
	if tb.InFlight() != 2 {
		t.Errorf("in flight %d, want 2", tb.InFlight())
	}
	if n := tb.Sweep(hour2); n != 0 {
		t.Errorf("swept %d counters with slots in use", n)
	}
	tb2 := NewTable()
	settle(t, tb2, admit(t, tb2, slot))
	if n := tb2.Sweep(hour0); n != 1 || tb2.Len() != 0 {
		t.Errorf("an idle in-flight counter stays: swept %d, %d left", n, tb2.Len())
	}
}

func TestAdmitBadCharges(t *testing.T) {
	tb := NewTable()
	for name, c := range map[string]Charge{
		"negative cost": window(Consumer, "a", "requests", 1, -1),
		"negative max":  window(Consumer, "a", "requests", -1, 1),
		"no kind":       window(0, "a", "requests", 1, 1),
		"no window":     {Kind: Consumer, Scope: "a", Meter: "requests", Max: 1, Cost: 1},
	} {
		if _, err := tb.Admit([]Charge{window(Consumer, "b", "requests", 5, 1), c}); !errors.Is(err, ErrBadCharge) {
			t.Errorf("%s: error %v", name, err)
		}
	}
	if tb.Len() != 0 {
		t.Errorf("a bad admission counted: %d counters", tb.Len())
	}
	if err := tb.Settle(admit(t, NewTable()), Settlement{}); err == nil {
		t.Error("settled another table's admission")
	}
}

func TestDuplicateCharges(t *testing.T) {
	tb := NewTable()
	c := window(Consumer, "a", "requests", 3, 2)
	if a := admit(t, tb, c, c); a.Allowed {
		t.Fatalf("4 of 3 let in: %+v", a)
	}
	if tb.Used(Consumer, "a", "requests", hour0) != 0 {
		t.Fatal("a refused admission kept its first take")
	}
	c.Cost = 1
	if a := admit(t, tb, c, c); !a.Allowed || !slices.Equal(a.Remaining, []int64{1, 1}) {
		t.Fatalf("%+v", a)
	}
}

// Many goroutines share a group's pool, each with its own consumer
// counter: exactly the pool's max gets in, and the in-flight cap holds at
// every moment.
func TestConcurrentExact(t *testing.T) {
	tb := NewTable()
	const workers, each, poolMax, slots = 16, 200, 1000, 3
	var allowed, inside, peak atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			charges := []Charge{
				window(Consumer, fmt.Sprint("c", w), "requests", each, 1),
				window(Group, "team", "requests", poolMax, 1),
				window(Credential, fmt.Sprint("k", w%3), "tokens", 1<<40, 10),
				inFlight(Group, "team", slots),
			}
			for range each {
				a, err := tb.Admit(charges)
				if err != nil {
					t.Error(err)
					return
				}
				if a.Allowed {
					allowed.Add(1)
					n := inside.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					runtime.Gosched()
					inside.Add(-1)
				}
				if err := tb.Settle(a, Settlement{Actual: []int64{-1, -1, 7}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	// A sweeper and a saver run meanwhile.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tb.Sweep(hour0)
			_, _ = tb.Snapshot(&bytes.Buffer{}, hour0)
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	if got := tb.Used(Group, "team", "requests", hour0); got != allowed.Load() || got > poolMax {
		t.Errorf("pool used %d, %d allowed, max %d", got, allowed.Load(), poolMax)
	}
	if p := peak.Load(); p > slots {
		t.Errorf("%d in flight at once, cap %d", p, slots)
	}
	if tb.InFlight() != 0 {
		t.Errorf("%d slots still taken", tb.InFlight())
	}
	var tokens int64
	for k := range 3 {
		tokens += tb.Used(Credential, fmt.Sprint("k", k), "tokens", hour0)
	}
	if tokens != 7*allowed.Load() {
		t.Errorf("tokens settled to %d, want %d", tokens, 7*allowed.Load())
	}
}

func TestAdmitSettleAllocs(t *testing.T) {
	tb := NewTable()
	charges := typicalCharges()
	settleAll := Settlement{Actual: []int64{-1, 1200, -1}}
	for range 10 {
		a, _ := tb.Admit(charges)
		_ = tb.Settle(a, settleAll)
	}
	const n = 1000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		a, _ := tb.Admit(charges)
		_ = tb.Settle(a, settleAll)
	}
	runtime.ReadMemStats(&after)
	if got := (after.Mallocs - before.Mallocs + n/2) / n; got != 0 {
		t.Errorf("%d allocations per admission and settlement, want 0", got)
	}
}

// typicalCharges are a request's: its credential's requests per hour, its
// consumer's token budget (a reservation), its consumer's in-flight cap.
func typicalCharges() []Charge {
	return []Charge{
		window(Credential, "alice-ci", "requests", 1<<40, 1),
		window(Consumer, "alice", "tokens", 1<<50, 4000),
		inFlight(Consumer, "alice", 1<<20),
	}
}

func TestSnapshotRestore(t *testing.T) {
	tb := NewTable()
	settle(t, tb, admit(t, tb, window(Consumer, "alice", "requests", 100, 7), window(Group, "g:1", "tokens", 1e6, 4000)))
	next := window(Credential, "k", "requests", 100, 3)
	next.Start, next.End = hour1, hour2
	settle(t, tb, admit(t, tb, next))
	held := admit(t, tb, inFlight(Consumer, "alice", 5))
	defer settle(t, tb, held)

	var buf bytes.Buffer
	n, err := tb.Snapshot(&buf, hour0.Add(time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("wrote %d counters (want 3: no in-flight), %v", n, err)
	}
	saved := buf.Bytes()

	back := NewTable()
	if n, err := back.Restore(bytes.NewReader(saved), hour0.Add(2*time.Minute)); err != nil || n != 3 {
		t.Fatalf("restored %d, %v", n, err)
	}
	for _, c := range []struct {
		kind         ScopeKind
		scope, meter string
		start        time.Time
		want         int64
	}{{Consumer, "alice", "requests", hour0, 7}, {Group, "g:1", "tokens", hour0, 4000}, {Credential, "k", "requests", hour1, 3}, {Consumer, "alice", InFlight, time.Time{}, 0}} {
		if got := back.Used(c.kind, c.scope, c.meter, c.start); got != c.want {
			t.Errorf("%s %s %s: %d, want %d", c.kind, c.scope, c.meter, got, c.want)
		}
	}
	// Restored counters go on counting, and end with their window.
	if a := admit(t, back, window(Consumer, "alice", "requests", 100, 1)); a.Remaining[0] != 92 {
		t.Errorf("remaining %d after a restore, want 92", a.Remaining[0])
	}
	if n := back.Sweep(hour1); n != 2 {
		t.Errorf("swept %d ended counters, want 2", n)
	}

	// After the hour, only the next hour's counter comes back.
	later := NewTable()
	if n, err := later.Restore(bytes.NewReader(saved), hour1); err != nil || n != 1 {
		t.Errorf("restored %d after the window ended, %v; want 1", n, err)
	}

	// A damaged snapshot changes nothing.
	for i := range saved {
		bad := slices.Clone(saved)
		bad[i] ^= 0x40
		tb := NewTable()
		if n, err := tb.Restore(bytes.NewReader(bad), hour0); !errors.Is(err, ErrBadSnapshot) || n != 0 || tb.Len() != 0 {
			t.Fatalf("byte %d flipped: restored %d, %v", i, n, err)
		}
	}
	for _, cut := range []int{0, 4, len(saved) - 1} {
		if _, err := NewTable().Restore(bytes.NewReader(saved[:cut]), hour0); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}

	// An empty table's snapshot is a valid one.
	buf.Reset()
	if n, err := NewTable().Snapshot(&buf, hour0); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	if n, err := NewTable().Restore(&buf, hour0); err != nil || n != 0 {
		t.Errorf("empty snapshot: %d, %v", n, err)
	}
}

func TestChanged(t *testing.T) {
	tb := NewTable()
	if tb.Changed() {
		t.Error("a new table changed")
	}
	a := admit(t, tb, window(Consumer, "a", "requests", 0, 1))
	if tb.Changed() {
		t.Error("a refused admission changed the table")
	}
	settle(t, tb, a)
	settle(t, tb, admit(t, tb, window(Consumer, "a", "requests", 1, 1)))
	if !tb.Changed() || tb.Changed() {
		t.Error("Changed does not report an admission once")
	}
}

// Sweeping a million ended counters gives their memory back, and an
// admission of no charge is allowed.
func TestSweepReclaims(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a table with 200,000 counters")
	}
	tb := NewTable()
	c := []Charge{window(Credential, "", "requests", 10, 1)}
	for i := range 200_000 {
		c[0].Scope = fmt.Sprint("k", i)
		settle(t, tb, admit(t, tb, c...))
	}
	var full, swept runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&full)
	if n := tb.Sweep(hour1); n != 200_000 || tb.Len() != 0 {
		t.Fatalf("swept %d, %d left", n, tb.Len())
	}
	runtime.GC()
	runtime.ReadMemStats(&swept)
	if swept.HeapAlloc > full.HeapAlloc/10 {
		t.Errorf("the heap is %d B after the sweep, %d B before", swept.HeapAlloc, full.HeapAlloc)
	}
	if a := admit(t, tb); !a.Allowed || len(a.Remaining) != 0 {
		t.Errorf("no charge: %+v", a)
	}
	runtime.KeepAlive(tb)
}
