// Package consumers is the consumers document and what it becomes: the
// document's one description (Document), the checks a load applies, from
// bytes (Parse, ParseFile: a hand-written parser, several times faster than
// decoding) or from the description (Build), and the Set a handler looks
// keys up in. It imports nothing of Caddy, so the handler's hot path, the
// fuzzers, the benchmark tools and command-line tools share it without a web
// server; the Caddy modules that load and share sets live in
// consumers/sources.
//
// A Set is an immutable snapshot of a consumers document. It is laid out for
// millions of consumers: every string lives in one arena, records refer to it
// by offset, and credentials are indexed by the SHA-256 digest of their key in
// an open-addressing table of plain integers. A Set therefore holds a handful
// of pointers in all, whatever its size, and the garbage collector never scans
// it record by record.
package consumers

import (
	"encoding/binary"
	"iter"
	"strings"
	"time"
	"unsafe"
)

// Digest is the SHA-256 digest of a key. Credentials are found by digest, so
// the time a lookup takes says nothing about how much of a key matched.
type Digest = [32]byte

// strRef points at a string in a Set's arena.
type strRef struct{ off, n uint32 }

type consumerRec struct {
	username strRef
	id       strRef
	customID strRef
	// tags[off:off+n] of Set.tags. The tags lie in the arena one after the
	// other, separated by ", ", so the span from the first to the last is
	// the joined list.
	tags strRef
	// extra is extras[extra-1], or 0: groups, labels and the disabled flag
	// live in a side table, so a consumer that uses none of them costs 4
	// bytes for them.
	extra uint32
}

// extraRec is what a consumer has besides its names, ids and tags.
type extraRec struct {
	// groups is the groups joined with ", " in the arena: the header value
	// itself. A group name holds no comma or white space, so the list splits
	// back into its names unambiguously.
	groups strRef
	labels strRef // labels[off:off+n] of Set.labels, sorted by name
	// flags holds the consumer's flags below extraLimitsShift and, above,
	// i+1 for its record consumerLimits[i] (its own limits and its groups
	// that have any), or 0: in the flags' spare bits, so that a consumer
	// with groups or labels costs nothing more for limits.
	flags uint32
}

const extraLimitsShift = 1 // above flagDisabled, the one flag of a consumer

// limits is the index+1 of the consumer's limits record, or 0.
func (x extraRec) limits() uint32 { return x.flags >> extraLimitsShift }

type labelRec struct{ name, value strRef }

// Flags of a consumer (extraRec.flags) and of a credential (credentialRec.flags).
const (
	flagDisabled = 1 << iota
	flagCanary
	flagCreated // credentials only: created[i] holds its created_at
	flagLimits  // credentials only: credLimits holds its limits
)

type credentialRec struct {
	digest   Digest
	id       strRef
	consumer uint32
	flags    uint8 // in what was padding: a credential costs no more for it
	expires  int64 // unix nanoseconds; 0 means never
}

// Set is an immutable, loaded consumers document. The zero value is an empty
// set. A Set is safe for concurrent use.
type Set struct {
	arena       string
	tags        []strRef
	labels      []labelRec
	extras      []extraRec
	consumers   []consumerRec
	credentials []credentialRec
	// created is each credential's created_at in unix seconds, parallel to
	// credentials, or nil when no credential has one.
	created []int64
	// previousOf holds the previous secrets of rolled credentials, or is
	// nil. A previous secret is a record of its own at the end of
	// credentials, past the keys: its credential's id, consumer and flags,
	// its own digest and expiry (its own or its credential's, the earlier;
	// never 0), so that Lookup and what the handler asks of a credential
	// are the same code for both. previousOf[j] is the index of the
	// credential whose previous secret is record keys+j.
	previousOf []uint32
	// slots is the digest index: 0 is an empty slot, i+1 names credentials[i].
	slots []uint32
	mask  uint64

	// lim holds the limits and the document's groups, or is nil: a
	// document without them costs one pointer for them (the Redis source
	// caches a set per key), and a consumer or key without limits nothing
	// more than a record's flag or index (setlimits.go).
	lim *limitTables
}

// Credential identifies one credential of a Set, as found by one of its
// secrets.
type Credential struct {
	set *Set
	i   uint32 // a key's record, or a previous secret's (Previous)
}

// Consumer identifies one consumer of a Set.
type Consumer struct {
	set *Set
	i   uint32
}

// Len reports how many consumers and keys the set holds.
func (s *Set) Len() (consumers, keys int) {
	if s == nil {
		return 0, 0
	}
	return len(s.consumers), s.keys()
}

// keys is the number of keys: the credentials' records come first, their
// previous secrets' after.
func (s *Set) keys() int { return len(s.credentials) - len(s.previousOf) }

