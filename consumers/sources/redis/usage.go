package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// Last use (last_used) with the Redis source: the fleet's. Each instance
// records, off the request path, the minute each credential in its cache
// last let a request in, and writes what changed into the layout's
// last-used hash (credential id → minute) once a minute, with a script that
// keeps the later minute, so that instances never move a credential's
// last use backwards. The hash is read without tracking: the writes of the
// fleet invalidate no lookup cache. A lookup that asks Redis for a
// credential reads its last use with it (in parallel with the consumer
// hash: no round trip added), and once a minute each instance reads the
// last use of the credentials it holds again, so max_idle counts the
// fleet's use.
//
// A request records a use as the file source's do: it finds its
// credential's record by the one-credential set its cache entry holds (a
// lock-free map read), and stores the current minute when it is later
// than the record's: no lock, no I/O, no allocation.

// useSlot is the record of use of one credential in the cache.
type useSlot struct {
	id string
	// local is the minute this instance last saw the credential let a
	// request in; flushed the local minute last written to Redis.
	local, flushed atomic.Uint32
	// fleet is the minute Redis held when last read or written.
	fleet atomic.Uint32
}

// useSlotBytes is what a cached credential's record of use costs: the
// slot, its id's string header and its entry in the map of slots, as
// TestLookupCacheEntryBytes measures them, rounded up (the id's bytes are
// the set's).
const useSlotBytes = 160

// usage is a looker's record of use.
type usage struct {
	minute atomic.Uint32 // the current minute, moved on by keepUse
	slots  sync.Map      // *consumers.Set → *useSlot, of the cached credentials

	mu      sync.Mutex
	retired []*useSlot // records that left the cache with a use not yet written

	readFailed  atomic.Bool // a failed read of the last use was logged
	writeFailed bool        // a failed write was logged; owned by writeUse's caller
	keeping     sync.WaitGroup
}

// Use records that cred, found by this source, let a request in now
// (keyauth.UsageView).
func (l *looker) Use(cred consumers.Credential) {
	v, ok := l.usage.slots.Load(cred.Set())
	if !ok {
		return // answered from outside the cache (a lookup racing an invalidation)
	}
	s := v.(*useSlot)
	if m := l.usage.minute.Load(); m > s.local.Load() {
		s.local.Store(m)
	}
}

// LastUsed is the minute since the Unix epoch cred last let a request in,
// anywhere in the fleet as far as this instance knows, 0 for never
// (keyauth.UsageView).
func (l *looker) LastUsed(cred consumers.Credential) uint32 {
	v, ok := l.usage.slots.Load(cred.Set())
	if !ok {
		return 0
	}
	s := v.(*useSlot)
	return max(s.local.Load(), s.fleet.Load())
}

// cached and uncached follow the cache's entries (lookupCache.added and
// removed, with the cache's lock held).
func (l *looker) cached(e *cacheEntry) { l.usage.slots.Store(e.cred.Set(), e.use) }

func (l *looker) uncached(e *cacheEntry) {
	l.usage.slots.Delete(e.cred.Set())
	if e.use.local.Load() > e.use.flushed.Load() {
		l.usage.mu.Lock()
		l.usage.retired = append(l.usage.retired, e.use)
		l.usage.mu.Unlock()
	}
}

// readLastUsed is the fleet's last use of the credential id, read without
// tracking. A failure (a user without the right to read the hash) is
// logged once, and the credential counts as used now: max_idle must not
// refuse a key whose use it cannot read.
func (l *looker) readLastUsed(ctx context.Context, c rueidis.Client, id string) sources.Minute {
	v, err := c.Do(ctx, c.B().Hget().Key(l.layout.LastUsedKey()).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return 0
	}
	var m uint64
	if err == nil {
		m, err = strconv.ParseUint(v, 10, 32)
	}
	if err != nil {
		if !l.usage.readFailed.Swap(true) {
			l.log().Warn("reading the last use of keys in Redis failed; a key whose last use cannot be read counts as used now",
				zap.String("source", l.Info().Location), zap.String("credential_id", id), zap.Error(err))
		}
		return l.usage.minute.Load()
	}
	return sources.Minute(m)
}

// useScript sets each credential's last use (ARGV: id, minute, id,
// minute...) in the hash KEYS[1] unless the hash holds a later one, and
// returns the minute each then holds.
var useScript = rueidis.NewLuaScript(`
local out = {}
for i = 1, #ARGV, 2 do
	local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
	local m = tonumber(ARGV[i + 1])
	if m > cur then
		redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
		cur = m
	end
	out[#out + 1] = cur
end
return out
`)

