package integration

// Consumers from an HTTP source, against a real Caddy and a real HTTP
// server playing the source: loads, conditional requests, failures, secrets
// in headers and URLs, the cache, redirects, and keys it may not serve.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
		{"invalid limits", sourceRefusedLimits, `group "free": member_limits: meter "requests" has per "fortnight"`},
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

// An HTTP source that serves such a key keeps the last good set, and says
// why in GET /key_auth/sources; before a first load, it keeps answering 503.
func TestSourceHTTPBadKeyRefused(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy-log.json")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)
	srv := newSourceServer(t, docWithAliceKey(" "))
	url := srv.URL("/consumers.json")
	startCaddy(t, globalOptions(logOpt)+httpSourceSite(sitePort[0], url, "refresh 100ms", "", "ok"), "caddyfile")
	site := siteURL(0)

	// Nothing loaded yet: 503, whatever is sent, and the log says so.
	waitStatus(t, url, "a refused first fetch", func(st sources.Status) bool { return st.Failures > 0 })
	for _, q := range append([]string{"/"}, badKeySentAs...) {
		if code, _ := getKey(t, site+q, ""); code != http.StatusServiceUnavailable {
			t.Errorf("before a first load, GET %s: %d, want 503", q, code)
		}
	}
	eventually(t, "the failure logged", func() bool {
		return countLines(t, logFile, "consumers not loaded; requests get 503 until a load succeeds", `credential \"alice-cred\"`) == 1
	})

	srv.SetDoc(docWithAliceKey("alice-key-1"))
	waitStatus(t, url, "the first load", func(st sources.Status) bool { return st.Loaded && st.Failures == 0 })
	expect(t, site+"/", "alice-key-1", 200, "ok alice")
	good := storeAt(t, url).Set()

	for _, bk := range badKeys {
		srv.SetDoc(docWithAliceKey(bk.key))
		// An admin refresh fetches now, whatever the back-off.
		refreshed := refreshSource(t, url)
		last := sourceStatusAt(t, url)
		for _, msg := range []string{refreshed.RefreshError, last.LastError} {
			if !strings.Contains(msg, `consumer "alice", credential "alice-cred": `+bk.fault) {
				t.Errorf("%s: the error does not name the credential and the fault: %q", bk.name, msg)
			}
			noKeyIn(t, bk.name+": the error", msg)
		}
		if last.Failures == 0 || last.Consumers != 2 {
			t.Errorf("%s: source status %+v", bk.name, last)
		}
		if storeAt(t, url).Set() != good {
			t.Errorf("%s: the set changed", bk.name)
		}
		expect(t, site+"/", "alice-key-1", 200, "ok alice")
		for _, q := range badKeySentAs {
			if code, _ := getKey(t, site+q, ""); code != http.StatusUnauthorized {
				t.Errorf("%s: GET %s: %d, want 401", bk.name, q, code)
			}
		}
	}
	logs, _ := os.ReadFile(logFile)
	noKeyIn(t, "the log", string(logs))
}

// originRecorder is an origin that records every connection and request it
// gets, and answers what its handler says.
type originRecorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	conns    int
	requests []*http.Request
	certs    int // requests that came with a client certificate
	handler  http.HandlerFunc
}

func newOriginRecorder(t *testing.T, withTLS bool, h http.HandlerFunc) *originRecorder {
	t.Helper()
	r := &originRecorder{handler: h}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Clone(req.Context()))
		if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
			r.certs++
		}
		h := r.handler
		r.mu.Unlock()
		h(w, req)
	}))
	r.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
		}
	}
	if withTLS {
		r.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *originRecorder) set(h http.HandlerFunc) {
	r.mu.Lock()
	r.handler = h
	r.mu.Unlock()
}

func (r *originRecorder) seen() (conns, requests, certs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, len(r.requests), r.certs
}

func (r *originRecorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[len(r.requests)-1]
}

// origin is the server's scheme://host:port under the given host name.
func (r *originRecorder) origin(host string) string {
	u, _ := url.Parse(r.srv.URL)
	return u.Scheme + "://" + net.JoinHostPort(host, u.Port())
}

func serveDoc(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}
}

func redirectTo(status int, to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, status) }
}

