package consumers

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// everyField is a document with every field of its description set, so
// that a field added to the description and not to this document fails
// TestParseReadsEveryField until it is.
func everyField() *Document {
	return &Document{
		Groups: map[string]GroupEntry{
			"gold": {
				Limits:       LimitsEntry{"requests": {Max: 100000, Per: "month", Timezone: "Europe/Berlin"}},
				MemberLimits: LimitsEntry{"requests": {Max: 1000, Per: "day"}, InFlight: {Max: 2}},
			},
			"empty": {},
		},
		Consumers: []ConsumerEntry{
			{
				Username: "alice", ID: "a11ce", CustomID: "cust-1", Tags: []string{"t1", "t2"},
				Groups: []string{"gold", "beta"}, Labels: map[string]string{"plan": "gold", "region": "eu"},
				Disabled: true,
				Limits:   LimitsEntry{"tokens": {Max: 2000000, Per: "month"}, InFlight: {Max: 0}},
				Keys: []CredentialEntry{
					{ID: "alice-1", Key: keyMark + "-alice-1", ExpiresAt: "2030-01-01T00:00:00Z", CreatedAt: "2026-01-01T00:00:00Z", Disabled: true, Canary: true,
						Limits: LimitsEntry{"requests": {Max: 100, Per: "90m"}}},
					{ID: "alice-2", Hash: HashKey(keyMark + "-alice-2"), Previous: []PreviousSecret{
						{Hash: HashKey(keyMark + "-alice-2-old"), ExpiresAt: "2030-01-02T00:00:00Z"},
					}},
				},
			},
			{Username: "bob", Keys: []CredentialEntry{{Key: keyMark + "-bob"}}},
		},
	}
}

// TestParseReadsEveryField holds the parser to the description: a document
// that sets every field is written from the types, and Parse reads it into
// the Set that Build makes of the types, and decoding gives the types back.
func TestParseReadsEveryField(t *testing.T) {
	doc := everyField()
	// A field of a credential is set on one of alice's keys at least: a
	// key has a key or a hash, and a canary has no previous secrets.
	for _, vs := range [][]any{{*doc}, {doc.Groups["gold"]}, {doc.Consumers[0]},
		{doc.Consumers[0].Keys[0], doc.Consumers[0].Keys[1]}, {doc.Consumers[0].Keys[1].Previous[0]},
		{doc.Groups["gold"].Limits["requests"]}} {
		rt := reflect.TypeOf(vs[0])
		for i := range rt.NumField() {
			set := false
			for _, v := range vs {
				set = set || !reflect.ValueOf(v).Field(i).IsZero()
			}
			if !set {
				t.Errorf("everyField leaves %s.%s unset", rt.Name(), rt.Field(i).Name)
			}
		}
	}
	data, err := doc.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	parsed, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	built, err := Build(doc)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	_, want, why := refParse(data)
	if why != "" {
		t.Fatalf("the reference refuses the document: %s", why)
	}
	compareSet(t, parsed, want)
	compareSet(t, built, want)
	back, err := DecodeDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, doc) {
		t.Errorf("decoded %+v, want %+v", back, doc)
	}
}

// TestParseFieldsAreDescribed: the members the parser reads are those of
// the description, by name.
func TestParseFieldsAreDescribed(t *testing.T) {
	jsonNames := func(t reflect.Type) []string {
		var names []string
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
		return names
	}
	memberNames := func(n int, name func(int) string) []string {
		var names []string
		for i := range n {
			names = append(names, name(i))
		}
		return names
	}
	for _, tt := range []struct{ described, parsed []string }{
		{jsonNames(reflect.TypeFor[Document]()), []string{"groups", "consumers"}}, // document() reads them
		{jsonNames(reflect.TypeFor[ConsumerEntry]()), memberNames(len(consumerMembers), func(i int) string { return consumerMembers[i].name })},
		{jsonNames(reflect.TypeFor[CredentialEntry]()), memberNames(len(credentialMembers), func(i int) string { return credentialMembers[i].name })},
		{jsonNames(reflect.TypeFor[PreviousSecret]()), memberNames(len(previousMembers), func(i int) string { return previousMembers[i].name })},
		{jsonNames(reflect.TypeFor[GroupEntry]()), memberNames(len(groupMembers), func(i int) string { return groupMembers[i].name })},
		{jsonNames(reflect.TypeFor[LimitEntry]()), memberNames(len(limitMembers), func(i int) string { return limitMembers[i].name })},
	} {
		if !slices.Equal(slices.Sorted(slices.Values(tt.described)), slices.Sorted(slices.Values(tt.parsed))) {
			t.Errorf("the description has the members %q, the parser reads %q", tt.described, tt.parsed)
		}
		if len(tt.parsed) > maxFields {
			t.Errorf("the parser tracks %d members of an object, at most %d", len(tt.parsed), maxFields)
		}
	}
}

