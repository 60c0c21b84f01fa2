package consumers

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const setDoc = `{"consumers": [
  {"username": "bob", "id": "b0b-1", "custom_id": "cust-42", "tags": ["partner", "eu"],
   "keys": [
     {"id": "bob-laptop", "key": "` + keyMark + `-bob-plain"},
     {"id": "bob-ci", "hash": "%s", "expires_at": "2027-01-01T00:00:00Z"},
     {"key": "` + keyMark + `-bob-old", "expires_at": "2020-01-01T00:00:00.000000001Z"}
   ]},
  {"username": "x", "id": "y"},
  {"username": "y", "id": "z", "keys": [{"key": "` + keyMark + `-y"}]},
  {"username": "anon"}
]}`

func testSet(t testing.TB) *Set {
	return mustParse(t, fmt.Sprintf(setDoc, hashOf(keyMark+"-bob-hashed")))
}

func TestSetLookup(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		name     string
		key      string
		found    bool
		id       string
		consumer string
	}{
		{"plain key", keyMark + "-bob-plain", true, "bob-laptop", "bob"},
		{"hashed credential, plain key", keyMark + "-bob-hashed", true, "bob-ci", "bob"},
		{"derived credential id", keyMark + "-bob-old", true, "b0b-1#3", "bob"},
		{"another consumer", keyMark + "-y", true, "z#1", "y"},
		{"unknown key", keyMark + "-nobody", false, "", ""},
		{"empty key", "", false, "", ""},
		{"a prefix of a key", keyMark + "-bob-plai", false, "", ""},
		{"a key and more", keyMark + "-bob-plainx", false, "", ""},
		{"a key in another case", keyMark + "-BOB-PLAIN", false, "", ""},
		{"the hash string itself", hashOf(keyMark + "-bob-hashed"), false, "", ""},
		{"a credential id", "bob-laptop", false, "", ""},
		{"a username", "bob", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := s.Lookup(digestOf(tt.key))
			if ok != tt.found {
				t.Fatalf("Lookup found = %v, want %v", ok, tt.found)
			}
			if !ok {
				return
			}
			if c.ID() != tt.id || c.Consumer().Username() != tt.consumer {
				t.Errorf("Lookup = credential %q of %q, want %q of %q", c.ID(), c.Consumer().Username(), tt.id, tt.consumer)
			}
		})
	}
}

func TestCredentialExpiry(t *testing.T) {
	s := testSet(t)
	at2027 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	at2020 := time.Date(2020, 1, 1, 0, 0, 0, 1, time.UTC)
	tests := []struct {
		name    string
		key     string
		now     time.Time
		expires bool
		expired bool
	}{
		{"absent: never expires", keyMark + "-bob-plain", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), false, false},
		{"future", keyMark + "-bob-hashed", at2027.Add(-time.Second), true, false},
		{"one nanosecond before", keyMark + "-bob-hashed", at2027.Add(-time.Nanosecond), true, false},
		{"at the instant", keyMark + "-bob-hashed", at2027, true, true},
		{"at the instant, in another zone", keyMark + "-bob-hashed", at2027.In(time.FixedZone("UTC+5", 5*3600)), true, true},
		{"past", keyMark + "-bob-hashed", at2027.Add(time.Hour), true, true},
		{"past, to the nanosecond", keyMark + "-bob-old", at2020, true, true},
		{"just before, to the nanosecond", keyMark + "-bob-old", at2020.Add(-time.Nanosecond), true, false},
		{"past, now", keyMark + "-bob-old", time.Now(), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := s.Lookup(digestOf(tt.key))
			if !ok {
				t.Fatal("key not found")
			}
			if c.Expires() != tt.expires {
				t.Errorf("Expires() = %v, want %v", c.Expires(), tt.expires)
			}
			if got := c.ExpiredAt(tt.now); got != tt.expired {
				t.Errorf("ExpiredAt(%s) = %v, want %v", tt.now, got, tt.expired)
			}
		})
	}
}

