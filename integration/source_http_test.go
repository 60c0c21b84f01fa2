package integration

// Issue 3: consumers from an HTTP source, against a real Caddy and a real
// HTTP server playing the source.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

func TestSourceHTTPFirstLoadChangeAndNotModified(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	startCaddy(t, globalOptions("")+httpSourceSite(sitePort[0], url, "refresh 200ms\ntimeout 2s", "", "ok"), "caddyfile")
	site := site + "/"

	// First load: the poller fetches at start.
	eventually(t, "the first load serves alice", func() bool {
		code, _ := getKey(t, site, "alice-key-1")
		return code == http.StatusOK
	})
	expect(t, site, "alice-key-1", 200, "ok alice")
	expect(t, site, "wrong", 401, `{"message":"Unauthorized"}`)
	first := srv.Requests()[0]
	if first.Header.Get("If-None-Match") != "" || first.Header.Get("If-Modified-Since") != "" {
		t.Errorf("the first fetch is conditional: %v", first.Header)
	}

	// 304: the following polls send If-None-Match, get 304, and leave the
	// set untouched.
	store := storeAt(t, url)
	set, status := store.Set(), store.Status()
	n0, nm0 := srv.Count(), srv.NotModified()
	eventually(t, "three more polls", func() bool { return srv.Count() >= n0+3 })
	if got := srv.NotModified() - nm0; got < 3 {
		t.Errorf("304 answers: got %d, want at least 3", got)
	}
	for _, r := range srv.Requests()[1:] {
		if r.Status == 0 {
			continue // still being answered
		}
		if got := r.Header.Get("If-None-Match"); got != srv.ETag() {
			t.Errorf("poll sent If-None-Match %q, want %q", got, srv.ETag())
		}
		if r.Status != http.StatusNotModified {
			t.Errorf("poll answered %d, want 304", r.Status)
		}
	}
	if store.Set() != set {
		t.Error("a 304 replaced the set")
	}
	if st := store.Status(); !st.LastLoad.Equal(*status.LastLoad) || st.Failures != 0 {
		t.Errorf("a 304 changed the status: %+v, was %+v", st, status)
	}
	if st := store.Status(); st.LastCheck == nil || !st.LastCheck.After(*status.LastCheck) {
		t.Errorf("304s did not advance last_check: %+v, was %+v", st, status)
	}

	// A change reaches requests by the poller alone: alice is revoked, bob
	// added. How soon is the poller's schedule, unit-tested in consumers/.
	srv.SetDoc(consumersDoc("bob", "bob-key-1"))
	eventually(t, "bob is served", func() bool {
		code, _ := getKey(t, site, "bob-key-1")
		return code == http.StatusOK
	})
	expect(t, site, "bob-key-1", 200, "ok bob")
	expect(t, site, "alice-key-1", 401, "")
	if store.Set() == set {
		t.Error("the set was not replaced")
	}
}

func TestSourceHTTPIfModifiedSince(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	srv.SetNoETag(true)
	url := srv.URL("/consumers")
	startCaddy(t, globalOptions("")+httpSourceSite(sitePort[0], url, "refresh 100ms", "", "ok"), "caddyfile")
	eventually(t, "three polls", func() bool { return srv.Count() >= 3 })
	reqs := srv.Requests()
	lm := reqs[0].At // the document's Last-Modified is before the first request
	for _, r := range reqs[1:] {
		if r.Status == 0 {
			continue // still being answered
		}
		ims, err := http.ParseTime(r.Header.Get("If-Modified-Since"))
		if err != nil || ims.After(lm) || r.Header.Get("If-None-Match") != "" {
			t.Fatalf("poll headers: %v", r.Header)
		}
		if r.Status != http.StatusNotModified {
			t.Errorf("poll answered %d, want 304", r.Status)
		}
	}
	expect(t, site+"/", "alice-key-1", 200, "ok alice")
}

