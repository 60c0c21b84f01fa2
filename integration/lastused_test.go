package integration

// Last use and idle keys (README: The key_auth handler, max_idle; Last use).

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth/command"
)

// A key's last use survives a restart of Caddy (a stop, then a start with
// the same data directory), and max_idle counts from it: the key used
// before the restart goes on, the one created as long ago but never used
// is refused as an unknown key is, and one with neither is exempt.
func TestLastUsedAcrossRestart(t *testing.T) {
	e := newEnv(t)
	longAgo := time.Now().Add(-100 * 24 * time.Hour).UTC().Format(time.RFC3339)
	e.writeConsumers(`{"consumers": [{"username": "ann", "keys": [
		{"id": "ann-used", "key": "ann-used-key-01", "created_at": "` + longAgo + `"},
		{"id": "ann-idle", "key": "ann-idle-key-01", "created_at": "` + longAgo + `"},
		{"id": "ann-ageless", "key": "ann-ageless-01"}]}]}`)
	e.site()
	expect(t, siteURL(0)+"/", "ann-used-key-01", 200, "")
	if !storeAt(t, e.consumers).LastUsed()["ann-used"].After(time.Now().Add(-2 * time.Minute)) {
		t.Fatal("the use was not recorded")
	}

	// Stop Caddy: the store goes and writes its record of use.
	unload(t)
	record := sources.UseFile(sources.UseDir(), sources.SourceInfo{Kind: "file", Location: e.consumers})
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("no record of use after the stop: %v", err)
	}
	for _, k := range []string{"ann-used-key-01", "ann-idle-key-01", "ann-ageless-01"} {
		if strings.Contains(string(b), k) {
			t.Fatalf("the record of use holds a key:\n%s", b)
		}
	}
	if !strings.Contains(string(b), `"ann-used"`) || strings.Contains(string(b), `"ann-idle"`) {
		t.Fatalf("record of use:\n%s", b)
	}

	// caddy key-auth stale reads the same record: the idle key alone.
	root := &cobra.Command{Use: "key-auth"}
	command.Setup(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"stale", "--file", e.consumers, "--unused", "90d", "--data-dir", caddy.AppDataDir()})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, `credential "ann-idle": never used`) || strings.Count(got, "\n") != 1 {
		t.Errorf("stale:\n%s\n%s", got, errOut.String())
	}

	// Start it again, now with max_idle.
	e.site("max_idle 90d")
	expect(t, siteURL(0)+"/", "ann-used-key-01", 200, "")
	expect(t, siteURL(0)+"/", "ann-idle-key-01", 401, "")
	expect(t, siteURL(0)+"/", "ann-ageless-01", 200, "")
	if _, ok := storeAt(t, e.consumers).LastUsed()["ann-idle"]; ok {
		t.Error("a refused key was recorded as used")
	}
}

// The HTTP source keeps its keys' last use across a restart too.
func TestLastUsedAcrossRestartHTTP(t *testing.T) {
	longAgo := time.Now().Add(-100 * 24 * time.Hour).UTC().Format(time.RFC3339)
	srv := newSourceServer(t, `{"consumers": [{"username": "ann", "keys": [
		{"id": "ann-used", "key": "ann-used-key-01", "created_at": "`+longAgo+`"},
		{"id": "ann-idle", "key": "ann-idle-key-01", "created_at": "`+longAgo+`"}]}]}`)
	url := srv.URL("/c.json")
	site := siteURL(0) + "/"
	start := func(opts string) {
		startCaddy(t, globalOptions("")+httpSourceSite(sitePort[0], url, "refresh 1h", opts, "one"), "caddyfile")
		waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	}
	start("")
	expect(t, site, "ann-used-key-01", 200, "one ann")
	info := storeAt(t, url).Info()
	unload(t)
	if got, err := sources.ReadUseFile(sources.UseFile(sources.UseDir(), info)); err != nil || got["ann-used"] == 0 || got["ann-idle"] != 0 {
		t.Fatalf("record of use after the stop: %v, %v", got, err)
	}
	start("max_idle 90d")
	expect(t, site, "ann-used-key-01", 200, "one ann")
	expect(t, site, "ann-idle-key-01", 401, "")
}

// With the Redis source the last use is the fleet's, in Redis: max_idle
// counts from what any instance recorded there (a key used elsewhere
// lately goes on, however old), a key never used counts from created_at,
// a key with neither is exempt; this instance's uses reach Redis when its
// source goes (and once a minute before), and another instance (after a
// restart) reads them.
func TestLastUsedRedis(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv.Addr())
	longAgo := time.Now().Add(-100 * 24 * time.Hour).UTC().Format(time.RFC3339)
	lately := strconv.Itoa(int(sources.MinuteOf(time.Now().Add(-24 * time.Hour))))
	redistest.Do(t, rc, "HSET", "i:consumer:ann", "id", "ann")
	for _, k := range [][2]string{{"ann-used", "ann-used-key-01"}, {"ann-elsewhere", "ann-elsewhere-01"}, {"ann-idle", "ann-idle-key-01"}} {
		redistest.Do(t, rc, "HSET", redisCred("i:", k[1]), "consumer", "ann", "id", k[0], "created_at", longAgo)
	}
	redistest.Do(t, rc, "HSET", redisCred("i:", "ann-ageless-01"), "consumer", "ann", "id", "ann-ageless")
	redistest.Do(t, rc, "HSET", "i:last-used", "ann-elsewhere", lately)

	e := newEnv(t)
	e.vars["Redis"] = srv.Addr()
	site := `{{.Global}}
{{.Site}} {
	key_auth {
		max_idle 90d
		consumers redis {{.Redis}} {
			prefix i:
		}
	}
	reverse_proxy {{.Up}}
}
`
	e.load(site, "caddyfile")
	eventually(t, "the source to connect", func() bool { return get(t, siteURL(0)+"/", "apikey", "nobody").status == 401 })
	expect(t, siteURL(0)+"/", "ann-elsewhere-01", 200, "")
	expect(t, siteURL(0)+"/", "ann-ageless-01", 200, "")
	expect(t, siteURL(0)+"/", "ann-idle-key-01", 401, "")
	// ann-used is idle too, until someone records a use: here, as if
	// another instance did.
	expect(t, siteURL(0)+"/", "ann-used-key-01", 401, "")
	redistest.Do(t, rc, "HSET", "i:last-used", "ann-used", lately)
	unload(t) // a restart: the new source reads what Redis holds
	e.load(site, "caddyfile")
	eventually(t, "ann-used to work", func() bool { return get(t, siteURL(0)+"/", "apikey", "ann-used-key-01").status == 200 })

	// This instance's use reaches Redis, at the latest when its source
	// goes; no instance moves it back.
	unload(t)
	got := redistest.Do(t, rc, "HGET", "i:last-used", "ann-used")
	m, err := got.ToString()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(m); n < int(sources.MinuteOf(time.Now()))-1 {
		t.Errorf("ann-used's last use in Redis is %s, want this minute", m)
	}
	if v, _ := redistest.Do(t, rc, "HGET", "i:last-used", "ann-idle").ToString(); v != "" {
		t.Errorf("a refused key has a last use: %s", v)
	}
}
