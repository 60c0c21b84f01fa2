package consumers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// Document is the consumers document (README, "The consumers file"): the
// one description of its format. Parse reads the same format from bytes,
// faster, and a differential fuzzer holds the two together; every other
// reader and writer of the format (docfile, the importers, the Redis source
// and push) goes through these types.
//
// In the JSON form a null stands for an absent member, and a string member
// that is given must not be empty where its field says so; in these types
// an empty string is an absent member. The fields are written in the order
// they are declared.
type Document struct {
	// Groups describes groups by name: the limits of those that have any.
	// A group named here need not have members, and a consumer may be in
	// a group not named here. Names follow CheckGroupName.
	Groups map[string]GroupEntry `json:"groups,omitempty"`

	// Consumers lists every consumer. It must be present and not null: a
	// generator's nil list would otherwise remove every consumer.
	Consumers []ConsumerEntry `json:"consumers"`
}

// ConsumerEntry is one consumer of a Document.
type ConsumerEntry struct {
	// Username names the consumer; it is required and unique in the
	// document, and the consumer can be found by it.
	Username string `json:"username"`

	// ID is the consumer's id, unique among the ids of the document; when
	// absent it is the username. In JSON it is not empty when given.
	ID string `json:"id,omitempty"`

	// CustomID is a free-form id of the consumer in another system (Kong's
	// custom_id); it is passed on and never checked.
	CustomID string `json:"custom_id,omitempty"`

	// Tags are free-form strings passed on with the consumer.
	Tags []string `json:"tags,omitempty"`

	// Groups are the consumer's groups, for the allow and deny lists: each
	// one 1 to MaxGroupNameChars characters with no white space, comma or
	// control character, none listed twice (CheckGroupName).
	Groups []string `json:"groups,omitempty"`

	// Labels are named values of the consumer: names of 1 to
	// MaxLabelNameLength letters, digits, '_', '-' or '.', values of at most
	// MaxLabelValueBytes bytes with no control character (CheckLabelName,
	// CheckLabelValue).
	Labels map[string]string `json:"labels,omitempty"`

	// Disabled turns every key of the consumer away.
	Disabled bool `json:"disabled,omitempty"`

	// Limits are the consumer's own limits, counted for the consumer
	// across its keys. A meter here replaces the member_limits of the
	// consumer's groups on the same meter.
	Limits LimitsEntry `json:"limits,omitempty"`

	// Keys are the consumer's credentials.
	Keys []CredentialEntry `json:"keys,omitempty"`
}

// CredentialEntry is one key of a consumer, in plain text or as its hash.
type CredentialEntry struct {
	// ID is the credential's id, unique in the document. When absent it is
	// derived from the consumer's id and the key's position (DerivedID),
	// never from the key. In JSON it is not empty when given.
	ID string `json:"id,omitempty"`

	// Key is the key in plain text: 1 to MaxKeyLength bytes that ValidateKey
	// accepts. Exactly one of Key and Hash is given.
	Key string `json:"key,omitempty"`

	// Hash is the key's SHA-256: HashPrefix and 64 hex digits (HashKey).
	Hash string `json:"hash,omitempty"`

	// ExpiresAt is when the key stops working, an RFC 3339 time; absent for
	// never.
	ExpiresAt string `json:"expires_at,omitempty"`

	// CreatedAt is when the key was issued, an RFC 3339 time; absent when
	// unknown. `caddy key-auth new` writes it; max_idle and `caddy key-auth
	// stale` count a key that was never used from it.
	CreatedAt string `json:"created_at,omitempty"`

	// Disabled turns the key away.
	Disabled bool `json:"disabled,omitempty"`

	// Canary marks a key that must never be used: a request that presents
	// it is refused and reported as a leak.
	Canary bool `json:"canary,omitempty"`

	// Limits are the key's own limits, counted for this key alone.
	Limits LimitsEntry `json:"limits,omitempty"`

	// Previous are the credential's earlier secrets, left by a roll (`caddy
	// key-auth roll`, the management API): each one keeps letting requests
	// in, as this same credential (its id, consumer, flags), until its own
	// ExpiresAt, which a roll sets to the earlier of the grace's end and
	// the credential's expiry.
	Previous []PreviousSecret `json:"previous,omitempty"`
}