// useBatch is how many credentials one script or HMGET takes.
const useBatch = 500

// writeUse writes the uses recorded since the last write into Redis, and
// reads the fleet's last use of the other cached credentials again.
func (l *looker) writeUse(ctx context.Context) error {
	ch := l.client.Load()
	if ch == nil {
		return nil // the records wait for the connection
	}
	c := ch.Client
	var dirty, clean []*useSlot
	l.usage.slots.Range(func(_, v any) bool {
		s := v.(*useSlot)
		if s.local.Load() > s.flushed.Load() {
			dirty = append(dirty, s)
		} else {
			clean = append(clean, s)
		}
		return true
	})
	l.usage.mu.Lock()
	retired := l.usage.retired
	l.usage.retired = nil
	l.usage.mu.Unlock()
	dirty = append(dirty, retired...)
	key := l.layout.LastUsedKey()
	for start := 0; start < len(dirty); start += useBatch {
		batch := dirty[start:min(start+useBatch, len(dirty))]
		args := make([]string, 0, 2*len(batch))
		sent := make([]uint32, len(batch))
		for i, s := range batch {
			sent[i] = s.local.Load()
			args = append(args, s.id, strconv.FormatUint(uint64(sent[i]), 10))
		}
		got, err := useScript.Exec(ctx, c, []string{key}, args).AsIntSlice()
		if err != nil {
			// Retired records are kept for the next write; the cached
			// ones are still dirty.
			l.usage.mu.Lock()
			l.usage.retired = append(l.usage.retired, dirty[max(start, len(dirty)-len(retired)):]...)
			l.usage.mu.Unlock()
			return fmt.Errorf("writing the last use of keys: %w", err)
		}
		for i, s := range batch {
			s.flushed.Store(sent[i])
			if i < len(got) {
				s.fleet.Store(uint32(got[i]))
			}
		}
	}
	for start := 0; start < len(clean); start += useBatch {
		batch := clean[start:min(start+useBatch, len(clean))]
		ids := make([]string, len(batch))
		for i, s := range batch {
			ids[i] = s.id
		}
		vals, err := c.Do(ctx, c.B().Hmget().Key(key).Field(ids...).Build()).ToArray()
		if err != nil {
			return fmt.Errorf("reading the last use of keys: %w", err)
		}
		for i, v := range vals {
			if str, err := v.ToString(); err == nil {
				if m, err := strconv.ParseUint(str, 10, 32); err == nil && uint32(m) > batch[i].fleet.Load() {
					batch[i].fleet.Store(uint32(m))
				}
			}
		}
	}
	return nil
}

// keepUse moves the current minute on every few seconds and writes the
// record of use every UseWriteEvery until ctx ends, then once more.
func (l *looker) keepUse(ctx context.Context) {
	defer l.usage.keeping.Done()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	lastWrite := time.Now()
	write := func(ctx context.Context) {
		err := l.writeUse(ctx)
		switch {
		case err != nil && !l.usage.writeFailed:
			l.usage.writeFailed = true
			l.log().Error("keeping the last use of keys in Redis; trying again every minute", zap.String("source", l.Info().Location), zap.Error(err))
		case err == nil && l.usage.writeFailed:
			l.usage.writeFailed = false
			l.log().Info("keeping the last use of keys in Redis again", zap.String("source", l.Info().Location))
		}
	}
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), l.timeout+time.Second)
			write(final)
			cancel()
			return
		case <-tick.C:
		}
		if m := sources.MinuteOf(time.Now()); m > l.usage.minute.Load() { // never backwards, whatever the clock does
			l.usage.minute.Store(m)
		}
		if time.Since(lastWrite) >= sources.UseWriteEvery {
			lastWrite = time.Now()
			write(ctx)
		}
	}
}

// ReadLastUsed is the whole last-used hash under the layout's prefix: each
// credential's last use, by id, anywhere in the fleet (`caddy key-auth
// stale --redis`). It reads it a page at a time (HSCAN).
func ReadLastUsed(ctx context.Context, c rueidis.Client, layout Layout) (map[string]sources.Minute, error) {
	out := map[string]sources.Minute{}
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Hscan().Key(layout.LastUsedKey()).Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("reading the last use of keys: %w", err)
		}
		for i := 0; i+1 < len(e.Elements); i += 2 {
			if m, err := strconv.ParseUint(e.Elements[i+1], 10, 32); err == nil && m != 0 {
				out[e.Elements[i]] = sources.Minute(m)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return out, nil
		}
	}
}
