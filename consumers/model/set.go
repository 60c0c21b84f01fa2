// Package model is the consumers document and what it becomes: the format
// and its checks (Parse, ParseFile), and the Set a handler looks keys up in.
// It imports nothing of Caddy, so the handler's hot path, the fuzzers, the
// benchmark tools and command-line tools share it without a web server; the
// Caddy modules that load and share sets live in the parent package.
//
// A Set is an immutable snapshot of a consumers document. It is laid out for
// millions of consumers: every string lives in one arena, records refer to it
// by offset, and credentials are indexed by the SHA-256 digest of their key in
// an open-addressing table of plain integers. A Set therefore holds a handful
// of pointers in all, whatever its size, and the garbage collector never scans
// it record by record.
package model

import (
	"encoding/binary"
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
	tags     strRef // tags[off:off+n] of Set.tags
}

type credentialRec struct {
	digest   Digest
	id       strRef
	consumer uint32
	expires  int64 // unix nanoseconds; 0 means never
}

// Set is an immutable, loaded consumers document. The zero value is an empty
// set. A Set is safe for concurrent use.
type Set struct {
	arena       string
	tags        []strRef
	consumers   []consumerRec
	credentials []credentialRec
	// slots is the digest index: 0 is an empty slot, i+1 names credentials[i].
	slots []uint32
	mask  uint64
}

// Credential identifies one credential of a Set.
type Credential struct {
	set *Set
	i   uint32
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
	return len(s.consumers), len(s.credentials)
}

// Bytes is the memory the set holds.
func (s *Set) Bytes() int {
	if s == nil {
		return 0
	}
	return len(s.arena) + len(s.tags)*int(unsafe.Sizeof(strRef{})) +
		len(s.consumers)*int(unsafe.Sizeof(consumerRec{})) +
		len(s.credentials)*int(unsafe.Sizeof(credentialRec{})) + len(s.slots)*4
}

// Lookup finds the credential whose key has the digest d.
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
// the set, so callers cache the answer per Set.
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

// ExpiredAt reports whether the credential has expired at now.
func (c Credential) ExpiredAt(now time.Time) bool {
	exp := c.set.credentials[c.i].expires
	return exp != 0 && now.UnixNano() >= exp
}

// Expires reports whether the credential expires at all; callers skip reading
// the clock for the keys that never do.
func (c Credential) Expires() bool { return c.set.credentials[c.i].expires != 0 }

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
