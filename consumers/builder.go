package consumers

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
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
	nLimits, nCredLimits                    int
	// The records filled so far: keys from 0, previous secrets from
	// nCredentials (Set.previousOf).
	nextKey, nextPrevious uint32

	set   *Set
	arena []byte

	// Temporary indexes for the uniqueness rules, dropped by finish.
	seed                          maphash.Seed
	usernames, ids, credentialIDs strTable

	// groups are the document's groups, checked, until startFill puts them
	// in the set.
	groups *groupsDraft
	// meters interns the meters' names: counted in the first pass, put in
	// the arena by startFill, so that each name is stored once however
	// many limits name it.
	meters map[string]strRef
	// calendars indexes Set.calendars (index+1).
	calendars map[*calendar]uint32
}

func (b *builder) startFill() error {
	// Records address the arena and each other with 32-bit offsets.
	if b.nArena > math.MaxUint32 || b.nCredentials+b.nPrevious >= math.MaxUint32 || b.nTags > math.MaxUint32 ||
		b.nLabels > math.MaxUint32 || b.nExtras >= math.MaxUint32>>extraLimitsShift || b.nLimits > math.MaxUint32 {
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
	b.startLimits()
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
			if !c.limits.empty() {
				b.nCredLimits++
			}
		}
		b.nLimits += len(d.limits)
		b.countLimits(d.buf, d.limits)
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
		x.flags |= b.putConsumerLimits(d) << extraLimitsShift
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
		if !c.limits.empty() {
			cr.flags |= flagLimits
			s.lim.credLimits = append(s.lim.credLimits, credLimitsRec{k, b.putLimits(d.buf, d.limits[c.limits.start:c.limits.end])})
		}
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
	for i := range d.previous {
		p := &d.previous[i]
		cred := first + uint32(p.cred)
		rec := s.credentials[cred]
		_, _ = hex.Decode(rec.digest[:], d.s(p.hash)[len(HashPrefix):])
		rec.expires = d.previousExpires(p)
		j := b.nextPrevious
		b.nextPrevious++
		k := uint32(b.nCredentials) + j
		s.credentials[k], s.previousOf[j] = rec, cred
		if other, dup := b.insertDigest(k); dup {
			return fmt.Errorf("%s: previous secret #%d has the same key as %s", d.credName(p.cred), p.n, b.slotName(other))
		}
	}
	return nil
}

// setGroups takes the document's groups, checked, in the first pass.
func (b *builder) setGroups(g *groupsDraft) {
	b.groups = g
	b.nLimits += len(g.limits)
	for _, gr := range g.groups {
		b.nArena += gr.name.end - gr.name.start
	}
	b.countLimits(g.buf, g.limits)
}

// countLimits counts limits and the names of meters not seen before.
func (b *builder) countLimits(buf []byte, ls []limitDraft) {
	if len(ls) == 0 {
		return
	}
	if b.meters == nil {
		b.meters = map[string]strRef{}
	}
	for _, l := range ls {
		name := buf[l.meter.start:l.meter.end]
		if _, ok := b.meters[string(name)]; !ok {
			b.meters[string(name)] = strRef{}
			b.nArena += len(name)
		}
	}
}

// startLimits makes the side tables of limits and puts the meters' names
// and the groups in the set, before the first consumer goes in.
func (b *builder) startLimits() {
	g := b.groups
	b.groups = nil
	if b.nLimits == 0 && (g == nil || len(g.groups) == 0) {
		return
	}
	s := &limitTables{}
	b.set.lim = s
	if b.nLimits > 0 {
		s.limits = make([]limitRec, 0, b.nLimits)
	}
	if b.nCredLimits > 0 {
		s.credLimits = make([]credLimitsRec, 0, b.nCredLimits)
	}
	for name := range b.meters {
		b.meters[name] = b.put([]byte(name))
	}
	if g == nil || len(g.groups) == 0 {
		return
	}
	s.groups = make([]groupRec, 0, len(g.groups))
	for _, gr := range g.groups { // sorted by name (groupsDraft.check)
		s.groups = append(s.groups, groupRec{
			name:         b.put(g.s(gr.name)),
			limits:       b.putLimits(g.buf, g.limits[gr.limits.start:gr.limits.end]),
			memberLimits: b.putLimits(g.buf, g.limits[gr.memberLimits.start:gr.memberLimits.end]),
		})
	}
}

// putLimits adds a checked limits object, sorted by meter, to the set.
func (b *builder) putLimits(buf []byte, ls []limitDraft) strRef {
	if len(ls) == 0 {
		return strRef{}
	}
	s := b.set.lim
	r := strRef{off: uint32(len(s.limits)), n: uint32(len(ls))}
	for _, l := range ls {
		rec := limitRec{meter: b.meters[string(buf[l.meter.start:l.meter.end])], max: l.max, span: l.window.span}
		if c := l.window.cal; c != nil {
			rec.cal = b.calendars[c]
			if rec.cal == 0 {
				if b.calendars == nil {
					b.calendars = map[*calendar]uint32{}
				}
				s.calendars = append(s.calendars, c)
				rec.cal = uint32(len(s.calendars))
				b.calendars[c] = rec.cal
			}
		}
		s.limits = append(s.limits, rec)
	}
	return r
}

// putConsumerLimits adds the consumer's own limits and its groups that
// have limits to the set, and is the index+1 of their record, or 0 when it
// has neither.
func (b *builder) putConsumerLimits(d *consumerDraft) uint32 {
	s := b.set.lim
	if s == nil {
		return 0
	}
	rec := consumerLimitsRec{own: b.putLimits(d.buf, d.limits[d.ownLimits.start:d.ownLimits.end])}
	rec.groups.off = uint32(len(s.groupRefs))
	if len(s.groups) > 0 {
		for _, g := range d.groups {
			name := d.s(g)
			i, ok := slices.BinarySearchFunc(s.groups, name, func(r groupRec, n []byte) int {
				return bytes.Compare(b.arena[r.name.off:r.name.off+r.name.n], n)
			})
			if ok && (s.groups[i].limits.n > 0 || s.groups[i].memberLimits.n > 0) {
				s.groupRefs = append(s.groupRefs, uint32(i))
			}
		}
	}
	rec.groups.n = uint32(len(s.groupRefs)) - rec.groups.off
	if rec.own.n == 0 && rec.groups.n == 0 {
		return 0
	}
	s.consumerLimits = append(s.consumerLimits, rec)
	return uint32(len(s.consumerLimits))
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