// Bytes is the memory the set holds.
func (s *Set) Bytes() int {
	if s == nil {
		return 0
	}
	return len(s.arena) + len(s.tags)*int(unsafe.Sizeof(strRef{})) +
		len(s.labels)*int(unsafe.Sizeof(labelRec{})) + len(s.extras)*int(unsafe.Sizeof(extraRec{})) +
		len(s.consumers)*int(unsafe.Sizeof(consumerRec{})) +
		len(s.credentials)*int(unsafe.Sizeof(credentialRec{})) + len(s.slots)*4 + len(s.created)*8 +
		len(s.previousOf)*4 + s.lim.bytes()
}

// Lookup finds the credential whose key has the digest d: its current
// secret, or a previous one (Credential.Previous), which finds the same
// credential with the previous secret's expiry.
func (s *Set) Lookup(d *Digest) (Credential, bool) {
	if s == nil || len(s.slots) == 0 {
		return Credential{}, false
	}
	for i := binary.LittleEndian.Uint64(d[:8]) & s.mask; ; i = (i + 1) & s.mask {
		slot := s.slots[i]
		if slot == 0 {
			return Credential{}, false
		}
		if s.credentials[slot-1].digest == *d {
			return Credential{s, slot - 1}, true
		}
	}
}

// FindConsumer finds a consumer by username, or failing that by id. It scans
// the set, so callers cache the answer per Set. It finds disabled consumers
// too: callers check Consumer.Disabled.
func (s *Set) FindConsumer(nameOrID string) (Consumer, bool) {
	if s == nil {
		return Consumer{}, false
	}
	for i := range s.consumers {
		if s.str(s.consumers[i].username) == nameOrID {
			return Consumer{s, uint32(i)}, true
		}
	}
	for i := range s.consumers {
		if s.str(s.consumers[i].id) == nameOrID {
			return Consumer{s, uint32(i)}, true
		}
	}
	return Consumer{}, false
}

// ConsumerAt is the consumer at index i, as reported by Consumer.Index.
func (s *Set) ConsumerAt(i int) Consumer { return Consumer{s, uint32(i)} }

// Index is the consumer's position in its set.
func (c Consumer) Index() int { return int(c.i) }

func (s *Set) str(r strRef) string { return s.arena[r.off : r.off+r.n] }

// ID is the credential's id, the value the upstream is told.
func (c Credential) ID() string { return c.set.str(c.set.credentials[c.i].id) }

// Consumer is the consumer the credential belongs to.
func (c Credential) Consumer() Consumer {
	return Consumer{c.set, c.set.credentials[c.i].consumer}
}

// ExpiredAt reports whether the credential has expired at now. Found by a
// previous secret, it has expired once that secret has (or the credential).
func (c Credential) ExpiredAt(now time.Time) bool {
	exp := c.set.credentials[c.i].expires
	return exp != 0 && now.UnixNano() >= exp
}

// Expires reports whether the credential expires at all; callers skip reading
// the clock for the keys that never do. A previous secret always expires.
func (c Credential) Expires() bool { return c.set.credentials[c.i].expires != 0 }

// ExpiresAt is when the credential, or the previous secret it was found
// by, stops working, and whether it ever does. Instants outside the years
// 1678 to 2262 are held as the nearest one inside.
func (c Credential) ExpiresAt() (time.Time, bool) {
	exp := c.set.credentials[c.i].expires
	if exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, exp), true
}

// Previous reports whether the credential was found by a previous secret:
// a key it had before a roll, still let in until its expiry. It is the same
// credential (ID, Index, Consumer and flags) as its current key finds.
func (c Credential) Previous() bool { return int(c.i) >= c.set.keys() }

// CreatedAt is when the credential was issued, to the second, and whether
// its document says so (created_at).
func (c Credential) CreatedAt() (time.Time, bool) {
	if c.set.credentials[c.i].flags&flagCreated == 0 {
		return time.Time{}, false
	}
	return time.Unix(c.set.created[c.Index()], 0), true
}

// AllPrevious yields every previous secret of the set, in the document's
// order, as the credential it finds (Previous reports true, ExpiresAt is
// the secret's): what a tool needs to say which credentials were rolled.
func (s *Set) AllPrevious() iter.Seq[Credential] {
	return func(yield func(Credential) bool) {
		if s == nil {
			return
		}
		for i := s.keys(); i < len(s.credentials); i++ {
			if !yield(Credential{s, uint32(i)}) {
				return
			}
		}
	}
}