func TestFindConsumer(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		name, find string
		found      bool
		username   string
	}{
		{"by username", "bob", true, "bob"},
		{"by id", "b0b-1", true, "bob"},
		{"username before id", "y", true, "y"}, // "y" is also x's id
		{"by id, not a username", "z", true, "y"},
		{"a consumer without keys", "anon", true, "anon"},
		{"by custom id: no", "cust-42", false, ""},
		{"by credential id: no", "bob-laptop", false, ""},
		{"by a key: no", keyMark + "-bob-plain", false, ""},
		{"empty", "", false, ""},
		{"case matters", "BOB", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := s.FindConsumer(tt.find)
			if ok != tt.found {
				t.Fatalf("FindConsumer(%q) found = %v, want %v", tt.find, ok, tt.found)
			}
			if ok && c.Username() != tt.username {
				t.Errorf("FindConsumer(%q) = %q, want %q", tt.find, c.Username(), tt.username)
			}
			if ok && s.ConsumerAt(c.Index()).Username() != c.Username() {
				t.Errorf("ConsumerAt(Index()) is another consumer")
			}
		})
	}
}

func TestConsumerFields(t *testing.T) {
	s := testSet(t)
	tests := []wantConsumer{
		{"bob", "b0b-1", "cust-42", []string{"partner", "eu"}},
		{"x", "y", "", nil},
		{"y", "z", "", nil},
		{"anon", "anon", "", nil},
	}
	for i, w := range tests {
		t.Run(w.username, func(t *testing.T) {
			checkConsumer(t, s.ConsumerAt(i), w)
		})
	}
	// Tags are a copy: changing them changes nothing in the set.
	bob, _ := s.FindConsumer("bob")
	tags := bob.Tags()
	tags[0] = "changed"
	if got := bob.Tags(); !slices.Equal(got, []string{"partner", "eu"}) {
		t.Errorf("tags after changing a copy = %q", got)
	}
	c, _ := s.Lookup(digestOf(keyMark + "-bob-plain"))
	if c.Consumer().Index() != bob.Index() {
		t.Errorf("the credential's consumer is #%d, want #%d", c.Consumer().Index(), bob.Index())
	}
}

func TestEmptySets(t *testing.T) {
	var nilSet *Set
	sets := map[string]*Set{
		"nil":          nilSet,
		"zero":         {},
		"no consumers": mustParse(t, `{"consumers": []}`),
		"no keys":      mustParse(t, `{"consumers": [{"username": "a"}]}`),
	}
	for name, s := range sets {
		t.Run(name, func(t *testing.T) {
			_, k := s.Len()
			if k != 0 {
				t.Errorf("Len() keys = %d", k)
			}
			if _, ok := s.Lookup(digestOf("")); ok {
				t.Error("Lookup found a key")
			}
			if _, ok := s.Lookup(digestOf(keyMark)); ok {
				t.Error("Lookup found a key")
			}
			if _, ok := s.FindConsumer("b"); ok {
				t.Error("FindConsumer found a consumer")
			}
		})
	}
	if c, k := nilSet.Len(); c != 0 || k != 0 {
		t.Errorf("nil set: Len() = %d, %d", c, k)
	}
}

func TestSetConcurrentUse(t *testing.T) {
	s := testSet(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c, ok := s.Lookup(digestOf(keyMark + "-bob-plain"))
				if !ok || c.ID() != "bob-laptop" || c.Consumer().Username() != "bob" {
					t.Error("concurrent lookup failed")
					return
				}
				if _, ok := s.FindConsumer("anon"); !ok {
					t.Error("concurrent FindConsumer failed")
					return
				}
			}
		})
	}
	wg.Wait()
}

// genConsumer and genCred are what a generated document should load as.
type genConsumer struct {
	username, id, customID string
	tags                   []string
}

type genCred struct {
	key, id  string
	consumer int
}

// keyRunes are the runes random keys and names are made of: they need every
// kind of JSON escaping, and UTF-8 of every length.
var keyRunes = []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/=\"\\\n\t\x00\x1f<>&\u007féß日本語😀\U0010FFFF\u2028")

func randString(r *rand.Rand, minLen, maxLen int) string {
	n := minLen + r.IntN(maxLen-minLen+1)
	b := make([]rune, n)
	for i := range b {
		b[i] = keyRunes[r.IntN(len(keyRunes))]
	}
	return string(b)
}

