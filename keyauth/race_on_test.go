//go:build race

package keyauth

// raceEnabled: under the race detector sync.Pool drops what it is given at
// random, so counts of allocations that rest on a pool do not hold.
const raceEnabled = true
