package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

type testLooker struct {
	*looker
	logs *observer.ObservedLogs
}

// newTestLooker connects a Redis source's looker, as a running Caddy does,
// and waits until it is connected.
func newTestLooker(t testing.TB, cfg Source) testLooker {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Cache == 0 {
		cfg.Cache = DefaultCache
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = caddy.Duration(DefaultTimeout)
	}
	if cfg.PartitionTimeout == 0 {
		cfg.PartitionTimeout = caddy.Duration(DefaultPartitionTimeout)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l := newLooker(&cfg, cfg.Password, nil)
	core, logs := observer.New(zap.DebugLevel)
	l.metrics = newLookupMetrics("redis test " + t.Name())
	l.Start(zap.New(core))
	t.Cleanup(func() {
		_ = l.Destruct()
		for _, e := range logs.All() {
			if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), keyMark) {
				t.Errorf("a log line holds key material: %s %v", e.Message, e.ContextMap())
			}
		}
	})
	for l.client.Load() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	return testLooker{l, logs}
}

func credKey(prefix, key string) string {
	return prefix + "cred:" + hex.EncodeToString(digestOf(key)[:])
}

// seed writes alice (two keys) and bob (one) under prefix.
func seed(t *testing.T, do func(...string) rueidisResult, prefix string) {
	do("HSET", prefix+"consumer:alice", "id", "a11ce", "custom_id", "cust-1", "tags", "staff, ops",
		"groups", "gold,partner", "labels", `{"plan":"gold","backend":"10.0.0.7:8080"}`)
	do("HSET", credKey(prefix, keyMark+"alice-1"), "consumer", "alice", "id", "alice-key-1")
	do("HSET", credKey(prefix, keyMark+"alice-2"), "consumer", "alice", "id", "alice-key-2", "expires_at", "2020-01-01T00:00:00Z")
	// A hash needs a field to exist: bob has an empty one, and the
	// defaults.
	do("HSET", prefix+"consumer:bob", "custom_id", "")
	do("HSET", credKey(prefix, keyMark+"bob-1"), "consumer", "bob", "id", "bob-key-1")
}

type rueidisResult = interface{ Error() error }

func redisDo(t *testing.T, addr string) func(...string) rueidisResult {
	c := redistest.Client(t, addr)
	return func(args ...string) rueidisResult { return redistest.Do(t, c, args...) }
}

func mustLookup(t *testing.T, l testLooker, key string) (consumers.Credential, bool) {
	t.Helper()
	cred, ok, err := l.Lookup(context.Background(), *digestOf(keyMark + key))
	if err != nil {
		t.Fatalf("lookup of %s: %v", key, err)
	}
	return cred, ok
}

