package limits

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Table counts in memory: one instance's store (key_auth.limits.stores.local
// keeps one across config reloads and saves it to Caddy's data directory).
// A counter is one window's usage of one meter by one scope, keyed by (kind,
// scope, meter, window start); an in-flight counter holds the slots in use.
//
// The counters are spread over shards, each with its own lock. An admission
// takes the locks of the shards its charges fall in, in ascending order, so
// its check and its take are one atomic step over all of them while
// admissions that share no shard run in parallel, and two admissions never
// wait for each other in a cycle. A settlement takes no lock: it only adds
// to counters (atomically), which is as if it had come just before or just
// after any admission it overlaps. A shard is chosen by scope (kind and
// name), so the meters and windows of one scope share a lock: the usual
// request, charging a credential and its consumer, takes one or two. (One
// lock for the whole table would serialize every request; a shard per
// request cannot be, since a group's pool is shared by all its members.)
//
// Admit and Settle do not allocate once the table is warm: an admission's
// state (its Ticket) comes from a pool and goes back at Settle.
type Table struct {
	seed   maphash.Seed
	shards [shardCount]shard
	dirty  atomic.Bool
	pool   sync.Pool
}

const shardCount = 256

// shard holds its counters by the 64-bit hash of their key, each with the
// whole key to tell the rare counters of one hash apart: a lookup hashes
// the scope and the meter once (for the shard too) and then looks up an
// integer, and a counter costs about half of what a map keyed by the
// strings would.
type shard struct {
	mu       sync.Mutex
	m        map[uint64]*counter
	n, peak  int          // counters, and the most since the map was made
	inFlight atomic.Int64 // slots in use, for the gauge
	// The locks of neighbouring shards share no cache line.
	_ [24]byte
}

// key names a counter. A new counter holds copies of the charge's strings:
// they are the handler's, from its consumers set, and a counter outlives
// that set (a reload or a write of the management API swaps it) for as
// long as its window, a month or a year.
type key struct {
	scope, meter string
	start        int64 // the window's start, Unix nanoseconds; 0 for in-flight
	kind         ScopeKind
}

// counter is one window's usage, or the slots in use of an in-flight
// counter (end 0).
type counter struct {
	key
	// used changes under its shard's lock at admission, reset and top-up,
	// and without at settlement; below zero only by a top-up (TopUp).
	used atomic.Int64
	end  int64    // the window's end, Unix nanoseconds; under the lock
	next *counter // another counter of the same hash
}

func (sh *shard) find(h uint64, kk *key) *counter {
	p := sh.m[h]
	for p != nil && p.key != *kk {
		p = p.next
	}
	return p
}

func (sh *shard) add(h uint64, p *counter) {
	p.next = sh.m[h]
	sh.m[h] = p
	sh.n++
	sh.peak = max(sh.peak, sh.n)
}

// drop removes the counters gone says are, and reports how many.
func (sh *shard) drop(gone func(*counter) bool) int {
	n := 0
	for h, head := range sh.m {
		var keep *counter
		for p := head; p != nil; {
			next := p.next
			if gone(p) {
				n++
			} else {
				p.next, keep = keep, p
			}
			p = next
		}
		if keep == nil {
			delete(sh.m, h)
		} else if keep != head || keep.next != head.next {
			sh.m[h] = keep
		}
	}
	sh.n -= n
	// A map keeps its memory when emptied: one that lost most of its
	// counters (a big window ended) is made again, its size.
	if sh.peak > 64 && sh.n < sh.peak/4 {
		m := make(map[uint64]*counter, sh.n)
		for h, p := range sh.m {
			m[h] = p
		}
		sh.m, sh.peak = m, sh.n
	}
	return n
}

// each calls f for every counter.
func (sh *shard) each(f func(*counter)) {
	for _, p := range sh.m {
		for ; p != nil; p = p.next {
			f(p)
		}
	}
}