func TestBuild(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		for _, d := range []*Document{{}, {Consumers: []ConsumerEntry{}}} {
			s, err := Build(d)
			if err != nil {
				t.Fatal(err)
			}
			if c, k := s.Len(); c != 0 || k != 0 {
				t.Errorf("Len() = %d, %d", c, k)
			}
		}
	})
	t.Run("refused as Parse refuses, without a line", func(t *testing.T) {
		d := everyField()
		d.Consumers[1].Keys[0].Key = d.Consumers[0].Keys[0].Key
		_, err := Build(d)
		if err == nil || err.Error() != `consumer "bob", key #1 has the same key as consumer "alice", credential "alice-1"` {
			t.Errorf("error %v", err)
		}
		assertNoKeyMaterial(t, err.Error(), d.Consumers[0].Keys[0].Key)
	})
	t.Run("labels numbered by name", func(t *testing.T) {
		d := &Document{Consumers: []ConsumerEntry{{Username: "a", Labels: map[string]string{"b": "", "a": "", "": "x"}}}}
		for range 5 {
			if _, err := Build(d); err == nil || err.Error() != `consumer "a": the name of label #1 is not 1 to 64 letters, digits, '_', '-' or '.'` {
				t.Fatalf("error %v", err)
			}
		}
	})
}

// buildAgrees checks that Build, given the document decoded into its
// description, refuses it as Parse did (parseErr), without Parse's line.
// A document that does not decode strictly never reaches Build.
func buildAgrees(t *testing.T, doc []byte, parseErr error) {
	t.Helper()
	d, why := refDecode(doc)
	if why != "" {
		return
	}
	checkBuild(t, d, refSet{}, "refused by Parse", parseErr)
}

func TestHashKey(t *testing.T) {
	if HashKey("bob-secret-0002") != "sha256:64708caec1a9013e7e2ea53b462e4cbca55c79f7e8cdcf61da944f2a05effebb" {
		t.Error("HashKey is not the hex SHA-256 the format wants")
	}
	if !validHash([]byte(HashKey("x"))) {
		t.Error("the parser refuses what HashKey writes")
	}
}

// A credential's Digest is what its Set looks it up by, from a key or from
// its hash; a credential with neither has none.
func TestCredentialEntryDigest(t *testing.T) {
	key := keyMark + "-digest"
	doc := &Document{Consumers: []ConsumerEntry{{Username: "a", Keys: []CredentialEntry{{Key: key}, {Hash: HashKey(key + "2")}}}}}
	set, err := Build(doc)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range doc.Consumers[0].Keys {
		d, ok := k.Digest()
		if !ok {
			t.Fatalf("key #%d: no digest", i+1)
		}
		if cred, found := set.Lookup(&d); !found || cred.ID() != doc.Consumers[0].CredentialID(i) {
			t.Errorf("key #%d: the digest finds no credential or another one", i+1)
		}
	}
	if d, ok := (&CredentialEntry{Key: key}).Digest(); !ok || d != *digestOf(key) {
		t.Error("the digest of a key is not its SHA-256")
	}
	for _, c := range []CredentialEntry{{}, {Hash: "sha256:12"}, {Hash: "md5:" + strings.Repeat("0", 64)}} {
		if _, ok := c.Digest(); ok {
			t.Errorf("%+v has a digest", c)
		}
	}
}
