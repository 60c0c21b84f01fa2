package redis_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources/redis"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth/command"
)

// TestPushReadBack: what `caddy key-auth push` writes into a real Redis,
// the source's decoding reads back as the document's consumers and
// credentials, over varied sets; a consumer named by its id is found
// through its consumer-id hash.
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
			got, err := redis.Decode(username, hgetall(l.ConsumerKey(username)), &d, cred)
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
		}
	}
}
