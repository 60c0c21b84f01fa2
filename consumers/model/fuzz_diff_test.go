package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// FuzzParseDiff holds the hand-written parser to a second opinion: a strict,
// well-kept JSON decoder (encoding/json/v2's mirror) followed by the rules of
// a consumers document written out plainly. Parse must accept exactly the
// documents that decoder and those rules accept, and build the same
// consumers: usernames, ids, custom ids, tags, and per credential its id,
// key digest, consumer and expiry.
//
// The decoder refuses unknown and duplicate member names (after unescaping;
// names match case-sensitively), invalid UTF-8, anything but white space
// after the document, and a number or boolean where a string is wanted.
// One leniency is shared on purpose: an escaped lone UTF-16 surrogate
// ("\ud800") decodes to U+FFFD, as encoding/json and Parse do; the strict
// decoder alone would refuse it.
func FuzzParseDiff(f *testing.F) {
	f.Add([]byte(`{"consumers": [{"username": "a", "id": "b", "custom_id": null, "tags": ["x", "y"],
		"keys": [{"key": "k1"}, {"id": "b-ci", "hash": "sha256:` + strings.Repeat("aB", 32) + `", "expires_at": "1970-01-01T00:00:00Z"}]}]}`))
	f.Add([]byte(`{"consumers": [{"username": "a\ud800", "keys": [{"key": "k", "expires_at": "9999-12-31T23:59:59+01:00"}]}]}`))
	f.Add([]byte(`{"consumers": [{"username": "a", "keys": null, "tags": null}], "\u0063onsumers": []}`))
	f.Add(realisticDocument(3))
	// Edges of the rules: each refused or accepted by both.
	for _, doc := range []string{
		`{"Consumers": []}`,
		`{"consumers": [{"username": "a", "tags": [null]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k"}]}, {"username": "b", "keys": [{"hash": "sha256:` +
			strings.ToUpper(hex.EncodeToString(func() []byte { d := sha256.Sum256([]byte("k")); return d[:] }())) + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "` + strings.Repeat("k", MaxKeyLength) + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "` + strings.Repeat("k", MaxKeyLength+1) + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "expires_at": "1500-01-01T00:00:00Z"}]}]}`,
		`{"consumers": [{"username": "a"}, {"username": "b", "id": "a"}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k1"}, {"id": "a#1", "key": "k2"}]}]}`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		want, whyRefused := refParse(doc)
		set, err := Parse(doc)
		switch {
		case err != nil && whyRefused == "":
			t.Fatalf("Parse refused a document the reference accepts: %v", err)
		case err == nil && whyRefused != "":
			t.Fatalf("Parse accepted a document the reference refuses: %s", whyRefused)
		case err != nil:
			return
		}
		compareSet(t, set, want)
	})
}

// The document as the reference decodes it. Pointers tell null and absence
// from an empty value; null stands for absence wherever the format allows it.
type refDocument struct {
	Consumers *[]*refConsumer `json:"consumers"`
}

type refConsumer struct {
	Username *string          `json:"username"`
	ID       *string          `json:"id"`
	CustomID *string          `json:"custom_id"`
	Tags     []*string        `json:"tags"`
	Keys     []*refCredential `json:"keys"`
}

type refCredential struct {
	ID        *string `json:"id"`
	Key       *string `json:"key"`
	Hash      *string `json:"hash"`
	ExpiresAt *string `json:"expires_at"`
}

// refWant is what a Set must hold for a consumer.
type refWant struct {
	username, id, customID string
	tags                   []string
	credentials            []refWantCredential
}

type refWantCredential struct {
	id      string
	digest  Digest
	expires *time.Time
}

// refParse decodes a document with the strict decoder and applies the rules
// of the format; it returns why the document is refused, or "".
func refParse(doc []byte) ([]refWant, string) {
	var d refDocument
	if !utf8.Valid(doc) {
		return nil, "invalid UTF-8"
	}
	err := json.Unmarshal(doc, &d, json.RejectUnknownMembers(true))
	if err != nil && strings.Contains(err.Error(), "surrogate") {
		// The shared leniency; the raw bytes are valid UTF-8 (checked above).
		d = refDocument{}
		err = json.Unmarshal(doc, &d, json.RejectUnknownMembers(true), jsontext.AllowInvalidUTF8(true))
	}
	if err != nil {
		return nil, "decoder: " + err.Error()
	}
	if d.Consumers == nil {
		return nil, `"consumers" missing or null`
	}
	var (
		out                     []refWant
		usernames, ids, credIDs = map[string]bool{}, map[string]bool{}, map[string]bool{}
		digests                 = map[Digest]bool{}
	)
	for ci, c := range *d.Consumers {
		if c == nil {
			return nil, fmt.Sprintf("consumer #%d is null", ci+1)
		}
		w := refWant{username: refString(c.Username), id: refString(c.Username), customID: refString(c.CustomID)}
		if w.username == "" {
			return nil, fmt.Sprintf("consumer #%d has no username", ci+1)
		}
		if c.ID != nil {
			if *c.ID == "" {
				return nil, fmt.Sprintf("consumer #%d has an empty id", ci+1)
			}
			w.id = *c.ID
		}
		if usernames[w.username] || ids[w.id] {
			return nil, fmt.Sprintf("consumer #%d: username or id taken", ci+1)
		}
		usernames[w.username], ids[w.id] = true, true
		for _, tag := range c.Tags {
			if tag == nil {
				return nil, fmt.Sprintf("consumer #%d has a null tag", ci+1)
			}
			w.tags = append(w.tags, *tag)
		}
		for ki, k := range c.Keys {
			if k == nil {
				return nil, fmt.Sprintf("key #%d of consumer #%d is null", ki+1, ci+1)
			}
			wc, why := refCredentialOf(k, w.id, ki)
			if why != "" {
				return nil, fmt.Sprintf("key #%d of consumer #%d: %s", ki+1, ci+1, why)
			}
			if credIDs[wc.id] || digests[wc.digest] {
				return nil, fmt.Sprintf("key #%d of consumer #%d: credential id or key taken", ki+1, ci+1)
			}
			credIDs[wc.id], digests[wc.digest] = true, true
			w.credentials = append(w.credentials, wc)
		}
		out = append(out, w)
	}
	return out, ""
}

