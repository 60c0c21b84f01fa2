package redis

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// Layout is how consumers live in Redis under a key prefix: the one
// description that the source (the reader), `caddy key-auth push` and the
// management API (the writers) share, and that any service may write with
// HSET and DEL:
//
//	<prefix>cred:<hex SHA-256 of the key>  hash: consumer, id (both required),
//	                                       expires_at, created_at (RFC 3339),
//	                                       disabled, canary, limits, previous
//	<prefix>consumer:<username>            hash: id (default the username), custom_id,
//	                                       tags, groups (comma-separated),
//	                                       labels (a JSON object), disabled, limits
//	<prefix>consumer-id:<id>               hash: consumer (the username of the
//	                                       consumer whose id this is, when it is
//	                                       not the username)
//	<prefix>consumer-keys:<username>       hash: the hex SHA-256 of each key of the
//	                                       consumer's credentials → the credential's id
//	<prefix>credential-id:<id>             hash: consumer (the username whose
//	                                       credential has this id)
//	<prefix>consumers                      sorted set: every username, score 0
//	<prefix>last-used                      hash: credential id → the minute since
//	                                       the Unix epoch it last let a request in
//	<prefix>group:<name>                   hash: limits, member_limits
//
// A rolled credential's previous secret is a credential hash of its own,
// with the credential's consumer, id, created_at, flags and limits, its own
// expires_at (required: the earlier of the secret's and the credential's),
// and previous "true", which tells a writer or a lister that it is not a
// credential of its own; the source reads it as the credential with that
// expiry. A canary has no previous secrets.
//
// Flags are "true" or "false" (empty is false). Limits are a limits object
// of the consumers document, in JSON. The consumer-id hashes only serve to
// find an anonymous consumer named by its id; one that names a consumer
// whose id is no longer that id is ignored. A group hash describes a group
// of the document's groups: a consumer's group without one has no limits.
//
// A lookup reads only the cred and consumer hashes (and last-used, untracked).
// The consumer-keys and credential-id hashes and the consumers set are the
// writers' indexes: how a writer finds a consumer's credentials, keeps
// credential ids unique across consumers, and lists the consumers in
// username order. push and the management API keep them; a service that
// writes the layout itself and wants the management API to see its
// consumers keeps them too.
type Layout struct {
	cred, cons, ids, keys, credIDs, list, lastUsed, group string
}

// Hash fields of the layout.
const (
	FieldConsumer  = "consumer"
	FieldID        = "id"
	FieldExpiresAt = "expires_at"
	FieldCreatedAt = "created_at"
	FieldDisabled  = "disabled"
	FieldCanary    = "canary"
	FieldPrevious  = "previous"
	FieldCustomID  = "custom_id"
	FieldTags      = "tags"
	FieldGroups    = "groups"
	FieldLabels    = "labels"
	FieldLimits    = "limits"
	// FieldMemberLimits is a group hash's member_limits.
	FieldMemberLimits = "member_limits"
)

// NewLayout is the layout under prefix.
func NewLayout(prefix string) Layout {
	return Layout{cred: prefix + "cred:", cons: prefix + "consumer:", ids: prefix + "consumer-id:",
		keys: prefix + "consumer-keys:", credIDs: prefix + "credential-id:", list: prefix + "consumers", lastUsed: prefix + "last-used",
		group: prefix + "group:"}
}

// CredentialKey is the key of the credential hash of a key's digest.
func (l Layout) CredentialKey(d *consumers.Digest) string {
	return l.cred + hex.EncodeToString(d[:])
}

// ConsumerKey is the key of a consumer's hash.
func (l Layout) ConsumerKey(username string) string { return l.cons + username }

// ConsumerIDKey is the key of the hash that names the consumer of an id.
func (l Layout) ConsumerIDKey(id string) string { return l.ids + id }

// GroupKey is the key of a group's hash.
func (l Layout) GroupKey(name string) string { return l.group + name }

