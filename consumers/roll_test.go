package consumers

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoll(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 500, time.UTC)
	newHash := HashKey(keyMark + "-new")
	doc := func() *Document {
		return &Document{Consumers: []ConsumerEntry{{Username: "bob", ID: "b0b", Keys: []CredentialEntry{
			{Key: keyMark + "-first"},
			{Key: keyMark + "-plain", CreatedAt: "2026-01-01T00:00:00Z", Disabled: true},
			{ID: "bob-ci", Hash: HashKey(keyMark + "-ci"), ExpiresAt: "2026-06-01T18:00:00+02:00", Previous: []PreviousSecret{
				{Hash: HashKey(keyMark + "-ci-gone"), ExpiresAt: "2026-06-01T12:00:00Z"},
				{Hash: HashKey(keyMark + "-ci-kept"), ExpiresAt: "2026-06-01T13:00:00Z"},
			}},
			{ID: "bob-canary", Key: keyMark + "-canary", Canary: true},
			{ID: "bob-expired", Key: keyMark + "-expired", ExpiresAt: "2026-06-01T12:00:00Z"},
		}}}}
	}

	t.Run("a plain key with a derived id", func(t *testing.T) {
		d := doc()
		c := &d.Consumers[0]
		until, err := c.Roll(1, newHash, 24*time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		k := c.Keys[1]
		want := CredentialEntry{ID: "b0b#2", Hash: newHash, CreatedAt: "2026-01-01T00:00:00Z", Disabled: true,
			Previous: []PreviousSecret{{Hash: HashKey(keyMark + "-plain"), ExpiresAt: "2026-06-02T12:00:00Z"}}}
		if !equalEntries(k, want) {
			t.Errorf("rolled to %+v, want %+v", k, want)
		}
		if !until.Equal(time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)) {
			t.Errorf("until %v", until)
		}
		checkRolled(t, d, keyMark+"-plain", keyMark+"-new", "b0b#2", now)
	})
	t.Run("the grace ends with the credential; expired previous secrets dropped", func(t *testing.T) {
		d := doc()
		c := &d.Consumers[0]
		until, err := c.Roll(2, newHash, 48*time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		k := c.Keys[2]
		if k.ExpiresAt != "2026-06-01T18:00:00+02:00" || k.ID != "bob-ci" || k.Hash != newHash {
			t.Errorf("credential %+v", k)
		}
		want := []PreviousSecret{
			{Hash: HashKey(keyMark + "-ci-kept"), ExpiresAt: "2026-06-01T13:00:00Z"},
			{Hash: HashKey(keyMark + "-ci"), ExpiresAt: "2026-06-01T18:00:00+02:00"},
		}
		if len(k.Previous) != 2 || k.Previous[0] != want[0] || k.Previous[1] != want[1] {
			t.Errorf("previous %+v, want %+v", k.Previous, want)
		}
		if !until.Equal(time.Date(2026, 6, 1, 16, 0, 0, 0, time.UTC)) {
			t.Errorf("until %v", until)
		}
		checkRolled(t, d, keyMark+"-ci", keyMark+"-new", "bob-ci", now)
	})
	t.Run("grace 0: the old secret stops at once", func(t *testing.T) {
		d := doc()
		c := &d.Consumers[0]
		until, err := c.Roll(0, newHash, 0, now)
		if err != nil || !until.Equal(now) {
			t.Fatalf("until %v, %v", until, err)
		}
		if k := c.Keys[0]; k.Previous != nil || k.Key != "" || k.Hash != newHash || k.ID != "b0b#1" {
			t.Errorf("credential %+v", k)
		}
		s, err := Build(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Lookup(digestOf(keyMark + "-first")); ok {
			t.Error("the old secret still works")
		}
	})
	t.Run("rolled twice", func(t *testing.T) {
		d := doc()
		c := &d.Consumers[0]
		if _, err := c.Roll(0, newHash, time.Hour, now); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Roll(0, HashKey(keyMark+"-newer"), time.Hour, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if len(c.Keys[0].Previous) != 2 {
			t.Fatalf("previous %+v", c.Keys[0].Previous)
		}
		checkRolled(t, d, keyMark+"-first", keyMark+"-newer", "b0b#1", now)
		checkRolled(t, d, keyMark+"-new", keyMark+"-newer", "b0b#1", now)
	})
	for _, tt := range []struct {
		name  string
		i     int
		hash  string
		grace time.Duration
		want  string
		is    error
	}{
		{"no such key", 9, newHash, time.Hour, `consumer "bob" has no key #10`, nil},
		{"a plain key for the new secret", 0, keyMark + "-raw", time.Hour, `credential "b0b#1": the new secret is not a hash (want "sha256:" and 64 hex digits)`, nil},
		{"a negative grace", 0, newHash, -time.Second, `credential "b0b#1": the grace period is negative`, nil},
		{"a canary", 3, newHash, time.Hour, `credential "bob-canary": a canary cannot be rolled`, ErrRollCanary},
		{"an expired credential", 4, newHash, time.Hour, `credential "bob-expired": the credential has expired (at 2026-06-01T12:00:00Z)`, ErrRollExpired},
		{"the current secret again", 2, HashKey(keyMark + "-ci"), time.Hour, `credential "bob-ci": the new secret is its current one`, nil},
		{"a previous secret again", 2, HashKey(keyMark + "-ci-gone"), time.Hour, `credential "bob-ci": the new secret is one of its previous ones`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := doc()
			before := d.Consumers[0].Keys[tt.i%len(d.Consumers[0].Keys)]
			_, err := d.Consumers[0].Roll(tt.i, tt.hash, tt.grace, now)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if strings.Contains(err.Error(), keyMark) || strings.Contains(err.Error(), tt.hash) {
				t.Errorf("error %q holds a secret", err)
			}
			if after := d.Consumers[0].Keys[tt.i%len(d.Consumers[0].Keys)]; !equalEntries(before, after) {
				t.Errorf("a refused roll changed the credential: %+v", after)
			}
		})
	}
}

// checkRolled builds the document and checks that the old and the new key
// find the same credential, the old one as a previous secret.
func checkRolled(t *testing.T, d *Document, oldKey, newKey, id string, now time.Time) {
	t.Helper()
	if _, err := d.Marshal(); err != nil {
		t.Fatalf("the rolled document would be refused: %v", err)
	}
	s, err := Build(d)
	if err != nil {
		t.Fatal(err)
	}
	old, okOld := s.Lookup(digestOf(oldKey))
	cur, okNew := s.Lookup(digestOf(newKey))
	if !okOld || !okNew || old.ID() != id || cur.ID() != id || old.Index() != cur.Index() || !old.Previous() || cur.Previous() {
		t.Fatalf("old key found %v as %q, new key found %v as %q; want both as %q", okOld, old.ID(), okNew, cur.ID(), id)
	}
	if old.ExpiredAt(now) {
		t.Error("the old key has expired at once")
	}
}

func equalEntries(a, b CredentialEntry) bool { return reflect.DeepEqual(a, b) }
