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
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// srcHTTPSite is a Caddyfile site on port that authenticates against an
// HTTP source with the given source block and handler options, and answers
// "<body> <username>".
func srcHTTPSite(port int, url, block, opts, body string) string {
	return fmt.Sprintf(`
http://:%d {
	key_auth {
		%s
		consumers http %s {
			%s
		}
	}
	respond "%s {http.auth.user.id}"
}
`, port, opts, url, block, body)
}

// srcWaitStatus waits until the store at loc satisfies cond.
func srcWaitStatus(t testing.TB, loc string, d time.Duration, what string, cond func(consumers.Status) bool) consumers.Status {
	t.Helper()
	var st consumers.Status
	srcEventually(t, d, what, func() bool {
		s := srcStoreAt(loc)
		if s == nil {
			return false
		}
		st = s.Status()
		return cond(st)
	})
	return st
}

func TestSourceHTTPFirstLoadChangeAndNotModified(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	const refresh = 200 * time.Millisecond
	srcStart(t, fmt.Sprintf(srcGlobal, "")+srcHTTPSite(9201, url, "refresh 200ms\ntimeout 2s", "", "ok"), "caddyfile")
	srcUnloadAtEnd(t)
	site := "http://127.0.0.1:9201/"

	// First load: the poller fetches at start.
	srcEventually(t, 3*time.Second, "the first load serves alice", func() bool {
		code, _ := srcGet(t, site, "alice-key-1")
		return code == http.StatusOK
	})
	srcExpect(t, site, "alice-key-1", 200, "ok alice")
	srcExpect(t, site, "wrong", 401, `{"message":"Unauthorized"}`)
	first := srv.Requests()[0]
	if first.Header.Get("If-None-Match") != "" || first.Header.Get("If-Modified-Since") != "" {
		t.Errorf("the first fetch is conditional: %v", first.Header)
	}

	// 304: the following polls send If-None-Match, get 304, and leave the
	// set untouched.
	store := srcStoreAt(url)
	set, status := store.Set(), store.Status()
	n0, nm0 := srv.Count(), srv.NotModified()
	srcEventually(t, 3*time.Second, "three more polls", func() bool { return srv.Count() >= n0+3 })
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

	// A change reaches requests within refresh: alice is revoked, bob added.
	srv.SetDoc(srcDoc("bob", "bob-key-1"))
	changed := time.Now()
	srcEventually(t, 3*time.Second, "bob is served", func() bool {
		code, _ := srcGet(t, site, "bob-key-1")
		return code == http.StatusOK
	})
	// Polling jitters by up to 10%; the rest is slack for a loaded machine.
	if took, limit := time.Since(changed), refresh*11/10+300*time.Millisecond; took > limit {
		t.Errorf("the change took %s to arrive, want at most %s", took, limit)
	}
	srcExpect(t, site, "bob-key-1", 200, "ok bob")
	srcExpect(t, site, "alice-key-1", 401, "")
	if store.Set() == set {
		t.Error("the set was not replaced")
	}
}

func TestSourceHTTPIfModifiedSince(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	srv.SetNoETag(true)
	url := srv.URL("/consumers")
	srcStart(t, fmt.Sprintf(srcGlobal, "")+srcHTTPSite(9202, url, "refresh 100ms", "", "ok"), "caddyfile")
	srcUnloadAtEnd(t)
	srcEventually(t, 3*time.Second, "three polls", func() bool { return srv.Count() >= 3 })
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
	srcExpect(t, "http://127.0.0.1:9202/", "alice-key-1", 200, "ok alice")
}