// ticket is an admission's state, from the table's pool: per charge its
// counter and what it took, and the shards to lock again at Settle.
type ticket struct {
	table     *Table
	done      bool
	allowed   bool
	ctrs      []*counter
	costs     []int64
	inFlight  []bool
	shardOf   []uint8
	hashes    []uint64
	locks     []uint8 // ascending, each once
	remaining []int64

	// Backing arrays for the usual request, so a fresh ticket needs one
	// allocation and a reused one none.
	ctrsA      [4]*counter
	costsA     [4]int64
	inFlightA  [4]bool
	shardOfA   [4]uint8
	hashesA    [4]uint64
	locksA     [4]uint8
	remainingA [4]int64
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*counter)
	}
	t.pool.New = func() any {
		k := &ticket{table: t}
		k.reset()
		return k
	}
	return t
}

func (k *ticket) reset() {
	clear(k.ctrs)
	k.ctrs = k.ctrsA[:0]
	k.costs = k.costsA[:0]
	k.inFlight = k.inFlightA[:0]
	k.shardOf = k.shardOfA[:0]
	k.hashes = k.hashesA[:0]
	k.locks = k.locksA[:0]
	k.remaining = k.remainingA[:0]
	k.done, k.allowed = false, false
}

// locate is the shard of a counter, chosen by its scope alone, and the
// hash of its whole key.
func (t *Table) locate(kk *key) (uint8, uint64) {
	h := mix(maphash.String(t.seed, kk.scope) ^ uint64(kk.kind))
	return uint8(h >> 56), mix(h ^ maphash.String(t.seed, kk.meter) ^ uint64(kk.start)*0x9e3779b97f4a7c15)
}

// mix is splitmix64's finalizer.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// keyOf is the key of a charge's counter.
func keyOf(c *Charge) key {
	kk := key{scope: c.Scope, meter: c.Meter, kind: c.Kind}
	if c.Meter != InFlight {
		kk.start = c.Start.UnixNano()
	}
	return kk
}

func (t *Table) lock(locks []uint8) {
	for _, s := range locks {
		t.shards[s].mu.Lock()
	}
}

func (t *Table) unlock(locks []uint8) {
	for i := len(locks) - 1; i >= 0; i-- {
		t.shards[locks[i]].mu.Unlock()
	}
}

// ErrBadCharge is wrapped by Admit's error for a charge it cannot count: a
// negative cost or max, an unknown scope kind, a window that ends before it
// starts. It is the handler's mistake, never the request's.
var ErrBadCharge = errors.New("bad charge")

func checkCharge(i int, c *Charge) error {
	switch {
	case c.Kind < Credential || c.Kind > Group:
		return fmt.Errorf("charge %d: %w: unknown scope kind %d", i, ErrBadCharge, c.Kind)
	case c.Cost < 0 || c.Max < 0:
		return fmt.Errorf("charge %d (%s %s): %w: cost and max must not be negative", i, c.Kind, c.Meter, ErrBadCharge)
	case c.Meter != InFlight && !c.End.After(c.Start):
		return fmt.Errorf("charge %d (%s %s): %w: the window must end after it starts", i, c.Kind, c.Meter, ErrBadCharge)
	}
	return nil
}

