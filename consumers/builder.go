package consumers

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"strconv"
	"unsafe"
)

// builder turns checked consumer drafts into a Set. In its first pass it only
// counts; in the second it fills arrays sized by that count and enforces the
// rules that span consumers: unique usernames, consumer ids, credential ids
// and keys.
type builder struct {
	filling                                 bool
	nConsumers, nCredentials, nTags, nArena int
	nLabels, nExtras, nPrevious             int
	// The records filled so far: keys from 0, previous secrets from
	// nCredentials (Set.previousOf).
	nextKey, nextPrevious uint32

	set   *Set
	arena []byte

	// Temporary indexes for the uniqueness rules, dropped by finish.
	seed                          maphash.Seed
	usernames, ids, credentialIDs strTable
}

func (b *builder) startFill() error {
	// Records address the arena and each other with 32-bit offsets.
	if b.nArena > math.MaxUint32 || b.nCredentials+b.nPrevious >= math.MaxUint32 || b.nTags > math.MaxUint32 ||
		b.nLabels > math.MaxUint32 || b.nExtras >= math.MaxUint32 {
		return fmt.Errorf("document too large: %d consumers, %d keys and %d bytes of names and ids; at most 4 GiB of them",
			b.nConsumers, b.nCredentials, b.nArena)
	}
	b.filling = true
	b.set = &Set{
		consumers:   make([]consumerRec, 0, b.nConsumers),
		credentials: make([]credentialRec, b.nCredentials+b.nPrevious),
		tags:        make([]strRef, 0, b.nTags),
	}
	if b.nExtras > 0 {
		b.set.extras = make([]extraRec, 0, b.nExtras)
	}
	if b.nLabels > 0 {
		b.set.labels = make([]labelRec, 0, b.nLabels)
	}
	if b.nPrevious > 0 {
		b.set.previousOf = make([]uint32, b.nPrevious)
	}
	b.arena = make([]byte, 0, b.nArena)
	b.seed = maphash.MakeSeed()
	b.usernames = newStrTable(b.nConsumers)
	b.ids = newStrTable(b.nConsumers)
	b.credentialIDs = newStrTable(b.nCredentials)
	n := tableSize(b.nCredentials + b.nPrevious)
	b.set.slots = make([]uint32, n)
	b.set.mask = uint64(n - 1)
	return nil
}

func (b *builder) finish() *Set {
	s := b.set
	if len(b.arena) > 0 {
		s.arena = unsafe.String(unsafe.SliceData(b.arena), len(b.arena))
	}
	if len(s.credentials) == 0 {
		s.slots, s.mask = nil, 0
	}
	*b = builder{}
	return s
}

// idShared reports whether the consumer's id is its username, stored once.
func idShared(d *consumerDraft) bool {
	return !d.hasID || bytes.Equal(d.s(d.id), d.s(d.username))
}

func (b *builder) add(d *consumerDraft) error {
	if !b.filling {
		b.nConsumers++
		b.nCredentials += len(d.credentials)
		b.nPrevious += len(d.previous)
		b.nTags += len(d.tags)
		b.nArena += len(d.s(d.username)) + len(d.s(d.customID))
		if !idShared(d) {
			b.nArena += len(d.s(d.id))
		}
		for _, t := range d.tags {
			b.nArena += t.end - t.start
		}
		for _, g := range d.groups {
			b.nArena += g.end - g.start
		}
		b.nArena += joinedLen(d.tags) + joinedLen(d.groups)
		if d.hasExtra() {
			b.nExtras++
		}
		b.nLabels += len(d.labels)
		for _, l := range d.labels {
			b.nArena += l.name.end - l.name.start + l.value.end - l.value.start
		}
		for i, c := range d.credentials {
			if c.hasID {
				b.nArena += c.id.end - c.id.start
			} else {
				b.nArena += len(d.consumerID()) + 1 + len(strconv.Itoa(i+1))
			}
		}
		return nil
	}

	s := b.set
	ci := uint32(len(s.consumers))
	rec := consumerRec{username: b.put(d.s(d.username))}
	rec.id = rec.username
	if !idShared(d) {
		rec.id = b.put(d.s(d.id))
	}
	rec.customID = b.put(d.s(d.customID))
	rec.tags = strRef{uint32(len(s.tags)), uint32(len(d.tags))}
	for i, t := range d.tags {
		if i > 0 {
			b.arena = append(b.arena, groupSeparator...)
		}
		s.tags = append(s.tags, b.put(d.s(t)))
	}
	if d.hasExtra() {
		x := extraRec{labels: strRef{uint32(len(s.labels)), uint32(len(d.labels))}}
		start := len(b.arena)
		for i, g := range d.groups {
			if i > 0 {
				b.arena = append(b.arena, groupSeparator...)
			}
			b.arena = append(b.arena, d.s(g)...)
		}
		x.groups = strRef{uint32(start), uint32(len(b.arena) - start)}
		for _, l := range d.labels {
			s.labels = append(s.labels, labelRec{b.put(d.s(l.name)), b.put(d.s(l.value))})
		}
		if d.disabled {
			x.flags |= flagDisabled
		}
		s.extras = append(s.extras, x)
		rec.extra = uint32(len(s.extras))
	}
	s.consumers = append(s.consumers, rec)

	if other, dup := b.usernames.insert(b, rec.username, ci, consumerUsername); dup {
		return fmt.Errorf("%s is listed twice (consumers #%d and #%d)", d.name(), other+1, ci+1)
	}
	if other, dup := b.ids.insert(b, rec.id, ci, consumerID); dup {
		return fmt.Errorf("%s has id %q, already the id of %s", d.name(), b.str(rec.id), b.consumerName(other))
	}

	first := b.nextKey
	for i := range d.credentials {
		c := &d.credentials[i]
		start := len(b.arena)
		b.arena = d.credentialID(b.arena, i)
		cr := credentialRec{
			digest:   d.digest(c),
			id:       strRef{uint32(start), uint32(len(b.arena) - start)},
			consumer: ci,
			expires:  d.expires(c),
		}
		if c.disabled {
			cr.flags |= flagDisabled
		}
		if c.canary {
			cr.flags |= flagCanary
		}
		k := b.nextKey
		b.nextKey++
		s.credentials[k] = cr
		// created_at lives in a side array, made at the first credential
		// that has one: a document without them costs nothing for it.
		if secs, ok := d.createdAt(c); ok || s.created != nil {
			if s.created == nil {
				s.created = make([]int64, k, b.nCredentials)
			}
			s.created = append(s.created, secs)
			if ok {
				s.credentials[k].flags |= flagCreated
			}
		}
		if other, dup := b.credentialIDs.insert(b, cr.id, k, credentialID); dup {
			return fmt.Errorf("%s: credential id %q is already used by %s", d.credName(i), b.str(cr.id), b.credentialName(other))
		}
		if other, dup := b.insertDigest(k); dup {
			return fmt.Errorf("%s has the same key as %s", d.credName(i), b.slotName(other))
		}
	}
	// A previous secret is a copy of its credential's record with its own
	// digest and expiry, past every key's (Set.previousOf).
	n, last := 0, -1
	for i := range d.previous {
		p := &d.previous[i]
		if p.cred != last {
			n, last = 0, p.cred
		}
		n++
		cred := first + uint32(p.cred)
		rec := s.credentials[cred]
		_, _ = hex.Decode(rec.digest[:], d.s(p.hash)[len(HashPrefix):])
		rec.expires = d.previousExpires(p)
		j := b.nextPrevious
		b.nextPrevious++
		k := uint32(b.nCredentials) + j
		s.credentials[k], s.previousOf[j] = rec, cred
		if other, dup := b.insertDigest(k); dup {
			return fmt.Errorf("%s: previous secret #%d has the same key as %s", d.credName(p.cred), n, b.slotName(other))
		}
	}
	return nil
}

