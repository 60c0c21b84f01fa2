package redis_test

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources/redis"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth/command"
)

// TestPushReadBack: what `caddy key-auth push` writes into a real Redis,
// the source's decoding reads back as the document's consumers and
// credentials, with the limits that apply to each key (its own, its
// consumer's and its groups'), over varied sets; a consumer named by its id
// is found through its consumer-id hash.
func TestPushReadBack(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	ctx := context.Background()
	l := redis.NewLayout("rt:")
	hgetall := func(key string) map[string]string {
		m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for seed := range uint64(5) {
		doc, expiries := redis.RandomDoc(seed, 80)
		set, err := consumers.Parse(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := command.Push(ctx, c, doc, "rt:"); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// Exactly the groups with limits have a hash: a group the previous
		// seed's document had and this one has not is gone.
		var wantGroups []string
		for g := range set.Groups() {
			if g.Limits().Len()+g.MemberLimits().Len() > 0 {
				wantGroups = append(wantGroups, l.GroupKey(g.Name()))
			}
		}
		keys, err := c.Do(ctx, c.B().Keys().Pattern("rt:group:*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Sort(keys); !slices.Equal(keys, wantGroups) {
			t.Errorf("seed %d: group hashes %q, want %q", seed, keys, wantGroups)
		}
		if len(wantGroups) == 0 && seed < 3 {
			t.Errorf("seed %d: the document has no group with limits", seed)
		}
		nc, _ := set.Len()
		for i := range nc {
			want := set.ConsumerAt(i)
			got, err := redis.Decode(want.Username(), hgetall(l.ConsumerKey(want.Username())), nil, nil)
			if err != nil {
				t.Fatalf("seed %d, consumer %q: %v", seed, want.Username(), err)
			}
			if d := redis.SameConsumer(want, got.ConsumerAt(0)); d != "" {
				t.Errorf("seed %d, consumer %q: %s", seed, want.Username(), d)
			}
			if want.ID() != want.Username() {
				if u := hgetall(l.ConsumerIDKey(want.ID()))[redis.FieldConsumer]; u != want.Username() {
					t.Errorf("seed %d: consumer-id %q names %q, want %q", seed, want.ID(), u, want.Username())
				}
			}
		}
		for key, exp := range expiries {
			d := sha256.Sum256([]byte(key))
			want, _ := set.Lookup(&d)
			cred := hgetall(l.CredentialKey(&d))
			username := cred[redis.FieldConsumer]
			cons := hgetall(l.ConsumerKey(username))
			groups := map[string]map[string]string{}
			for _, g := range want.Consumer().Groups() {
				if h := hgetall(l.GroupKey(g)); len(h) > 0 {
					groups[g] = h
				}
			}
			got, err := redis.DecodeWithGroups(username, cons, &d, cred, groups)
			if err != nil {
				t.Fatalf("seed %d, credential %q: %v", seed, want.ID(), err)
			}
			back, ok := got.Lookup(&d)
			if !ok {
				t.Fatalf("seed %d, credential %q: not found by its digest", seed, want.ID())
			}
			if diff := redis.SameCredential(want, back, exp); diff != "" {
				t.Errorf("seed %d, credential %q: %s", seed, want.ID(), diff)
			}
			if diff := redis.SameLimits(want, back); diff != "" {
				t.Errorf("seed %d, credential %q: %s", seed, want.ID(), diff)
			}
		}
	}
}