func TestSourceHTTPFailuresKeepLastGoodSet(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	srv.SetOversize(bigConsumersDoc(8 << 10))
	url := srv.URL("/consumers")
	startCaddy(t, globalOptions("")+httpSourceSite(sitePort[0], url, "refresh 100ms\ntimeout 300ms\nmax_size 4KB", "", "ok"), "caddyfile")
	site := site + "/"
	eventually(t, "the first load", func() bool {
		code, _ := getKey(t, site, "alice-key-1")
		return code == http.StatusOK
	})
	store := storeAt(t, url)
	good := store.Set()

	cases := []struct {
		name  string
		mode  sourceMode
		error string // in the store's last error
	}{
		{"status 500", sourceFail, "status 500"},
		{"invalid JSON", sourceInvalid, "consumers source"},
		{"refused document", sourceRefusedDoc, "dup"},
		{"over max_size with Content-Length", sourceOversize, "max_size"},
		{"over max_size chunked", sourceOversizeChunked, "max_size"},
		{"hanging source", sourceHang, "Timeout"},
		{"connection refused", -1, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A fetch that succeeded would bring bob and drop alice.
			srv.SetDoc(consumersDoc("bob", "bob-key-1"))
			n0 := store.Status().Failures
			if c.mode < 0 {
				srv.Refuse()
			} else {
				srv.SetMode(c.mode)
			}
			st := waitStatus(t, url, "two failed polls", func(st sources.Status) bool {
				return st.Failures >= n0+2
			})
			if !strings.Contains(st.LastError, c.error) || st.LastErrorTime == nil {
				t.Errorf("last error %q, want it to mention %q", st.LastError, c.error)
			}
			if store.Set() != good || st.Consumers != 1 || !st.Loaded {
				t.Errorf("the set changed on failure: %+v", st)
			}
			expect(t, site, "alice-key-1", 200, "ok alice")
			expect(t, site, "bob-key-1", 401, "")
			if c.mode == sourceHang {
				// The fetches ended on the client's side: the source lets a
				// hanging request go only when the test ends, and the last
				// error (above) is the timeout's. How long a fetch may take is
				// unit-tested in consumers/.
				if len(srv.Hangs()) < 2 {
					t.Errorf("%d hanging fetches ended, want 2", len(srv.Hangs()))
				}
				// An admin refresh against the hanging source also ends, and
				// reports the failure.
				code, body := adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
				if code != 200 || !strings.Contains(string(body), "refresh_error") {
					t.Errorf("admin refresh against a hanging source: %d %s", code, body)
				}
			}

			// Back to normal, with alice: the store recovers.
			srv.SetDoc(consumersDoc("alice", "alice-key-1"))
			if c.mode < 0 {
				srv.Accept()
			}
			srv.SetMode(sourceOK)
			waitStatus(t, url, "recovery", func(st sources.Status) bool {
				return st.Failures == 0 && st.LastError == ""
			})
			expect(t, site, "alice-key-1", 200, "ok alice")
			good = store.Set()
		})
	}
}

func TestSourceHTTPFailureStreakLoggedOnce(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/streak")
	logFile := filepath.Join(t.TempDir(), "caddy-log.json")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", logFile)
	startCaddy(t, globalOptions(logOpt)+httpSourceSite(sitePort[0], url, "refresh 100ms", "", "ok"), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })

	failed := func() int { return countLines(t, logFile, "consumers not reloaded", url) }
	recovered := func() int { return countLines(t, logFile, "consumers source recovered", url) }

	// Two streaks of at least three failures each, of two kinds.
	for i, fail := range []func(){func() { srv.SetMode(sourceFail) }, srv.Refuse} {
		fail()
		waitStatus(t, url, "four failed polls", func(st sources.Status) bool { return st.Failures >= 4 })
		if i == 0 {
			// The source answered each failed poll. The back-off between
			// them is unit-tested, with an injected clock, in consumers/.
			failedPolls := 0
			for _, r := range srv.Requests() {
				if r.Status == http.StatusInternalServerError {
					failedPolls++
				}
			}
			if failedPolls < 4 {
				t.Fatalf("%d failed polls seen", failedPolls)
			}
		} else {
			srv.Accept()
		}
		srv.SetMode(sourceOK)
		waitStatus(t, url, "recovery", func(st sources.Status) bool { return st.Failures == 0 })
		eventually(t, "the recovery is logged", func() bool { return recovered() == i+1 })
		if got := failed(); got != i+1 {
			t.Errorf("after streak %d: %d failure lines, want %d", i+1, got, i+1)
		}
	}
	expect(t, site+"/", "alice-key-1", 200, "ok alice")
}

