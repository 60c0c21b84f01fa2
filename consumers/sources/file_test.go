package sources

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fileDoc is a valid consumers document whose one key is keyMark-name.
func fileDoc(name string) string {
	return `{"consumers": [{"username": "` + name + `", "keys": [{"id": "` + name + `-cred", "key": "` + keyMark + `-` + name + `"}]}]}`
}

func TestFileFetcher(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "consumers.json")
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	write := func(content string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	setMtime := func(mt time.Time) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.Chtimes(path, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
	// rotate writes content to a temporary file and renames it over the
	// consumers file, keeping the old modification time: only the inode
	// tells the versions apart.
	rotate := func(content string) func(t *testing.T) {
		return func(t *testing.T) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, ".consumers.json.tmp")
			if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
	}
	moveAway := func(t *testing.T) {
		if err := os.Rename(path, path+".away"); err != nil {
			t.Fatal(err)
		}
	}
	moveBack := func(t *testing.T) {
		if err := os.Rename(path+".away", path); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		do     []func(t *testing.T)
		force  bool
		result string // "set", "nil" or "error"
		user   string // the consumer of a loaded set
		errs   []string
		// again: the error is the last one, returned without reading the
		// file again (the same refused version)
		again bool
	}{
		{name: "missing file", result: "error", errs: []string{"consumers file: ", path, "no such file"}},
		{name: "first load", do: []func(*testing.T){write(fileDoc("v1")), setMtime(base)}, result: "set", user: "v1"},
		{name: "unchanged", result: "nil"},
		{name: "unchanged again", result: "nil"},
		{name: "unchanged, forced", force: true, result: "set", user: "v1"},
		{name: "modified in place, new size", do: []func(*testing.T){write(fileDoc("v2-longer")), setMtime(base)}, result: "set", user: "v2-longer"},
		{name: "unchanged after a reload", result: "nil"},
		{name: "modified in place, same size, new mtime", do: []func(*testing.T){write(fileDoc("v3-longer")), setMtime(base.Add(time.Second))}, result: "set", user: "v3-longer"},
		{name: "rotated: same size and mtime, new inode", do: []func(*testing.T){rotate(fileDoc("v4-longer"))}, result: "set", user: "v4-longer"},
		{name: "unchanged after rotation", result: "nil"},
		{name: "refused", do: []func(*testing.T){write(fileDoc("v5") + "x")}, result: "error",
			errs: []string{"consumers file " + path + ": ", "line 1, column ", "unexpected data after the document"}},
		{name: "refused version, again", result: "error", again: true},
		{name: "refused version, once more", result: "error", again: true},
		{name: "refused version, forced", force: true, result: "error", errs: []string{"unexpected data after the document"}},
		{name: "refused version after the forced fetch", result: "error", again: true},
		{name: "another refused version", do: []func(*testing.T){write(`{"consumers": [{"username": "v6", "keys": [{"key": ""}]}]}`)}, result: "error",
			errs: []string{"consumers file " + path + ": ", `line 1: consumer "v6", key #1 has an empty key`}},
		{name: "refused by rotation", do: []func(*testing.T){rotate(`{"consumers": [{"username": "v6", "keys": [{"key": "` + keyMark + `-v6"}, {"key": "` + keyMark + `-v6"}]}]}`)},
			result: "error", errs: []string{`consumer "v6", key #2 has the same key as consumer "v6", credential "v6#1"`}},
		{name: "fixed", do: []func(*testing.T){write(fileDoc("v7"))}, result: "set", user: "v7"},
		{name: "unchanged after the fix", result: "nil"},
		{name: "moved away", do: []func(*testing.T){moveAway}, result: "error", errs: []string{"consumers file: ", "no such file"}},
		{name: "still missing: the error repeats", result: "error", errs: []string{"no such file"}},
		{name: "moved back: the version serving", do: []func(*testing.T){moveBack}, result: "nil"},
		{name: "removed and written again", do: []func(*testing.T){func(t *testing.T) { os.Remove(path) }, write(fileDoc("v8"))}, result: "set", user: "v8"},
		{name: "a directory", do: []func(*testing.T){func(t *testing.T) { os.Remove(path); os.Mkdir(path, 0o700) }}, result: "error", errs: []string{"consumers file ", "is a directory"}},
		{name: "a file again", do: []func(*testing.T){func(t *testing.T) { os.Remove(path) }, write(fileDoc("v9"))}, result: "set", user: "v9"},
	}
	f := &fileLoader{path: path}
	var lastErr error
	for _, st := range steps {
		for _, do := range st.do {
			do(t)
		}
		set, err := f.Load(ctx, st.force)
		switch st.result {
		case "set":
			if err != nil || set == nil {
				t.Fatalf("%s: fetch = %v, %v; want a set", st.name, set, err)
			}
			c, ok := set.Lookup(digestOf(keyMark + "-" + st.user))
			if !ok || c.Consumer().Username() != st.user || c.ID() != st.user+"-cred" {
				t.Fatalf("%s: the set is not the file's version %s", st.name, st.user)
			}
			if n, k := set.Len(); n != 1 || k != 1 {
				t.Fatalf("%s: Len() = %d, %d", st.name, n, k)
			}
		case "nil":
			if err != nil || set != nil {
				t.Fatalf("%s: fetch = %v, %v; want nil, nil", st.name, set, err)
			}
		case "error":
			if err == nil {
				t.Fatalf("%s: fetch = %v, nil; want an error", st.name, set)
			}
			if set != nil {
				t.Errorf("%s: fetch returned a set with its error", st.name)
			}
			for _, w := range st.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not contain %q", st.name, err, w)
				}
			}
			if strings.Contains(err.Error(), keyMark) {
				t.Errorf("%s: error holds key material: %q", st.name, err)
			}
			if st.again && err != lastErr {
				t.Errorf("%s: error %q is not the last one, %q", st.name, err, lastErr)
			}
			if !st.again && err == lastErr {
				t.Errorf("%s: the last error again; want the file read", st.name)
			}
		}
		lastErr = err
	}
}

