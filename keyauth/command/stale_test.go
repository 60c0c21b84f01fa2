package command

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

// TestStale lists the keys unused for --unused by the record of use in the
// data directory given, or by created_at for keys never used; keys with
// neither are exempt and counted.
func TestStale(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	setNow(t, at)
	path := writeFile(t, `{"consumers": [{"username": "ann", "keys": [
		{"id": "used-lately", "hash": "`+consumers.HashKey("k1")+`", "created_at": "2025-01-01T00:00:00Z"},
		{"id": "used-long-ago", "hash": "`+consumers.HashKey("k2")+`", "created_at": "2025-01-01T00:00:00Z"},
		{"id": "never-old", "hash": "`+consumers.HashKey("k3")+`", "created_at": "2026-01-01T00:00:00Z"},
		{"id": "never-new", "hash": "`+consumers.HashKey("k4")+`", "created_at": "2026-05-20T00:00:00Z"},
		{"id": "ageless", "hash": "`+consumers.HashKey("k5")+`"}]}]}`)
	data := t.TempDir()

	// Without a record, used keys count from created_at too.
	out, errOut, err := run(t, "", "stale", "--file", path, "--unused", "90d", "--data-dir", data)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "\n") != 3 || !strings.Contains(errOut, "No record of use") || !strings.Contains(errOut, "3 of 5 keys unused for 90d; 1 key never used and without created_at, exempt.") {
		t.Fatalf("without a record:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}

	rec, _ := json.Marshal(sources.UseRecord{Source: "file " + path, LastUsed: map[string]time.Time{
		"used-lately":   at.Add(-24 * time.Hour),
		"used-long-ago": at.Add(-100 * 24 * time.Hour),
	}})
	file := sources.UseFile(sources.UseDirIn(data), sources.SourceInfo{Kind: "file", Location: path})
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, rec, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = run(t, "", "stale", "--file", path, "--unused", "90d", "--data-dir", data)
	if err != nil {
		t.Fatal(err)
	}
	want := `consumer "ann", credential "used-long-ago": last used 2026-02-21T12:00:00Z, 100 days ago
consumer "ann", credential "never-old": never used, created 2026-01-01T00:00:00Z, 151 days ago
`
	if out != want || !strings.Contains(errOut, "2 of 5 keys unused for 90d") {
		t.Errorf("stdout:\n%s\nwant:\n%s\nstderr:\n%s", out, want, errOut)
	}
	for _, bad := range [][]string{
		{"stale", "--file", path},
		{"stale", "--file", path, "--unused", "soon"},
		{"stale", "--unused", "90d"},
	} {
		if _, _, err := run(t, "", bad...); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// With --redis, the keys are those pushed into Redis and their last use the
// fleet's, from the last-used hash.
func TestStaleRedis(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	setNow(t, at)
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	doc := `{"consumers": [{"username": "ann", "keys": [
		{"id": "used-lately", "hash": "` + consumers.HashKey("k1") + `", "created_at": "2025-01-01T00:00:00Z"},
		{"id": "used-long-ago", "hash": "` + consumers.HashKey("k2") + `", "created_at": "2025-01-01T00:00:00Z"},
		{"id": "never-old", "hash": "` + consumers.HashKey("k3") + `", "created_at": "2026-01-01T00:00:00Z"}]},
		{"username": "bob", "keys": [
		{"id": "never-new", "hash": "` + consumers.HashKey("k4") + `", "created_at": "2026-05-20T00:00:00Z"},
		{"id": "ageless", "hash": "` + consumers.HashKey("k5") + `"}]}]}`
	if _, err := Push(context.Background(), c, []byte(doc), "s:"); err != nil {
		t.Fatal(err)
	}
	redistest.Do(t, c, "HSET", "s:last-used",
		"used-lately", strconv.Itoa(int(sources.MinuteOf(at.Add(-24*time.Hour)))),
		"used-long-ago", strconv.Itoa(int(sources.MinuteOf(at.Add(-100*24*time.Hour)))))
	out, errOut, err := run(t, "", "stale", "--redis", srv.Addr(), "--prefix", "s:", "--unused", "90d")
	if err != nil {
		t.Fatal(err)
	}
	want := `consumer "ann", credential "never-old": never used, created 2026-01-01T00:00:00Z, 151 days ago
consumer "ann", credential "used-long-ago": last used 2026-02-21T12:00:00Z, 100 days ago
`
	if out != want || !strings.Contains(errOut, "2 of 5 keys unused for 90d; 1 key never used and without created_at, exempt.") {
		t.Errorf("stdout:\n%s\nwant:\n%s\nstderr:\n%s", out, want, errOut)
	}
	if _, _, err := run(t, "", "stale", "--redis", srv.Addr(), "--file", "x.json", "--unused", "90d"); err == nil {
		t.Error("--redis and --file together: no error")
	}
}