func TestSourceHTTPFailuresKeepLastGoodSet(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	srv.SetOversize(srcBigDoc(8 << 10))
	url := srv.URL("/consumers")
	const timeout = 300 * time.Millisecond
	srcStart(t, fmt.Sprintf(srcGlobal, "")+srcHTTPSite(9203, url, "refresh 100ms\ntimeout 300ms\nmax_size 4KB", "", "ok"), "caddyfile")
	srcUnloadAtEnd(t)
	site := "http://127.0.0.1:9203/"
	srcEventually(t, 3*time.Second, "the first load", func() bool {
		code, _ := srcGet(t, site, "alice-key-1")
		return code == http.StatusOK
	})
	store := srcStoreAt(url)
	good := store.Set()

	cases := []struct {
		name  string
		mode  srcMode
		error string // in the store's last error
	}{
		{"status 500", srcFail, "status 500"},
		{"invalid JSON", srcInvalid, "consumers source"},
		{"refused document", srcRefusedDoc, "dup"},
		{"over max_size with Content-Length", srcOversize, "max_size"},
		{"over max_size chunked", srcOversizeChunked, "max_size"},
		{"hanging source", srcHang, "Timeout"},
		{"connection refused", -1, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A fetch that succeeded would bring bob and drop alice.
			srv.SetDoc(srcDoc("bob", "bob-key-1"))
			n0 := store.Status().Failures
			if c.mode < 0 {
				srv.Refuse()
			} else {
				srv.SetMode(c.mode)
			}
			st := srcWaitStatus(t, url, 5*time.Second, "two failed polls", func(st consumers.Status) bool {
				return st.Failures >= n0+2
			})
			if !strings.Contains(st.LastError, c.error) || st.LastErrorTime == nil {
				t.Errorf("last error %q, want it to mention %q", st.LastError, c.error)
			}
			if store.Set() != good || st.Consumers != 1 || !st.Loaded {
				t.Errorf("the set changed on failure: %+v", st)
			}
			srcExpect(t, site, "alice-key-1", 200, "ok alice")
			srcExpect(t, site, "bob-key-1", 401, "")
			if c.mode == srcHang {
				// Each fetch was cut by timeout, not by a later poll.
				for _, h := range srv.Hangs() {
					if d := h.End.Sub(h.Start); d < timeout-50*time.Millisecond || d > timeout+400*time.Millisecond {
						t.Errorf("a hanging fetch lasted %s, want about %s", d, timeout)
					}
				}
				if len(srv.Hangs()) < 2 {
					t.Errorf("%d hanging fetches ended, want 2", len(srv.Hangs()))
				}
				// An admin refresh against the hanging source also returns
				// within about timeout (at most twice: it may wait for a
				// poll's fetch in progress).
				start := time.Now()
				code, body := srcAdminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
				if took := time.Since(start); code != 200 || took > 2*timeout+500*time.Millisecond {
					t.Errorf("admin refresh against a hanging source: %d in %s: %s", code, took, body)
				}
			}

			// Back to normal, with alice: the store recovers.
			srv.SetDoc(srcDoc("alice", "alice-key-1"))
			if c.mode < 0 {
				srv.Accept()
			}
			srv.SetMode(srcOK)
			srcWaitStatus(t, url, 5*time.Second, "recovery", func(st consumers.Status) bool {
				return st.Failures == 0 && st.LastError == ""
			})
			srcExpect(t, site, "alice-key-1", 200, "ok alice")
			good = store.Set()
		})
	}
}

func TestSourceHTTPFailureStreakLoggedOnce(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/streak")
	logFile := filepath.Join(t.TempDir(), "caddy-log.json")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", logFile)
	srcStart(t, fmt.Sprintf(srcGlobal, logOpt)+srcHTTPSite(9204, url, "refresh 100ms", "", "ok"), "caddyfile")
	srcUnloadAtEnd(t)
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })

	failed := func() int { return srcLogLines(t, logFile, "consumers not reloaded", url) }
	recovered := func() int { return srcLogLines(t, logFile, "consumers source recovered", url) }

	// Two streaks of at least three failures each, of two kinds.
	for i, fail := range []func(){func() { srv.SetMode(srcFail) }, srv.Refuse} {
		fail()
		srcWaitStatus(t, url, 5*time.Second, "four failed polls", func(st consumers.Status) bool { return st.Failures >= 4 })
		// The back-off itself is unit-tested on a fake clock
		// (consumers.TestPollSchedule): wall-clock gaps flake under -race.
		if i == 1 {
			srv.Accept()
		}
		srv.SetMode(srcOK)
		srcWaitStatus(t, url, 5*time.Second, "recovery", func(st consumers.Status) bool { return st.Failures == 0 })
		srcEventually(t, 2*time.Second, "the recovery is logged", func() bool { return recovered() == i+1 })
		if got := failed(); got != i+1 {
			t.Errorf("after streak %d: %d failure lines, want %d", i+1, got, i+1)
		}
	}
	srcExpect(t, "http://127.0.0.1:9204/", "alice-key-1", 200, "ok alice")
}