// ConsumerKeysKey is the key of the hash that indexes a consumer's
// credential hashes: each key's hex digest → its credential's id.
func (l Layout) ConsumerKeysKey(username string) string { return l.keys + username }

// CredentialIDKey is the key of the hash that names the consumer whose
// credential has the id.
func (l Layout) CredentialIDKey(id string) string { return l.credIDs + id }

// ConsumersKey is the key of the sorted set of every username.
func (l Layout) ConsumersKey() string { return l.list }

// LastUsedKey is the key of the hash of each credential's last use: its id
// → the minute since the Unix epoch (decimal) it last let a request in.
func (l Layout) LastUsedKey() string { return l.lastUsed }

// KeyKind is what a key of the layout holds.
type KeyKind uint8

// The kinds of keys of a layout.
const (
	KindOther KeyKind = iota // not the layout's, or malformed
	KindCredential
	KindConsumer
	KindConsumerID
	KindConsumerKeys
	KindCredentialID
	KindGroup
)

// KeyPrefixes are the prefixes of the layout's kinds of keys, credentials
// first (so a writer that removes in this order never leaves a key without
// its consumer), then the indexes, then the consumers, groups last. A SCAN
// for them must escape their glob characters. The consumers set and the
// last-used hash are one key each.
func (l Layout) KeyPrefixes() []string {
	return []string{l.cred, l.credIDs, l.keys, l.ids, l.cons, l.group}
}

// Parse tells what a key holds: a credential's digest, or the username or
// id it names (a consumer-keys hash names its consumer, a credential-id
// hash its credential id).
func (l Layout) Parse(key string) (kind KeyKind, d consumers.Digest, name string) {
	switch {
	case strings.HasPrefix(key, l.cred):
		h := key[len(l.cred):]
		if len(h) != 2*len(d) {
			return KindOther, d, ""
		}
		if _, err := hex.Decode(d[:], []byte(h)); err != nil {
			return KindOther, d, ""
		}
		return KindCredential, d, ""
	case strings.HasPrefix(key, l.cons):
		return KindConsumer, d, key[len(l.cons):]
	case strings.HasPrefix(key, l.ids):
		return KindConsumerID, d, key[len(l.ids):]
	case strings.HasPrefix(key, l.keys):
		return KindConsumerKeys, d, key[len(l.keys):]
	case strings.HasPrefix(key, l.credIDs):
		return KindCredentialID, d, key[len(l.credIDs):]
	case strings.HasPrefix(key, l.group):
		return KindGroup, d, key[len(l.group):]
	}
	return KindOther, d, ""
}

// EncodeConsumer is the hash of a consumer. It always has an id, so that it
// exists in Redis (a hash needs a field) whatever the consumer has.
func EncodeConsumer(c consumers.Consumer) map[string]string {
	f := map[string]string{FieldID: c.ID()}
	if v := c.CustomID(); v != "" {
		f[FieldCustomID] = v
	}
	if v := c.Tags(); len(v) > 0 {
		// The consumers document refuses a tag that would not come back
		// (a comma, white space at an end, empty).
		f[FieldTags] = strings.Join(v, ",")
	}
	if v := c.Groups(); len(v) > 0 {
		f[FieldGroups] = strings.Join(v, ",")
	}
	if v := c.Labels(); len(v) > 0 {
		b, _ := json.Marshal(v) // a map of strings always encodes
		f[FieldLabels] = string(b)
	}
	if c.Disabled() {
		f[FieldDisabled] = "true"
	}
	encodeLimits(f, FieldLimits, c.Limits())
	return f
}

// encodeLimits sets field to a limits object, unless it is empty.
func encodeLimits(f map[string]string, field string, l consumers.Limits) {
	if l.Len() == 0 {
		return
	}
	b, err := json.Marshal(l.Entry())
	if err != nil {
		panic(err) // a Set's limits always encode: they passed the checks
	}
	f[field] = string(b)
}