// Index is the credential's position in its set, from 0 to the number of
// keys: callers keep per-credential state in arrays indexed by it. Found by
// a previous secret, a credential has its own index.
func (c Credential) Index() int {
	if p := c.set.previousOf; len(p) != 0 {
		if j := int(c.i) - c.set.keys(); j >= 0 {
			return int(p[j])
		}
	}
	return int(c.i)
}

// CredentialAt is the credential at index i, as reported by
// Credential.Index.
func (s *Set) CredentialAt(i int) Credential { return Credential{s, uint32(i)} }

// Disabled reports whether the credential is marked "disabled": its key is
// to be refused like an unknown one. Whether its consumer is disabled is
// Consumer().Disabled().
func (c Credential) Disabled() bool { return c.set.credentials[c.i].flags&flagDisabled != 0 }

// Canary reports whether the credential is marked "canary": a key issued to
// nobody, whose use is refused like an unknown key and reported.
func (c Credential) Canary() bool { return c.set.credentials[c.i].flags&flagCanary != 0 }

// Username is the consumer's unique username.
func (c Consumer) Username() string { return c.set.str(c.set.consumers[c.i].username) }

// ID is the consumer's unique id; it defaults to the username.
func (c Consumer) ID() string { return c.set.str(c.set.consumers[c.i].id) }

// CustomID is the consumer's custom id, or "".
func (c Consumer) CustomID() string { return c.set.str(c.set.consumers[c.i].customID) }

// Tags are the consumer's tags.
func (c Consumer) Tags() []string {
	r := c.set.consumers[c.i].tags
	if r.n == 0 {
		return nil
	}
	tags := make([]string, r.n)
	for i, t := range c.set.tags[r.off : r.off+r.n] {
		tags[i] = c.set.str(t)
	}
	return tags
}

// TagsJoined is the consumer's tags joined with ", ", or "". It is a slice of
// the set's memory: no allocation.
func (c Consumer) TagsJoined() string {
	r := c.set.consumers[c.i].tags
	if r.n == 0 {
		return ""
	}
	first, last := c.set.tags[r.off], c.set.tags[r.off+r.n-1]
	return c.set.arena[first.off : last.off+last.n]
}

// extra is the consumer's groups, labels and flags; the zero record when it
// has none of them.
func (c Consumer) extra() extraRec {
	if x := c.set.consumers[c.i].extra; x != 0 {
		return c.set.extras[x-1]
	}
	return extraRec{}
}

// Disabled reports whether the consumer is marked "disabled": its keys are
// to be refused like unknown ones, and it cannot be the anonymous consumer.
func (c Consumer) Disabled() bool { return c.extra().flags&flagDisabled != 0 }

// HasGroups reports whether the consumer is in any group.
func (c Consumer) HasGroups() bool { return c.extra().groups.n != 0 }

// GroupsHeader is the consumer's groups in the document's order, joined with
// ", " as Kong's X-Consumer-Groups header has them, or "". It was joined at
// load: no allocation.
func (c Consumer) GroupsHeader() string { return c.set.str(c.extra().groups) }

// InGroup reports whether the consumer is in the group name. It allocates
// nothing.
func (c Consumer) InGroup(name string) bool {
	if name == "" {
		return false
	}
	for h := c.GroupsHeader(); h != ""; {
		var g string
		g, h, _ = strings.Cut(h, groupSeparator)
		if g == name {
			return true
		}
	}
	return false
}

// Groups are the consumer's groups in the document's order, or nil. It
// allocates: the hot path uses InGroup and GroupsHeader.
func (c Consumer) Groups() []string {
	h := c.GroupsHeader()
	if h == "" {
		return nil
	}
	return strings.Split(h, groupSeparator)
}

const groupSeparator = ", "

func (c Consumer) labels() []labelRec {
	r := c.extra().labels
	return c.set.labels[r.off : r.off+r.n]
}

// Label is the value of the consumer's label name, and whether it has that
// label. It allocates nothing.
func (c Consumer) Label(name string) (string, bool) {
	ls := c.labels()
	// A binary search over labels sorted by name.
	lo, hi := 0, len(ls)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch n := c.set.str(ls[m].name); {
		case n == name:
			return c.set.str(ls[m].value), true
		case n < name:
			lo = m + 1
		default:
			hi = m
		}
	}
	return "", false
}

// Labels are the consumer's labels, or nil when it has none. It allocates.
func (c Consumer) Labels() map[string]string {
	ls := c.labels()
	if len(ls) == 0 {
		return nil
	}
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[c.set.str(l.name)] = c.set.str(l.value)
	}
	return m
}

// AllLabels yields the consumer's labels, name and value, in the order of
// their names (byte-wise). It allocates nothing per label.
func (c Consumer) AllLabels() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, l := range c.labels() {
			if !yield(c.set.str(l.name), c.set.str(l.value)) {
				return
			}
		}
	}
}