func TestSourceHTTPHeaderPlaceholdersAndSecrets(t *testing.T) {
	envSecret, fileSecret := "env-"+srcRandomKey(), "file-"+srcRandomKey()
	t.Setenv("SRC_KEYAUTH_TOKEN", envSecret)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "source-token")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "caddy-log.json")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)

	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	block := fmt.Sprintf("refresh 100ms\nheader Authorization \"Bearer {env.SRC_KEYAUTH_TOKEN}\"\nheader X-Source-Token {file.%s}", secretFile)
	srcStart(t, fmt.Sprintf(srcGlobal, logOpt)+srcHTTPSite(9205, url, block, "", "ok"), "caddyfile")
	srcUnloadAtEnd(t)
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })
	srcExpect(t, "http://127.0.0.1:9205/", "alice-key-1", 200, "ok alice")

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
	srv.SetMode(srcFail)
	srcWaitStatus(t, url, 3*time.Second, "failures", func(st consumers.Status) bool { return st.Failures >= 2 })
	code, refreshed := srcAdminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	if code != 200 || !strings.Contains(string(refreshed), "status 500") {
		t.Errorf("admin refresh: %d %s", code, refreshed)
	}
	srv.SetMode(srcOK)
	srcWaitStatus(t, url, 5*time.Second, "recovery", func(st consumers.Status) bool { return st.Failures == 0 })
	srcEventually(t, 2*time.Second, "the failure is logged", func() bool {
		return srcLogLines(t, logFile, "consumers not reloaded") > 0
	})

	_, sources := srcAdminDo(t, http.MethodGet, "/key_auth/sources", nil)
	_, metrics := srcMetrics(t)
	_, config := srcAdminDo(t, http.MethodGet, "/config/", nil)
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
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	cache := filepath.Join(t.TempDir(), "cache", "consumers-cache.json")
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(srcGlobal, "") + srcHTTPSite(9206, url, "refresh 100ms\ncache "+cache, "", "ok")
	site := "http://127.0.0.1:9206/"
	srcStart(t, cfg, "caddyfile")
	srcUnloadAtEnd(t)
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })
	srcExpect(t, site, "alice-key-1", 200, "ok alice")
	data, err := os.ReadFile(cache)
	if err != nil || !strings.Contains(string(data), "alice-key-1") {
		t.Fatalf("cache file: %v %q", err, data)
	}
	// It holds keys: only Caddy's user may read it.
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("cache file mode: %v %v", fi.Mode(), err)
	}

	// Stop: a config without key_auth destroys the store.
	srcMustLoad(t, srcIdle, "application/json")
	if srcStoreAt(url) != nil || srcPollers() != 0 {
		t.Fatal("the store outlived its config")
	}

	// Start again with the source refusing connections: the cache serves.
	srv.Refuse()
	srcStart(t, cfg, "caddyfile")
	srcExpect(t, site, "alice-key-1", 200, "ok alice")
	st := srcWaitStatus(t, url, 3*time.Second, "the source is found down", func(st consumers.Status) bool { return st.Failures > 0 })
	if !st.Loaded || st.Consumers != 1 || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status with the source down: %+v", st)
	}
	srcExpect(t, site, "alice-key-1", 200, "ok alice")

	// The source comes back with a change: it replaces the cached set, and
	// the cache follows.
	srv.SetDoc(srcDoc("bob", "bob-key-1"))
	srv.Accept()
	srcEventually(t, 5*time.Second, "bob is served", func() bool {
		code, _ := srcGet(t, site, "bob-key-1")
		return code == http.StatusOK
	})
	srcExpect(t, site, "alice-key-1", 401, "")
	srcEventually(t, 2*time.Second, "the cache is rewritten", func() bool {
		data, _ := os.ReadFile(cache)
		return strings.Contains(string(data), "bob-key-1")
	})
}

func TestSource503BeforeFirstLoad(t *testing.T) {
	srv := srcNewServer(t, srcDoc("guest", "", "alice", "alice-key-1"))
	srv.Refuse()
	url := srv.URL("/consumers")
	cfg := fmt.Sprintf(srcGlobal, "") + srcHTTPSite(9207, url, "refresh 100ms", "anonymous guest", "ok") + `
http://:9208 {
	respond "up"
}
`
	// Caddy starts normally with the source down.
	srcStart(t, cfg, "caddyfile")
	srcUnloadAtEnd(t)
	srcExpect(t, "http://127.0.0.1:9208/", "", 200, "up")
	srcWaitStatus(t, url, 3*time.Second, "a failed fetch", func(st consumers.Status) bool { return st.Failures > 0 })

	site := "http://127.0.0.1:9207/"
	for _, key := range []string{"", "alice-key-1", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, site, nil)
		if key != "" {
			req.Header.Set("apikey", key)
		}
		resp, err := srcClient.Do(req)
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
	srcEventually(t, 5*time.Second, "the first load", func() bool {
		code, _ := srcGet(t, site, "")
		return code == http.StatusOK
	})
	srcExpect(t, site, "", 200, "ok guest")
	srcExpect(t, site, "alice-key-1", 200, "ok alice")
}