// joinedLen is what joining the strings with groupSeparator adds to them.
func joinedLen(s []span) int { return max(len(s)-1, 0) * len(groupSeparator) }

func (b *builder) put(v []byte) strRef {
	start := len(b.arena)
	b.arena = append(b.arena, v...)
	return strRef{uint32(start), uint32(len(v))}
}

// str reads the arena while it is still being filled.
func (b *builder) str(r strRef) string { return string(b.arena[r.off : r.off+r.n]) }

func (b *builder) consumerName(i uint32) string {
	return fmt.Sprintf("consumer %q", b.str(b.set.consumers[i].username))
}

func (b *builder) credentialName(i uint32) string {
	c := b.set.credentials[i]
	return fmt.Sprintf("%s, credential %q", b.consumerName(c.consumer), b.str(c.id))
}

// slotName names the key of record k: a credential's, or a previous
// secret of one.
func (b *builder) slotName(k uint32) string {
	if k >= uint32(b.nCredentials) {
		return "a previous secret of " + b.credentialName(k)
	}
	return b.credentialName(k)
}

func (b *builder) insertDigest(k uint32) (uint32, bool) {
	s := b.set
	d := &s.credentials[k].digest
	for i := binary.LittleEndian.Uint64(d[:8]) & s.mask; ; i = (i + 1) & s.mask {
		slot := s.slots[i]
		if slot == 0 {
			s.slots[i] = k + 1
			return 0, false
		}
		if s.credentials[slot-1].digest == *d {
			return slot - 1, true
		}
	}
}

// tableSize is a power of two at least twice n, so probes stay short.
func tableSize(n int) int {
	if n < 4 {
		return 8
	}
	return 1 << bits.Len(uint(2*n-1))
}

// strTable is an open-addressing set of records keyed by an arena string.
type strTable struct {
	slots []uint32
	mask  uint64
}

func newStrTable(n int) strTable {
	size := tableSize(n)
	return strTable{make([]uint32, size), uint64(size - 1)}
}

func consumerUsername(b *builder, i uint32) strRef { return b.set.consumers[i].username }
func consumerID(b *builder, i uint32) strRef       { return b.set.consumers[i].id }
func credentialID(b *builder, i uint32) strRef     { return b.set.credentials[i].id }

// insert adds record i, whose key is key, unless a record with an equal key
// is there already; then it reports that record.
func (t *strTable) insert(b *builder, key strRef, i uint32, keyOf func(*builder, uint32) strRef) (uint32, bool) {
	k := b.arena[key.off : key.off+key.n]
	for j := maphash.Bytes(b.seed, k) & t.mask; ; j = (j + 1) & t.mask {
		slot := t.slots[j]
		if slot == 0 {
			t.slots[j] = i + 1
			return 0, false
		}
		o := keyOf(b, slot-1)
		if bytes.Equal(b.arena[o.off:o.off+o.n], k) {
			return slot - 1, true
		}
	}
}
