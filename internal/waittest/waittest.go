// Package waittest waits in tests for a condition to hold, rather than
// for a time to pass: the packages whose tests watch something change in
// the background (a store saving, a cache dropping an entry) share it.
package waittest

import (
	"testing"
	"time"
)

// Patience is how long Until waits before it fails the test.
const Patience = 30 * time.Second

// Until polls cond every millisecond until it holds and returns how long
// that took; after Patience it fails the test, naming what it waited for.
func Until(tb testing.TB, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > Patience {
			tb.Fatalf("still waiting for %s after %s", what, Patience)
		}
		time.Sleep(time.Millisecond) // the polling pace, not a barrier
	}
	return time.Since(start)
}