// genDocument writes a valid consumers document of n consumers with random
// keys (some plain, some hashed), random names and optional fields.
func genDocument(r *rand.Rand, n int) ([]byte, []genConsumer, []genCred) {
	var buf bytes.Buffer
	str := func(s string) {
		b, err := json.Marshal(s)
		if err != nil {
			panic(err)
		}
		buf.Write(b)
	}
	keys := make(map[string]bool)
	consumers := make([]genConsumer, n)
	var creds []genCred
	buf.WriteString(`{"consumers": [`)
	for i := range consumers {
		if i > 0 {
			buf.WriteString(",\n")
		}
		c := &consumers[i]
		// Prefixes and the ':' (not in keyRunes) keep usernames, explicit
		// ids and credential ids apart.
		c.username = "u" + strconv.Itoa(i) + ":" + randString(r, 0, 8)
		c.id = c.username
		buf.WriteString(`{"username": `)
		str(c.username)
		if r.IntN(2) == 0 {
			c.id = "i" + strconv.Itoa(i) + ":" + randString(r, 0, 8)
			buf.WriteString(`, "id": `)
			str(c.id)
		}
		if r.IntN(3) == 0 {
			c.customID = randString(r, 0, 10)
			buf.WriteString(`, "custom_id": `)
			str(c.customID)
		}
		if r.IntN(4) == 0 {
			buf.WriteString(`, "tags": [`)
			for j := range r.IntN(3) + 1 {
				if j > 0 {
					buf.WriteString(", ")
				}
				tag := randString(r, 1, 6)
				for CheckTag(tag) != nil {
					tag = randString(r, 1, 6)
				}
				c.tags = append(c.tags, tag)
				str(tag)
			}
			buf.WriteString(`]`)
		}
		nKeys := r.IntN(4) // 0 to 3
		if nKeys > 0 {
			buf.WriteString(`, "keys": [`)
		}
		for j := range nKeys {
			if j > 0 {
				buf.WriteString(", ")
			}
			// A key is one that can be sent (ValidateKey); names and tags
			// still take every rune.
			key := randString(r, 1, 48)
			for keys[key] || ValidateKey(key) != nil {
				key = randString(r, 1, 48)
			}
			keys[key] = true
			cr := genCred{key: key, id: c.id + "#" + strconv.Itoa(j+1), consumer: i}
			buf.WriteString(`{`)
			if r.IntN(3) == 0 {
				cr.id = "c" + strconv.Itoa(i) + "." + strconv.Itoa(j) + ":" + randString(r, 0, 6)
				buf.WriteString(`"id": `)
				str(cr.id)
				buf.WriteString(`, `)
			}
			if r.IntN(2) == 0 {
				buf.WriteString(`"key": `)
				str(key)
			} else {
				buf.WriteString(`"hash": `)
				str(hashOf(key))
			}
			buf.WriteString(`}`)
			creds = append(creds, cr)
		}
		if nKeys > 0 {
			buf.WriteString(`]`)
		}
		buf.WriteString(`}`)
	}
	buf.WriteString("]}\n")
	return buf.Bytes(), consumers, creds
}

func TestSetProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	doc, consumers, creds := genDocument(r, n)
	s, err := Parse(doc)
	if err != nil {
		t.Fatalf("Parse (seed %d): %v", seed, err)
	}
	if c, k := s.Len(); c != len(consumers) || k != len(creds) {
		t.Fatalf("Len() = %d, %d; want %d, %d", c, k, len(consumers), len(creds))
	}
	for i, w := range consumers {
		c := s.ConsumerAt(i)
		if c.Username() != w.username || c.ID() != w.id || c.CustomID() != w.customID || !slices.Equal(c.Tags(), w.tags) {
			t.Fatalf("consumer #%d = {%q %q %q %q}, want %+v (seed %d)", i+1, c.Username(), c.ID(), c.CustomID(), c.Tags(), w, seed)
		}
	}
	for range 200 {
		i := r.IntN(len(consumers))
		if c, ok := s.FindConsumer(consumers[i].username); !ok || c.Index() != i {
			t.Fatalf("FindConsumer(username of #%d) = #%d, %v (seed %d)", i+1, c.Index()+1, ok, seed)
		}
		if c, ok := s.FindConsumer(consumers[i].id); !ok || c.Index() != i {
			t.Fatalf("FindConsumer(id of #%d) = #%d, %v (seed %d)", i+1, c.Index()+1, ok, seed)
		}
	}
	known := make(map[string]bool, len(creds))
	for _, w := range creds {
		known[w.key] = true
		c, ok := s.Lookup(digestOf(w.key))
		if !ok {
			t.Fatalf("the key of credential %q is not found (seed %d)", w.id, seed)
		}
		if c.ID() != w.id || c.Consumer().Index() != w.consumer || c.Expires() {
			t.Fatalf("the key of credential %q finds credential %q of consumer #%d (seed %d)", w.id, c.ID(), c.Consumer().Index()+1, seed)
		}
	}
	for range len(creds) {
		key := randString(r, 1, 48)
		if known[key] {
			continue
		}
		if c, ok := s.Lookup(digestOf(key)); ok {
			t.Fatalf("an unknown key finds credential %q (seed %d)", c.ID(), seed)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	doc, _, creds := genDocument(r, 100000)
	s, err := Parse(doc)
	if err != nil {
		b.Fatal(err)
	}
	digests := make([]Digest, 1024)
	for i := range digests {
		if i%2 == 0 {
			digests[i] = *digestOf(creds[r.IntN(len(creds))].key)
		} else {
			digests[i] = *digestOf(randString(r, 49, 60)) // longer than any key: unknown
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_, ok := s.Lookup(&digests[i%len(digests)])
		if ok != (i%len(digests)%2 == 0) {
			b.Fatal("wrong lookup result")
		}
	}
}

// TestCreatedAt reads created_at to the second, keeps the side array out of
// documents that have none, and refuses one that is not RFC 3339.
func TestCreatedAt(t *testing.T) {
	s, err := Parse([]byte(`{"consumers": [{"username": "a", "keys": [{"key": "k1"},
		{"key": "k2", "created_at": "2026-03-04T05:06:07+01:00"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"k1": "", "k2": "2026-03-04T04:06:07Z"} {
		d := sha256.Sum256([]byte(key))
		c, ok := s.Lookup(&d)
		if !ok {
			t.Fatalf("%s not found", key)
		}
		at, ok := c.CreatedAt()
		if got := at.UTC().Format(time.RFC3339); ok != (want != "") || ok && got != want {
			t.Errorf("%s: CreatedAt() = %s, %v, want %q", key, got, ok, want)
		}
		if s.CredentialAt(c.Index()) != c {
			t.Errorf("%s: CredentialAt(Index()) is another credential", key)
		}
	}
	s, err = Parse([]byte(`{"consumers": [{"username": "a", "keys": [{"key": "k1"}]}]}`))
	if err != nil || s.created != nil {
		t.Errorf("a document without created_at: err %v, side array %v", err, s.created)
	}
	_, err = Parse([]byte(`{"consumers": [{"username": "a", "keys": [{"id": "c1", "key": "k1", "created_at": "now"}]}]}`))
	if err == nil || !strings.Contains(err.Error(), `credential "c1" has a created_at that is not an RFC 3339 time`) {
		t.Errorf("a created_at that is not a time: %v", err)
	}
}

// BenchmarkSetBytes1M reports Set.Bytes per consumer for 1,000,000
// consumers of one key each: plain, with two groups and two labels, and
// with those and a limit of their own and a tier's (a group with
// member_limits) on top.
func BenchmarkSetBytes1M(b *testing.B) {
	const n = 1000000
	for _, shape := range []string{"plain", "groups_and_labels", "with_limits"} {
		b.Run(shape, func(b *testing.B) {
			doc := benchDocument(n, shape != "plain")
			if shape == "with_limits" {
				doc = bytes.ReplaceAll(doc, []byte(`"groups": ["gold", "partner"], `),
					[]byte(`"groups": ["gold", "partner"], "limits": {"tokens": {"max": 2000000, "per": "month"}}, `))
				doc = bytes.Replace(doc, []byte(`{"consumers": [`),
					[]byte(`{"groups": {"gold": {"member_limits": {"requests": {"max": 1000, "per": "day"}, "in_flight": 2}}}, "consumers": [`), 1)
			}
			var s *Set
			for b.Loop() {
				var err error
				if s, err = Parse(doc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(s.Bytes())/n, "B/consumer")
		})
	}
}