func refCredentialOf(k *refCredential, consumerID string, i int) (refWantCredential, string) {
	w := refWantCredential{id: consumerID + "#" + strconv.Itoa(i+1)}
	if k.ID != nil {
		if *k.ID == "" {
			return w, "empty id"
		}
		w.id = *k.ID
	}
	switch {
	case (k.Key == nil) == (k.Hash == nil):
		return w, "wants exactly one of key and hash"
	case k.Key != nil && (*k.Key == "" || len(*k.Key) > MaxKeyLength):
		return w, "key empty or too long"
	case k.Key != nil:
		w.digest = sha256.Sum256([]byte(*k.Key))
	default:
		hexDigits, ok := strings.CutPrefix(*k.Hash, "sha256:")
		raw, err := hex.DecodeString(hexDigits)
		if !ok || err != nil || len(raw) != len(w.digest) {
			return w, "malformed hash"
		}
		copy(w.digest[:], raw)
	}
	if k.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *k.ExpiresAt)
		if err != nil {
			return w, "expires_at is not RFC 3339"
		}
		w.expires = &t
	}
	return w, ""
}

func refString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// compareSet checks, through the Set's methods alone, that it holds what the
// reference decoded. Keys are compared by digest, never printed.
func compareSet(t *testing.T, s *Set, want []refWant) {
	t.Helper()
	nKeys := 0
	for _, w := range want {
		nKeys += len(w.credentials)
	}
	if nc, nk := s.Len(); nc != len(want) || nk != nKeys {
		t.Fatalf("Set holds %d consumers and %d keys, the reference %d and %d", nc, nk, len(want), nKeys)
	}
	for i, w := range want {
		c := s.ConsumerAt(i)
		if c.Username() != w.username || c.ID() != w.id || c.CustomID() != w.customID || !slices.Equal(c.Tags(), w.tags) {
			t.Fatalf("consumer #%d: username, id, custom id, tags = %q %q %q %q, the reference %q %q %q %q", i+1,
				c.Username(), c.ID(), c.CustomID(), c.Tags(), w.username, w.id, w.customID, w.tags)
		}
		for j, wc := range w.credentials {
			cr, ok := s.Lookup(&wc.digest)
			switch {
			case !ok:
				t.Fatalf("consumer #%d, key #%d: not found by its digest", i+1, j+1)
			case cr.Consumer().Index() != i || cr.ID() != wc.id:
				t.Fatalf("consumer #%d, key #%d: found as credential %q of consumer #%d, the reference says %q",
					i+1, j+1, cr.ID(), cr.Consumer().Index()+1, wc.id)
			case cr.Expires() != (wc.expires != nil):
				t.Fatalf("consumer #%d, key #%d: Expires() = %v", i+1, j+1, cr.Expires())
			case wc.expires != nil:
				checkExpiry(t, cr, *wc.expires, fmt.Sprintf("consumer #%d, key #%d", i+1, j+1))
			}
		}
	}
}

// checkExpiry checks that a credential expires at the instant given, to the
// nanosecond, where a Set can tell: instants outside the years 1678 to 2262
// are held as the nearest one inside, and the epoch itself as a nanosecond
// before it (zero means never).
func checkExpiry(t *testing.T, cr Credential, at time.Time, what string) {
	t.Helper()
	lo, hi := time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
	switch {
	case at.After(hi):
		at = hi
	case at.Before(lo):
		at = lo
	case at.Equal(time.Unix(0, 0)):
		at = time.Unix(0, -1)
	}
	if !cr.ExpiredAt(at) {
		t.Fatalf("%s: not expired at its expires_at %s", what, at.Format(time.RFC3339Nano))
	}
	if at.After(lo) && cr.ExpiredAt(at.Add(-time.Nanosecond)) {
		t.Fatalf("%s: expired a nanosecond before its expires_at %s", what, at.Format(time.RFC3339Nano))
	}
}