// EncodeGroup is the hash of a group of the document's groups, and whether
// it needs one: a group without limits has none (a Redis hash needs a
// field to exist), which reads back as no limits.
func EncodeGroup(g consumers.Group) (map[string]string, bool) {
	f := map[string]string{}
	encodeLimits(f, FieldLimits, g.Limits())
	encodeLimits(f, FieldMemberLimits, g.MemberLimits())
	return f, len(f) > 0
}

// EncodeConsumerID is the hash that names the consumer of its id, and
// whether one is needed: a consumer whose id is its username is found by
// its username.
func EncodeConsumerID(c consumers.Consumer) (map[string]string, bool) {
	if c.ID() == c.Username() {
		return nil, false
	}
	return map[string]string{FieldConsumer: c.Username()}, true
}

// EncodeCredential is the hash of a credential. expiresAt is its expiry as
// the document wrote it (RFC 3339), or "": for a credential found by a
// previous secret (Credential.Previous), that secret's, or the
// credential's when it comes first (PreviousExpiresAt). Its created_at is
// written in UTC, to the second the Set holds.
func EncodeCredential(c consumers.Credential, expiresAt string) map[string]string {
	f := map[string]string{FieldConsumer: c.Consumer().Username(), FieldID: c.ID()}
	if expiresAt != "" {
		f[FieldExpiresAt] = expiresAt
	}
	if at, ok := c.CreatedAt(); ok {
		f[FieldCreatedAt] = at.UTC().Format(time.RFC3339)
	}
	if c.Disabled() {
		f[FieldDisabled] = "true"
	}
	if c.Canary() {
		f[FieldCanary] = "true"
	}
	encodeLimits(f, FieldLimits, c.Limits())
	if c.Previous() {
		f[FieldPrevious] = "true"
	}
	return f
}

// PreviousExpiresAt is the expires_at of a previous secret's hash, as
// written in the document: the secret's own, or its credential's
// (credentialExpiresAt, "" for never) when that comes first. Both are
// checked RFC 3339 times.
func PreviousExpiresAt(own, credentialExpiresAt string) string {
	if credentialExpiresAt == "" {
		return own
	}
	a, _ := time.Parse(time.RFC3339, own)
	b, _ := time.Parse(time.RFC3339, credentialExpiresAt)
	if b.Before(a) {
		return credentialExpiresAt
	}
	return own
}

// Decode makes the one-consumer set of a consumer hash and, unless cred is
// nil, of one credential hash whose key has the digest d: the hashes become
// a consumers.Document, which passes the checks of every source.
func Decode(username string, cons map[string]string, d *consumers.Digest, cred map[string]string) (*consumers.Set, error) {
	return DecodeWithGroups(username, cons, d, cred, nil)
}

// DecodeWithGroups is Decode with the hashes of the consumer's groups that
// have one, by name: the set's groups.
func DecodeWithGroups(username string, cons map[string]string, d *consumers.Digest, cred map[string]string, groups map[string]map[string]string) (*consumers.Set, error) {
	doc := consumers.Document{}
	for name, h := range groups {
		if doc.Groups == nil {
			doc.Groups = make(map[string]consumers.GroupEntry, len(groups))
		}
		var g consumers.GroupEntry
		var err error
		if g.Limits, err = consumers.ParseLimits([]byte(h[FieldLimits]), fmt.Sprintf("group %q: limits", name)); err != nil {
			return nil, err
		}
		if g.MemberLimits, err = consumers.ParseLimits([]byte(h[FieldMemberLimits]), fmt.Sprintf("group %q: member_limits", name)); err != nil {
			return nil, err
		}
		doc.Groups[name] = g
	}
	c, err := decodeConsumer(username, cons)
	if err != nil {
		return nil, err
	}
	if cred != nil {
		// A previous secret reads as its credential, with its own expiry.
		k, _, err := decodeCredential(d, cred)
		if err != nil {
			return nil, err
		}
		c.Keys = []consumers.CredentialEntry{k}
	}
	doc.Consumers = []consumers.ConsumerEntry{c}
	return consumers.Build(&doc)
}

