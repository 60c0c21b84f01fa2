package sources

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// TestLastUsed: a request's use is recorded to the minute, stored only
// when the minute changed, carried over a reload by credential id (not by
// position), written to Caddy's data directory without a key, and read
// back by the store of the same source after a restart.
func TestLastUsed(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "consumers.json")
	doc := func(ids ...string) {
		var keys []string
		for _, id := range ids {
			keys = append(keys, `{"id": "`+id+`", "key": "`+keyMark+`-`+id+`"}`)
		}
		content := `{"consumers": [{"username": "a", "keys": [` + strings.Join(keys, ", ") + `]}]}`
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func() (*fileLoader, *consumers.Set) {
		l := &fileLoader{path: path}
		set, err := l.Load(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		return l, set
	}
	find := func(s *Store, id string) (usageView, consumers.Credential) {
		v := s.Now().(*snapshot)
		d := sha256.Sum256([]byte(keyMark + "-" + id))
		cred, ok := v.set.Lookup(&d)
		if !ok {
			t.Fatalf("%s not found", id)
		}
		return v, cred
	}

	doc("one", "two")
	l, set := load()
	clk := newFakeClock()
	s := newStore(l, Polling{}, nil, true)
	s.clock = clk
	s.usage.tick()
	s.swap(set)

	v, one := find(s, "one")
	if v.LastUsed(one) != 0 {
		t.Fatal("a key never used has a last use")
	}
	v.Use(one)
	start := MinuteOf(clk.Now())
	if got := v.LastUsed(one); got != start || !s.usage.dirty.Load() {
		t.Fatalf("LastUsed = %d, dirty %v; want %d, true", got, s.usage.dirty.Load(), start)
	}
	if err := s.writeUse(); err != nil {
		t.Fatal(err)
	}
	clk.advance(30 * time.Second)
	s.usage.tick()
	v.Use(one)
	if s.usage.dirty.Load() {
		t.Error("a use in the same minute was stored again")
	}
	if n := testing.AllocsPerRun(100, func() { v.Use(one) }); n != 0 {
		t.Errorf("Use allocates %v times", n)
	}
	clk.advance(2 * time.Minute)
	s.usage.tick()
	v.Use(one)
	now := MinuteOf(clk.Now())
	if v.LastUsed(one) != now || !s.usage.dirty.Load() {
		t.Fatalf("a use two minutes on: LastUsed = %d, want %d", v.LastUsed(one), now)
	}

	// A reload that moves the key to another position keeps its use.
	doc("zero", "one", "two")
	_, set = load()
	s.swap(set)
	v, one = find(s, "one")
	if v.LastUsed(one) != now {
		t.Fatalf("after a reload LastUsed = %d, want %d", v.LastUsed(one), now)
	}
	if _, two := find(s, "two"); v.LastUsed(two) != 0 {
		t.Error("an unused key got a use in the reload")
	}

	// Written once the store goes, without a key, and read by the next.
	if err := s.Destruct(); err != nil {
		t.Fatal(err)
	}
	file := UseFile(UseDir(), s.Info())
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), keyMark) || !strings.Contains(string(b), `"one":"`+MinuteTime(now).Format(time.RFC3339)+`"`) {
		t.Errorf("the record of use:\n%s", b)
	}
	l, set = load()
	s2 := newStore(l, Polling{}, set, true)
	defer s2.Destruct()
	v, one = find(s2, "one")
	if v.LastUsed(one) != now {
		t.Errorf("after a restart LastUsed = %d, want %d", v.LastUsed(one), now)
	}
	if got := s2.LastUsed(); len(got) != 1 || !got["one"].Equal(MinuteTime(now)) {
		t.Errorf("Store.LastUsed() = %v", got)
	}
}

// TestUseFileRefused: a record of use that cannot be read is logged and
// counted from now; the set serves.
func TestUseFileRefused(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, []byte(fileDoc("a")), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &fileLoader{path: path}
	set, err := l.Load(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	file := UseFile(UseDir(), l.Info())
	if err := writeAtomic(file, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	s := newStore(l, Polling{}, set, true)
	defer s.Destruct()
	if s.Set() != set || len(s.LastUsed()) != 0 {
		t.Error("a broken record of use kept the set from serving, or was read")
	}
}

// usageView is keyauth.UsageView, which this package cannot import.
type usageView = interface {
	Use(cred consumers.Credential)
	LastUsed(cred consumers.Credential) uint32
}

var _ usageView = (*snapshot)(nil)

// TestUseFileMerged: two stores of one source (a reload that changed its
// configuration runs both for a moment) write one record, the later minute
// of each credential winning, whichever writes last.
func TestUseFileMerged(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	path := filepath.Join(t.TempDir(), "consumers.json")
	doc := `{"consumers": [{"username": "a", "keys": [{"id": "one", "key": "` + keyMark + `-one"}, {"id": "two", "key": "` + keyMark + `-two"}]}]}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *Store {
		l := &fileLoader{path: path}
		set, err := l.Load(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		return newStore(l, Polling{}, set, true)
	}
	use := func(s *Store, id string) {
		d := sha256.Sum256([]byte(keyMark + "-" + id))
		v := s.Now().(*snapshot)
		cred, _ := v.set.Lookup(&d)
		v.Use(cred)
	}
	older, newer := open(), open()
	use(newer, "one")
	if err := newer.writeUse(); err != nil {
		t.Fatal(err)
	}
	use(older, "two")
	if err := older.Destruct(); err != nil { // written last, without "one" of its own
		t.Fatal(err)
	}
	got, err := ReadUseFile(UseFile(UseDir(), newer.Info()))
	if err != nil || got["one"] == 0 || got["two"] == 0 {
		t.Errorf("merged record %v, %v: want one and two", got, err)
	}
	_ = newer.Destruct()
}
