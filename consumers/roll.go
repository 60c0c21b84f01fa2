package consumers

import (
	"errors"
	"fmt"
	"time"
)

// Errors of ConsumerEntry.Roll that a caller may answer differently from a
// bad argument: the credential cannot be rolled as it stands.
var (
	// ErrRollCanary: a canary is issued to nobody, so nobody needs its
	// old secret to keep working; mint another canary instead.
	ErrRollCanary = errors.New("a canary cannot be rolled")
	// ErrRollExpired: the credential has expired, and its new secret
	// would be refused as well; give it a later expiry first.
	ErrRollExpired = errors.New("the credential has expired")
)

// Roll gives the consumer's key i (0-based) a new secret, newHash (HashKey
// of the new key: a roll writes no key in plain text), and keeps its
// current secret working, as the same credential, for grace: the current
// secret, hashed if it was a plain key, becomes a previous secret expiring
// at the earlier of now+grace (to the second) and the credential's own
// expiry. With grace 0 the current secret stops working at once and is not
// kept. Previous secrets already expired at now are dropped.
//
// The credential keeps its id (a derived one is written out, so that it
// cannot change), its expiry, flags and created_at: created_at is when the
// credential was issued, and max_idle and `caddy key-auth stale` judge the
// credential, not one of its secrets. until is when the current secret
// stops working: now+grace or earlier, or now for grace 0.
//
// Roll checks only the credential itself; the document's rules (a new
// secret unique among every key) are checked when the document is written
// (Document.Marshal, docfile). Its errors name the credential by id, never
// a secret.
func (c *ConsumerEntry) Roll(i int, newHash string, grace time.Duration, now time.Time) (until time.Time, err error) {
	if i < 0 || i >= len(c.Keys) {
		return time.Time{}, fmt.Errorf("consumer %q has no key #%d", c.Username, i+1)
	}
	id := c.CredentialID(i)
	k := &c.Keys[i]
	newDigest, ok := (&CredentialEntry{Hash: newHash}).Digest()
	switch {
	case !ok:
		return time.Time{}, fmt.Errorf("credential %q: the new secret is not a hash (want %q and 64 hex digits)", id, HashPrefix)
	case grace < 0:
		return time.Time{}, fmt.Errorf("credential %q: the grace period is negative", id)
	case k.Canary:
		return time.Time{}, fmt.Errorf("credential %q: %w", id, ErrRollCanary)
	}
	oldDigest, ok := k.Digest()
	if !ok {
		return time.Time{}, fmt.Errorf("credential %q has neither a key nor a well-formed hash", id)
	}
	var expiry time.Time
	if k.ExpiresAt != "" {
		if expiry, err = time.Parse(time.RFC3339, k.ExpiresAt); err != nil {
			return time.Time{}, fmt.Errorf("credential %q has an expires_at that is not an RFC 3339 time", id)
		}
		if !now.Before(expiry) {
			return time.Time{}, fmt.Errorf("credential %q: %w (at %s)", id, ErrRollExpired, expiry.UTC().Format(time.RFC3339))
		}
	}
	if newDigest == oldDigest {
		return time.Time{}, fmt.Errorf("credential %q: the new secret is its current one", id)
	}

	kept := make([]PreviousSecret, 0, len(k.Previous)+1)
	for n, p := range k.Previous {
		at, err := time.Parse(time.RFC3339, p.ExpiresAt)
		if err != nil {
			return time.Time{}, fmt.Errorf("credential %q: previous secret #%d has an expires_at that is not an RFC 3339 time", id, n+1)
		}
		if d, ok := (&CredentialEntry{Hash: p.Hash}).Digest(); ok && d == newDigest {
			return time.Time{}, fmt.Errorf("credential %q: the new secret is one of its previous ones", id)
		}
		if now.Before(at) {
			kept = append(kept, p)
		}
	}
	until = now
	if grace > 0 {
		// To the second, as every time a command writes; never past the
		// credential's own expiry, which is kept as written.
		until = now.Add(grace).Truncate(time.Second)
		end := until.UTC().Format(time.RFC3339)
		if k.ExpiresAt != "" && expiry.Before(until) {
			until, end = expiry, k.ExpiresAt
		}
		if until.After(now) {
			old := k.Hash
			if k.Key != "" {
				old = HashKey(k.Key)
			}
			kept = append(kept, PreviousSecret{Hash: old, ExpiresAt: end})
		} else {
			until = now // a grace under a second: nothing to keep
		}
	}
	k.ID = id
	k.Key, k.Hash = "", newHash
	k.Previous = kept
	if len(k.Previous) == 0 {
		k.Previous = nil
	}
	return until, nil
}
