package redis

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// Layout is how consumers live in Redis under a key prefix: the one
// description that the source (the reader) and `caddy key-auth push` (the
// writer) share, and that any service may write with HSET and DEL:
//
//	<prefix>cred:<hex SHA-256 of the key>  hash: consumer, id (both required),
//	                                       expires_at, created_at (RFC 3339),
//	                                       disabled, canary, previous
//	<prefix>consumer:<username>            hash: id (default the username), custom_id,
//	                                       tags, groups (comma-separated),
//	                                       labels (a JSON object), disabled
//	<prefix>consumer-id:<id>               hash: consumer (the username of the
//	                                       consumer whose id this is, when it is
//	                                       not the username)
//
// A rolled credential's previous secret is a credential hash of its own,
// with the credential's consumer, id, created_at and flags, its own
// expires_at (required: the earlier of the secret's and the credential's),
// and previous "true", which tells a writer or a lister that it is not a
// credential of its own; the source reads it as the credential with that
// expiry. A canary has no previous secrets.
//
// Flags are "true" or "false" (empty is false). The consumer-id hashes only
// serve to find an anonymous consumer named by its id; one that names a
// consumer whose id is no longer that id is ignored.
type Layout struct {
	cred, cons, ids string
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
)

// NewLayout is the layout under prefix.
func NewLayout(prefix string) Layout {
	return Layout{cred: prefix + "cred:", cons: prefix + "consumer:", ids: prefix + "consumer-id:"}
}

// CredentialKey is the key of the credential hash of a key's digest.
func (l Layout) CredentialKey(d *consumers.Digest) string {
	return l.cred + hex.EncodeToString(d[:])
}

// ConsumerKey is the key of a consumer's hash.
func (l Layout) ConsumerKey(username string) string { return l.cons + username }

// ConsumerIDKey is the key of the hash that names the consumer of an id.
func (l Layout) ConsumerIDKey(id string) string { return l.ids + id }

// KeyKind is what a key of the layout holds.
type KeyKind uint8

// The kinds of keys of a layout.
const (
	KindOther KeyKind = iota // not the layout's, or malformed
	KindCredential
	KindConsumer
	KindConsumerID
)

// KeyPrefixes are the prefixes of the layout's kinds of keys, credentials
// first (so a writer that removes in this order never leaves a key without
// its consumer). A SCAN for them must escape their glob characters.
func (l Layout) KeyPrefixes() []string {
	return []string{l.cred, l.ids, l.cons}
}

// Parse tells what a key holds: a credential's digest, or the username or
// id it names.
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
	return f
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
			return nil, fmt.Errorf("consumer %q: labels are not a JSON object of strings", username)
		}
	}
	if c.Disabled, err = parseFlag(cons[FieldDisabled]); err != nil {
		return nil, fmt.Errorf("consumer %q: disabled: %w", username, err)
	}
	if cred != nil {
		k := consumers.CredentialEntry{ID: cred[FieldID], Hash: consumers.HashPrefix + hex.EncodeToString(d[:]), ExpiresAt: cred[FieldExpiresAt], CreatedAt: cred[FieldCreatedAt]}
		if k.Disabled, err = parseFlag(cred[FieldDisabled]); err != nil {
			return nil, fmt.Errorf("credential %q: disabled: %w", k.ID, err)
		}
		if k.Canary, err = parseFlag(cred[FieldCanary]); err != nil {
			return nil, fmt.Errorf("credential %q: canary: %w", k.ID, err)
		}
		// A previous secret reads as its credential with its own expiry,
		// under the document's rules for previous secrets.
		previous, err := parseFlag(cred[FieldPrevious])
		switch {
		case err != nil:
			return nil, fmt.Errorf("credential %q: previous: %w", k.ID, err)
		case previous && k.Canary:
			return nil, fmt.Errorf("credential %q is a canary and cannot have previous secrets", k.ID)
		case previous && k.ExpiresAt == "":
			return nil, fmt.Errorf("credential %q: a previous secret without expires_at", k.ID)
		}
		c.Keys = []consumers.CredentialEntry{k}
	}
	return consumers.Build(&consumers.Document{Consumers: []consumers.ConsumerEntry{c}})
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
