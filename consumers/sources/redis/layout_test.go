package redis

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// RandomDoc is a consumers document of n consumers of varied shapes, and
// for each of its keys the expiry as written ("" for none): ids or not,
// tags with spaces, quotes and brackets, groups, labels, flags,
// expiries in several spellings, limits on keys, consumers and groups,
// rolled credentials whose previous secrets (keys too, for the map, with
// the expiry their hash holds) end before or after the credential.
func RandomDoc(seed uint64, n int) ([]byte, map[string]string) {
	r := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	expiries := map[string]string{}
	randLimits := func() consumers.LimitsEntry {
		if r.IntN(3) != 0 {
			return nil
		}
		l := consumers.LimitsEntry{}
		for range r.IntN(3) + 1 {
			switch m := pick("requests", "tokens", "gpu.seconds", consumers.InFlight); m {
			case consumers.InFlight:
				l[m] = consumers.LimitEntry{Max: int64(r.IntN(5))}
			default:
				l[m] = consumers.LimitEntry{Max: int64(r.IntN(1e6)), Per: pick("second", "day", "week", "month", "year", "90m", "1h0m0s"),
					Timezone: pick("", "", "Europe/Berlin", "America/Havana", "UTC")}
				if e := l[m]; strings.ContainsAny(e.Per, "0123456789") {
					e.Timezone = ""
					l[m] = e
				}
			}
		}
		return l
	}
	type key struct {
		ID        string                     `json:"id,omitempty"`
		Key       string                     `json:"key"`
		ExpiresAt string                     `json:"expires_at,omitempty"`
		CreatedAt string                     `json:"created_at,omitempty"`
		Disabled  bool                       `json:"disabled,omitempty"`
		Canary    bool                       `json:"canary,omitempty"`
		Limits    consumers.LimitsEntry      `json:"limits,omitempty"`
		Previous  []consumers.PreviousSecret `json:"previous,omitempty"`
	}
	type consumer struct {
		Username string                `json:"username"`
		ID       string                `json:"id,omitempty"`
		CustomID string                `json:"custom_id,omitempty"`
		Tags     []string              `json:"tags,omitempty"`
		Groups   []string              `json:"groups,omitempty"`
		Labels   map[string]string     `json:"labels,omitempty"`
		Disabled bool                  `json:"disabled,omitempty"`
		Limits   consumers.LimitsEntry `json:"limits,omitempty"`
		Keys     []key                 `json:"keys,omitempty"`
	}
	var doc struct {
		Groups    map[string]consumers.GroupEntry `json:"groups,omitempty"`
		Consumers []consumer                      `json:"consumers"`
	}
	doc.Groups = map[string]consumers.GroupEntry{}
	for _, g := range []string{"gold0", "free1", "ä0", "unused", "free0"} {
		if r.IntN(4) != 0 {
			doc.Groups[g] = consumers.GroupEntry{Limits: randLimits(), MemberLimits: randLimits()}
		}
	}
	for i := range n {
		c := consumer{Username: fmt.Sprintf("%s%d", pick("u", "user.", "ü-", "a b "), i)}
		if r.IntN(2) == 0 {
			c.ID = fmt.Sprintf("id-%d-%s", i, pick("x", "é", "#1"))
		}
		if r.IntN(3) == 0 {
			c.CustomID = pick("cust", "c,1", " padded ", `quo"te`)
		}
		for range r.IntN(4) {
			c.Tags = append(c.Tags, pick("staff", "ops", "a b", "[x", "x]", `"q"`, "ünï", "{}"))
		}
		for j := range r.IntN(3) {
			c.Groups = append(c.Groups, fmt.Sprintf("%s%d", pick("gold", "free", "ä"), j))
		}
		if r.IntN(2) == 0 {
			c.Labels = map[string]string{}
			for range r.IntN(3) + 1 {
				c.Labels[pick("plan", "backend", "a.b", "x-y_z")] = pick("gold", "10.0.0.7:8080", `{"json":1}`, "a,b", "", "ünï")
			}
		}
		c.Disabled = r.IntN(5) == 0
		c.Limits = randLimits()
		for j := range r.IntN(4) {
			k := key{Key: fmt.Sprintf("%skey-%d-%d", keyMark, i, j)}
			if r.IntN(2) == 0 {
				k.ID = fmt.Sprintf("k-%d-%d", i, j)
			}
			if r.IntN(3) == 0 {
				k.ExpiresAt = pick("2030-01-01T00:00:00Z", "2029-06-30T12:34:56+02:00", "2020-01-01T00:00:00.123456789Z")
			}
			if r.IntN(2) == 0 {
				k.CreatedAt = pick("2026-01-01T00:00:00Z", "2025-06-30T12:34:56+02:00", "1969-12-31T23:59:59Z")
			}
			expiries[k.Key] = k.ExpiresAt
			k.Disabled = r.IntN(5) == 0
			k.Canary = r.IntN(7) == 0
			k.Limits = randLimits()
			for p := range r.IntN(6) / 4 * (1 + r.IntN(2)) {
				if k.Canary {
					break
				}
				old := fmt.Sprintf("%sold-%d-%d-%d", keyMark, i, j, p)
				exp := pick("2030-01-01T00:00:00Z", "2020-06-30T12:34:56+02:00", "2029-12-31T23:00:00-03:00")
				k.Previous = append(k.Previous, consumers.PreviousSecret{Hash: consumers.HashKey(old), ExpiresAt: exp})
				expiries[old] = PreviousExpiresAt(exp, k.ExpiresAt)
			}
			c.Keys = append(c.Keys, k)
		}
		doc.Consumers = append(doc.Consumers, c)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b, expiries
}

// SameConsumer reports how two consumers differ, or "".
func SameConsumer(a, b consumers.Consumer) string {
	switch {
	case a.Username() != b.Username():
		return fmt.Sprintf("username %q, want %q", b.Username(), a.Username())
	case a.ID() != b.ID():
		return fmt.Sprintf("id %q, want %q", b.ID(), a.ID())
	case a.CustomID() != b.CustomID():
		return fmt.Sprintf("custom_id %q, want %q", b.CustomID(), a.CustomID())
	case !slices.Equal(a.Tags(), b.Tags()):
		return fmt.Sprintf("tags %q, want %q", b.Tags(), a.Tags())
	case !slices.Equal(a.Groups(), b.Groups()):
		return fmt.Sprintf("groups %q, want %q", b.Groups(), a.Groups())
	case !maps.Equal(a.Labels(), b.Labels()):
		return fmt.Sprintf("labels %q, want %q", b.Labels(), a.Labels())
	case a.Disabled() != b.Disabled():
		return fmt.Sprintf("disabled %v, want %v", b.Disabled(), a.Disabled())
	case fmt.Sprint(a.Limits().Entry()) != fmt.Sprint(b.Limits().Entry()):
		return fmt.Sprintf("limits %v, want %v", b.Limits().Entry(), a.Limits().Entry())
	}
	return ""
}

// SameLimits reports how the limits that apply to two credentials differ,
// or "": their own, their consumers' and their consumers' groups'.
func SameLimits(a, b consumers.Credential) string {
	each := func(c consumers.Credential) string {
		var s strings.Builder
		c.EachLimit(func(k limits.ScopeKind, scope, meter string, l consumers.Limit) bool {
			fmt.Fprintf(&s, "%s %s %s %d %s; ", k, scope, meter, l.Max, l.Window)
			return true
		})
		return s.String()
	}
	if ea, eb := each(a), each(b); ea != eb {
		return fmt.Sprintf("limits that apply %s, want %s", eb, ea)
	}
	return ""
}

// GroupHashes are the hashes of a consumer's groups that have one, as push
// writes them.
func GroupHashes(set *consumers.Set, c consumers.Consumer) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, name := range c.Groups() {
		if g, ok := set.Group(name); ok {
			if h, ok := EncodeGroup(g); ok {
				out[name] = h
			}
		}
	}
	return out
}

