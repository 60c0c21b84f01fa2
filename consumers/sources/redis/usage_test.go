package redis

import (
	"context"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

// The fleet's last use: each instance records its requests, writes them
// into the last-used hash (the later minute wins, whoever writes last),
// reads the others' with a lookup and again at each write; a new instance
// (a restart) reads it from Redis; writing it invalidates no cached answer.
func TestRedisLastUsed(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	ctx := context.Background()
	do := redisDo(t, srv.Addr())
	seed(t, do, "keyauth:")
	a := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	b := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	// In the 2040s: the minute the instances' clocks move on to is earlier,
	// and never replaces it.
	const base = sources.Minute(40_000_000)
	lastUsed := func() map[string]string { return hashOf(t, c, "keyauth:last-used") }

	credA, ok := mustLookup(t, a, "alice-1")
	if !ok {
		t.Fatal("alice-1 not found")
	}
	if m := a.LastUsed(credA); m != 0 {
		t.Fatalf("alice-1 never used, yet LastUsed = %d", m)
	}
	a.usage.minute.Store(base)
	a.Use(credA)
	if m := a.LastUsed(credA); m != base {
		t.Errorf("LastUsed after a use = %d, want %d", m, base)
	}
	entry := a.cache.get(digestOf(keyMark + "alice-1"))
	if err := a.writeUse(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); got["alice-key-1"] != strconv.Itoa(int(base)) || len(got) != 1 {
		t.Errorf("last-used after a's write: %v", got)
	}
	// No cached answer is dropped by the write: tracking never hears of
	// the last-used hash.
	if _, ok := mustLookup(t, a, "alice-1"); !ok || a.cache.get(digestOf(keyMark+"alice-1")) != entry {
		t.Error("writing the last use dropped the cached answer")
	}

	// b reads it with its lookup.
	credB, ok := mustLookup(t, b, "alice-1")
	if !ok {
		t.Fatal("alice-1 not found by b")
	}
	if m := b.LastUsed(credB); m != base {
		t.Errorf("b's LastUsed = %d, want a's %d", m, base)
	}
	// b uses it later; a, whose own record is older, writes again: the
	// later minute stays, and a learns it.
	b.usage.minute.Store(base + 10)
	b.Use(credB)
	if err := b.writeUse(ctx); err != nil {
		t.Fatal(err)
	}
	a.usage.minute.Store(base + 5)
	a.Use(credA)
	if err := a.writeUse(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed()["alice-key-1"]; got != strconv.Itoa(int(base+10)) {
		t.Errorf("last-used after an older write: %s, want %d", got, base+10)
	}
	if m := a.LastUsed(credA); m != base+10 {
		t.Errorf("a's LastUsed after its write = %d, want the fleet's %d", m, base+10)
	}
	// Read again at each write: a learns of a use b wrote after.
	b.usage.minute.Store(base + 20)
	b.Use(credB)
	if err := b.writeUse(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.writeUse(ctx); err != nil {
		t.Fatal(err)
	}
	if m := a.LastUsed(credA); m != base+20 {
		t.Errorf("a's LastUsed = %d, want b's %d", m, base+20)
	}

	// A use in an entry that leaves the cache (its hash changed) is
	// written still.
	credBob, _ := mustLookup(t, a, "bob-1")
	a.usage.minute.Store(base + 30)
	a.Use(credBob)
	do("HSET", credKey("keyauth:", keyMark+"bob-1"), "disabled", "false")
	waittest.Until(t, "bob-1's entry dropped", func() bool { return a.cache.get(digestOf(keyMark+"bob-1")) == nil })
	if err := a.writeUse(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed()["bob-key-1"]; got != strconv.Itoa(int(base+30)) {
		t.Errorf("bob-key-1's use, recorded before its entry left the cache: %q", got)
	}

	// A new instance reads the fleet's, and the Writer's LastUsed too.
	fresh := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	if cred, ok := mustLookup(t, fresh, "alice-1"); !ok || fresh.LastUsed(cred) != base+20 {
		t.Errorf("a new instance: LastUsed %d, want %d", fresh.LastUsed(cred), base+20)
	}
	got, err := fresh.lastUsedOf(ctx, []string{"alice-key-1", "nobody", "bob-key-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{sources.MinuteTime(base + 20), {}, sources.MinuteTime(base + 30)}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("lastUsedOf[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// An instance whose record is not written yet when its source goes writes
// it then.
func TestRedisLastUsedAtDestruct(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	seed(t, redisDo(t, srv.Addr()), "keyauth:")
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	cred, _ := mustLookup(t, l, "alice-1")
	l.Use(cred)
	m := l.usage.minute.Load()
	if err := l.Destruct(); err != nil {
		t.Fatal(err)
	}
	if got := hashOf(t, c, "keyauth:last-used")["alice-key-1"]; got != strconv.Itoa(int(m)) {
		t.Errorf("last-used after the source went: %q, want %d", got, m)
	}
}

// Use and LastUsed are on every request: no allocation.
func TestRedisUseAllocs(t *testing.T) {
	srv := redistest.Start(t)
	seed(t, redisDo(t, srv.Addr()), "keyauth:")
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	cred, _ := mustLookup(t, l, "alice-1")
	var other consumers.Credential
	if n := testing.AllocsPerRun(1000, func() {
		l.Use(cred)
		_ = l.LastUsed(cred)
		l.Use(other) // not cached: nothing recorded
	}); n != 0 {
		t.Errorf("%v allocations per use", n)
	}
}

// BenchmarkRedisUse is what recording a use costs a request (Use), and
// reading it for max_idle (LastUsed), on a cached credential: a lock-free
// map read each.
func BenchmarkRedisUse(b *testing.B) {
	srv := redistest.Start(b)
	c := redistest.Client(b, srv.Addr())
	redistest.Do(b, c, "HSET", "keyauth:consumer:alice", "id", "a11ce")
	ds := benchDigests()[:1000]
	for i := range ds {
		redistest.Do(b, c, "HSET", "keyauth:cred:"+hexOf(ds[i]), "consumer", "alice", "id", "k"+strconv.Itoa(i))
	}
	l := newTestLooker(b, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	creds := make([]consumers.Credential, len(ds))
	for i := range ds {
		cred, ok, err := l.Lookup(context.Background(), ds[i])
		if !ok || err != nil {
			b.Fatalf("warming key %d: %v %v", i, ok, err)
		}
		creds[i] = cred
	}
	b.Run("use", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			l.Use(creds[i%len(creds)])
		}
	})
	b.Run("use+last_used", func(b *testing.B) {
		b.ReportAllocs()
		var n uint32
		for i := 0; b.Loop(); i++ {
			l.Use(creds[i%len(creds)])
			n += l.LastUsed(creds[i%len(creds)])
		}
		if n == 0 {
			b.Fatal("no use recorded")
		}
	})
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_, _, _ = l.Lookup(context.Background(), ds[i%len(ds)])
		}
	})
}

func hexOf(d consumers.Digest) string { return hex.EncodeToString(d[:]) }