// decodeConsumer is a consumer hash as a document's entry, without keys.
func decodeConsumer(username string, cons map[string]string) (consumers.ConsumerEntry, error) {
	c := consumers.ConsumerEntry{
		Username: username,
		ID:       cons[FieldID],
		CustomID: cons[FieldCustomID],
		Groups:   splitList(cons[FieldGroups]),
	}
	c.Tags = splitList(cons[FieldTags])
	var err error
	if l := cons[FieldLabels]; l != "" {
		if err := json.Unmarshal([]byte(l), &c.Labels); err != nil {
			return c, fmt.Errorf("consumer %q: labels are not a JSON object of strings", username)
		}
	}
	if c.Disabled, err = parseFlag(cons[FieldDisabled]); err != nil {
		return c, fmt.Errorf("consumer %q: disabled: %w", username, err)
	}
	if c.Limits, err = consumers.ParseLimits([]byte(cons[FieldLimits]), fmt.Sprintf("consumer %q: limits", username)); err != nil {
		return c, err
	}
	return c, nil
}

// decodeCredential is the credential hash of the key whose digest is d as
// a document's key: its hash. previous is a rolled credential's previous
// secret, which a lookup reads as its credential with its own expiry.
func decodeCredential(d *consumers.Digest, cred map[string]string) (k consumers.CredentialEntry, previous bool, err error) {
	k = consumers.CredentialEntry{ID: cred[FieldID], Hash: consumers.HashPrefix + hex.EncodeToString(d[:]), ExpiresAt: cred[FieldExpiresAt], CreatedAt: cred[FieldCreatedAt]}
	if k.Limits, err = consumers.ParseLimits([]byte(cred[FieldLimits]), fmt.Sprintf("credential %q: limits", k.ID)); err != nil {
		return k, false, err
	}
	if k.Disabled, err = parseFlag(cred[FieldDisabled]); err != nil {
		return k, false, fmt.Errorf("credential %q: disabled: %w", k.ID, err)
	}
	if k.Canary, err = parseFlag(cred[FieldCanary]); err != nil {
		return k, false, fmt.Errorf("credential %q: canary: %w", k.ID, err)
	}
	// Under the document's rules for previous secrets.
	previous, err = parseFlag(cred[FieldPrevious])
	switch {
	case err != nil:
		return k, false, fmt.Errorf("credential %q: previous: %w", k.ID, err)
	case previous && k.Canary:
		return k, false, fmt.Errorf("credential %q is a canary and cannot have previous secrets", k.ID)
	case previous && k.ExpiresAt == "":
		return k, false, fmt.Errorf("credential %q: a previous secret without expires_at", k.ID)
	}
	return k, previous, nil
}

// EntryHashes are the hashes of the layout that hold one consumer: what a
// writer (push, the management API) writes for it, besides the consumers
// set, which lists its username.
type EntryHashes struct {
	// Consumer is the consumer hash.
	Consumer map[string]string
	// ConsumerID is the consumer-id hash, nil for a consumer whose id is
	// its username.
	ConsumerID map[string]string
	// Keys is the consumer-keys hash: each key's hex digest → its
	// credential's id.
	Keys map[string]string
	// Credentials are the credential hashes, one per key.
	Credentials []CredentialHash
	// CredentialIDs are the ids of the consumer's credentials, each the key
	// of a credential-id hash (EncodeCredentialID).
	CredentialIDs []string
}

// CredentialHash is the hash of the credential key whose digest is Digest.
type CredentialHash struct {
	Digest consumers.Digest
	Fields map[string]string
}