// SameCredential reports how two credentials differ, or "". expiresAt is
// the expiry as written.
func SameCredential(a, b consumers.Credential, expiresAt string) string {
	if d := SameConsumer(a.Consumer(), b.Consumer()); d != "" {
		return "consumer: " + d
	}
	switch {
	case a.ID() != b.ID():
		return fmt.Sprintf("id %q, want %q", b.ID(), a.ID())
	case a.Disabled() != b.Disabled() || a.Canary() != b.Canary():
		return fmt.Sprintf("disabled, canary %v %v, want %v %v", b.Disabled(), b.Canary(), a.Disabled(), a.Canary())
	case a.Expires() != b.Expires():
		return fmt.Sprintf("expires %v, want %v", b.Expires(), a.Expires())
	case fmt.Sprint(a.Limits().Entry()) != fmt.Sprint(b.Limits().Entry()):
		return fmt.Sprintf("limits %v, want %v", b.Limits().Entry(), a.Limits().Entry())
	}
	at, ok := a.CreatedAt()
	if bt, bok := b.CreatedAt(); ok != bok || !at.Equal(bt) {
		return fmt.Sprintf("created_at %v %v, want %v %v", bt, bok, at, ok)
	}
	if expiresAt != "" {
		at, err := time.Parse(time.RFC3339Nano, expiresAt)
		if err != nil {
			return err.Error()
		}
		for _, t := range []time.Time{at.Add(-time.Nanosecond), at} {
			if a.ExpiredAt(t) != b.ExpiredAt(t) {
				return fmt.Sprintf("expired at %s: %v, want %v", t, b.ExpiredAt(t), a.ExpiredAt(t))
			}
		}
	}
	return ""
}

