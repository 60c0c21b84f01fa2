package limits

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// go test -run '^$' -bench . -benchmem ./consumers/limits
//
// BenchmarkAdmitSettle is what the local store adds to a request (target:
// at most 0.5 µs, no allocation); BenchmarkCounterMemory the memory of a
// million active counters (target: at most 200 B each).

func BenchmarkAdmitSettle(b *testing.B) {
	all := typicalCharges()
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("charges=%d", n), func(b *testing.B) {
			tb := NewTable()
			charges := all[:n]
			s := Settlement{Actual: []int64{-1, 1200, -1}}
			b.ReportAllocs()
			for b.Loop() {
				a, _ := tb.Admit(charges)
				_ = tb.Settle(a, s)
			}
		})
	}
	// Every goroutine its own credential and consumer, all in one group's
	// pool: the locks of one shard are shared.
	b.Run("charges=3/parallel", func(b *testing.B) {
		tb := NewTable()
		var ids atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			id := ids.Add(1)
			charges := []Charge{
				window(Credential, "k"+strconv.FormatInt(id, 10), "requests", 1<<40, 1),
				window(Consumer, "c"+strconv.FormatInt(id, 10), "tokens", 1<<50, 4000),
				window(Group, "team", "requests", 1<<50, 1),
			}
			s := Settlement{Actual: []int64{-1, 1200}}
			for pb.Next() {
				a, _ := tb.Admit(charges)
				_ = tb.Settle(a, s)
			}
		})
	})
}

// BenchmarkCounterMemory fills a table with a million counters of a million
// credentials (an hour's requests each) and reports the heap they hold,
// their scope names included, and the time to snapshot them.
func BenchmarkCounterMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		scopes := make([]string, n)
		for i := range scopes {
			scopes[i] = "cred-" + strconv.Itoa(i)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := NewTable()
		c := []Charge{window(Credential, "", "requests", 1000, 1)}
		for i := range n {
			c[0].Scope = scopes[i]
			a, _ := tb.Admit(c)
			_ = tb.Settle(a, Settlement{})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// A counter holds its own copy of its scope and meter names:
		// counted here.
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/counter")

		var buf bytes.Buffer
		start := time.Now()
		if _, err := tb.Snapshot(&buf, hour0); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/snapshot")
		b.ReportMetric(float64(buf.Len())/n, "file-B/counter")
		start = time.Now()
		if _, err := NewTable().Restore(&buf, hour0); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/restore")
		runtime.KeepAlive(tb)
		runtime.KeepAlive(scopes)
	}
}
