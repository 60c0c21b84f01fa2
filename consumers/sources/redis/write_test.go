package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

func setTo(e *consumers.ConsumerEntry) func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
	return func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { return e, nil }
}

// dump is every key under the prefix and what it holds, for a test to tell
// that nothing was written.
func dump(t *testing.T, c rueidis.Client, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, n := range c.Nodes() {
		keys, err := n.Do(ctx, n.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			typ, _ := n.Do(ctx, n.B().Type().Key(k).Build()).ToString()
			var v any
			switch typ {
			case "hash":
				m, _ := n.Do(ctx, n.B().Hgetall().Key(k).Build()).AsStrMap()
				v = m
			case "zset":
				v, _ = n.Do(ctx, n.B().Zrange().Key(k).Min("0").Max("-1").Build()).AsStrSlice()
			}
			out = append(out, fmt.Sprintf("%s %s %v", k, typ, v))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func hashOf(t *testing.T, c rueidis.Client, key string) map[string]string {
	t.Helper()
	m, err := c.Do(context.Background(), c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func list(t *testing.T, l testLooker, after string) []string {
	t.Helper()
	var names []string
	if err := l.consumers(context.Background(), after, func(e *consumers.ConsumerEntry) bool {
		names = append(names, e.Username)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

func readEntry(t *testing.T, l testLooker, username string) *consumers.ConsumerEntry {
	t.Helper()
	c, err := l.writeClient()
	if err != nil {
		t.Fatal(err)
	}
	st, err := readStored(context.Background(), c, l.layout, []string{username}, false)
	if err != nil {
		t.Fatal(err)
	}
	e, err := st[0].entry(username)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Create, change, read, list and delete a consumer in a standalone Redis:
// the layout and its indexes as push writes them, and the instance that
// wrote answers each change at once.
func TestRedisEdit(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	ctx := context.Background()

	tom := &consumers.ConsumerEntry{Username: "tom", ID: "t0m", Groups: []string{"gold"}, Labels: map[string]string{"plan": "pro"},
		Keys: []consumers.CredentialEntry{{ID: "tom-1", Key: keyMark + "tom-1", CreatedAt: "2026-01-02T03:04:05Z"}, {Key: keyMark + "tom-2", ExpiresAt: "2030-01-01T00:00:00Z"}}}
	if _, ok := mustLookup(t, l, "tom-1"); ok {
		t.Fatal("tom's key works before tom exists")
	}
	calls := 0
	if err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		calls++
		if cur != nil {
			t.Errorf("tom before he exists: %+v", cur)
		}
		return tom, nil
	}); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("the change ran %d times", calls)
	}
	// At once: the unknown answer cached above is gone.
	if cred, ok := mustLookup(t, l, "tom-1"); !ok || cred.ID() != "tom-1" || !cred.Consumer().InGroup("gold") {
		t.Fatalf("tom-1 after the write: %v %v", cred, ok)
	}
	if cred, ok := mustLookup(t, l, "tom-2"); !ok || cred.ID() != "t0m#2" {
		t.Fatalf("tom-2 after the write: %v %v", cred, ok)
	}
	x1, x2 := strings.TrimPrefix(credKey("keyauth:", keyMark+"tom-1"), "keyauth:cred:"), strings.TrimPrefix(credKey("keyauth:", keyMark+"tom-2"), "keyauth:cred:")
	for key, want := range map[string]map[string]string{
		"keyauth:consumer:tom":              {"id": "t0m", "groups": "gold", "labels": `{"plan":"pro"}`},
		"keyauth:consumer-id:t0m":           {"consumer": "tom"},
		"keyauth:consumer-keys:tom":         {x1: "tom-1", x2: "t0m#2"},
		"keyauth:credential-id:tom-1":       {"consumer": "tom"},
		"keyauth:credential-id:t0m#2":       {"consumer": "tom"},
		"keyauth:cred:" + x1:                {"consumer": "tom", "id": "tom-1", "created_at": "2026-01-02T03:04:05Z"},
		"keyauth:cred:" + x2:                {"consumer": "tom", "id": "t0m#2", "expires_at": "2030-01-01T00:00:00Z"},
		"keyauth:credential-id:nonexisting": {},
	} {
		if got := hashOf(t, c, key); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}

	// Change: the change gets what Redis holds (keys as hashes), disables
	// tom, drops his second key, renames his id.
	redistest.Do(t, c, "HSET", "keyauth:last-used", "t0m#2", "29000000")
	if err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		// Keys come in credential id order.
		if cur == nil || len(cur.Keys) != 2 || cur.Keys[1].Hash != consumers.HashKey(keyMark+"tom-1") || cur.Keys[0].ID != "t0m#2" || cur.ID != "t0m" {
			t.Errorf("tom as the change gets him: %+v", cur)
		}
		cur.Disabled, cur.ID, cur.Keys = true, "", cur.Keys[1:]
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if cred, ok := mustLookup(t, l, "tom-1"); ok {
		t.Errorf("tom-1 works right after tom is disabled: %v", cred)
	}
	if _, ok := mustLookup(t, l, "tom-2"); ok {
		t.Error("tom-2 works after its removal")
	}
	for _, key := range []string{"keyauth:consumer-id:t0m", "keyauth:credential-id:t0m#2", "keyauth:cred:" + x2} {
		if got := hashOf(t, c, key); len(got) != 0 {
			t.Errorf("%s = %v after the change, want it gone", key, got)
		}
	}
	if got := hashOf(t, c, "keyauth:last-used"); len(got) != 0 {
		t.Errorf("the removed key's last use stays: %v", got)
	}
	if got := hashOf(t, c, "keyauth:consumer:tom"); got["disabled"] != "true" || got["id"] != "tom" {
		t.Errorf("tom after the change: %v", got)
	}

	// Read and list, in username order, from Redis.
	for _, name := range []string{"bob", "alice", "zed"} {
		if err := l.edit(ctx, name, setTo(&consumers.ConsumerEntry{Username: name})); err != nil {
			t.Fatal(err)
		}
	}
	if got := list(t, l, ""); !slices.Equal(got, []string{"alice", "bob", "tom", "zed"}) {
		t.Errorf("list: %v", got)
	}
	if got := list(t, l, "bob"); !slices.Equal(got, []string{"tom", "zed"}) {
		t.Errorf("list after bob: %v", got)
	}
	if e := readEntry(t, l, "tom"); e == nil || !e.Disabled || len(e.Keys) != 1 || e.Keys[0].ID != "tom-1" {
		t.Errorf("tom read back: %+v", e)
	}

	// Delete: every hash of tom goes, his key at once.
	if err := l.edit(ctx, "tom", setTo(nil)); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, c, "keyauth:"); strings.Contains(got, "tom") {
		t.Errorf("tom's hashes after his deletion:\n%s", got)
	}
	if e := readEntry(t, l, "tom"); e != nil {
		t.Errorf("tom after his deletion: %+v", e)
	}
	before := dump(t, c, "keyauth:")
	if err := l.edit(ctx, "nobody", setTo(nil)); err != nil {
		t.Fatal(err)
	}
	if dump(t, c, "keyauth:") != before {
		t.Error("deleting a consumer that is not there wrote")
	}
}

// What push writes, the writer reads and edits: a pushed consumer's entry
// is the document's, and an edit keeps the others as they were.
func TestRedisEditPushed(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}, Prefix: "rt:"}})
	doc, _ := RandomDoc(3, 40)
	d, err := consumers.DecodeDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	set, err := consumers.Build(d)
	if err != nil {
		t.Fatal(err)
	}
	// Written as push writes it: the same EncodeEntry, every index.
	ctx := context.Background()
	for i := range d.Consumers {
		e := &d.Consumers[i]
		h, err := EncodeEntry(e, set.ConsumerAt(i), set)
		if err != nil {
			t.Fatal(err)
		}
		p := &plan{layout: l.layout, username: e.Username, next: &h, current: map[string]map[string]string{}}
		for _, phase := range p.phases(c) {
			for _, r := range c.DoMulti(ctx, phase...) {
				if err := r.Error(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	index := consumers.NewIndex(set)
	var names []string
	for cons := range index.After("") {
		names = append(names, cons.Username())
		want := index.Entry(cons)
		got := readEntry(t, l, cons.Username())
		back, err := consumers.Build(&consumers.Document{Consumers: []consumers.ConsumerEntry{*got}})
		if err != nil {
			t.Fatalf("%s read back is refused: %v", cons.Username(), err)
		}
		wantSet, _ := consumers.Build(&consumers.Document{Consumers: []consumers.ConsumerEntry{want}})
		if diff := SameConsumer(wantSet.ConsumerAt(0), back.ConsumerAt(0)); diff != "" {
			t.Errorf("%s: %s", cons.Username(), diff)
		}
		if len(got.Keys) != len(want.Keys) {
			t.Errorf("%s: %d keys, want %d", cons.Username(), len(got.Keys), len(want.Keys))
		}
	}
	if got := list(t, l, ""); !slices.Equal(got, names) {
		t.Errorf("list %v, want %v", got, names)
	}
	before := dump(t, c, "rt:")
	// An edit that changes nothing writes nothing.
	victim := names[len(names)/2]
	if err := l.edit(ctx, victim, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { return cur, nil }); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, c, "rt:"); after != before {
		t.Errorf("an edit that changes nothing wrote:\n%s\nwas\n%s", after, before)
	}
}

// An entry refused by the document's rules, or that takes another
// consumer's credential id, key or id, writes nothing and names only the
// consumer written; the change's own error comes back as it is.
func TestRedisEditRefused(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	ctx := context.Background()
	for _, e := range []*consumers.ConsumerEntry{
		{Username: "alice", ID: "a11ce", Keys: []consumers.CredentialEntry{{ID: "first-cred", Key: keyMark + "alice"}}},
		{Username: "carol"},
		{Username: "bob"},
	} {
		if err := l.edit(ctx, e.Username, setTo(e)); err != nil {
			t.Fatal(err)
		}
	}
	before := dump(t, c, "keyauth:")
	mine := errors.New("my own error")
	for _, tt := range []struct {
		name   string
		change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)
		is     error
		want   string
	}{
		{"bad label", setTo(&consumers.ConsumerEntry{Username: "bob", Labels: map[string]string{"bad name": "x"}}), consumers.ErrRefused, `consumer "bob": label name "bad name" is not`},
		{"blank key", setTo(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "b", Key: "  "}}}), consumers.ErrRefused, `consumer "bob", credential "b"`},
		{"another username", setTo(&consumers.ConsumerEntry{Username: "robert"}), consumers.ErrRefused, `username: the entry's username "robert"`},
		{"credential id taken", setTo(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "first-cred", Key: keyMark + "bob"}}}), consumers.ErrCredentialTaken, `consumer "bob": credential id "first-cred" is already in use`},
		{"key taken", setTo(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "bob-1", Key: keyMark + "alice"}}}), consumers.ErrCredentialTaken, `consumer "bob", credential "bob-1": its key is already another credential's`},
		{"id taken by an explicit id", setTo(&consumers.ConsumerEntry{Username: "bob", ID: "a11ce"}), consumers.ErrRefused, `consumer "bob": id "a11ce" is already another consumer's`},
		{"id taken by a username", setTo(&consumers.ConsumerEntry{Username: "bob", ID: "carol"}), consumers.ErrRefused, `consumer "bob": id "carol" is already another consumer's`},
		{"change's error", func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { return nil, mine }, mine, "my own error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := l.edit(ctx, "bob", tt.change)
			if !errors.Is(err, tt.is) || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("error %v, want %v saying %q", err, tt.is, tt.want)
			}
			if strings.Contains(fmt.Sprint(err), keyMark) {
				t.Errorf("the error holds key material: %v", err)
			}
			if after := dump(t, c, "keyauth:"); after != before {
				t.Errorf("written:\n%s\nwas\n%s", after, before)
			}
		})
	}
	// The id a consumer lets go, another may take.
	if err := l.edit(ctx, "alice", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { cur.ID = ""; return cur, nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.edit(ctx, "bob", setTo(&consumers.ConsumerEntry{Username: "bob", ID: "a11ce"})); err != nil {
		t.Errorf("taking an id let go: %v", err)
	}
}

// Another writer that changes the consumer between the read and the write
// (a service's HSET, another instance): the transaction aborts and the
// change runs again on what is there now; a writer that does it every
// time gets ErrConflict, with nothing of the edit written.
func TestRedisEditConflict(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	ctx := context.Background()
	if err := l.edit(ctx, "tom", setTo(&consumers.ConsumerEntry{Username: "tom"})); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		calls++
		if calls == 1 {
			redistest.Do(t, c, "HSET", "keyauth:consumer:tom", "custom_id", "from elsewhere")
		}
		cur.Tags = append(cur.Tags, fmt.Sprint("t", calls))
		return cur, nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("error %v after %d calls, want none after 2", err, calls)
	}
	if got := hashOf(t, c, "keyauth:consumer:tom"); got["custom_id"] != "from elsewhere" || got["tags"] != "t2" {
		t.Errorf("tom: %v, want the other writer's custom_id and the second run's tag", got)
	}

	calls = 0
	err = l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		calls++
		redistest.Do(t, c, "HSET", "keyauth:consumer:tom", "custom_id", fmt.Sprint("other-", calls))
		cur.Tags = []string{"mine"}
		return cur, nil
	})
	if !errors.Is(err, consumers.ErrConflict) || calls != sources.EditTries {
		t.Errorf("error %v after %d calls, want ErrConflict after %d", err, calls, sources.EditTries)
	}
	if got := hashOf(t, c, "keyauth:consumer:tom"); got["tags"] != "t2" {
		t.Errorf("a conflicting edit wrote: %v", got)
	}
}