// TestLayoutRoundTrip: what push writes (EncodeConsumer, EncodeCredential)
// the source reads back (Decode) as the very consumers and credentials of
// the document, over varied sets.
func TestLayoutRoundTrip(t *testing.T) {
	previous := 0
	defer func() {
		if previous == 0 {
			t.Error("no previous secret went round")
		}
	}()
	for seed := range uint64(20) {
		doc, expiries := RandomDoc(seed, 60)
		set, err := consumers.Parse(doc)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, doc)
		}
		nc, _ := set.Len()
		for i := range nc {
			c := set.ConsumerAt(i)
			got, err := Decode(c.Username(), EncodeConsumer(c), nil, nil)
			if err != nil {
				t.Fatalf("seed %d, consumer %q: %v (hash %v)", seed, c.Username(), err, EncodeConsumer(c))
			}
			if d := SameConsumer(c, got.ConsumerAt(0)); d != "" {
				t.Errorf("seed %d, consumer %q: %s (hash %v)", seed, c.Username(), d, EncodeConsumer(c))
			}
			if h, ok := EncodeConsumerID(c); ok != (c.ID() != c.Username()) || (ok && h[FieldConsumer] != c.Username()) {
				t.Errorf("seed %d, consumer %q: consumer-id hash %v, %v", seed, c.Username(), h, ok)
			}
		}
		for key, exp := range expiries {
			d := sha256.Sum256([]byte(key))
			cred, ok := set.Lookup(&d)
			if !ok {
				t.Fatalf("seed %d: a key of the document is not in its set", seed)
			}
			got, err := DecodeWithGroups(cred.Consumer().Username(), EncodeConsumer(cred.Consumer()), &d, EncodeCredential(cred, exp),
				GroupHashes(set, cred.Consumer()))
			if err != nil {
				t.Fatalf("seed %d, credential %q: %v", seed, cred.ID(), err)
			}
			back, ok := got.Lookup(&d)
			if !ok {
				t.Fatalf("seed %d, credential %q: not found by its digest", seed, cred.ID())
			}
			if cred.Previous() != (EncodeCredential(cred, exp)[FieldPrevious] == "true") {
				t.Errorf("seed %d, credential %q: a previous secret's hash does not say so", seed, cred.ID())
			}
			if cred.Previous() {
				previous++
			}
			if diff := SameCredential(cred, back, exp); diff != "" {
				t.Errorf("seed %d, credential %q: %s", seed, cred.ID(), diff)
			}
			if diff := SameLimits(cred, back); diff != "" {
				t.Errorf("seed %d, credential %q: %s", seed, cred.ID(), diff)
			}
		}
	}
}

