package redis

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// lookupCache is a Redis source's local cache: one entry per key digest that joins
// the credential and its consumer, so a hit is one map read under a shard's
// read lock. Entries are dropped when Redis reports either of their hashes
// changed, and all of them when a connection is lost.
//
// Answers for unknown keys live in their own, smaller budget, so a flood of
// random keys evicts only other unknown keys. Eviction is CLOCK-like: an
// entry read since the last sweep gets a second chance.
//
// An answer that rests on a hash being absent (an unknown key, a consumer
// not found) expires after absentTTL when it is set, in a Redis Cluster:
// tracking tells of a change only on the node that was read, and a slot that
// moves to another master takes with it the keys that exist, which the old
// owner invalidates, but not the absence of one; a key created there later
// is news to a node that never saw this instance read it.
type lookupCache struct {
	shards [cacheShards]cacheShard
	budget [2]int64 // per shard: known, unknown

	// A fetch takes a ticket for each hash before asking Redis, and its
	// answer is cached only if no invalidation of that hash (and no flush)
	// came in between: an invalidation may be processed before the answer
	// it follows on the wire has been cached.
	gens  [genStripes]atomic.Uint64
	epoch atomic.Uint64
	seed  maphash.Seed

	mu         sync.Mutex // serializes writers and guards byConsumer and byGroup
	byConsumer map[string]map[consumers.Digest]struct{}
	byGroup    map[string]map[consumers.Digest]struct{}

	// groups are the group hashes read, by name (nil fields: no hash), so
	// that the consumers of a tier do not each cost a read of it.
	grpMu  sync.RWMutex
	groups map[string]*groupEntry

	consMu    sync.RWMutex
	consumers map[string]*consumerEntry // by username or id: the anonymous ones, a few

	entries [2]atomic.Int64
	bytes   atomic.Int64

	// absentTTL is how long an answer resting on an absent hash is kept,
	// in nanoseconds; 0 keeps it until Redis reports a change.
	absentTTL atomic.Int64
	now       func() int64 // the clock, in Unix nanoseconds: a fake one in tests

	// added and removed, when set, see each entry that holds a record of
	// use as it enters and leaves the cache, with c.mu held (the looker's
	// record of use follows the cache: usage.go).
	added, removed func(*cacheEntry)
}

const (
	cacheShards = 64
	genStripes  = 4096
	known       = 0
	unknown     = 1
	// The memory an entry costs besides its set's own (Set.Bytes): the
	// set's headers and slices, the entry, its map slot and its reverse
	// index slot, as TestLookupCacheEntryBytes measures them, rounded up.
	knownOverhead   = 800
	unknownOverhead = 176
	// What each group an entry depends on adds besides its name: the
	// slice's element and the reverse index's slot.
	groupRefOverhead = 64
)

type cacheShard struct {
	mu    sync.RWMutex
	m     [2]map[consumers.Digest]*cacheEntry
	bytes [2]int64
	_     [64]byte // a shard's lock on a cache line of its own
}

// cacheEntry is one key's answer.
type cacheEntry struct {
	cred     consumers.Credential
	size     int64
	consumer string   // the consumer hash the answer depends on, or ""
	groups   []string // the group hashes it depends on, by name
	expires  int64    // Unix nanoseconds after which the answer is not used, or 0
	found    bool
	// absentGroup is an answer found that rests on a group hash that did
	// not exist: it expires as an unknown key does.
	absentGroup bool
	ref         atomic.Bool
	// use is the record of use of a found credential, or nil.
	use *useSlot
}

// groupEntry is a group hash as read; nil fields when there is none.
type groupEntry struct {
	fields  map[string]string
	expires int64 // as cacheEntry's, for an absent hash
}

// maxGroups bounds the group hashes kept: a tier is shared by many
// consumers, and the names come from consumer hashes, so there are few;
// past the bound they are all let go.
const maxGroups = 10000

// consumerEntry is a consumer found by name or id, and the hashes it was
// read from.
type consumerEntry struct {
	cons  consumers.Consumer
	found bool
	deps  []string
	// absent is an answer that rests on a hash that did not exist.
	absent  bool
	expires int64 // as cacheEntry's
}

type ticket struct {
	stripe uint32
	gen    uint64
	epoch  uint64
}

func newLookupCache(budget int64) *lookupCache {
	c := &lookupCache{seed: maphash.MakeSeed(), now: func() int64 { return time.Now().UnixNano() }}
	c.budget[unknown] = budget / 8 / cacheShards
	c.budget[known] = budget/cacheShards - c.budget[unknown]
	c.reset()
	return c
}