func TestRedisLookup(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	seed(t, do, "keyauth:")
	// Refused data: each is an unknown key.
	do("HSET", credKey("keyauth:", keyMark+"no-id"), "consumer", "alice")
	do("HSET", credKey("keyauth:", keyMark+"no-consumer"), "id", "orphan")
	do("HSET", credKey("keyauth:", keyMark+"ghost"), "consumer", "ghost", "id", "ghost-key")
	do("HSET", credKey("keyauth:", keyMark+"disabled"), "consumer", "alice", "id", "alice-off", "disabled", "true")
	do("HSET", "keyauth:consumer:carol", "disabled", "true")
	do("HSET", credKey("keyauth:", keyMark+"carol"), "consumer", "carol", "id", "carol-key")
	do("HSET", "keyauth:consumer:dave", "labels", "not json")
	do("HSET", credKey("keyauth:", keyMark+"dave"), "consumer", "dave", "id", "dave-key")

	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	for round := range 2 { // the second round is answered from the cache
		cred, ok := mustLookup(t, l, "alice-1")
		if !ok {
			t.Fatalf("round %d: alice's key not found", round)
		}
		c := cred.Consumer()
		if cred.ID() != "alice-key-1" || c.Username() != "alice" || c.ID() != "a11ce" || c.CustomID() != "cust-1" ||
			c.TagsJoined() != "staff, ops" || c.GroupsHeader() != "gold, partner" {
			t.Errorf("round %d: alice is %q %q %q %q %q %q", round, cred.ID(), c.Username(), c.ID(), c.CustomID(), c.TagsJoined(), c.GroupsHeader())
		}
		if v, _ := c.Label("backend"); v != "10.0.0.7:8080" {
			t.Errorf("label backend = %q", v)
		}
		if cred.Expires() {
			t.Error("alice-1 expires")
		}
		exp, ok := mustLookup(t, l, "alice-2")
		if !ok || !exp.ExpiredAt(time.Now()) {
			t.Errorf("alice-2: found %v, expired %v", ok, ok && exp.ExpiredAt(time.Now()))
		}
		bob, ok := mustLookup(t, l, "bob-1")
		if !ok || bob.Consumer().ID() != "bob" {
			t.Errorf("bob: found %v; his id defaults to his username", ok)
		}
		for _, k := range []string{"unknown", "no-id", "no-consumer", "ghost", "disabled", "carol", "dave"} {
			if _, ok := mustLookup(t, l, k); ok {
				t.Errorf("round %d: %s found, want unknown", round, k)
			}
		}
	}
	st := l.lookupStatus()
	if st.Misses != 10 || st.Hits != 10 || !st.Connected || st.CacheEntries != 3 || st.UnknownEntries != 7 {
		t.Errorf("status %+v, want 10 misses and 10 hits, 3 known and 7 unknown entries", st)
	}
	// A refused hash is logged once, by credential id or digest prefix.
	if n := l.logs.FilterLevelExact(zap.WarnLevel).Len(); n != 3 {
		t.Errorf("%d lines about refused hashes, want 3 (no-id, no-consumer, dave): %v", n, l.logs.All())
	}
}

func TestRedisRevocation(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	seed(t, do, "p:")
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}, Prefix: "p:"}})
	for _, k := range []string{"alice-1", "alice-2", "bob-1"} {
		if _, ok := mustLookup(t, l, k); !ok {
			t.Fatalf("%s not found", k)
		}
	}
	cached := func(key string) bool { return l.cache.get(digestOf(keyMark+key)) != nil }
	if !cached("alice-1") || !cached("bob-1") {
		t.Fatal("answers not cached")
	}

	// One DEL revokes a key: Redis's invalidation drops the cached answer,
	// with no lookup and no TTL involved.
	do("DEL", credKey("p:", keyMark+"bob-1"))
	took := waittest.Until(t, "bob's key dropped from the cache", func() bool { return !cached("bob-1") })
	t.Logf("a DEL reached the cache in %v", took)
	if _, ok := mustLookup(t, l, "bob-1"); ok {
		t.Error("bob's revoked key still found")
	}
	if !cached("alice-1") {
		t.Error("alice's key was dropped by bob's revocation")
	}

	// Deleting a consumer revokes all its keys.
	do("DEL", "p:consumer:alice")
	waittest.Until(t, "alice's keys dropped", func() bool { return !cached("alice-1") && !cached("alice-2") })
	if _, ok := mustLookup(t, l, "alice-1"); ok {
		t.Error("a key of a deleted consumer still found")
	}

	// A cached unknown answer goes when the key is created.
	if _, ok := mustLookup(t, l, "new"); ok {
		t.Fatal("new key found before it exists")
	}
	do("HSET", "p:consumer:erin", "id", "erin")
	do("HSET", credKey("p:", keyMark+"new"), "consumer", "erin", "id", "erin-key")
	waittest.Until(t, "the unknown answer dropped", func() bool { return !cached("new") })
	if _, ok := mustLookup(t, l, "new"); !ok {
		t.Error("a key created after an unknown answer is not found")
	}
	// Disabling the consumer revokes too.
	do("HSET", "p:consumer:erin", "disabled", "true")
	waittest.Until(t, "erin's key dropped", func() bool { return !cached("new") })
	if _, ok := mustLookup(t, l, "new"); ok {
		t.Error("a key of a disabled consumer found")
	}
	// Keys outside the prefix change nothing.
	do("SET", "other", "x")
}