// TestLayoutKeys: every key the layout makes, Parse reads back.
func TestLayoutKeys(t *testing.T) {
	l := NewLayout("p:")
	d := sha256.Sum256([]byte("k"))
	if kind, got, _ := l.Parse(l.CredentialKey(&d)); kind != KindCredential || got != d {
		t.Errorf("credential key: %v", kind)
	}
	for _, name := range []string{"alice", "a:b", "consumer:x", "-id:y", ""} {
		if kind, _, got := l.Parse(l.ConsumerKey(name)); kind != KindConsumer || got != name {
			t.Errorf("consumer key of %q: %v %q", name, kind, got)
		}
		if kind, _, got := l.Parse(l.ConsumerIDKey(name)); kind != KindConsumerID || got != name {
			t.Errorf("consumer-id key of %q: %v %q", name, kind, got)
		}
		if kind, _, got := l.Parse(l.ConsumerKeysKey(name)); kind != KindConsumerKeys || got != name {
			t.Errorf("consumer-keys key of %q: %v %q", name, kind, got)
		}
		if kind, _, got := l.Parse(l.CredentialIDKey(name)); kind != KindCredentialID || got != name {
			t.Errorf("credential-id key of %q: %v %q", name, kind, got)
		}
	}
	for _, name := range []string{"free", "a:b", ""} {
		if kind, _, got := l.Parse(l.GroupKey(name)); kind != KindGroup || got != name {
			t.Errorf("group key of %q: %v %q", name, kind, got)
		}
	}
	for _, k := range []string{l.ConsumersKey(), l.LastUsedKey()} {
		if kind, _, _ := l.Parse(k); kind != KindOther {
			t.Errorf("%q: %v, want KindOther (one key, not a kind)", k, kind)
		}
	}
	for _, k := range []string{"p:cred:zz", "p:cred:" + fmt.Sprintf("%x", d[:31]), "q:consumer:a", "p:other", "p:credential", "p:groups",
		"p:consumer-key:x", "p:credential-ids:x"} {
		if kind, _, _ := l.Parse(k); kind != KindOther {
			t.Errorf("%q: %v, want KindOther", k, kind)
		}
	}
}

// TestDecodePrevious: a previous secret's hash reads as its credential with
// its own expiry, under the document's rules: an expiry required, no
// canary, a flag that is a flag.
func TestDecodePrevious(t *testing.T) {
	d := digestOf(keyMark + "old")
	cons := map[string]string{FieldID: "bob"}
	prev := map[string]string{FieldConsumer: "bob", FieldID: "bob-ci", FieldExpiresAt: "2026-06-02T00:00:00Z", FieldPrevious: "true"}
	set, err := Decode("bob", cons, d, prev)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := set.Lookup(d)
	if at, _ := c.ExpiresAt(); !ok || c.ID() != "bob-ci" || !at.Equal(time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("decoded as %q, expiring %v", c.ID(), at)
	}
	for _, tc := range []struct {
		change map[string]string
		want   string
	}{
		{map[string]string{FieldExpiresAt: ""}, `credential "bob-ci": a previous secret without expires_at`},
		{map[string]string{FieldCanary: "true"}, `credential "bob-ci" is a canary and cannot have previous secrets`},
		{map[string]string{FieldPrevious: "yes"}, `credential "bob-ci": previous: want true or false, got "yes"`},
	} {
		bad := maps.Clone(prev)
		maps.Copy(bad, tc.change)
		if _, err := Decode("bob", cons, d, bad); err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v, want %q", tc.change, err, tc.want)
		}
	}
}