// TestFileStoreRefused follows a refused file through the store: the error
// is logged once and stays in the status while the last good set serves,
// and only a fixed file counts as a recovery.
func TestFileStoreRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, []byte(fileDoc("good")), 0o600); err != nil {
		t.Fatal(err)
	}
	ff := &fileLoader{path: path}
	core, logs := observer.New(zap.DebugLevel)
	set, err := ff.Load(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(ff, filePolling(time.Second), set)
	s.logger.Store(zap.New(core))
	defer s.Destruct()
	serving := func() bool {
		c, ok := s.Set().Lookup(digestOf(keyMark + "-good"))
		return ok && c.Consumer().Username() == "good"
	}
	count := func(msg string) int { return logs.FilterMessage(msg).Len() }
	const notReloaded, recovered = "consumers not reloaded; the last good set keeps serving", "consumers source recovered"

	broken := `{"consumers": [{"username": "a", "keys": [{"key": "` + keyMark + `-x"}, {"key": "` + keyMark + `-x"}]}]}`
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := s.refresh(ctx, false); err == nil {
			t.Fatalf("poll %d of a refused file: no error", i)
		}
		st := s.Status()
		if st.Failures != i || !strings.Contains(st.LastError, "has the same key as") || !st.Loaded {
			t.Errorf("poll %d: status %+v", i, st)
		}
		if strings.Contains(st.LastError, keyMark) {
			t.Errorf("poll %d: the status holds key material: %q", i, st.LastError)
		}
		if !serving() {
			t.Errorf("poll %d: the last good set is not serving", i)
		}
	}
	if count(notReloaded) != 1 || count(recovered) != 0 {
		t.Errorf("after 3 polls of a refused file: %d errors, %d recoveries logged; want 1, 0", count(notReloaded), count(recovered))
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, keyMark) || (f.Interface != nil && strings.Contains(fmt.Sprint(f.Interface), keyMark)) {
				t.Errorf("log %q holds key material", e.Message)
			}
		}
	}

	if err := os.WriteFile(path, []byte(fileDoc("fixed")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.refresh(ctx, false); err != nil {
		t.Fatalf("poll of the fixed file: %v", err)
	}
	if st := s.Status(); st.Failures != 0 || st.LastError != "" {
		t.Errorf("after the fix: status %+v", st)
	}
	if _, ok := s.Set().Lookup(digestOf(keyMark + "-fixed")); !ok {
		t.Error("the fixed file is not serving")
	}
	if count(recovered) != 1 {
		t.Errorf("%d recoveries logged, want 1", count(recovered))
	}
}

func TestFileFetcherInfo(t *testing.T) {
	f := &fileLoader{path: "/etc/caddy/consumers.json"}
	if got := f.Info(); got != (SourceInfo{Kind: "file", Location: "/etc/caddy/consumers.json"}) {
		t.Errorf("Info() = %+v", got)
	}
	for _, failures := range []int{0, 1, 10} {
		if got := filePolling(7 * time.Second).wait(failures); got != 7*time.Second {
			t.Errorf("wait(%d) = %s, want the refresh interval", failures, got)
		}
	}
	if got := filePolling(0).wait(0); got != 0 {
		t.Errorf("wait with refresh 0 = %s, want 0 (no polling)", got)
	}
}

// TestFileSourceRefused checks the errors that fail a config: they come
// before the source needs a running Caddy, so a bare context does.
func TestFileSourceRefused(t *testing.T) {
	dir := t.TempDir()
	refused := filepath.Join(dir, "refused.json")
	doc := `{"consumers": [{"username": "a", "keys": [{"key": "` + keyMark + `-a"}, {"key": "` + keyMark + `-a"}]}]}`
	if err := os.WriteFile(refused, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	neg := caddy.Duration(-time.Second)
	tests := []struct {
		name string
		src  FileSource
		want []string
	}{
		{"no path", FileSource{}, []string{"path is required"}},
		{"negative refresh", FileSource{Path: refused, Refresh: &neg}, []string{"refresh must not be negative"}},
		{"missing file", FileSource{Path: filepath.Join(dir, "missing.json")}, []string{"consumers file", "missing.json", "no such file"}},
		{"refused file", FileSource{Path: refused}, []string{"consumers file " + refused + ": line 1: ", `consumer "a", key #2 has the same key as consumer "a", credential "a#1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			src := tt.src
			err := src.Provision(ctx)
			if err == nil {
				t.Fatal("Provision succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), keyMark) {
				t.Errorf("error holds key material: %q", err)
			}
			if src.live != nil {
				t.Error("a failed Provision left a store")
			}
			if err := src.Cleanup(); err != nil {
				t.Errorf("Cleanup after a failed Provision: %v", err)
			}
		})
	}
}

// TestFileTagRefused: a tag that the Redis layout would read back as other
// tags (a comma, white space at an edge) is refused at load, naming the
// consumer, and the last good set keeps serving with its tags.
func TestFileTagRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "consumers.json")
	doc := func(tags string) []byte {
		return []byte(`{"consumers": [{"username": "alice", "tags": ` + tags + `, "keys": [{"key": "` + keyMark + `-alice"}]}]}`)
	}
	if err := os.WriteFile(path, doc(`["staff", "ops"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	ff := &fileLoader{path: path}
	set, err := ff.Load(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(ff, filePolling(time.Second), set)
	s.logger.Store(zap.NewNop())
	defer s.Destruct()
	for _, tt := range []struct{ tags, want string }{
		{`["staff", "team,ops"]`, `consumer "alice": tag "team,ops" holds a comma`},
		{`["staff", " ops"]`, `consumer "alice": tag " ops" starts or ends with white space`},
		{`["staff", ""]`, `consumer "alice": tag #2 is empty`},
	} {
		if err := os.WriteFile(path, doc(tt.tags), 0o600); err != nil {
			t.Fatal(err)
		}
		err := s.refresh(ctx, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tags %s: error %v, want %q", tt.tags, err, tt.want)
		}
		c, ok := s.Set().Lookup(digestOf(keyMark + "-alice"))
		if !ok || c.Consumer().TagsJoined() != "staff, ops" {
			t.Errorf("tags %s: the last good set does not serve alice with her tags", tt.tags)
		}
	}
}

// TestFileLimitRefused: invalid limits refuse the file like any other
// fault, naming the consumer, credential or group and the meter, and the
// last good set keeps serving with its limits.
func TestFileLimitRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "consumers.json")
	doc := func(consumerLimits, credLimits, groupLimits string) []byte {
		return []byte(`{"groups": {"free": {"member_limits": ` + groupLimits + `}},
			"consumers": [{"username": "alice", "groups": ["free"], "limits": ` + consumerLimits + `,
				"keys": [{"id": "alice-ci", "key": "` + keyMark + `-alice", "limits": ` + credLimits + `}]}]}`)
	}
	const good = `{"requests": {"max": 10, "per": "day"}}`
	if err := os.WriteFile(path, doc(good, `{"in_flight": 2}`, `{"tokens": {"max": 5, "per": "month", "timezone": "Europe/Berlin"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ff := &fileLoader{path: path}
	set, err := ff.Load(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(ff, filePolling(time.Second), set)
	s.logger.Store(zap.NewNop())
	defer s.Destruct()
	serves := func() bool {
		c, ok := s.Set().Lookup(digestOf(keyMark + "-alice"))
		if !ok {
			return false
		}
		l, ok := c.Consumer().Limits().Get("requests")
		g, _ := s.Set().Group("free")
		tok, _ := g.MemberLimits().Get("tokens")
		return ok && l.Max == 10 && tok.Window.String() == "month in Europe/Berlin"
	}
	if !serves() {
		t.Fatal("the first set does not serve alice with her limits")
	}
	for _, tt := range []struct {
		doc  []byte
		want string
	}{
		{doc(`{"requests": {"max": 10, "per": "fortnight"}}`, `null`, `null`), `consumer "alice": limits: meter "requests" has per "fortnight"`},
		{doc(`{"requests": {"max": -1, "per": "day"}}`, `null`, `null`), `consumer "alice": limits: meter "requests" has a negative max`},
		{doc(good, `{"requests": {"max": 1, "per": "day", "timezone": "Europe/Nowhere"}}`, `null`),
			`consumer "alice", credential "alice-ci": limits: meter "requests" has timezone "Europe/Nowhere", which is not an IANA timezone`},
		{doc(good, `{"in_flight": -2}`, `null`), `consumer "alice", credential "alice-ci": limits: in_flight is negative`},
		{doc(good, `null`, `{"tokens": {"max": 5, "per": "500ms"}}`), `group "free": member_limits: meter "tokens" has per "500ms", shorter than 1s`},
		{doc(good, `null`, `{"to kens": {"max": 5, "per": "day"}}`), `group "free": member_limits: meter name "to kens" is not`},
	} {
		if err := os.WriteFile(path, tt.doc, 0o600); err != nil {
			t.Fatal(err)
		}
		err := s.refresh(ctx, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want %q", err, tt.want)
		}
		if !serves() {
			t.Errorf("%s: the last good set does not serve alice with her limits", tt.want)
		}
	}
}