func TestSourceHTTPHeaderPlaceholdersAndSecrets(t *testing.T) {
	envSecret, fileSecret := "env-"+randomKey(), "file-"+randomKey()
	t.Setenv("SRC_KEYAUTH_TOKEN", envSecret)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "source-token")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "caddy-log.json")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)

	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	block := fmt.Sprintf("refresh 100ms\nheader Authorization \"Bearer {env.SRC_KEYAUTH_TOKEN}\"\nheader X-Source-Token {file.%s}", secretFile)
	startCaddy(t, globalOptions(logOpt)+httpSourceSite(sitePort[0], url, block, "", "ok"), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	expect(t, site+"/", "alice-key-1", 200, "ok alice")

	for _, r := range srv.Requests() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+envSecret {
			t.Errorf("Authorization sent: %q", got)
		}
		if got := r.Header.Get("X-Source-Token"); got != fileSecret {
			t.Errorf("X-Source-Token sent: %q", got)
		}
	}

	// Failures are logged, with the headers in play; an admin refresh
	// reports its error.
	srv.SetMode(sourceFail)
	waitStatus(t, url, "failures", func(st sources.Status) bool { return st.Failures >= 2 })
	code, refreshed := adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	if code != 200 || !strings.Contains(string(refreshed), "status 500") {
		t.Errorf("admin refresh: %d %s", code, refreshed)
	}
	srv.SetMode(sourceOK)
	waitStatus(t, url, "recovery", func(st sources.Status) bool { return st.Failures == 0 })
	eventually(t, "the failure is logged", func() bool {
		return countLines(t, logFile, "consumers not reloaded") > 0
	})

	_, sources := adminDo(t, http.MethodGet, "/key_auth/sources", nil)
	_, metrics := metrics(t)
	_, config := adminDo(t, http.MethodGet, "/config/", nil)
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"GET /key_auth/sources": string(sources), "POST /key_auth/sources/refresh": string(refreshed),
		"/metrics": metrics, "/config/": string(config), "the log": string(logs),
	} {
		for _, secret := range []string{envSecret, fileSecret, "alice-key-1"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows a secret", name)
			}
		}
	}
}

func TestSourceHTTPCacheAcrossRestart(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	cache := filepath.Join(t.TempDir(), "cache", "consumers-cache.json")
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := globalOptions("") + httpSourceSite(sitePort[0], url, "refresh 100ms\ncache "+cache, "", "ok")
	site := site + "/"
	startCaddy(t, cfg, "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	expect(t, site, "alice-key-1", 200, "ok alice")
	data, err := os.ReadFile(cache)
	if err != nil || !strings.Contains(string(data), "alice-key-1") {
		t.Fatalf("cache file: %v %q", err, data)
	}
	// It holds keys: only Caddy's user may read it.
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("cache file mode: %v %v", fi.Mode(), err)
	}

	// Stop: a config without key_auth destroys the store.
	mustLoad(t, idleConfig, "json")
	if storeAt(t, url) != nil || pollers() != 0 {
		t.Fatal("the store outlived its config")
	}

	// Start again with the source refusing connections: the cache serves.
	srv.Refuse()
	startCaddy(t, cfg, "caddyfile")
	expect(t, site, "alice-key-1", 200, "ok alice")
	st := waitStatus(t, url, "the source is found down", func(st sources.Status) bool { return st.Failures > 0 })
	if !st.Loaded || st.Consumers != 1 || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status with the source down: %+v", st)
	}
	expect(t, site, "alice-key-1", 200, "ok alice")

	// The source comes back with a change: it replaces the cached set, and
	// the cache follows.
	srv.SetDoc(consumersDoc("bob", "bob-key-1"))
	srv.Accept()
	eventually(t, "bob is served", func() bool {
		code, _ := getKey(t, site, "bob-key-1")
		return code == http.StatusOK
	})
	expect(t, site, "alice-key-1", 401, "")
	eventually(t, "the cache is rewritten", func() bool {
		data, _ := os.ReadFile(cache)
		return strings.Contains(string(data), "bob-key-1")
	})
}

func TestSource503BeforeFirstLoad(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("guest", "", "alice", "alice-key-1"))
	srv.Refuse()
	url := srv.URL("/consumers")
	cfg := globalOptions("") + httpSourceSite(sitePort[0], url, "refresh 100ms", "anonymous guest", "ok") + fmt.Sprintf(`
http://:%d {
	respond "up"
}
`, sitePort[1])
	// Caddy starts normally with the source down.
	startCaddy(t, cfg, "caddyfile")
	expect(t, site2+"/", "", 200, "up")
	waitStatus(t, url, "a failed fetch", func(st sources.Status) bool { return st.Failures > 0 })

	site := site + "/"
	for _, key := range []string{"", "alice-key-1", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, site, nil)
		if key != "" {
			req.Header.Set("apikey", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var msg map[string]string
		err = json.NewDecoder(resp.Body).Decode(&msg)
		resp.Body.Close()
		if resp.StatusCode != 503 || err != nil || msg["message"] != "consumers are not loaded yet" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("key %q before the first load: %d %v %v %s", key, resp.StatusCode, msg, err, resp.Header.Get("Content-Type"))
		}
	}

	// The source comes up: the set loads, and anonymous works.
	srv.Accept()
	eventually(t, "the first load", func() bool {
		code, _ := getKey(t, site, "")
		return code == http.StatusOK
	})
	expect(t, site, "", 200, "ok guest")
	expect(t, site, "alice-key-1", 200, "ok alice")
}

