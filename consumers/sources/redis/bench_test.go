package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

const benchKeys = 10000

func benchDigests() []consumers.Digest {
	ds := make([]consumers.Digest, benchKeys)
	for i := range ds {
		ds[i] = *digestOf(fmt.Sprintf("%sbench-%d", keyMark, i))
	}
	return ds
}

// BenchmarkLookup compares a cached Redis lookup with the file source's
// lookup in a whole Set, on the same 10,000 keys: the difference is what
// the Redis source adds to the handler on a cache hit.
func BenchmarkLookup(b *testing.B) {
	ds := benchDigests()
	var doc strings.Builder
	doc.WriteString(`{"consumers":[{"username":"alice","id":"a11ce","custom_id":"c1","tags":["t"],"keys":[`)
	for i := range ds {
		if i > 0 {
			doc.WriteByte(',')
		}
		fmt.Fprintf(&doc, `{"id":"k%d","key":"%sbench-%d"}`, i, keyMark, i)
	}
	doc.WriteString(`]}]}`)
	set, err := consumers.Parse([]byte(doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("file", func(b *testing.B) {
		var n int
		for i := 0; b.Loop(); i++ {
			if _, ok := set.Lookup(&ds[i%benchKeys]); ok {
				n++
			}
		}
		if n == 0 {
			b.Fatal("nothing found")
		}
	})

	srv := redistest.Start(b)
	c := redistest.Client(b, srv.Addr())
	redistest.Do(b, c, "HSET", "keyauth:consumer:alice", "id", "a11ce", "custom_id", "c1", "tags", "t")
	for i := range ds {
		redistest.Do(b, c, "HSET", fmt.Sprintf("keyauth:cred:%x", ds[i]), "consumer", "alice", "id", "k"+strconv.Itoa(i))
	}
	l := newTestLooker(b, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	ctx := context.Background()
	for i := range ds {
		if _, ok, err := l.Lookup(ctx, ds[i]); !ok || err != nil {
			b.Fatalf("warming key %d: %v %v", i, ok, err)
		}
	}
	b.Run("redis-cached", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok, _ := l.Lookup(ctx, ds[i%benchKeys]); !ok {
				b.Fatal("not found")
			}
		}
	})
	b.Run("redis-cached-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if _, ok, _ := l.Lookup(ctx, ds[i%benchKeys]); !ok {
					b.Fatal("not found")
				}
			}
		})
	})
	b.Run("file-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if _, ok := set.Lookup(&ds[i%benchKeys]); !ok {
					b.Fatal("not found")
				}
			}
		})
	})
	if st := l.lookupStatus(); st.Misses != benchKeys {
		b.Fatalf("%d lookups asked Redis, want %d", st.Misses, benchKeys)
	}
}

// BenchmarkRedisUnknownFlood is a flood of random keys: each asks Redis
// once (a round trip) and is cached in the unknown budget. It reports what
// a flooding request costs Caddy (ns/op, B/op) and Redis (its CPU time per
// request, from INFO).
func BenchmarkRedisUnknownFlood(b *testing.B) {
	srv := redistest.Start(b)
	c := redistest.Client(b, srv.Addr())
	l := newTestLooker(b, Source{Options: Options{Addresses: []string{srv.Addr()}}, Cache: 8 << 20})
	ctx := context.Background()
	cpu0 := redisCPU(b, c)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var d consumers.Digest
		for pb.Next() {
			_, _ = rand.Read(d[:])
			if _, ok, err := l.Lookup(ctx, d); ok || err != nil {
				b.Fatalf("a random key: found %v, %v", ok, err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric((redisCPU(b, c)-cpu0)*1e9/float64(b.N), "redis-cpu-ns/op")
	_, unknownN, bytes := l.cache.size()
	b.ReportMetric(float64(unknownN), "unknown-entries")
	b.ReportMetric(float64(bytes), "cache-bytes")
}

// redisCPU is the CPU time the server has used, in seconds.
func redisCPU(b *testing.B, c rueidis.Client) float64 {
	info, err := c.Do(context.Background(), c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_cpu_sys:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		} else if v, ok := strings.CutPrefix(line, "used_cpu_user:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

// BenchmarkRedisRevocation measures, for 100 keys revoked one by one by a
// DEL (then 100 consumers deleted), the time from the DEL returning until
// two instances (two clients with their own caches and connections, as two
// Caddy processes have) no longer serve the key from their caches, while
// both look up a working set of keys as fast as they can. It reports p50
// and p99.
func BenchmarkRedisRevocation(b *testing.B) {
	srv := redistest.Start(b)
	c := redistest.Client(b, srv.Addr())
	ctx := context.Background()
	const n = 100
	for i := range n {
		redistest.Do(b, c, "HSET", fmt.Sprint("keyauth:consumer:u", i), "id", fmt.Sprint("u", i))
		redistest.Do(b, c, "HSET", credKey("keyauth:", fmt.Sprint(keyMark, "rv-", i)), "consumer", fmt.Sprint("u", i), "id", fmt.Sprint("k", i))
		redistest.Do(b, c, "HSET", credKey("keyauth:", fmt.Sprint(keyMark, "rc-", i)), "consumer", fmt.Sprint("u", i), "id", fmt.Sprint("c", i))
	}
	inst := []testLooker{
		newTestLooker(b, Source{Options: Options{Addresses: []string{srv.Addr()}}}),
		newTestLooker(b, Source{Options: Options{Addresses: []string{srv.Addr()}}}),
	}
	for _, l := range inst {
		for i := range n {
			for _, k := range []string{"rv-", "rc-"} {
				if _, ok, err := l.Lookup(ctx, *digestOf(fmt.Sprint(keyMark, k, i))); !ok || err != nil {
					b.Fatalf("warming: %v %v", ok, err)
				}
			}
		}
	}
	// Load: each instance looks its cached keys up in a loop.
	stop := make(chan struct{})
	defer close(stop)
	for _, l := range inst {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _, _ = l.Lookup(ctx, *digestOf(fmt.Sprint(keyMark, "rv-", i%n)))
				if i%1000 == 0 {
					// A server's goroutines block on the network now and
					// then, which lets the scheduler poll it; goroutines
					// that never block would starve the client's reader
					// until sysmon polls (every 10ms).
					time.Sleep(time.Microsecond)
				}
			}
		}()
	}
	measure := func(what string, del func(i int), key func(i int) string) {
		var took []time.Duration
		for i := range n {
			d := digestOf(key(i))
			del(i)
			start := time.Now()
			for _, l := range inst {
				// Gone, or replaced by an unknown answer the load fetched.
				for e := l.cache.get(d); e != nil && e.found; e = l.cache.get(d) {
					runtime.Gosched()
				}
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[n/2])/1e3, what+"-p50-µs")
		b.ReportMetric(float64(took[n*99/100])/1e3, what+"-p99-µs")
	}
	for b.Loop() {
	}
	measure("del-key", func(i int) { redistest.Do(b, c, "DEL", credKey("keyauth:", fmt.Sprint(keyMark, "rv-", i))) },
		func(i int) string { return fmt.Sprint(keyMark, "rv-", i) })
	measure("del-consumer", func(i int) { redistest.Do(b, c, "DEL", fmt.Sprint("keyauth:consumer:u", i)) },
		func(i int) string { return fmt.Sprint(keyMark, "rc-", i) })
}
