package integration

// The toolkit's waiting: on conditions, never on the clock. A wait gives
// up only after patience, long enough that a loaded machine under -race
// never reaches it while the condition is on its way; reaching it means
// the condition never came. See helpers_caddy_test.go for the map.

import (
	"bytes"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// patience is how long a wait lasts before the test fails.
const patience = time.Minute

// eventually waits until cond holds, checking it every 20ms, and fails the
// test if it still does not after patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", patience, what)
		}
		time.Sleep(20 * time.Millisecond) // polling pace, not a barrier
	}
}

// waitStatus waits until a live store at loc has a status for which cond
// holds, and returns that status.
func waitStatus(t testing.TB, loc, what string, cond func(sources.Status) bool) sources.Status {
	t.Helper()
	var st sources.Status
	eventually(t, what, func() bool {
		s := storeAt(t, loc)
		if s == nil {
			return false
		}
		st = s.Status()
		return cond(st)
	})
	return st
}

// goroutines is the number of goroutines once garbage is collected.
func goroutines() int {
	runtime.GC()
	return runtime.NumGoroutine()
}

// settleGoroutines waits until there are at most limit goroutines, up to
// patience, and returns the last count: the caller judges it.
func settleGoroutines(limit int) int {
	deadline := time.Now().Add(patience)
	for {
		n := goroutines()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond) // polling pace
	}
}

// noLeaks checks that loads reloads left at most three goroutines and
// three open files more than the g0 and f0 counted before them (the slack
// is the runtime's and Caddy's own, started once), waiting for each to
// settle.
func noLeaks(t *testing.T, g0, f0, loads int) {
	t.Helper()
	g := settleGoroutines(g0 + 3)
	var f int
	eventually(t, "open files back", func() bool {
		f = openFiles(t)
		return f <= f0+3
	})
	t.Logf("goroutines %d → %d, open files %d → %d", g0, g, f0, f)
	if g > g0+3 {
		t.Errorf("goroutines: %d after %d reloads, %d before\n%s", g, loads, g0, stacks())
	}
}

// stacks is every goroutine's stack.
func stacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutinesIn counts the goroutines with frame, a function as stack
// traces spell it (storePoll), on their stack.
func goroutinesIn(frame string) int {
	return bytes.Count(stacks(), []byte(frame))
}

// storePoll is a store's poller as stack traces spell it, with its
// package's path: a test that counts pollers by a name no frame has would
// count none, and pass or fail for nothing.
const storePoll = "/consumers/sources.(*Store).poll("

// pollers counts the running store pollers.
func pollers() int { return goroutinesIn(storePoll) }

// pollersOnTimer counts the pollers waiting for their next check (in a
// select on a timer and the store's end). The poller of a store that never
// checks (refresh 0) waits on the store's end alone, a channel receive.
func pollersOnTimer() int {
	n := 0
	for _, g := range bytes.Split(stacks(), []byte("\n\n")) {
		head, _, _ := bytes.Cut(g, []byte("\n"))
		if bytes.Contains(g, []byte(storePoll)) && bytes.Contains(head, []byte("[select")) {
			n++
		}
	}
	return n
}

// openFiles counts this process's open file descriptors.
func openFiles(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// heapInUse is the heap in use once garbage is collected.
func heapInUse() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
