package consumers

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

// rolledDoc has bob's credential rolled twice (one previous secret still in
// its grace, one past it), carol's rolled with a grace that outlasts the
// credential itself, and dave's disabled credential rolled.
var rolledDoc = `{"consumers": [
  {"username": "bob", "keys": [
    {"key": "` + keyMark + `-other"},
    {"hash": "` + hashOf(keyMark+"-bob-new") + `", "created_at": "2026-01-01T00:00:00Z", "previous": [
      {"hash": "` + hashOf(keyMark+"-bob-old") + `", "expires_at": "2026-06-02T12:00:00Z"},
      {"hash": "` + hashOf(keyMark+"-bob-older") + `", "expires_at": "2026-05-01T00:00:00Z"}]}]},
  {"username": "carol", "keys": [
    {"id": "carol-ci", "hash": "` + hashOf(keyMark+"-carol-new") + `", "expires_at": "2026-06-01T13:00:00Z", "previous": [
      {"hash": "` + hashOf(keyMark+"-carol-old") + `", "expires_at": "2026-06-03T00:00:00+02:00"}]}]},
  {"username": "dave", "keys": [
    {"id": "dave-1", "key": "` + keyMark + `-dave-new", "disabled": true, "previous": [
      {"hash": "` + hashOf(keyMark+"-dave-old") + `", "expires_at": "2026-06-02T00:00:00Z"}]}]}
]}`

// TestSetPrevious: a previous secret finds the very credential its current
// key finds (id, consumer, Index, flags, created_at), with its own expiry,
// capped by the credential's.
func TestSetPrevious(t *testing.T) {
	s := mustParse(t, rolledDoc)
	if c, k := s.Len(); c != 3 || k != 4 {
		t.Fatalf("Len() = %d, %d; previous secrets are not keys of their own", c, k)
	}
	tests := []struct {
		key, current string
		expiresAt    string // "" for never
	}{
		{keyMark + "-bob-old", keyMark + "-bob-new", "2026-06-02T12:00:00Z"},
		{keyMark + "-bob-older", keyMark + "-bob-new", "2026-05-01T00:00:00Z"},
		{keyMark + "-carol-old", keyMark + "-carol-new", "2026-06-01T13:00:00Z"}, // the credential's, earlier than its own
		{keyMark + "-dave-old", keyMark + "-dave-new", "2026-06-02T00:00:00Z"},
	}
	for _, tt := range tests {
		cur, ok := s.Lookup(digestOf(tt.current))
		if !ok || cur.Previous() {
			t.Fatalf("the current key of a rolled credential: found %v, previous %v", ok, cur.Previous())
		}
		old, ok := s.Lookup(digestOf(tt.key))
		switch {
		case !ok:
			t.Fatalf("a previous secret of %q is not found", cur.ID())
		case !old.Previous():
			t.Errorf("%q: Previous() = false for its previous secret", cur.ID())
		case old.ID() != cur.ID() || old.Index() != cur.Index() || old.Consumer() != cur.Consumer():
			t.Errorf("previous secret: credential %q (#%d), want %q (#%d)", old.ID(), old.Index(), cur.ID(), cur.Index())
		case old.Disabled() != cur.Disabled() || old.Canary() != cur.Canary():
			t.Errorf("%q: the previous secret's flags differ", cur.ID())
		case s.CredentialAt(old.Index()) != s.CredentialAt(cur.Index()):
			t.Errorf("%q: CredentialAt(Index()) differs", cur.ID())
		}
		a, aok := old.CreatedAt()
		if b, bok := cur.CreatedAt(); aok != bok || !a.Equal(b) {
			t.Errorf("%q: created_at %v %v, want %v %v", cur.ID(), a, aok, b, bok)
		}
		want, _ := time.Parse(time.RFC3339, tt.expiresAt)
		got, ok := old.ExpiresAt()
		if !ok || !got.Equal(want) || !old.Expires() {
			t.Errorf("%q: previous secret expires at %v, %v; want %v", cur.ID(), got, ok, want)
		}
		if old.ExpiredAt(want.Add(-time.Nanosecond)) || !old.ExpiredAt(want) {
			t.Errorf("%q: ExpiredAt around %v is wrong", cur.ID(), want)
		}
	}
	// The current keys keep their own expiry.
	if c, _ := s.Lookup(digestOf(keyMark + "-bob-new")); c.Expires() {
		t.Error("bob's current key expires, like its previous secrets")
	}
	if c, _ := s.Lookup(digestOf(keyMark + "-carol-new")); !c.ExpiredAt(time.Date(2026, 6, 1, 13, 0, 0, 0, time.UTC)) {
		t.Error("carol's current key does not expire at its expires_at")
	}
	if _, ok := s.Lookup(digestOf(keyMark + "-other")); !ok {
		t.Error("a key that was not rolled is lost")
	}
}

