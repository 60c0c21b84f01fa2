package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

// effective is what EachLimit yields, one line per limit.
func effective(each func(func(limits.ScopeKind, string, string, consumers.Limit) bool)) string {
	var b strings.Builder
	each(func(k limits.ScopeKind, scope, meter string, l consumers.Limit) bool {
		fmt.Fprintf(&b, "%s %s %s %d %s; ", k, scope, meter, l.Max, l.Window)
		return true
	})
	return b.String()
}

// TestRedisLimits: a key found in Redis carries its own limits, its
// consumer's and its groups' (read from their group hashes, once per group
// for all its members); a change to a group hash reaches every cached key
// of its members as a DEL of a key does, and a group hash that fails the
// checks refuses its members' keys until it is fixed. The anonymous
// consumer carries its groups' limits too.
func TestRedisLimits(t *testing.T) {
	srv := redistest.Start(t)
	do := redisDo(t, srv.Addr())
	do("HSET", "p:group:free", "member_limits", `{"requests": {"max": 1000, "per": "day"}, "in_flight": 2}`)
	do("HSET", "p:group:team", "limits", `{"requests": {"max": 100000, "per": "month", "timezone": "Europe/Berlin"}}`)
	do("HSET", "p:consumer:alice", "id", "a11ce", "groups", "gold,free,team", "limits", `{"tokens": {"max": 2000000, "per": "month"}}`)
	do("HSET", credKey("p:", keyMark+"alice-1"), "consumer", "alice", "id", "alice-ci", "limits", `{"requests": {"max": 100, "per": "hour"}}`)
	do("HSET", "p:consumer:bob", "groups", "free")
	do("HSET", credKey("p:", keyMark+"bob-1"), "consumer", "bob", "id", "bob-1")
	do("HSET", "p:consumer:guest", "groups", "free,team")
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}, Prefix: "p:"}})

	const aliceWant = "credential alice-ci requests 100 hour; consumer a11ce tokens 2000000 month; consumer a11ce in_flight 2 ; " +
		"consumer a11ce requests 1000 day; group team requests 100000 month in Europe/Berlin; "
	for round := range 2 { // the second from the cache
		cred, ok := mustLookup(t, l, "alice-1")
		if got := effective(cred.EachLimit); !ok || got != aliceWant {
			t.Fatalf("round %d: alice's key: %v\n got %s\nwant %s", round, ok, got, aliceWant)
		}
	}
	bob, _ := mustLookup(t, l, "bob-1")
	if got := effective(bob.EachLimit); got != "consumer bob in_flight 2 ; consumer bob requests 1000 day; " {
		t.Errorf("bob: %s", got)
	}
	guest, ok, err := l.Consumer(context.Background(), "guest")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if got := effective(guest.EachLimit); got != "consumer guest in_flight 2 ; consumer guest requests 1000 day; group team requests 100000 month in Europe/Berlin; " {
		t.Errorf("the anonymous consumer: %s", got)
	}
	// Groups are cached by name, absent ones too ("gold" has no hash).
	for _, g := range []string{"free", "team", "gold"} {
		if l.cache.getGroup(g) == nil {
			t.Errorf("group %s not cached", g)
		}
	}

	cached := func(key string) bool { return l.cache.get(digestOf(keyMark+key)) != nil }
	// A tier's change reaches its members' cached keys and the anonymous
	// consumer, and no one else.
	do("HSET", "p:group:free", "member_limits", `{"requests": {"max": 500, "per": "day"}}`)
	waittest.Until(t, "free's members dropped", func() bool { return !cached("alice-1") && !cached("bob-1") })
	bob, _ = mustLookup(t, l, "bob-1")
	if got := effective(bob.EachLimit); got != "consumer bob requests 500 day; " {
		t.Errorf("bob after the change: %s", got)
	}
	waittest.Until(t, "the anonymous consumer's new tier", func() bool {
		g, _, _ := l.Consumer(context.Background(), "guest")
		return effective(g.EachLimit) == "consumer guest requests 500 day; group team requests 100000 month in Europe/Berlin; "
	})
	// A group hash created for a group that had none.
	do("HSET", "p:group:gold", "limits", `{"in_flight": 7}`)
	waittest.Until(t, "gold's creation reaching alice", func() bool {
		cred, _ := mustLookup(t, l, "alice-1")
		return strings.Contains(effective(cred.EachLimit), "group gold in_flight 7")
	})
	// A group hash that fails the checks refuses its members' keys, and
	// its fix lets them in again.
	do("HSET", "p:group:free", "member_limits", `{"requests": {"max": -1, "per": "day"}}`)
	waittest.Until(t, "bob refused", func() bool { _, ok := mustLookup(t, l, "bob-1"); return !ok })
	logged := false
	for _, e := range l.logs.All() {
		if err, _ := e.ContextMap()["error"].(string); strings.Contains(err, `group "free": member_limits: meter "requests" has a negative max`) {
			logged = true
		}
	}
	if !logged {
		t.Errorf("the refusal is not logged: %v", l.logs.All())
	}
	do("HDEL", "p:group:free", "member_limits")
	waittest.Until(t, "bob back, without the tier", func() bool {
		cred, ok := mustLookup(t, l, "bob-1")
		return ok && effective(cred.EachLimit) == ""
	})
	// Invalid limits on a key or a consumer refuse that key.
	do("HSET", credKey("p:", keyMark+"alice-1"), "limits", `{"requests": {"max": 1, "per": "fortnight"}}`)
	waittest.Until(t, "alice's key refused", func() bool { _, ok := mustLookup(t, l, "alice-1"); return !ok })
}