// Admit checks that every charge has room (usage + cost <= max) and takes
// them all, or none. Its Remaining is the ticket's memory: valid until
// Settle. Every admission, refused ones too, should be given to Settle
// once, which lets the table reuse its memory.
func (t *Table) Admit(charges []Charge) (Admission, error) {
	k := t.pool.Get().(*ticket)
	for i := range charges {
		c := &charges[i]
		if err := checkCharge(i, c); err != nil {
			k.reset()
			t.pool.Put(k)
			return Admission{}, err
		}
		kk := keyOf(c)
		s, h := t.locate(&kk)
		k.shardOf = append(k.shardOf, s)
		k.hashes = append(k.hashes, h)
		k.locks = insertSorted(k.locks, s)
	}

	t.lock(k.locks)
	refused := -1
	for i := range charges {
		c := &charges[i]
		sh := &t.shards[k.shardOf[i]]
		inFlight := c.Meter == InFlight
		kk := keyOf(c)
		var end int64
		if !inFlight {
			end = c.End.UnixNano()
		}
		p := sh.find(k.hashes[i], &kk)
		if p == nil {
			kk.scope, kk.meter = strings.Clone(kk.scope), strings.Clone(kk.meter)
			p = &counter{key: kk, end: end}
			sh.add(k.hashes[i], p)
		} else if end > p.end {
			p.end = end
		}
		if c.Cost > c.Max-p.used.Load() {
			refused = i
			break
		}
		p.used.Add(c.Cost)
		if inFlight {
			sh.inFlight.Add(c.Cost)
		}
		k.ctrs = append(k.ctrs, p)
		k.costs = append(k.costs, c.Cost)
		k.inFlight = append(k.inFlight, inFlight)
	}
	if refused >= 0 {
		// Nothing is taken: give back what was, and say the room each
		// charge has without this request.
		for j, p := range k.ctrs {
			p.used.Add(-k.costs[j])
			if k.inFlight[j] {
				t.shards[k.shardOf[j]].inFlight.Add(-k.costs[j])
			}
		}
		for i := range charges {
			c := &charges[i]
			var used int64
			if i < len(k.ctrs) {
				used = k.ctrs[i].used.Load()
			} else {
				kk := keyOf(c)
				if p := t.shards[k.shardOf[i]].find(k.hashes[i], &kk); p != nil {
					used = p.used.Load()
				}
			}
			k.remaining = append(k.remaining, room(c.Max, used))
		}
		t.unlock(k.locks)
		clear(k.ctrs)
		k.ctrs = k.ctrs[:0]
		return Admission{Refused: refused, Remaining: k.remaining, Ticket: k}, nil
	}
	for i, p := range k.ctrs {
		k.remaining = append(k.remaining, room(charges[i].Max, p.used.Load()))
	}
	t.unlock(k.locks)
	k.allowed = true
	t.touch()
	return Admission{Allowed: true, Remaining: k.remaining, Ticket: k}, nil
}

// minUsed is the lowest usage top-ups take a counter to.
const minUsed = math.MinInt64 / 4

func room(max, used int64) int64 {
	if used >= max {
		return 0
	}
	return max - used
}

func insertSorted(s []uint8, v uint8) []uint8 {
	i := len(s)
	for i > 0 && s[i-1] >= v {
		if s[i-1] == v {
			return s
		}
		i--
	}
	s = append(s, 0)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// touch notes a change since the last Snapshot; a plain read first, so
// that requests mostly share the flag's cache line rather than fight for
// it.
func (t *Table) touch() {
	if !t.dirty.Load() {
		t.dirty.Store(true)
	}
}

// Settle ends an admission: it gives back its in-flight slots and settles
// its reservations (Settlement.Actual[i] replaces charge i's cost; -1, or
// no entry, keeps it). It acts once per admission: a second call with the
// same Admission does nothing, as long as the ticket was not reused (the
// table reuses it after Settle: the handler calls Settle once). A refused
// admission gives nothing back; Settle only takes its memory back.
func (t *Table) Settle(a Admission, s Settlement) error {
	k, ok := a.Ticket.(*ticket)
	if !ok || k == nil {
		return nil
	}
	if k.table != t {
		return errors.New("settling an admission of another table")
	}
	if k.done {
		return nil
	}
	k.done = true
	if k.allowed {
		t.settle(k, s.Actual)
	}
	k.reset()
	t.pool.Put(k)
	return nil
}

func (t *Table) settle(k *ticket, actual []int64) {
	need := false
	for i, in := range k.inFlight {
		if in || (i < len(actual) && actual[i] >= 0 && actual[i] != k.costs[i]) {
			need = true
			break
		}
	}
	if !need {
		return
	}
	for i, p := range k.ctrs {
		switch {
		case k.inFlight[i]:
			p.used.Add(-k.costs[i])
			t.shards[k.shardOf[i]].inFlight.Add(-k.costs[i])
		case i < len(actual) && actual[i] >= 0:
			addClamped(&p.used, actual[i]-k.costs[i])
		}
	}
	t.touch()
}

// addClamped adds d to v, holding the sum at most MaxInt64 and at least
// zero, or what v was if a top-up had taken it below zero: a settlement
// that gives back part of a reservation never takes a counter below zero
// (a reservation admitted before a reset gives back at most what was
// counted since), and on a counter a top-up took below zero it gives
// nothing back, which is conservative: the top-up is kept whole.
func addClamped(v *atomic.Int64, d int64) {
	for {
		old := v.Load()
		s := old + d
		if d > 0 && s < old {
			s = math.MaxInt64
		}
		s = max(s, min(old, 0))
		if v.CompareAndSwap(old, s) {
			return
		}
	}
}

// Sweep drops the counters whose window has ended by now and the in-flight
// counters with no slot in use; it reports how many it dropped. Admissions
// never read an ended window's counter (a new window is a new counter), so
// sweeping only gives memory back; the store runs it on a schedule.
func (t *Table) Sweep(now time.Time) int {
	n, at := 0, now.UnixNano()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += sh.drop(func(p *counter) bool {
			if p.meter == InFlight && p.start == 0 {
				return p.used.Load() == 0
			}
			return p.end <= at
		})
		sh.mu.Unlock()
	}
	return n
}