// The HTTP source follows a redirect within its origin only: a redirect to
// another port, another host name or from https to http is a failed fetch
// that never reaches the other origin, neither its configured header, nor
// the URL's user info (Authorization), nor the client certificate.
func TestSourceHTTPRedirects(t *testing.T) {
	const token, pass = "src-secret-1-x7f3", "url-pass-9c2e"
	for _, withTLS := range []bool{false, true} {
		name := "http"
		if withTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			logFile := filepath.Join(dir, "caddy-log.json")
			logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)
			a := newOriginRecorder(t, withTLS, serveDoc([]byte(consumersDoc("alice", "alice-key-1"))))
			b := newOriginRecorder(t, false, serveDoc([]byte(consumersDoc("mallory", "mallory-key-1"))))
			c := newOriginRecorder(t, true, serveDoc([]byte(consumersDoc("mallory", "mallory-key-1"))))

			au, _ := url.Parse(a.srv.URL)
			au.User = url.UserPassword("src", pass)
			au.Path = "/consumers.json"
			block := "refresh 100ms\n\t\t\theader X-Source-Token " + token
			if withTLS {
				cert, key := clientCert(t, dir)
				root := filepath.Join(dir, "root.pem")
				if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}), 0o600); err != nil {
					t.Fatal(err)
				}
				block += fmt.Sprintf("\n\t\t\ttls {\n\t\t\t\tclient_certificate %s %s\n\t\t\t\troot_ca %s\n\t\t\t}", cert, key, root)
			}
			port := sitePort[0]
			if withTLS {
				port = sitePort[1]
			}
			site := fmt.Sprintf("http://127.0.0.1:%d/", port)
			startCaddy(t, globalOptions(logOpt)+httpSourceSite(port, au.String(), block, "", "ok"), "caddyfile")
			loc := a.origin("127.0.0.1")
			waitStatus(t, loc, "the first load", func(st sources.Status) bool { return st.Loaded })
			expect(t, site, "alice-key-1", 200, "ok alice")
			// What the configured origin receives: the header, the user
			// info and, over TLS, the client certificate.
			r := a.last()
			if user, pw, ok := r.BasicAuth(); !ok || user != "src" || pw != pass || r.Header.Get("X-Source-Token") != token {
				t.Fatalf("the source got %v", r.Header)
			}
			if _, _, certs := a.seen(); withTLS && certs == 0 {
				t.Fatal("the source got no client certificate")
			}
			good := storeAt(t, loc).Set()

			targets := []struct {
				name, to, origin string
			}{
				{"another port", b.srv.URL + "/consumers.json?sig=q1", b.origin("127.0.0.1")},
				{"another host name", b.origin("localhost") + "/consumers.json?sig=q2", b.origin("localhost")},
				{"another https origin", c.srv.URL + "/consumers.json?sig=q3", c.origin("127.0.0.1")},
			}
			if withTLS {
				// The same host and port, in plain http.
				targets = append(targets, struct{ name, to, origin string }{"https to http", "http://" + au.Host + "/consumers.json?sig=q4", "http://" + au.Host})
			}
			for _, tg := range targets {
				a.set(redirectTo(http.StatusFound, tg.to))
				want := "redirect refused: status 302 to " + tg.origin + ", another origin"
				// An admin refresh fetches now, whatever the back-off.
				refreshed := refreshSource(t, redactedSourceURL(au))
				st := sourceStatusAt(t, redactedSourceURL(au))
				for _, msg := range []string{refreshed.RefreshError, st.LastError} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: error %q, want %q", tg.name, msg, want)
					}
					for _, leak := range []string{"consumers.json?", "sig=", pass, token} {
						if strings.Contains(msg, leak) {
							t.Errorf("%s: the error shows %q: %s", tg.name, leak, msg)
						}
					}
				}
				if st.Failures == 0 {
					t.Errorf("%s: no failure counted: %+v", tg.name, st)
				}
				if storeAt(t, loc).Set() != good {
					t.Errorf("%s: the set changed", tg.name)
				}
				expect(t, site, "alice-key-1", 200, "ok alice")
				expect(t, site, "mallory-key-1", 401, "")
			}
			// No other origin saw as much as a connection, so no header,
			// user info or certificate either.
			for _, o := range []*originRecorder{b, c} {
				if conns, reqs, certs := o.seen(); conns+reqs+certs != 0 {
					t.Errorf("%s saw %d connections, %d requests, %d certificates", o.srv.URL, conns, reqs, certs)
				}
			}

			// Within the origin, a redirect is followed with everything.
			a.set(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/consumers.json" {
					serveDoc([]byte(consumersDoc("alice", "alice-key-2")))(w, r)
					return
				}
				http.Redirect(w, r, "/v2/consumers.json", http.StatusMovedPermanently)
			})
			eventually(t, "the redirected document", func() bool {
				code, _ := getKey(t, site, "alice-key-2")
				return code == http.StatusOK
			})
			r = a.last()
			if user, pw, ok := r.BasicAuth(); r.URL.Path != "/v2/consumers.json" || !ok || user != "src" || pw != pass || r.Header.Get("X-Source-Token") != token {
				t.Errorf("the redirected request: %s %v", r.URL, r.Header)
			}
			expect(t, site, "alice-key-1", 401, "")

			logs, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(logs), "redirect refused") {
				t.Error("no refused redirect in the log")
			}
			for _, secret := range []string{token, pass, "alice-key-1", "alice-key-2"} {
				if strings.Contains(string(logs), secret) {
					t.Errorf("the log holds %q", secret)
				}
			}
		})
	}
}