// GroupEntry describes a group of the document's top-level groups.
type GroupEntry struct {
	// Limits are the group's pool: one count that every member's requests
	// share (a team's budget).
	Limits LimitsEntry `json:"limits,omitempty"`

	// MemberLimits apply to each member on its own (a tier: every member
	// of "free" gets 1000 requests a day), unless the member has a limit
	// of its own on the meter.
	MemberLimits LimitsEntry `json:"member_limits,omitempty"`
}

// LimitsEntry is a limits object: limits by meter name, and the cap of
// concurrent requests, InFlight. In JSON, a meter's limit is an object
// ({"max": 1000, "per": "day"}) and in_flight an integer
// ({"in_flight": 2}); here in_flight is the entry of that name, with Max
// alone. Meter names follow CheckMeterName.
type LimitsEntry map[string]LimitEntry

// InFlight is the name of the cap of a limits object on concurrent
// requests: its entry's Max is how many of the scope's requests may be
// under way at once.
const InFlight = limits.InFlight

// LimitEntry is one limit of a limits object.
type LimitEntry struct {
	// Max is how much of the meter a window allows: an integer from 0
	// (nothing passes: the meter is closed) to MaxLimit. Required.
	Max int64 `json:"max"`

	// Per is the window: second, minute, hour, day, week (ISO, from
	// Monday), month or year, on the calendar of Timezone, or a duration
	// ("90m", at least a second) aligned to the Unix epoch. Required, but
	// for in_flight, which has none.
	Per string `json:"per,omitempty"`

	// Timezone is the IANA timezone of a calendar Per ("Europe/Berlin");
	// absent for UTC.
	Timezone string `json:"timezone,omitempty"`
}

// MarshalJSON writes the limits by name, in_flight as an integer.
func (l LimitsEntry) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("null"), nil
	}
	b := []byte{'{'}
	for i, name := range slices.Sorted(maps.Keys(l)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, name) // a meter's name is ASCII letters, digits and _-.
		b = append(b, ':')
		e := l[name]
		if name == InFlight {
			if e.Per != "" || e.Timezone != "" {
				return nil, errors.New("in_flight has a per or a timezone: it is a number of requests, at any time")
			}
			b = strconv.AppendInt(b, e.Max, 10)
			continue
		}
		v, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads a limits object; null is none.
func (l *LimitsEntry) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	out := make(LimitsEntry, len(raw))
	for name, v := range raw {
		var e LimitEntry
		if name == InFlight {
			if err := json.Unmarshal(v, &e.Max); err != nil {
				return fmt.Errorf("in_flight: %w", err)
			}
		} else {
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil {
				return fmt.Errorf("meter %q: %w", name, err)
			}
		}
		out[name] = e
	}
	*l = out
	return nil
}

// PreviousSecret is a secret a roll replaced, kept for a grace period.
type PreviousSecret struct {
	// Hash is the secret's SHA-256 (HashKey): a roll never writes an old
	// secret in plain text.
	Hash string `json:"hash"`

	// ExpiresAt is when the secret stops working, an RFC 3339 time;
	// required.
	ExpiresAt string `json:"expires_at"`
}

// Digest is the digest the credential's key is looked up by (Set.Lookup,
// the Redis layout's credential keys): the key's SHA-256, or its Hash
// decoded. It is false for a credential with neither a key nor a well-formed
// hash, which no document holds once checked (Build, DecodeDocument).
func (c *CredentialEntry) Digest() (Digest, bool) {
	if c.Key == "" && !validHash([]byte(c.Hash)) {
		return Digest{}, false
	}
	return credentialDigest(c.Key != "", c.Key, c.Hash), true
}

