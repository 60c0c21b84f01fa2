package consumers

import (
	"encoding/hex"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"
)

// Index finds a Set's consumers by username, in bytewise username order,
// and its credentials by id, for the management API's reads (a page of a
// list, one consumer, the last use of some credentials) without a pass
// over the set. It costs 16 bytes per consumer with one key, and a sort of
// each: a source makes it once per set, on the first read, so a server
// that serves without being managed never pays for it.
type Index struct {
	set *Set
	// byName are the consumers' indexes in username order.
	byName []uint32
	// creds[first[c]:first[c+1]] are consumer c's credentials, in the
	// document's order.
	first, creds []uint32
	// byID are the credentials' indexes in id order.
	byID []uint32
	// prev[pfirst[k]:pfirst[k+1]] are the records of credential k's
	// previous secrets (a roll's), in the document's order; both nil when
	// the set has none.
	pfirst, prev []uint32
}

// NewIndex indexes s.
func NewIndex(s *Set) *Index {
	x := &Index{set: s}
	nc, nk := s.Len()
	x.byName = make([]uint32, nc)
	for i := range x.byName {
		x.byName[i] = uint32(i)
	}
	slices.SortFunc(x.byName, func(a, b uint32) int {
		return strings.Compare(s.str(s.consumers[a].username), s.str(s.consumers[b].username))
	})
	// A counting sort of the credentials by consumer, stable: each
	// consumer's keys stay in the document's order.
	x.first = make([]uint32, nc+1)
	for k := range nk {
		x.first[s.credentials[k].consumer+1]++
	}
	for c := range nc {
		x.first[c+1] += x.first[c]
	}
	x.creds = make([]uint32, nk)
	next := slices.Clone(x.first[:nc])
	for k := range nk {
		c := s.credentials[k].consumer
		x.creds[next[c]] = uint32(k)
		next[c]++
	}
	x.byID = make([]uint32, nk)
	for i := range x.byID {
		x.byID[i] = uint32(i)
	}
	slices.SortFunc(x.byID, func(a, b uint32) int {
		return strings.Compare(s.str(s.credentials[a].id), s.str(s.credentials[b].id))
	})
	if len(s.previousOf) > 0 {
		x.pfirst = make([]uint32, nk+1)
		for _, k := range s.previousOf {
			x.pfirst[k+1]++
		}
		for k := range nk {
			x.pfirst[k+1] += x.pfirst[k]
		}
		x.prev = make([]uint32, len(s.previousOf))
		next := slices.Clone(x.pfirst[:nk])
		for j, k := range s.previousOf {
			x.prev[next[k]] = uint32(nk + j)
			next[k]++
		}
	}
	return x
}

// Set is the set indexed.
func (x *Index) Set() *Set { return x.set }

// After yields the consumers whose usernames sort after after (every one
// for ""), in bytewise username order.
func (x *Index) After(after string) iter.Seq[Consumer] {
	return func(yield func(Consumer) bool) {
		s := x.set
		i, _ := slices.BinarySearchFunc(x.byName, after, func(c uint32, name string) int {
			return strings.Compare(s.str(s.consumers[c].username), name)
		})
		for ; i < len(x.byName); i++ {
			if c := x.byName[i]; s.str(s.consumers[c].username) != after && !yield(Consumer{s, c}) {
				return
			}
		}
	}
}

// Consumer finds a consumer by username.
func (x *Index) Consumer(username string) (Consumer, bool) {
	s := x.set
	i, ok := slices.BinarySearchFunc(x.byName, username, func(c uint32, name string) int {
		return strings.Compare(s.str(s.consumers[c].username), name)
	})
	if !ok {
		return Consumer{}, false
	}
	return Consumer{s, x.byName[i]}, true
}

// Credential finds a credential by its id, explicit or derived.
func (x *Index) Credential(id string) (Credential, bool) {
	s := x.set
	i, ok := slices.BinarySearchFunc(x.byID, id, func(k uint32, id string) int {
		return strings.Compare(s.str(s.credentials[k].id), id)
	})
	if !ok {
		return Credential{}, false
	}
	return Credential{s, x.byID[i]}, true
}

// Credentials yields the consumer's credentials in the document's order.
func (x *Index) Credentials(c Consumer) iter.Seq[Credential] {
	return func(yield func(Credential) bool) {
		for _, k := range x.creds[x.first[c.i]:x.first[c.i+1]] {
			if !yield(Credential{x.set, k}) {
				return
			}
		}
	}
}

// Entry is the consumer as a document entry, as far as its set holds it:
// each key as its hash (a set keeps only the digest), each credential's id
// written out (a derived one too), expires_at and created_at in UTC, the
// consumer's id only when it is not its username, a rolled credential's
// previous secrets as their hashes with the expiry the set holds (their
// own, or the credential's when earlier). Building a document of such
// entries gives back the same set.
//
// Everything a consumer or a credential of a set holds comes back here:
// a field added to the set is added here (TestIndexEntryRoundTrip fails
// until it is).
func (x *Index) Entry(c Consumer) ConsumerEntry {
	e := ConsumerEntry{
		Username: c.Username(),
		CustomID: c.CustomID(),
		Tags:     c.Tags(),
		Groups:   c.Groups(),
		Labels:   c.Labels(),
		Disabled: c.Disabled(),
		Limits:   c.Limits().Entry(),
	}
	if id := c.ID(); id != e.Username {
		e.ID = id
	}
	for cred := range x.Credentials(c) {
		k := cred.Entry()
		if x.pfirst != nil {
			for _, r := range x.prev[x.pfirst[cred.i]:x.pfirst[cred.i+1]] {
				rec := &x.set.credentials[r]
				k.Previous = append(k.Previous, PreviousSecret{
					Hash:      HashPrefix + hex.EncodeToString(rec.digest[:]),
					ExpiresAt: time.Unix(0, rec.expires).UTC().Format(time.RFC3339Nano),
				})
			}
		}
		e.Keys = append(e.Keys, k)
	}
	return e
}

// Entry is the credential as a document entry, as far as its set holds it,
// without its previous secrets: see Index.Entry.
func (c Credential) Entry() CredentialEntry {
	r := &c.set.credentials[c.i]
	k := CredentialEntry{
		ID:       c.ID(),
		Hash:     HashPrefix + hex.EncodeToString(r.digest[:]),
		Disabled: c.Disabled(),
		Canary:   c.Canary(),
		Limits:   c.Limits().Entry(),
	}
	if r.expires != 0 {
		k.ExpiresAt = time.Unix(0, r.expires).UTC().Format(time.RFC3339Nano)
	}
	if at, ok := c.CreatedAt(); ok {
		k.CreatedAt = at.UTC().Format(time.RFC3339)
	}
	return k
}

// Clone is a copy of the entry that shares no slice or map with it, for a
// change to edit.
func (c *ConsumerEntry) Clone() *ConsumerEntry {
	out := *c
	out.Tags = slices.Clone(c.Tags)
	out.Groups = slices.Clone(c.Groups)
	out.Labels = maps.Clone(c.Labels)
	out.Limits = maps.Clone(c.Limits)
	out.Keys = slices.Clone(c.Keys)
	for i := range out.Keys {
		out.Keys[i].Previous = slices.Clone(out.Keys[i].Previous)
		out.Keys[i].Limits = maps.Clone(out.Keys[i].Limits)
	}
	return &out
}

// Set is the set the credential belongs to: a key for what a source keeps
// per set, such as a Redis source's record of use of the credential its
// cache entry holds.
func (c Credential) Set() *Set { return c.set }