func TestSourceHTTPSharedPoller(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/shared")
	const block = "refresh 200ms\ntimeout 2s"
	cfg := fmt.Sprintf(srcGlobal, "") + srcHTTPSite(9209, url, block, "", "one") + srcHTTPSite(9210, url, block, "", "two") + fmt.Sprintf(`
http://:9211 {
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
`, url, block)
	srcStart(t, cfg, "caddyfile")
	srcUnloadAtEnd(t)
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })
	srcExpect(t, "http://127.0.0.1:9209/", "alice-key-1", 200, "one alice")
	srcExpect(t, "http://127.0.0.1:9210/", "alice-key-1", 200, "two alice")
	srcExpect(t, "http://127.0.0.1:9211/a/", "alice-key-1", 200, "three alice")
	srcExpect(t, "http://127.0.0.1:9211/b/?key=alice-key-1", "", 200, "three alice")

	if n := srcStoresAt(url); n != 1 {
		t.Fatalf("%d stores for one source", n)
	}
	if n := srcPollers(); n != 1 {
		t.Errorf("%d pollers, want 1", n)
	}
	for _, s := range srcSources(t) {
		if strings.Contains(s.Location, "/shared") && s.Handlers != 4 {
			t.Errorf("the source has %d handlers, want 4", s.Handlers)
		}
	}

	// Four handlers, one poller: over 1s at 200ms, about 5 requests.
	const window = time.Second
	n0 := srv.Count()
	time.Sleep(window)
	if got := srv.Count() - n0; got > 6 || got < 3 {
		t.Errorf("%d requests in %s with refresh 200ms, want about 5 (one poller)", got, window)
	}
}

// caddy validate and caddy adapt make no network request.
func TestSourceValidateNoFetch(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/validate")
	cfgFile := fmt.Sprintf(srcGlobal, "") + srcHTTPSite(9212, url, "refresh 100ms", "", "ok")
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
	time.Sleep(300 * time.Millisecond) // three refresh periods
	if n := srv.Count(); n != 0 {
		t.Errorf("validate fetched the source %d times", n)
	}
	if srcStoreAt(url) != nil {
		t.Error("validate left a store behind")
	}
}

// A store kept across a reload logs into the logs of the config running
// now, not into those of the config that created it, which are closed.
func TestSourceHTTPLogsAfterReload(t *testing.T) {
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/relog")
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "caddy-log-a.json"), filepath.Join(dir, "caddy-log-b.json")
	cfg := func(logFile string) string {
		logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", logFile)
		return fmt.Sprintf(srcGlobal, logOpt) + srcHTTPSite(9213, url, "refresh 100ms", "", "ok")
	}
	srcStart(t, cfg(logA), "caddyfile")
	srcUnloadAtEnd(t)
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })
	store := srcStoreAt(url)
	srcStart(t, cfg(logB), "caddyfile")
	if srcStoreAt(url) != store {
		t.Fatal("the store was replaced")
	}
	srv.SetMode(srcFail)
	srcWaitStatus(t, url, 3*time.Second, "a failure", func(st consumers.Status) bool { return st.Failures > 0 })
	srcEventually(t, 2*time.Second, "the failure is logged in the running config's log", func() bool {
		return srcLogLines(t, logB, "consumers not reloaded", url) == 1
	})
}

// TestSourceHTTPTokenRotation: a token rotated in its env variable is used
// from the next config reload on, although the config's text is unchanged:
// the store follows the resolved header values.
func TestSourceHTTPTokenRotation(t *testing.T) {
	t.Setenv("SRC_KEYAUTH_ROTATING", "token-one")
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/consumers")
	block := "refresh 1h\nheader Authorization \"Bearer {env.SRC_KEYAUTH_ROTATING}\""
	srcStart(t, fmt.Sprintf(srcGlobal, "")+srcHTTPSite(9206, url, block, "", "one"), "caddyfile")
	srcUnloadAtEnd(t)
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })

	t.Setenv("SRC_KEYAUTH_ROTATING", "token-two")
	srcMustLoad(t, fmt.Sprintf(srcGlobal, "")+srcHTTPSite(9206, url, block, "", "two"), "text/caddyfile")
	srcEventually(t, 3*time.Second, "a fetch with the rotated token", func() bool {
		reqs := srv.Requests()
		return len(reqs) > 0 && reqs[len(reqs)-1].Header.Get("Authorization") == "Bearer token-two"
	})
	srcExpect(t, "http://127.0.0.1:9206/", "alice-key-1", 200, "two alice")
}