// EncodeEntry is the layout's hashes of the consumer e, which set (built
// from a document that holds e, checked) holds as c. Every hash of a
// credential is made here: each of its keys, the current one and (after a
// roll) the previous ones.
func EncodeEntry(e *consumers.ConsumerEntry, c consumers.Consumer, set *consumers.Set) (EntryHashes, error) {
	h := EntryHashes{Consumer: EncodeConsumer(c), Keys: map[string]string{}}
	h.ConsumerID, _ = EncodeConsumerID(c)
	for _, k := range e.Keys {
		d, ok := k.Digest()
		if !ok {
			return h, errors.New("a key of the document has no digest") // cannot happen: Build checked it
		}
		cred, ok := set.Lookup(&d)
		if !ok {
			return h, errors.New("a key of the document is not in its set") // cannot happen: Build made the set from it
		}
		h.Credentials = append(h.Credentials, CredentialHash{d, EncodeCredential(cred, k.ExpiresAt)})
		h.Keys[hex.EncodeToString(d[:])] = cred.ID()
		h.CredentialIDs = append(h.CredentialIDs, cred.ID())
		// A rolled credential's previous secrets, each its own hash.
		for _, p := range k.Previous {
			d, ok := (&consumers.CredentialEntry{Hash: p.Hash}).Digest()
			if !ok {
				return h, errors.New("a previous secret of the document has no digest") // cannot happen: Build checked it
			}
			prev, ok := set.Lookup(&d)
			if !ok || !prev.Previous() {
				return h, errors.New("a previous secret of the document is not in its set") // cannot happen
			}
			h.Credentials = append(h.Credentials, CredentialHash{d, EncodeCredential(prev, PreviousExpiresAt(p.ExpiresAt, k.ExpiresAt))})
			h.Keys[hex.EncodeToString(d[:])] = cred.ID()
		}
	}
	return h, nil
}

// EncodeCredentialID is the credential-id hash of a credential of the
// consumer username.
func EncodeCredentialID(username string) map[string]string {
	return map[string]string{FieldConsumer: username}
}

// DecodeEntry is the consumer username as a document's entry, from its
// consumer hash, its consumer-keys hash and the credential hashes that
// keys names (by hex digest; a missing one is not there). A credential
// hash that is missing, or names another consumer or credential id than
// the index does, is left out: the index is stale, and the next write
// rewrites it. Keys come in credential id order, each as its hash (a
// credential hash holds no key); a previous secret's hash is the previous
// secret of the credential with its id, its expires_at the hash's (its
// own, or its credential's when earlier).
func DecodeEntry(username string, cons, keys map[string]string, creds map[string]map[string]string) (*consumers.ConsumerEntry, error) {
	e, err := decodeConsumer(username, cons)
	if err != nil {
		return nil, err
	}
	hexes := slices.Collect(maps.Keys(keys))
	slices.SortFunc(hexes, func(a, b string) int { return cmp.Or(strings.Compare(keys[a], keys[b]), strings.Compare(a, b)) })
	var previous []consumers.CredentialEntry
	for _, x := range hexes {
		var d consumers.Digest
		if len(x) != 2*len(d) {
			continue
		}
		if _, err := hex.Decode(d[:], []byte(x)); err != nil {
			continue
		}
		f := creds[x]
		if f[FieldConsumer] != username || f[FieldID] != keys[x] {
			continue
		}
		k, prev, err := decodeCredential(&d, f)
		if err != nil {
			return nil, fmt.Errorf("consumer %q, %w", username, err)
		}
		if prev {
			previous = append(previous, k)
		} else {
			e.Keys = append(e.Keys, k)
		}
	}
	for _, p := range previous {
		for i := range e.Keys {
			if e.Keys[i].ID == p.ID {
				e.Keys[i].Previous = append(e.Keys[i].Previous, consumers.PreviousSecret{Hash: p.Hash, ExpiresAt: p.ExpiresAt})
				break
			}
		}
	}
	return &e, nil
}

// parseFlag reads a "true"/"false" hash field; empty is false.
func parseFlag(v string) (bool, error) {
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, fmt.Errorf("want true or false, got %q", v)
}

// splitList reads a comma-separated hash field (tags, groups): each part
// trimmed of white space, empty parts dropped. A tag or group that is empty,
// holds a comma or has white space at an end would read back as other
// ones, which is why a consumers document refuses them (consumers.CheckTag,
// consumers.CheckGroupName) whatever source holds it.
func splitList(v string) []string {
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