// Two instances sharing one Redis: a change one writes, the other answers
// within its revocation latency (its cache hears of it from Redis); both
// writing to one consumer at once lose nothing that succeeded.
func TestRedisEditTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	a := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	b := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	ctx := context.Background()
	if err := a.edit(ctx, "tom", setTo(&consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-1", Key: keyMark + "tom-1"}}})); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustLookup(t, b, "tom-1"); !ok {
		t.Fatal("b does not find tom's key")
	}
	if err := a.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		cur.Disabled = true
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	took := waittest.Until(t, "b to refuse tom's key", func() bool { _, ok := mustLookup(t, b, "tom-1"); return !ok })
	t.Logf("b refused the disabled key %v after a's write", took)

	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done []string
	conflicts := 0
	for i := range 2 * n {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			id := fmt.Sprint("k", i)
			err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
				cur.Keys = append(cur.Keys, consumers.CredentialEntry{ID: id, Key: keyMark + id})
				return cur, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				done = append(done, id)
			case errors.Is(err, consumers.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e := readEntry(t, a, "tom")
	var have []string
	for _, k := range e.Keys {
		have = append(have, k.ID)
	}
	for _, id := range done {
		if !slices.Contains(have, id) {
			t.Errorf("key %s is lost (tom has %v)", id, have)
		}
	}
	if len(have) != len(done)+1 {
		t.Errorf("tom has %v; the writes that succeeded: %v", have, done)
	}
	t.Logf("%d writes from two instances: %d succeeded, %d conflicts", 2*n, len(done), conflicts)
}

// Writing while Redis is down fails with a plain error (503), never a
// refusal or a conflict.
func TestRedisEditUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	srv.Stop()
	err := l.edit(context.Background(), "tom", setTo(&consumers.ConsumerEntry{Username: "tom"}))
	if err == nil || errors.Is(err, consumers.ErrRefused) || errors.Is(err, consumers.ErrConflict) {
		t.Errorf("error %v, want a plain one", err)
	}
}

// In a Redis Cluster a consumer's hashes live in different slots: an edit
// writes them in order, re-reads before writing (a change meanwhile runs
// the change again), and lists across the masters.
func TestRedisEditCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redistest.Client(t, cl.Addrs()...)
	l := newTestLooker(t, Source{Options: Options{Addresses: cl.Addrs(), PartitionTimeout: caddy.Duration(300 * time.Millisecond)}})
	ctx := context.Background()
	const n = 20
	for i := range n {
		name := fmt.Sprint("user-", i)
		if err := l.edit(ctx, name, setTo(&consumers.ConsumerEntry{Username: name, Keys: []consumers.CredentialEntry{{ID: name + "-k", Key: keyMark + name}}})); err != nil {
			t.Fatal(err)
		}
		if _, ok := mustLookup(t, l, name); !ok {
			t.Fatalf("%s's key does not work right after the write", name)
		}
	}
	nodes := map[int]bool{}
	for i := range n {
		nodes[cl.KeyNode(t, fmt.Sprint("keyauth:consumer:user-", i))] = true
		nodes[cl.KeyNode(t, credKey("keyauth:", fmt.Sprint(keyMark, "user-", i)))] = true
	}
	if len(nodes) != 3 {
		t.Errorf("the hashes use %d masters, want 3", len(nodes))
	}
	if got := list(t, l, ""); len(got) != n || !slices.IsSorted(got) {
		t.Errorf("list: %v", got)
	}
	calls := 0
	err := l.edit(ctx, "user-3", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		calls++
		if calls == 1 {
			if err := c.Do(ctx, c.B().Hset().Key("keyauth:consumer:user-3").FieldValue().FieldValue("custom_id", "elsewhere").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		cur.Disabled = true
		return cur, nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("error %v after %d calls, want none after 2", err, calls)
	}
	if e := readEntry(t, l, "user-3"); e == nil || !e.Disabled || e.CustomID != "elsewhere" {
		t.Errorf("user-3: %+v", e)
	}
	if _, ok := mustLookup(t, l, "user-3"); ok {
		t.Error("user-3's key works after user-3 is disabled")
	}
	if err := l.edit(ctx, "user-4", setTo(nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustLookup(t, l, "user-4"); ok {
		t.Error("user-4's key works after user-4 is deleted")
	}
	if got := dump(t, c, "keyauth:"); strings.Contains(got, "user-4") {
		t.Errorf("user-4's hashes after the deletion:\n%s", got)
	}
}

// A roll through the writer: the new key and the previous one both work as
// the same credential, the previous secret is its own hash listed under the
// credential's id, read back as the credential's previous secret, and goes
// when a later change drops it.
func TestRedisEditRoll(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	l := newTestLooker(t, Source{Options: Options{Addresses: []string{srv.Addr()}}})
	ctx := context.Background()
	if err := l.edit(ctx, "tom", setTo(&consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-1", Key: keyMark + "old"}}})); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustLookup(t, l, "old"); !ok {
		t.Fatal("the old key does not work")
	}
	if err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		_, err := cur.Roll(0, consumers.HashKey(keyMark+"new"), time.Hour, time.Now())
		return cur, err
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"old", "new"} {
		if cred, ok := mustLookup(t, l, k); !ok || cred.ID() != "tom-1" {
			t.Errorf("the %s key after the roll: %v %v", k, cred, ok)
		}
	}
	xo, xn := strings.TrimPrefix(credKey("keyauth:", keyMark+"old"), "keyauth:cred:"), strings.TrimPrefix(credKey("keyauth:", keyMark+"new"), "keyauth:cred:")
	if got := hashOf(t, c, "keyauth:consumer-keys:tom"); !maps.Equal(got, map[string]string{xo: "tom-1", xn: "tom-1"}) {
		t.Errorf("tom's keys: %v", got)
	}
	if got := hashOf(t, c, "keyauth:cred:"+xo); got["previous"] != "true" || got["expires_at"] == "" {
		t.Errorf("the previous secret's hash: %v", got)
	}
	e := readEntry(t, l, "tom")
	if len(e.Keys) != 1 || e.Keys[0].Hash != consumers.HashKey(keyMark+"new") || len(e.Keys[0].Previous) != 1 ||
		e.Keys[0].Previous[0].Hash != consumers.HashKey(keyMark+"old") {
		t.Fatalf("tom read back: %+v", e)
	}
	// The grace cut short: the previous secret goes, at once.
	if err := l.edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		cur.Keys[0].Previous = nil
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustLookup(t, l, "old"); ok {
		t.Error("the previous key works after it was dropped")
	}
	if got := hashOf(t, c, "keyauth:cred:"+xo); len(got) != 0 {
		t.Errorf("the previous secret's hash stays: %v", got)
	}
	// A previous secret is a key: another consumer may not take it.
	err := l.edit(ctx, "ann", setTo(&consumers.ConsumerEntry{Username: "ann", Keys: []consumers.CredentialEntry{{ID: "ann-1", Hash: consumers.HashKey(keyMark + "new")}}}))
	if !errors.Is(err, consumers.ErrCredentialTaken) {
		t.Errorf("taking tom's key: %v", err)
	}
}
