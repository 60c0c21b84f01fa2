package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

// A key looked up while its slot was empty, then created after the slot
// moved to another master, is found: the answer cached as unknown does not
// outlive the slot's move (redis-rs #1642's fault). The master that gave the
// slot away tracked a key it never held, so it has nothing to invalidate,
// and the new owner never saw this instance read the key.
func TestRedisClusterUnknownAfterSlotMove(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redistest.Client(t, cl.Addrs()...)
	do := func(args ...string) {
		t.Helper()
		if err := c.Do(context.Background(), c.B().Arbitrary(args[0]).Keys(args[1]).Args(args[2:]...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	do("HSET", "keyauth:consumer:mover", "id", "mover")
	// The unknown answer is kept partition_timeout at most in a cluster.
	l := newTestLooker(t, Source{Options: Options{Addresses: cl.Addrs(), PartitionTimeout: caddy.Duration(300 * time.Millisecond)}})
	key := credKey("keyauth:", keyMark+"moved")
	// The unknown answer is cached unless an invalidation raced the
	// lookup (the client connecting to another master flushes the
	// tickets): ask again until it is.
	waittest.Until(t, "the unknown answer is cached", func() bool {
		if _, ok := mustLookup(t, l, "moved"); ok {
			t.Fatal("the key is found before it exists")
		}
		_, unknown, _ := l.cache.size()
		return unknown == 1
	})
	slot := cl.KeySlot(t, key)
	from := cl.SlotOwner(t, slot)
	to := (from + 1) % len(cl.Nodes)
	cl.MoveSlot(t, slot, to)
	do("HSET", key, "consumer", "mover", "id", "mover-key")
	if n := cl.KeyNode(t, key); n != to {
		t.Fatalf("the key was written on node %d, want the new owner %d", n, to)
	}
	took := waittest.Until(t, "the key created on the slot's new owner is found", func() bool {
		_, ok := mustLookup(t, l, "moved")
		return ok
	})
	t.Logf("found %v after its creation on the new owner", took)

	// The same for a consumer looked up by name (the anonymous one): an
	// answer that rests on an absent hash.
	guest := "keyauth:consumer:guest"
	if _, ok, err := l.Consumer(context.Background(), "guest"); ok || err != nil {
		t.Fatalf("guest found before it exists: %v", err)
	}
	gslot := cl.KeySlot(t, guest)
	cl.MoveSlot(t, gslot, (cl.SlotOwner(t, gslot)+1)%len(cl.Nodes))
	do("HSET", guest, "id", "anon")
	waittest.Until(t, "the consumer created on the slot's new owner is found", func() bool {
		_, ok, _ := l.Consumer(context.Background(), "guest")
		return ok
	})
}

// In a standalone Redis an unknown answer has no expiry: tracking covers
// every key; in a cluster it expires after partition_timeout, by the
// cache's clock.
func TestLookupCacheAbsentTTL(t *testing.T) {
	c := newLookupCache(1 << 20)
	var now int64 = 1000
	c.now = func() int64 { return now }
	unknownKey, knownKey := digestOf(keyMark+"u"), digestOf(keyMark+"k")
	c.put(unknownKey, &cacheEntry{}, c.ticket("u"), "", ticket{})
	c.put(knownKey, &cacheEntry{found: true}, c.ticket("k"), "", ticket{})
	now += int64(time.Hour)
	if c.get(unknownKey) == nil || c.get(knownKey) == nil {
		t.Fatal("standalone: an answer expired")
	}
	c.absentTTL.Store(int64(time.Second))
	c.put(unknownKey, &cacheEntry{}, c.ticket("u"), "", ticket{})
	c.put(knownKey, &cacheEntry{found: true}, c.ticket("k"), "", ticket{})
	c.putConsumer("guest", &consumerEntry{absent: true}, nil)
	c.putConsumer("alice", &consumerEntry{found: true}, nil)
	now += int64(time.Second) - 1
	if c.get(unknownKey) == nil || c.getConsumer("guest") == nil {
		t.Fatal("cluster: an unknown answer expired before its time")
	}
	now++
	if c.get(unknownKey) != nil || c.getConsumer("guest") != nil {
		t.Error("cluster: an unknown answer outlived absentTTL")
	}
	if c.get(knownKey) == nil || c.getConsumer("alice") == nil {
		t.Error("cluster: a known answer expired")
	}
}

// Refresh (POST /key_auth/sources/refresh) empties the cache.
func TestRedisRefreshEmptiesCache(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	seed(t, do, "keyauth:")
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	mustLookup(t, l, "alice-1")
	mustLookup(t, l, "nobody")
	if k, u, _ := l.cache.size(); k != 1 || u != 1 {
		t.Fatalf("%d known and %d unknown entries cached, want 1 and 1", k, u)
	}
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k, u, b := l.cache.size(); k != 0 || u != 0 || b != 0 {
		t.Errorf("after a refresh: %d known and %d unknown entries, %d bytes", k, u, b)
	}
	if _, ok := mustLookup(t, l, "alice-1"); !ok {
		t.Error("alice not found after a refresh")
	}
}

// In a cluster, a key's group hashes live in other slots than its own: they
// are read in one pipeline across masters, and a group hash created for a
// group that had none (an answer resting on an absent hash) is seen within
// partition_timeout.
func TestRedisClusterGroups(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redistest.Client(t, cl.Addrs()...)
	do := func(args ...string) {
		t.Helper()
		if err := c.Do(context.Background(), c.B().Arbitrary(args[0]).Keys(args[1]).Args(args[2:]...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	groups := []string{"g0", "g1", "g2", "g3", "g4", "g5"}
	nodes := map[int]bool{}
	for i, g := range groups[:5] {
		do("HSET", "keyauth:group:"+g, "member_limits", fmt.Sprintf(`{"m%d": {"max": %d, "per": "day"}}`, i, i+1))
		nodes[cl.KeyNode(t, "keyauth:group:"+g)] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("the group hashes are all on one node")
	}
	do("HSET", "keyauth:consumer:alice", "groups", strings.Join(groups, ","))
	do("HSET", credKey("keyauth:", keyMark+"alice"), "consumer", "alice", "id", "alice-1")
	l := newTestLooker(t, Source{Options: Options{Addresses: cl.Addrs(), PartitionTimeout: caddy.Duration(300 * time.Millisecond)}})
	want := "consumer alice m0 1 day; consumer alice m1 2 day; consumer alice m2 3 day; consumer alice m3 4 day; consumer alice m4 5 day; "
	cred, ok := mustLookup(t, l, "alice")
	if got := effective(cred.EachLimit); !ok || got != want {
		t.Fatalf("alice: %v %s, want %s", ok, got, want)
	}
	do("HSET", "keyauth:group:g5", "member_limits", `{"m5": {"max": 6, "per": "day"}}`)
	waittest.Until(t, "g5 created", func() bool {
		cred, ok := mustLookup(t, l, "alice")
		return ok && effective(cred.EachLimit) == want+"consumer alice m5 6 day; "
	})
}