func (c *lookupCache) reset() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		if c.removed != nil {
			for _, e := range sh.m[known] {
				if e.use != nil {
					c.removed(e)
				}
			}
		}
		sh.m[known] = map[consumers.Digest]*cacheEntry{}
		sh.m[unknown] = map[consumers.Digest]*cacheEntry{}
		sh.bytes = [2]int64{}
		sh.mu.Unlock()
	}
	c.byConsumer = map[string]map[consumers.Digest]struct{}{}
	c.byGroup = map[string]map[consumers.Digest]struct{}{}
	c.grpMu.Lock()
	c.groups = map[string]*groupEntry{}
	c.grpMu.Unlock()
	c.consMu.Lock()
	c.consumers = map[string]*consumerEntry{}
	c.consMu.Unlock()
	c.entries[known].Store(0)
	c.entries[unknown].Store(0)
	c.bytes.Store(0)
}

func (c *lookupCache) shard(d *consumers.Digest) *cacheShard {
	return &c.shards[d[0]%cacheShards]
}

// get is the hot path: a cached answer, or nil.
func (c *lookupCache) get(d *consumers.Digest) *cacheEntry {
	sh := c.shard(d)
	sh.mu.RLock()
	e := sh.m[known][*d]
	if e == nil {
		e = sh.m[unknown][*d]
	}
	sh.mu.RUnlock()
	if e == nil || (e.expires != 0 && c.now() >= e.expires) {
		return nil // an expired answer stays until the fetch replaces it
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e
}

func (c *lookupCache) getConsumer(name string) *consumerEntry {
	c.consMu.RLock()
	e := c.consumers[name]
	c.consMu.RUnlock()
	if e != nil && e.expires != 0 && c.now() >= e.expires {
		return nil
	}
	return e
}

// expiry is when an answer resting on an absent hash, cached now, expires,
// or 0 for never.
func (c *lookupCache) expiry() int64 {
	if ttl := c.absentTTL.Load(); ttl > 0 {
		return c.now() + ttl
	}
	return 0
}

func (c *lookupCache) stripe(key string) uint32 {
	return uint32(maphash.String(c.seed, key) % genStripes)
}

func (c *lookupCache) ticket(key string) ticket {
	s := c.stripe(key)
	return ticket{stripe: s, gen: c.gens[s].Load(), epoch: c.epoch.Load()}
}

func (c *lookupCache) valid(t ticket) bool {
	return c.gens[t.stripe].Load() == t.gen && c.epoch.Load() == t.epoch
}

// bump invalidates the tickets of key's stripe.
func (c *lookupCache) bump(key string) { c.gens[c.stripe(key)].Add(1) }

// put caches e for d unless a hash it depends on changed since its tickets
// were taken. consumer is the consumer hash it depends on, or ""; groups
// are the tickets of the group hashes of e.groups.
func (c *lookupCache) put(d *consumers.Digest, e *cacheEntry, t ticket, consumer string, t2 ticket, groups ...ticket) {
	kind := known
	e.size += knownOverhead + int64(len(consumer))
	for _, g := range e.groups {
		e.size += groupRefOverhead + int64(len(g))
	}
	if !e.found {
		kind = unknown
		e.size = unknownOverhead + int64(len(consumer))
	}
	e.consumer = consumer
	if !e.found || e.absentGroup {
		// Unknown: the credential hash, or its consumer's, was absent
		// (or refused, which is rare enough to expire the same way).
		e.expires = c.expiry()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid(t) || (consumer != "" && !c.valid(t2)) || e.size > c.budget[kind] {
		return
	}
	for _, tg := range groups {
		if !c.valid(tg) {
			return
		}
	}
	sh := c.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.removeLocked(sh, d)
	// A sweep clears the marks of entries read since the last one and
	// evicts the first unmarked; a second pass evicts regardless.
	for pass := 0; pass < 2 && sh.bytes[kind]+e.size > c.budget[kind]; pass++ {
		for k, x := range sh.m[kind] {
			if sh.bytes[kind]+e.size <= c.budget[kind] {
				break
			}
			if pass == 0 && x.ref.Load() {
				x.ref.Store(false)
				continue
			}
			c.removeLocked(sh, &k)
		}
	}
	sh.m[kind][*d] = e
	if e.use != nil && c.added != nil {
		c.added(e)
	}
	sh.bytes[kind] += e.size
	c.entries[kind].Add(1)
	c.bytes.Add(e.size)
	if consumer != "" {
		index(c.byConsumer, consumer, d)
	}
	for _, g := range e.groups {
		index(c.byGroup, g, d)
	}
}

func index(by map[string]map[consumers.Digest]struct{}, name string, d *consumers.Digest) {
	m := by[name]
	if m == nil {
		m = map[consumers.Digest]struct{}{}
		by[name] = m
	}
	m[*d] = struct{}{}
}

func unindex(by map[string]map[consumers.Digest]struct{}, name string, d *consumers.Digest) {
	if m := by[name]; m != nil {
		delete(m, *d)
		if len(m) == 0 {
			delete(by, name)
		}
	}
}

// getGroup is a group hash as last read, or nil.
func (c *lookupCache) getGroup(name string) *groupEntry {
	c.grpMu.RLock()
	g := c.groups[name]
	c.grpMu.RUnlock()
	if g != nil && g.expires != 0 && c.now() >= g.expires {
		return nil
	}
	return g
}

// putGroup keeps a group hash read under ticket t, unless it changed since.
func (c *lookupCache) putGroup(name string, g *groupEntry, t ticket) {
	if g.fields == nil {
		g.expires = c.expiry()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid(t) {
		return
	}
	c.grpMu.Lock()
	if len(c.groups) >= maxGroups {
		c.groups = map[string]*groupEntry{}
	}
	c.groups[name] = g
	c.grpMu.Unlock()
}

func (c *lookupCache) putConsumer(name string, e *consumerEntry, tks []ticket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tks {
		if !c.valid(t) {
			return
		}
	}
	if e.absent {
		e.expires = c.expiry()
	}
	c.consMu.Lock()
	c.consumers[name] = e
	c.consMu.Unlock()
}

// removeLocked drops d's entry; c.mu and sh.mu are held.
func (c *lookupCache) removeLocked(sh *cacheShard, d *consumers.Digest) {
	for kind := range sh.m {
		e := sh.m[kind][*d]
		if e == nil {
			continue
		}
		delete(sh.m[kind], *d)
		if e.use != nil && c.removed != nil {
			c.removed(e)
		}
		sh.bytes[kind] -= e.size
		c.entries[kind].Add(-1)
		c.bytes.Add(-e.size)
		if e.consumer != "" {
			unindex(c.byConsumer, e.consumer, d)
		}
		for _, g := range e.groups {
			unindex(c.byGroup, g, d)
		}
	}
}

// dropCredential forgets the answer for d, whose hash key changed.
func (c *lookupCache) dropCredential(key string, d *consumers.Digest) {
	c.bump(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	sh := c.shard(d)
	sh.mu.Lock()
	c.removeLocked(sh, d)
	sh.mu.Unlock()
}

// dropConsumer forgets every answer that depends on the hash key: that of
// the consumer name, or "" for another consumer hash.
func (c *lookupCache) dropConsumer(key, name string) {
	c.bump(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := range c.byConsumer[name] {
		sh := c.shard(&d)
		sh.mu.Lock()
		c.removeLocked(sh, &d)
		sh.mu.Unlock()
	}
	c.dropConsumersOf(key)
}

// dropGroup forgets the group hash key of the group name, and every
// answer that depends on it. The hash is let go before the tickets are
// bumped: a fetch that read it first holds a ticket the bump voids.
func (c *lookupCache) dropGroup(key, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.grpMu.Lock()
	delete(c.groups, name)
	c.grpMu.Unlock()
	c.bump(key)
	for d := range c.byGroup[name] {
		sh := c.shard(&d)
		sh.mu.Lock()
		c.removeLocked(sh, &d)
		sh.mu.Unlock()
	}
	c.dropConsumersOf(key)
}

// dropConsumersOf forgets the consumers found by name that were read from
// the hash key.
func (c *lookupCache) dropConsumersOf(key string) {
	c.consMu.Lock()
	for n, e := range c.consumers {
		if slices.Contains(e.deps, key) {
			delete(c.consumers, n)
		}
	}
	c.consMu.Unlock()
}

// flush forgets everything: a connection was lost, and with it the
// invalidations it would have brought.
func (c *lookupCache) flush() {
	c.epoch.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset()
}

func (c *lookupCache) size() (knownEntries, unknownEntries int, bytes int64) {
	return int(c.entries[known].Load()), int(c.entries[unknown].Load()), c.bytes.Load()
}
