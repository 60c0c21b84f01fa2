package consumers

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// entryDoc sets every field of ConsumerEntry and CredentialEntry at least
// once (TestIndexEntryRoundTrip checks that it does), keys in plain text
// and hashed, ids explicit and derived.
var entryDoc = Document{Consumers: []ConsumerEntry{
	{Username: "zed", Keys: []CredentialEntry{{Key: "zed-key-0001", Previous: []PreviousSecret{{Hash: HashKey("zed-old"), ExpiresAt: "2028-01-01T00:00:00Z"}}},
		{Key: "zed-key-0002", ExpiresAt: "2031-02-03T04:05:06+02:00"}}},
	{Username: "alice", ID: "a11ce", CustomID: "cust-1", Tags: []string{"t1", "t2"}, Groups: []string{"gold", "eu"},
		Labels: map[string]string{"plan": "pro", "region": "eu"}, Disabled: true,
		Limits: LimitsEntry{"tokens": {Max: 2000000, Per: "month", Timezone: "Europe/Berlin"}, InFlight: {Max: 2}},
		Keys: []CredentialEntry{
			{ID: "alice-1", Key: "alice-key-0001", CreatedAt: "2024-05-06T07:08:09Z", Disabled: true, ExpiresAt: "2031-01-01T00:00:00Z",
				Limits:   LimitsEntry{"requests": {Max: 100, Per: "90m"}},
				Previous: []PreviousSecret{{Hash: HashKey("alice-old-key"), ExpiresAt: "2029-01-01T00:00:00Z"}, {Hash: HashKey("alice-older-key"), ExpiresAt: "2032-01-01T00:00:00Z"}}},
			{ID: "alice-canary", Hash: HashKey("alice-canary-key"), Canary: true, ExpiresAt: "2030-01-01T00:00:00.5Z"},
		}},
	{Username: "bob"},
	{Username: "bo"},
}}

// previousInSet is whether the set keeps a credential's previous secrets (a
// roll): when it does not, Previous is the one field that does not come
// back, and entryDoc's Previous is dropped before Build.
const previousInSet = true