func TestRedisAnonymousConsumer(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	do("HSET", "keyauth:consumer:guest", "id", "anon", "groups", "free")
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	c, ok, err := l.Consumer(context.Background(), "guest")
	if err != nil || !ok || c.ID() != "anon" || c.GroupsHeader() != "free" {
		t.Fatalf("guest: %v %v %q", ok, err, c.ID())
	}
	// By id too, as in a consumers file: through the consumer-id hash,
	// whose consumer must still have that id.
	if _, ok, err := l.Consumer(context.Background(), "anon"); err != nil || ok {
		t.Fatalf("anon without its consumer-id hash: found %v, %v", ok, err)
	}
	do("HSET", "keyauth:consumer-id:anon", "consumer", "guest")
	waittest.Until(t, "guest found by its id", func() bool {
		c, ok, _ := l.Consumer(context.Background(), "anon")
		return ok && c.Username() == "guest"
	})
	// A disabled consumer is found, and its handler says it is disabled,
	// as with a file.
	do("HSET", "keyauth:consumer:guest", "disabled", "true")
	waittest.Until(t, "guest disabled", func() bool {
		c, ok, _ := l.Consumer(context.Background(), "guest")
		return ok && c.Disabled()
	})
	waittest.Until(t, "guest disabled, by id", func() bool {
		c, ok, _ := l.Consumer(context.Background(), "anon")
		return ok && c.Disabled()
	})
	// A consumer-id hash that names a consumer with another id is ignored.
	do("HSET", "keyauth:consumer:guest", "id", "someone-else")
	waittest.Until(t, "anon no longer guest's id", func() bool {
		_, ok, _ := l.Consumer(context.Background(), "anon")
		return !ok
	})
	if _, ok, _ := l.Consumer(context.Background(), "nobody"); ok {
		t.Error("a missing consumer found")
	}
}

func TestRedisOutages(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	seed(t, do, "keyauth:")
	const bound = 300 * time.Millisecond
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}, PartitionTimeout: caddy.Duration(bound)}})
	if _, ok := mustLookup(t, l, "alice-1"); !ok {
		t.Fatal("alice not found")
	}
	unavailable := func(key string) bool {
		_, _, err := l.Lookup(context.Background(), *digestOf(keyMark + key))
		return errors.Is(err, sources.ErrUnavailable)
	}

	// Stopped: the connection closes, the cache goes with it, and every
	// lookup is unavailable, the cached key's too.
	srv.Stop()
	waittest.Until(t, "lookups unavailable with Redis stopped", func() bool { return unavailable("alice-1") })
	if !unavailable("bob-1") {
		t.Error("a lookup with Redis stopped is not unavailable")
	}
	if st := l.lookupStatus(); st.Connected {
		t.Error("status says connected with Redis stopped")
	}

	// Back, empty: service resumes, and a key deleted meanwhile (all of
	// them, here) is unknown.
	srv.Restart()
	do = redisDo(t, srv.Addr())
	do("HSET", "keyauth:consumer:bob", "id", "bob")
	do("HSET", credKey("keyauth:", keyMark+"bob-1"), "consumer", "bob", "id", "bob-key-1")
	took := waittest.Until(t, "lookups answered again", func() bool { return !unavailable("bob-1") })
	t.Logf("service resumed %v after Redis answered", took)
	if _, ok := mustLookup(t, l, "alice-1"); ok {
		t.Error("a key deleted while Redis was down is still found")
	}
	if _, ok := mustLookup(t, l, "bob-1"); !ok {
		t.Fatal("bob not found after the restart")
	}

	// Frozen (a silent partition): the cached answer stops being served
	// within the partition timeout, not the client's default of about 10s.
	if l.cache.get(digestOf(keyMark+"bob-1")) == nil {
		t.Fatal("bob not cached")
	}
	srv.Freeze()
	took = waittest.Until(t, "cached answers dropped with Redis frozen", func() bool {
		return l.cache.get(digestOf(keyMark+"bob-1")) == nil
	})
	t.Logf("a frozen Redis was given up after %v (partition_timeout %v)", took, bound)
	if took >= 10*time.Second {
		t.Errorf("the frozen Redis was given up after %v: the partition timeout did not apply", took)
	}
	// Until it answers, lookups that must ask it fail after their timeout.
	waittest.Until(t, "lookups unavailable with Redis frozen", func() bool { return unavailable("bob-1") })
	srv.Thaw()
	waittest.Until(t, "lookups answered after the thaw", func() bool { return !unavailable("bob-1") })
}

