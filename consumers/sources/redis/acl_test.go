package redis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

// aclRules are the rights the README gives the source's Redis user: exactly
// the commands the source runs, on the keys under its prefix, read only but
// for the last-used hash.
const aclRules = "resetkeys %R~keyauth:* %RW~keyauth:last-used resetchannels -@all +hello +ping +select +client|tracking +client|caching +multi +exec +hgetall +pttl +cluster|slots +cluster|shards +hget +hmget +hset +evalsha +eval"

// aclWriterRules are the rights the README gives the user of a source that
// the management API writes: the reader's, and writing under the prefix.
const aclWriterRules = "resetkeys ~keyauth:* resetchannels -@all +hello +ping +select +client|tracking +client|caching +multi +exec +hgetall +pttl +cluster|slots +cluster|shards +hget +hmget +hset +evalsha +eval +watch +unwatch +hdel +del +zadd +zrem +zrange"

// The README's ACL line is aclRules, and a user with exactly those rights
// runs the source: lookups, the anonymous consumer, invalidations.
func TestRedisACLRights(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "ACL SETUSER caddy on >CHANGE-ME "+aclRules) {
		t.Errorf("the README's ACL line is not %q", aclRules)
	}
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	seed(t, do, "keyauth:")
	do("HSET", "keyauth:consumer:guest", "id", "anon")
	do(append([]string{"ACL", "SETUSER", "caddy", "on", ">caddy-pass"}, strings.Fields(aclRules)...)...)

	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}, Username: "caddy", Password: "caddy-pass"}})
	if _, ok := mustLookup(t, l, "alice-1"); !ok {
		t.Fatal("alice not found")
	}
	if _, ok := mustLookup(t, l, "nobody"); ok {
		t.Fatal("an unknown key found")
	}
	if c, ok, err := l.Consumer(context.Background(), "guest"); err != nil || !ok || c.ID() != "anon" {
		t.Fatalf("the anonymous consumer: %v %v", ok, err)
	}
	do("DEL", credKey("keyauth:", keyMark+"alice-1"))
	waittest.Until(t, "alice's key revoked", func() bool { return l.cache.get(digestOf(keyMark+"alice-1")) == nil })
	if _, ok := mustLookup(t, l, "alice-1"); ok {
		t.Error("a revoked key found")
	}
	if st := l.Status(); !st.Lookups.Connected || st.LastError != "" {
		t.Errorf("status: %+v", st)
	}
	// The record of use: read with a lookup, written with the script.
	cred, ok := mustLookup(t, l, "bob-1")
	if !ok {
		t.Fatal("bob not found")
	}
	l.Use(cred)
	if err := l.writeUse(context.Background()); err != nil {
		t.Fatalf("writing the last use: %v", err)
	}
	if got := redistest.Do(t, redistest.Client(t, srv.Addr()), "HGET", "keyauth:last-used", "bob-key-1"); got.Error() != nil {
		t.Errorf("the last use is not written: %v", got.Error())
	}
	for _, e := range l.logs.All() {
		if e.Level >= zap.WarnLevel {
			t.Errorf("logged: %s %v", e.Message, e.ContextMap())
		}
	}
}

// The README's ACL line for a source that the management API writes is
// aclWriterRules, and a user with exactly those rights writes: creates,
// changes, lists and deletes consumers, reads their last use.
func TestRedisACLWriterRights(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "ACL SETUSER caddy on >CHANGE-ME "+aclWriterRules) {
		t.Errorf("the README's writer ACL line is not %q", aclWriterRules)
	}
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	do(append([]string{"ACL", "SETUSER", "caddy", "on", ">caddy-pass"}, strings.Fields(aclWriterRules)...)...)
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}, Username: "caddy", Password: "caddy-pass"}})
	ctx := context.Background()
	tom := &consumers.ConsumerEntry{Username: "tom", ID: "t0m", Keys: []consumers.CredentialEntry{{ID: "tom-1", Key: keyMark + "tom-1"}}}
	if err := l.edit(ctx, "tom", setTo(tom)); err != nil {
		t.Fatal(err)
	}
	if err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		cur.ID, cur.Keys = "", nil
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, l, ""); len(got) != 1 {
		t.Errorf("list: %v", got)
	}
	if _, err := l.lastUsedOf(ctx, []string{"tom-1"}); err != nil {
		t.Fatal(err)
	}
	if err := l.edit(ctx, "tom", setTo(nil)); err != nil {
		t.Fatal(err)
	}
}

// A user without CLIENT TRACKING is told so in plain words, in the log and
// the admin view, not with rueidis's advice to disable its cache.
func TestRedisACLWithoutTracking(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	rules := strings.Replace(aclRules, " +client|tracking", "", 1)
	do(append([]string{"ACL", "SETUSER", "caddy", "on", ">caddy-pass"}, strings.Fields(rules)...)...)
	cfg := Source{Options: Options{Addresses: []string{srv.Addr()}, Username: "caddy", Password: "caddy-pass", Prefix: DefaultPrefix, Timeout: caddy.Duration(DefaultTimeout), PartitionTimeout: caddy.Duration(DefaultPartitionTimeout)}, Cache: DefaultCache}
	l := newLooker(&cfg, cfg.Password, nil)
	core, logs := observer.New(zap.DebugLevel)
	l.Start(zap.New(core))
	defer l.Destruct()
	waittest.Until(t, "the connection refused", func() bool { return logs.FilterLevelExact(zap.ErrorLevel).Len() > 0 })
	msg := logs.FilterLevelExact(zap.ErrorLevel).All()[0].ContextMap()["error"].(string)
	want := `the Redis user "caddy" may not run CLIENT TRACKING, which the source needs: Redis keeps its local cache correct through it; grant it +client|tracking`
	if !strings.Contains(msg, want) || strings.Contains(msg, "DisableCache") || strings.Contains(msg, "caddy-pass") {
		t.Errorf("the error logged: %q\nwant it to hold %q", msg, want)
	}
	if st := l.Status(); st.LastError != msg || st.Failures == 0 {
		t.Errorf("status: %+v", st)
	}
}

// The plain words keep the error they explain: errors.Is still finds
// rueidis's error under them, and its advice stays out of the message.
func TestPlainConnectErrorWraps(t *testing.T) {
	l := newLooker(&Source{Options: Options{Username: "caddy"}}, "", nil)
	noperm := errors.New("NOPERM User caddy has no permissions to run the 'client|tracking' command: [CLIENT TRACKING ON OPTIN]\nuse DisableCache")
	nopermGet := errors.New("NOPERM User caddy has no permissions to run the 'get' command")
	noCache := fmt.Errorf("%w: [CLIENT TRACKING ON OPTIN]\nuse DisableCache", rueidis.ErrNoCache)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{noperm, `the Redis user "caddy" may not run CLIENT TRACKING`},
		{nopermGet, `the Redis user "caddy" may not run GET`},
		{noCache, "the Redis server refused CLIENT TRACKING"},
	} {
		got := l.plainConnectError(tc.err)
		if !errors.Is(got, tc.err) || !strings.HasPrefix(got.Error(), tc.want) || strings.Contains(got.Error(), "use DisableCache") {
			t.Errorf("%q: got %q, want %q wrapping it", tc.err, got, tc.want)
		}
	}
	if !errors.Is(l.plainConnectError(noCache), rueidis.ErrNoCache) {
		t.Error("rueidis.ErrNoCache lost")
	}
}