// HashPrefix starts the hash of a credential; 64 hex digits of the key's
// SHA-256 follow it.
const HashPrefix = "sha256:"

// HashKey is the hash a credential stores for key.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(sum[:])
}

// DerivedID is the id of a consumer's key #n (1-based) that has no id of
// its own: the consumer's id, '#' and n.
func DerivedID(consumerID string, n int) string {
	return string(appendDerivedID(nil, consumerID, n))
}

func appendDerivedID[S ~string | ~[]byte](dst []byte, consumerID S, n int) []byte {
	dst = append(dst, consumerID...)
	dst = append(dst, '#')
	return strconv.AppendInt(dst, int64(n), 10)
}

// DecodeDocument checks a consumers document as a load does, with the same
// errors, and decodes it.
func DecodeDocument(data []byte) (*Document, error) {
	if _, err := Parse(data); err != nil {
		return nil, err
	}
	var d Document
	if err := json.Unmarshal(data, &d); err != nil {
		// Parse accepted it: this is a bug, and the error is
		// encoding/json's, which never quotes a value.
		return nil, fmt.Errorf("decoding the document: %w", err)
	}
	return &d, nil
}

// Marshal encodes the document, indented, in its fields' order, after
// checking that a load would accept what it wrote.
func (d *Document) Marshal() ([]byte, error) {
	out := *d
	if out.Consumers == nil {
		out.Consumers = []ConsumerEntry{} // null would be refused
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("encoding the document: %w", err)
	}
	if _, err := Parse(b.Bytes()); err != nil {
		return nil, fmt.Errorf("the document would be refused: %w", err)
	}
	return b.Bytes(), nil
}

// Consumer finds a consumer by username.
func (d *Document) Consumer(username string) (*ConsumerEntry, bool) {
	for i := range d.Consumers {
		if d.Consumers[i].Username == username {
			return &d.Consumers[i], true
		}
	}
	return nil, false
}

// Credential finds a credential by its id, explicit or derived.
func (d *Document) Credential(id string) (c *ConsumerEntry, index int, ok bool) {
	for i := range d.Consumers {
		c := &d.Consumers[i]
		for k := range c.Keys {
			if c.CredentialID(k) == id {
				return c, k, true
			}
		}
	}
	return nil, 0, false
}

// ConsumerID is the consumer's id: its own, else its username.
func (c *ConsumerEntry) ConsumerID() string {
	if c.ID != "" {
		return c.ID
	}
	return c.Username
}

// CredentialID is the id of the consumer's key i (0-based): its own, else
// the one a load derives.
func (c *ConsumerEntry) CredentialID(i int) string {
	if id := c.Keys[i].ID; id != "" {
		return id
	}
	return DerivedID(c.ConsumerID(), i+1)
}

// RemoveKey removes key i. The keys after it that have derived ids get
// those ids written out, so that no other key's id changes.
func (c *ConsumerEntry) RemoveKey(i int) {
	for k := i + 1; k < len(c.Keys); k++ {
		c.Keys[k].ID = c.CredentialID(k)
	}
	c.Keys = append(c.Keys[:i], c.Keys[i+1:]...)
}

// Build checks a document by the rules Parse applies, with the same errors
// (without Parse's line numbers), and builds its Set: a program or a source
// that holds a Document gets a Set without writing JSON.
func Build(doc *Document) (*Set, error) {
	var (
		b builder
		d consumerDraft
		g groupsDraft
	)
	for pass := range 2 {
		if pass == 1 {
			if err := b.startFill(); err != nil {
				return nil, err
			}
		}
		for i := range doc.Consumers {
			d.load(i, &doc.Consumers[i])
			if err := d.check(); err != nil {
				return nil, err
			}
			if err := b.add(&d); err != nil {
				return nil, err
			}
		}
		if pass == 0 { // after the consumers, as Parse checks them
			g.load(doc.Groups)
			if err := g.check(); err != nil {
				return nil, err
			}
			b.setGroups(&g)
		}
	}
	return b.finish(), nil
}