func TestRedisFlood(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	const good = 200
	do("HSET", "keyauth:consumer:alice", "id", "alice")
	for i := range good {
		do("HSET", credKey("keyauth:", fmt.Sprintf("%sgood-%d", keyMark, i)), "consumer", "alice", "id", fmt.Sprint("k", i))
	}
	const budget = 1 << 20
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}, Cache: budget})
	for i := range good {
		if _, ok := mustLookup(t, l, fmt.Sprint("good-", i)); !ok {
			t.Fatalf("good key %d not found", i)
		}
	}
	for i := range 20000 {
		if _, ok := mustLookup(t, l, fmt.Sprint("random-", i)); ok {
			t.Fatal("a random key found")
		}
	}
	for i := range good {
		if l.cache.get(digestOf(fmt.Sprintf("%sgood-%d", keyMark, i))) == nil {
			t.Fatalf("good key %d evicted by the flood", i)
		}
	}
	known, unknownN, bytes := l.cache.size()
	t.Logf("after the flood: %d known and %d unknown entries, %d bytes", known, unknownN, bytes)
	if bytes > budget || unknownN == 0 || unknownN >= 20000 {
		t.Errorf("cache holds %d bytes (budget %d) and %d unknown entries", bytes, budget, unknownN)
	}
}

func TestSourceValidate(t *testing.T) {
	t.Setenv("KEYAUTH_TEST_REDIS", "10.0.0.1:6379")
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Options: Options{Addresses: []string{"127.0.0.1:6379"}}}, ""},
		{Source{Options: Options{Addresses: []string{"{env.KEYAUTH_TEST_REDIS}"}}}, ""},
		{Source{}, "at least one Redis address"},
		{Source{Options: Options{Addresses: []string{"redis"}}}, `"redis" is not host:port`},
		{Source{Options: Options{Addresses: []string{"a:1"}}, Cache: -1}, "must not be negative"},
		{Source{Options: Options{Addresses: []string{"a:1"}}, Cache: -1}, "cache must not be negative"},
		{Source{Options: Options{Addresses: []string{"a:1"}, DB: -1}}, "db must not be negative"},
		{Source{Options: Options{Addresses: []string{"a:1", "b:1"}, DB: 2}}, "only database 0"},
		{Source{Options: Options{Addresses: []string{"a:1", "b:1"}, DB: 2}}, "db: a Redis Cluster has only database 0"},
		{Source{Options: Options{Addresses: []string{"a:1"}, PartitionTimeout: caddy.Duration(time.Millisecond)}}, "at least 30ms"},
	} {
		err := tc.src.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.src, err, tc.want)
		}
		// An option's error names it apart, for push to name its flag.
		var oe *sources.OptionError
		if err != nil && (strings.Contains(tc.want, "not") || strings.Contains(tc.want, "database")) && (!errors.As(err, &oe) || !strings.HasPrefix(err.Error(), oe.Option) || oe.Option == "") {
			t.Errorf("%+v: %v is not an OptionError", tc.src, err)
		}
	}
}