// Building the entries an Index gives back yields the same set, and every
// field of the document's entries comes back.
func TestIndexEntryRoundTrip(t *testing.T) {
	doc := entryDoc
	setFields := map[string]bool{}
	for _, c := range doc.Consumers {
		markSet(reflect.ValueOf(c), "ConsumerEntry", setFields)
		for _, k := range c.Keys {
			markSet(reflect.ValueOf(k), "CredentialEntry", setFields)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[ConsumerEntry](), reflect.TypeFor[CredentialEntry]()} {
		for f := range typ.Fields() {
			if !setFields[typ.Name()+"."+f.Name] {
				t.Errorf("entryDoc never sets %s.%s: give it a value, and make Index.Entry give it back", typ.Name(), f.Name)
			}
		}
	}
	if !previousInSet {
		doc = cloneDoc(doc)
		for i := range doc.Consumers {
			for k := range doc.Consumers[i].Keys {
				doc.Consumers[i].Keys[k].Previous = nil
			}
		}
	}
	set, err := Build(&doc)
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex(set)
	var got Document
	var names []string
	for c := range x.After("") {
		names = append(names, c.Username())
		got.Consumers = append(got.Consumers, x.Entry(c))
	}
	if want := []string{"alice", "bo", "bob", "zed"}; !slices.Equal(names, want) {
		t.Fatalf("order %v, want %v", names, want)
	}
	back, err := Build(&got)
	if err != nil {
		t.Fatalf("the entries are refused: %v", err)
	}
	if !sameSets(set, back) {
		t.Errorf("the entries build another set:\n%+v", got)
	}
	alice := got.Consumers[0]
	if alice.ID != "a11ce" || alice.Keys[0].Hash != HashKey("alice-key-0001") || alice.Keys[0].Key != "" ||
		alice.Keys[1].ExpiresAt != "2030-01-01T00:00:00.5Z" || alice.Keys[0].CreatedAt != "2024-05-06T07:08:09Z" {
		t.Errorf("alice: %+v", alice)
	}
	// Previous secrets in the document's order, each with the expiry the
	// set holds: its own, or its credential's when earlier.
	if p := alice.Keys[0].Previous; len(p) != 2 || p[0] != (PreviousSecret{HashKey("alice-old-key"), "2029-01-01T00:00:00Z"}) ||
		p[1] != (PreviousSecret{HashKey("alice-older-key"), "2031-01-01T00:00:00Z"}) || alice.Keys[1].Previous != nil {
		t.Errorf("alice's previous secrets: %+v", alice.Keys)
	}
	if zed := got.Consumers[3]; zed.ID != "" || zed.Keys[0].ID != "zed#1" || zed.Keys[1].ExpiresAt != "2031-02-03T02:05:06Z" {
		t.Errorf("zed: %+v", zed)
	}
}

func TestIndexLookups(t *testing.T) {
	doc := cloneDoc(entryDoc)
	for i := range doc.Consumers {
		for k := range doc.Consumers[i].Keys {
			doc.Consumers[i].Keys[k].Previous = nil
		}
	}
	set, err := Build(&doc)
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex(set)
	for _, tt := range []struct {
		after string
		want  []string
	}{{"", []string{"alice", "bo", "bob", "zed"}}, {"alice", []string{"bo", "bob", "zed"}}, {"b", []string{"bo", "bob", "zed"}},
		{"bo", []string{"bob", "zed"}}, {"bob", []string{"zed"}}, {"zed", nil}, {"zz", nil}} {
		var got []string
		for c := range x.After(tt.after) {
			got = append(got, c.Username())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("after %q: %v, want %v", tt.after, got, tt.want)
		}
	}
	// Stopping early.
	n := 0
	for range x.After("") {
		n++
		break
	}
	if n != 1 {
		t.Errorf("a break yields %d", n)
	}
	if c, ok := x.Consumer("bob"); !ok || c.Username() != "bob" {
		t.Errorf("Consumer(bob) = %v %v", c, ok)
	}
	if _, ok := x.Consumer("b"); ok {
		t.Error("Consumer(b) found")
	}
	for _, id := range []string{"alice-1", "alice-canary", "zed#1", "zed#2"} {
		if c, ok := x.Credential(id); !ok || c.ID() != id {
			t.Errorf("Credential(%q) = %v %v", id, c, ok)
		}
	}
	if _, ok := x.Credential("zed#3"); ok {
		t.Error("Credential(zed#3) found")
	}
	empty := NewIndex(&Set{})
	for range empty.After("") {
		t.Error("an empty set yields a consumer")
	}
}

// markSet records the fields of v (a struct of type name) that are not
// their zero value.
func markSet(v reflect.Value, name string, set map[string]bool) {
	for i := range v.NumField() {
		if !v.Field(i).IsZero() {
			set[name+"."+v.Type().Field(i).Name] = true
		}
	}
}

func cloneDoc(d Document) Document {
	out := Document{Consumers: slices.Clone(d.Consumers)}
	for i := range out.Consumers {
		out.Consumers[i].Keys = slices.Clone(out.Consumers[i].Keys)
	}
	return out
}

// sameSets reports whether two sets hold the same consumers and
// credentials, field by field, whatever their order.
func sameSets(a, b *Set) bool {
	return setSummary(a) == setSummary(b)
}

func setSummary(s *Set) string {
	nc, nk := s.Len()
	var lines []string
	for i := range nc {
		c := s.ConsumerAt(i)
		lines = append(lines, fmt.Sprint("consumer ", c.Username(), c.ID(), c.CustomID(), c.Tags(), c.Groups(), c.Labels(), c.Disabled()))
	}
	for i := range nk {
		k := s.CredentialAt(i)
		created, ok := k.CreatedAt()
		lines = append(lines, fmt.Sprint("credential ", k.ID(), k.Consumer().Username(), s.credentials[i].digest,
			s.credentials[i].expires, created.Unix(), ok, k.Disabled(), k.Canary()))
	}
	for p := range s.AllPrevious() {
		at, _ := p.ExpiresAt()
		lines = append(lines, fmt.Sprint("previous ", p.ID(), p.Consumer().Username(), s.credentials[p.i].digest, at.UnixNano()))
	}
	slices.Sort(lines)
	return fmt.Sprint(lines)
}

// A clone shares nothing a change could edit with its original.
func TestConsumerEntryClone(t *testing.T) {
	orig := cloneDoc(entryDoc).Consumers[1]
	want := fmt.Sprintf("%+v", orig)
	c := orig.Clone()
	c.Tags[0], c.Groups[0], c.Labels["plan"] = "x", "x", "x"
	c.Keys[0].ID, c.Keys[0].Previous[0].Hash = "x", "x"
	if got := fmt.Sprintf("%+v", orig); got != want {
		t.Errorf("the original changed with its clone:\n%s\nwant\n%s", got, want)
	}
}
