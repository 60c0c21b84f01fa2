package limits

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

// admitted counts how many of n admissions of c the table lets in.
func admitted(t *testing.T, tb *Table, c Charge, n int) int {
	t.Helper()
	ok := 0
	for range n {
		a := admit(t, tb, c)
		if a.Allowed {
			ok++
		}
		settle(t, tb, a)
	}
	return ok
}

func TestResetAndTopUp(t *testing.T) {
	tb := NewTable()
	q := window(Consumer, "alice", "requests", 3, 1)
	if got := admitted(t, tb, q, 5); got != 3 {
		t.Fatalf("a quota of 3 let %d in", got)
	}
	used, err := tb.TopUp(q, 2)
	if err != nil || used != 1 {
		t.Fatalf("top-up of 2 on a used-up 3: usage %d, %v", used, err)
	}
	if got := admitted(t, tb, q, 5); got != 2 {
		t.Fatalf("a top-up of 2 let %d more in", got)
	}
	if err := tb.Reset(q); err != nil {
		t.Fatal(err)
	}
	if u := tb.Used(q.Kind, q.Scope, q.Meter, q.Start); u != 0 {
		t.Fatalf("usage after reset: %d", u)
	}
	if got := admitted(t, tb, q, 5); got != 3 {
		t.Fatalf("after a reset, a quota of 3 let %d in", got)
	}

	// A top-up beyond the usage takes it below zero: the room left
	// exceeds the max for this window.
	fresh := window(Credential, "bob-ci", "requests", 3, 1)
	if used, err := tb.TopUp(fresh, 4); err != nil || used != -4 {
		t.Fatalf("top-up of a counter never used: usage %d, %v", used, err)
	}
	a := admit(t, tb, fresh)
	if !a.Allowed || a.Remaining[0] != 6 {
		t.Fatalf("after a top-up of 4, a max of 3: %+v", a)
	}
	settle(t, tb, a)
	if got := admitted(t, tb, fresh, 10); got != 6 {
		t.Fatalf("a max of 3 topped up by 4 let %d in, want 7 in all", got+1)
	}
	// The next window starts from zero.
	next := fresh
	next.Start, next.End = hour1, hour2
	if got := admitted(t, tb, next, 10); got != 3 {
		t.Fatalf("the next window let %d in", got)
	}
	// Resetting a counter the table does not hold makes none.
	n := tb.Len()
	if err := tb.Reset(window(Group, "nobody", "requests", 1, 1)); err != nil || tb.Len() != n {
		t.Fatalf("reset of an absent counter: %v, %d counters (was %d)", err, tb.Len(), n)
	}
}

func TestResetRefusesInFlight(t *testing.T) {
	tb := NewTable()
	c := inFlight(Consumer, "alice", 2)
	if err := tb.Reset(c); !errors.Is(err, ErrInFlight) {
		t.Fatalf("reset of in_flight: %v", err)
	}
	if _, err := tb.TopUp(c, 1); !errors.Is(err, ErrInFlight) {
		t.Fatalf("top-up of in_flight: %v", err)
	}
	if _, err := tb.TopUp(window(Consumer, "alice", "requests", 1, 1), 0); !errors.Is(err, ErrBadCharge) {
		t.Fatalf("top-up of 0: %v", err)
	}
}

// A reservation settled after a reset gives nothing back below zero, and
// one settled on a topped-up counter keeps the top-up.
func TestSettleAfterResetAndTopUp(t *testing.T) {
	tb := NewTable()
	q := window(Consumer, "alice", "tokens", 100, 50)
	a := admit(t, tb, q)
	if err := tb.Reset(q); err != nil {
		t.Fatal(err)
	}
	settle(t, tb, a, 10) // gives back 40 of a count the reset cleared
	if u := tb.Used(q.Kind, q.Scope, q.Meter, q.Start); u != 0 {
		t.Fatalf("a settlement after a reset left usage %d, want 0", u)
	}
	if _, err := tb.TopUp(q, 30); err != nil {
		t.Fatal(err)
	}
	a = admit(t, tb, q) // -30 + 50 = 20
	settle(t, tb, a, 40)
	if u := tb.Used(q.Kind, q.Scope, q.Meter, q.Start); u != 10 {
		t.Fatalf("usage %d, want -30 + 40 = 10", u)
	}
}

func TestTopUpSnapshot(t *testing.T) {
	tb := NewTable()
	q := window(Consumer, "alice", "requests", 3, 1)
	if _, err := tb.TopUp(q, 5); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if n, err := tb.Snapshot(&b, hour0); err != nil || n != 1 {
		t.Fatalf("snapshot: %d, %v", n, err)
	}
	back := NewTable()
	if _, err := back.Restore(&b, hour0); err != nil {
		t.Fatal(err)
	}
	if u := back.Used(q.Kind, q.Scope, q.Meter, q.Start); u != -5 {
		t.Fatalf("restored usage %d, want -5", u)
	}
}

// Resets and top-ups race admissions and settlements of the same counters
// (go test -race): each top-up gives exactly its room, whatever runs
// beside it.
func TestUsageConcurrent(t *testing.T) {
	tb := NewTable()
	q := window(Group, "acme", "requests", 100, 1)
	cred := window(Credential, "acme-ci", "requests", 1<<40, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 4 {
		wg.Go(func() {
			for range 200 {
				a, err := tb.Admit([]Charge{cred, q})
				if err != nil {
					t.Error(err)
					return
				}
				if a.Allowed {
					mu.Lock()
					ok++
					mu.Unlock()
				}
				_ = tb.Settle(a, Settlement{})
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 50 {
				if _, err := tb.TopUp(q, 1); err != nil {
					t.Error(err)
				}
				_ = tb.Used(q.Kind, q.Scope, q.Meter, q.Start)
			}
		})
	}
	wg.Wait()
	// What the admissions left of the room, the top-ups that came last
	// among it.
	ok += admitted(t, tb, q, 300)
	if ok != 200 {
		t.Fatalf("a pool of 100 topped up by 100 let %d in, want 200", ok)
	}
	if err := tb.Reset(q); err != nil {
		t.Fatal(err)
	}
	if got := admitted(t, tb, q, 150); got != 100 {
		t.Fatalf("after a reset the pool let %d in", got)
	}
}