// Len is the number of counters held.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += sh.n
		sh.mu.Unlock()
	}
	return n
}

// InFlight is the number of in-flight slots in use.
func (t *Table) InFlight() int64 {
	var n int64
	for i := range t.shards {
		n += t.shards[i].inFlight.Load()
	}
	return n
}

// Changed reports whether an admission or a settlement changed a count
// since the last call, and forgets it: a saver writes only then.
func (t *Table) Changed() bool { return t.dirty.Swap(false) }

// MarkChanged makes the next Changed true: a saver whose write failed
// tries again.
func (t *Table) MarkChanged() { t.dirty.Store(true) }

// ErrInFlight is returned by Reset and TopUp for an in-flight counter:
// its slots are leases of requests under way, given back when they end,
// not a count a manager can change.
var ErrInFlight = errors.New("in_flight counts requests under way: its slots come back when they end, and cannot be reset or topped up")

// Reset sets the usage of the window counter of c (its Kind, Scope, Meter
// and Start; Max and Cost ignored) to zero, top-ups included: the window
// has its whole max again. A counter the table does not hold is left so.
// A reservation admitted before and settled after gives nothing back (see
// Settle).
func (t *Table) Reset(c Charge) error {
	if c.Meter == InFlight {
		return ErrInFlight
	}
	kk := keyOf(&c)
	s, h := t.locate(&kk)
	sh := &t.shards[s]
	sh.mu.Lock()
	p := sh.find(h, &kk)
	if p != nil {
		p.used.Store(0)
	}
	sh.mu.Unlock()
	if p != nil {
		t.touch()
	}
	return nil
}

// TopUp gives the window counter of c (its Kind, Scope, Meter, Start and
// End; Max and Cost ignored) n more room in its window: it lowers the
// usage by n, below zero if need be, so that the room left may exceed the
// max until the window ends (the next window starts from zero, without
// it). It makes the counter if the table holds none, and returns the usage
// after.
func (t *Table) TopUp(c Charge, n int64) (int64, error) {
	switch {
	case c.Meter == InFlight:
		return 0, ErrInFlight
	case n <= 0:
		return 0, fmt.Errorf("%w: a top-up must be positive", ErrBadCharge)
	}
	c.Cost, c.Max = 0, 0
	if err := checkCharge(0, &c); err != nil {
		return 0, err
	}
	kk := keyOf(&c)
	s, h := t.locate(&kk)
	sh := &t.shards[s]
	end := c.End.UnixNano()
	sh.mu.Lock()
	p := sh.find(h, &kk)
	if p == nil {
		p = &counter{key: kk, end: end}
		sh.add(h, p)
	} else if end > p.end {
		p.end = end
	}
	var used int64
	for {
		old := p.used.Load()
		// Held far enough from the end of int64 that max - used cannot
		// overflow.
		used = max(old-n, minUsed)
		if old-n > old {
			used = minUsed
		}
		if p.used.CompareAndSwap(old, used) {
			break
		}
	}
	sh.mu.Unlock()
	t.touch()
	return used, nil
}

// Used is the usage of a counter: of the window starting at start, or the
// slots in use for InFlight (start ignored); 0 when none is counted.
func (t *Table) Used(kind ScopeKind, scope, meter string, start time.Time) int64 {
	kk := keyOf(&Charge{Kind: kind, Scope: scope, Meter: meter, Start: start})
	s, h := t.locate(&kk)
	sh := &t.shards[s]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if p := sh.find(h, &kk); p != nil {
		return p.used.Load()
	}
	return 0
}