// TestPreviousCostsNothingElse holds previous secrets to records past the
// keys': a credential record, a Credential and a set without them stay as
// they were.
func TestPreviousCostsNothingElse(t *testing.T) {
	if n := unsafe.Sizeof(Credential{}); n != 16 {
		t.Errorf("Credential is %d bytes, want 16", n)
	}
	plain := mustParse(t, `{"consumers": [{"username": "a", "keys": [{"key": "`+keyMark+`"}]}]}`)
	if plain.previousOf != nil || len(plain.credentials) != 1 {
		t.Error("a set without previous secrets has records for them")
	}
	s := mustParse(t, rolledDoc)
	if len(s.previousOf) != 4 || cap(s.previousOf) != 4 || len(s.credentials) != 8 || cap(s.credentials) != 8 {
		t.Errorf("previous secrets %d/%d, records %d/%d; want 4/4 and 8/8", len(s.previousOf), cap(s.previousOf), len(s.credentials), cap(s.credentials))
	}
	if s.Bytes() < len(s.credentials)*int(unsafe.Sizeof(credentialRec{}))+len(s.previousOf)*4 {
		t.Error("Bytes() leaves out the previous secrets")
	}
}

// TestPreviousLookupNoAllocs: looking a previous secret up, and what the
// handler asks of it, allocate nothing.
func TestPreviousLookupNoAllocs(t *testing.T) {
	s := mustParse(t, rolledDoc)
	old, cur := digestOf(keyMark+"-bob-old"), digestOf(keyMark+"-bob-new")
	now := time.Now()
	var sink int
	allocs := testing.AllocsPerRun(100, func() {
		for _, d := range []*Digest{old, cur} {
			c, ok := s.Lookup(d)
			if ok && c.Expires() && !c.ExpiredAt(now) && !c.Disabled() && !c.Canary() {
				sink += c.Index() + len(c.ID())
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
	_ = sink
}

// BenchmarkLookupRolled is BenchmarkLookup on a set where one credential
// in ten was rolled: one known key in eleven is a previous secret.
func BenchmarkLookupRolled(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var doc Document
	var keys []string
	for i := range 100000 {
		c := ConsumerEntry{Username: fmt.Sprintf("u%d", i)}
		k := CredentialEntry{Key: fmt.Sprintf("key-%d-%x", i, r.Uint64())}
		keys = append(keys, k.Key)
		if i%10 == 0 {
			old := fmt.Sprintf("old-%d-%x", i, r.Uint64())
			k.Previous = []PreviousSecret{{Hash: HashKey(old), ExpiresAt: "2030-01-01T00:00:00Z"}}
			keys = append(keys, old)
		}
		c.Keys = []CredentialEntry{k}
		doc.Consumers = append(doc.Consumers, c)
	}
	s, err := Build(&doc)
	if err != nil {
		b.Fatal(err)
	}
	digests := make([]Digest, 1024)
	for i := range digests {
		if i%2 == 0 {
			digests[i] = *digestOf(keys[r.IntN(len(keys))])
		} else {
			digests[i] = *digestOf(fmt.Sprintf("unknown-%d", i))
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, ok := s.Lookup(&digests[i%len(digests)])
		if ok != (i%len(digests)%2 == 0) {
			b.Fatal("wrong lookup result")
		}
	}
}

// TestAllPrevious yields each previous secret as the credential it finds.
func TestAllPrevious(t *testing.T) {
	s := mustParse(t, rolledDoc)
	var got []string
	for c := range s.AllPrevious() {
		at, _ := c.ExpiresAt()
		if want, ok := s.Lookup(digestOf(keyMark + "-" + c.Consumer().Username() + "-new")); !ok || want.Index() != c.Index() || !c.Previous() {
			t.Errorf("a previous secret of %q yielded as credential %q", c.Consumer().Username(), c.ID())
		}
		got = append(got, c.Consumer().Username()+" "+at.UTC().Format(time.RFC3339))
	}
	want := []string{"bob 2026-06-02T12:00:00Z", "bob 2026-05-01T00:00:00Z", "carol 2026-06-01T13:00:00Z", "dave 2026-06-02T00:00:00Z"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("AllPrevious yields %q, want %q", got, want)
	}
	for range (*Set)(nil).AllPrevious() {
		t.Error("a nil set yields a previous secret")
	}
}