func TestSourceHTTPSharedPoller(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/shared")
	const block = "refresh 200ms\ntimeout 2s"
	cfg := globalOptions("") + httpSourceSite(sitePort[0], url, block, "", "one") + httpSourceSite(sitePort[1], url, block, "", "two") + fmt.Sprintf(`
http://:%[3]d {
	route /a/* {
		key_auth {
			consumers http %[1]s {
				%[2]s
			}
		}
	}
	route /b/* {
		key_auth {
			key_names key
			consumers http %[1]s {
				%[2]s
			}
		}
	}
	respond "three {http.auth.user.id}"
}
`, url, block, sitePort[2])
	startCaddy(t, cfg, "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	expect(t, site+"/", "alice-key-1", 200, "one alice")
	expect(t, site2+"/", "alice-key-1", 200, "two alice")
	expect(t, site3+"/a/", "alice-key-1", 200, "three alice")
	expect(t, site3+"/b/?key=alice-key-1", "", 200, "three alice")

	if n := len(storesAt(url)); n != 1 {
		t.Fatalf("%d stores for one source", n)
	}
	if n := pollers(); n != 1 {
		t.Errorf("%d pollers, want 1", n)
	}
	for _, s := range adminSources(t) {
		if strings.Contains(s.Location, "/shared") && s.Handlers != 4 {
			t.Errorf("the source has %d handlers, want 4", s.Handlers)
		}
	}
}

// caddy validate and caddy adapt make no network request.
func TestSourceValidateNoFetch(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/validate")
	cfgFile := globalOptions("") + httpSourceSite(sitePort[0], url, "refresh 100ms", "", "ok")
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfgFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	// No fetch so far, and none to come: a poller belongs to a store,
	// and there is none.
	if n := srv.Count(); n != 0 {
		t.Errorf("validate fetched the source %d times", n)
	}
	if storeAt(t, url) != nil {
		t.Error("validate left a store behind")
	}
}

// A store kept across a reload logs into the logs of the config running
// now, not into those of the config that created it, which are closed.
func TestSourceHTTPLogsAfterReload(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/relog")
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "caddy-log-a.json"), filepath.Join(dir, "caddy-log-b.json")
	cfg := func(logFile string) string {
		logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", logFile)
		return globalOptions(logOpt) + httpSourceSite(sitePort[0], url, "refresh 100ms", "", "ok")
	}
	startCaddy(t, cfg(logA), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	store := storeAt(t, url)
	startCaddy(t, cfg(logB), "caddyfile")
	if storeAt(t, url) != store {
		t.Fatal("the store was replaced")
	}
	srv.SetMode(sourceFail)
	waitStatus(t, url, "a failure", func(st sources.Status) bool { return st.Failures > 0 })
	eventually(t, "the failure is logged in the running config's log", func() bool {
		return countLines(t, logB, "consumers not reloaded", url) == 1
	})
}

// TestSourceHTTPTokenRotation: a token rotated in its env variable is used
// from the next config reload on, although the config's text is unchanged:
// the store follows the resolved header values.
func TestSourceHTTPTokenRotation(t *testing.T) {
	t.Setenv("SRC_KEYAUTH_ROTATING", "token-one")
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	block := "refresh 1h\nheader Authorization \"Bearer {env.SRC_KEYAUTH_ROTATING}\""
	startCaddy(t, globalOptions("")+httpSourceSite(sitePort[0], url, block, "", "one"), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })

	t.Setenv("SRC_KEYAUTH_ROTATING", "token-two")
	mustLoad(t, globalOptions("")+httpSourceSite(sitePort[0], url, block, "", "two"), "caddyfile")
	eventually(t, "a fetch with the rotated token", func() bool {
		reqs := srv.Requests()
		return len(reqs) > 0 && reqs[len(reqs)-1].Header.Get("Authorization") == "Bearer token-two"
	})
	expect(t, site+"/", "alice-key-1", 200, "two alice")
}