// A three-master cluster with one master killed: keys whose hashes live on
// the other masters go on working; keys that need the dead one are
// unavailable, never unknown.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redistest.Client(t, cl.Addrs()...)
	ctx := context.Background()
	const n = 60
	for i := range n {
		name := fmt.Sprint("user-", i)
		for _, cmd := range [][]string{
			{"HSET", "keyauth:consumer:" + name, "id", name},
			{"HSET", credKey("keyauth:", fmt.Sprint(keyMark, "cl-", i)), "consumer", name, "id", fmt.Sprint("k", i)},
		} {
			if err := c.Do(ctx, c.B().Arbitrary(cmd[0]).Keys(cmd[1]).Args(cmd[2:]...).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	l := newTestLooker(t, Source{Options: Options{Addresses: cl.Addrs(), PartitionTimeout: caddy.Duration(300 * time.Millisecond)}})
	nodes := map[int]bool{}
	needs := make([][2]int, n) // the nodes of each key's credential and consumer hashes
	for i := range n {
		if _, ok := mustLookup(t, l, fmt.Sprint("cl-", i)); !ok {
			t.Fatalf("key %d not found", i)
		}
		needs[i] = [2]int{cl.KeyNode(t, credKey("keyauth:", fmt.Sprint(keyMark, "cl-", i))), cl.KeyNode(t, fmt.Sprint("keyauth:consumer:user-", i))}
		nodes[needs[i][0]], nodes[needs[i][1]] = true, true
	}
	if len(nodes) != 3 {
		t.Fatalf("the keys use %d masters, want all 3", len(nodes))
	}

	const dead = 1
	cl.Nodes[dead].Stop()
	var working, unavailable int
	for i := range n {
		key := fmt.Sprint(keyMark, "cl-", i)
		if needs[i][0] == dead || needs[i][1] == dead {
			waittest.Until(t, fmt.Sprintf("key %d unavailable", i), func() bool {
				_, _, err := l.Lookup(ctx, *digestOf(key))
				return errors.Is(err, sources.ErrUnavailable)
			})
			unavailable++
			continue
		}
		waittest.Until(t, fmt.Sprintf("key %d found", i), func() bool {
			_, ok, err := l.Lookup(ctx, *digestOf(key))
			return ok && err == nil
		})
		working++
	}
	t.Logf("with a master down: %d keys work, %d are unavailable", working, unavailable)
	if working == 0 || unavailable == 0 {
		t.Errorf("%d working and %d unavailable keys; want some of each", working, unavailable)
	}
}

// The cache's accounting of an entry is at least what the entry costs on
// the heap, so the cache stays within its budget; measured on 5,000 known
// and 5,000 unknown entries as a consumer of a fetch builds them.
func TestLookupCacheEntryBytes(t *testing.T) {
	c := newLookupCache(1 << 30)
	// A found credential's record of use, in the looker's map of them.
	var slots sync.Map
	c.added = func(e *cacheEntry) { slots.Store(e.cred.Set(), e.use) }
	cons := map[string]string{"id": "user-id-0000", "custom_id": "cust-0000", "tags": "a,b", "groups": "gold,partner", "labels": `{"plan":"gold"}`}
	const n = 5000
	measure := func(found bool) (heap, accounted float64) {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_, _, b0 := c.size()
		for i := range n {
			d := digestOf(fmt.Sprint(keyMark, found, i))
			e := &cacheEntry{}
			name := ""
			if found {
				name = fmt.Sprintf("user-%06d", i)
				set, err := Decode(name, cons, d, map[string]string{"consumer": name, "id": fmt.Sprintf("cred-%06d", i)})
				if err != nil {
					t.Fatal(err)
				}
				e.cred, _ = set.Lookup(d)
				e.found, e.size = true, int64(set.Bytes())+useSlotBytes
				e.use = &useSlot{id: e.cred.ID()}
			}
			c.put(d, e, c.ticket("x"), name, c.ticket("y"))
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		_, _, b1 := c.size()
		return float64(m1.HeapAlloc-m0.HeapAlloc) / n, float64(b1-b0) / n
	}
	for _, found := range []bool{true, false} {
		heap, accounted := measure(found)
		t.Logf("known %v: %.0f heap bytes per entry, %.0f accounted", found, heap, accounted)
		if heap > accounted {
			t.Errorf("known %v: an entry costs %.0f bytes, the cache counts %.0f", found, heap, accounted)
		}
	}
}