// refreshSource asks the admin API to refresh every source now and returns
// what it says of the one at loc.
func refreshSource(t *testing.T, loc string) sources.SourceStatus {
	t.Helper()
	code, body := adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	var out []sources.SourceStatus
	if err := json.Unmarshal(body, &out); code != http.StatusOK || err != nil {
		t.Fatalf("POST /key_auth/sources/refresh: %d %s %v", code, body, err)
	}
	for _, s := range out {
		if s.Location == loc {
			return s
		}
	}
	t.Fatalf("no source at %s in %s", loc, body)
	return sources.SourceStatus{}
}

// sourceStatusAt is what GET /key_auth/sources says of the source at loc.
func sourceStatusAt(t *testing.T, loc string) sources.SourceStatus {
	t.Helper()
	for _, s := range adminSources(t) {
		if s.Location == loc {
			return s
		}
	}
	t.Fatalf("no source at %s", loc)
	return sources.SourceStatus{}
}

// redactedSourceURL is how the source names u: without its user info.
func redactedSourceURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// clientCert writes a self-signed client certificate and its key.
func clientCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "keyauth-source-client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// The HTTP source's URL may use {env.*} placeholders, host and query alike:
// they are filled in when the config loads, the source is fetched there,
// and operators see the URL filled in but without its query.
func TestSourceHTTPURLPlaceholders(t *testing.T) {
	var fetched atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/c.json" || r.URL.Query().Get("token") != "url-token-1" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fetched.Add(1)
		_, _ = w.Write([]byte(`{"consumers": [{"username": "gina", "keys": [{"id": "gina-k", "key": "gina-key-1"}]}]}`))
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("KEYAUTH_IT_SRC_HOST", host)
	t.Setenv("KEYAUTH_IT_SRC_TOKEN", "url-token-1")

	e := newEnv(t)
	e.load(`{{.Global}}
http://localhost:{{.Port}} {
	key_auth {
		consumers http "http://{env.KEYAUTH_IT_SRC_HOST}/c.json?token={env.KEYAUTH_IT_SRC_TOKEN}"
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	location := "http://" + host + "/c.json?REDACTED"
	// The first fetch runs when the app starts; wait for its set.
	for {
		var st *sources.Status
		for _, s := range sources.Stores() {
			if s.Status().Location == location {
				v := s.Status()
				st = &v
			}
		}
		if st != nil && st.Loaded {
			break
		}
		if st == nil && len(sources.Stores()) > 0 {
			var locs []string
			for _, s := range sources.Stores() {
				locs = append(locs, s.Status().Location)
			}
			t.Fatalf("no store at %s; stores at %q", location, locs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fetched.Load() == 0 {
		t.Fatal("the source was never fetched at the filled-in URL")
	}
	wantIdentity(t, get(t, site+"/", "apikey", "gina-key-1"), identity{"gina", "gina", absent, "gina-k", absent})
}
