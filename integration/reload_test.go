package integration

// Config reloads keep, swap or stop the consumer stores, under traffic,
// and leak nothing; and what a reload with a large source costs.

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// hammer sends requests with key to url until stopped, and reports any
// answer other than 200.
type hammer struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	requests atomic.Int64
	dropped  atomic.Int64
	mu       sync.Mutex
	bad      []string
}

func startHammer(t testing.TB, url, key string) *hammer {
	h := &hammer{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			select {
			case <-h.stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("apikey", key)
			resp, err := client.Do(req)
			h.requests.Add(1)
			if err != nil {
				// Caddy itself may drop a connection accepted while a
				// reload stops the old server (an EOF): that is not the
				// store's doing, so only answers count.
				h.dropped.Add(1)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				h.mu.Lock()
				h.bad = append(h.bad, resp.Status)
				h.mu.Unlock()
			}
		}
	}()
	return h
}

// Stop ends the hammer and fails t if any request was not answered 200.
func (h *hammer) Stop(t testing.TB) {
	t.Helper()
	close(h.stop)
	h.wg.Wait()
	if len(h.bad) > 0 {
		t.Errorf("%d of %d requests during reloads failed, e.g. %s", len(h.bad), h.requests.Load(), h.bad[0])
	}
	if h.requests.Load() == 0 {
		t.Error("no request was made during the reloads")
	}
	if n := h.dropped.Load(); n > 0 {
		t.Logf("%d of %d connections dropped by Caddy during reloads", n, h.requests.Load())
	}
}

func TestReloadHTTPSource(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	url := srv.URL("/reload")
	site := site + "/"
	cfg := func(block, body string) string {
		return globalOptions("") + httpSourceSite(sitePort[0], url, block, "", body)
	}
	plain := func(body string) string {
		return globalOptions("") + fmt.Sprintf("http://:%d {\n\trespond %q\n}\n", sitePort[0], body)
	}

	// The baseline: the same site without key_auth.
	startCaddy(t, plain("plain"), "caddyfile")
	baseline := goroutines()

	startCaddy(t, cfg("refresh 1h\ntimeout 2s", "one"), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	expect(t, site, "alice-key-1", 200, "one alice")
	first := storeAt(t, url)
	if n := srv.Count(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}

	// Unchanged source: same store, no fetch, no request without consumers.
	h := startHammer(t, site, "alice-key-1")
	startCaddy(t, cfg("refresh 1h\ntimeout 2s", "two"), "caddyfile")
	expect(t, site, "alice-key-1", 200, "two alice")
	h.Stop(t)
	if storeAt(t, url) != first {
		t.Error("an unchanged source got a new store")
	}
	// Nor will one come: the kept store's poller, the only one, waits an
	// hour.
	if n := pollers(); n != 1 {
		t.Errorf("%d pollers, want the kept store's", n)
	}
	if n := srv.Count(); n != 1 {
		t.Errorf("%d fetches after a reload that keeps the source, want 1", n)
	}

	// Changed source: a new store, which fetches; the old one is gone.
	startCaddy(t, cfg("refresh 100ms\ntimeout 2s", "three"), "caddyfile")
	second := storeAt(t, url)
	if second == first || second == nil {
		t.Fatal("a changed source kept its store")
	}
	eventually(t, "the new store polls", func() bool { return srv.Count() >= 4 })
	expect(t, site, "alice-key-1", 200, "three alice")
	for _, s := range sources.Stores() {
		if s == first {
			t.Error("the replaced store is still live")
		}
	}
	if n := pollers(); n != 1 {
		t.Errorf("%d pollers, want 1", n)
	}

	// Removed source: its poller stops, its connections close, the
	// goroutines come back to the baseline.
	startCaddy(t, plain("plain again"), "caddyfile")
	if storeAt(t, url) != nil {
		t.Error("a removed source's store is still live")
	}
	if n := pollers(); n != 0 {
		t.Errorf("%d pollers after the source was removed", n)
	}
	n := srv.Count()
	if g := settleGoroutines(baseline + 2); g > baseline+2 {
		t.Errorf("goroutines: %d, baseline %d", g, baseline)
	}
	if got := srv.Count(); got != n {
		t.Errorf("the removed source was fetched %d more times", got-n)
	}
}

func TestReloadFileSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "consumers.json")
	writeAtomic(t, file, consumersDoc("alice", "alice-key-1"))
	site := site + "/"
	cfg := func(refresh, body string) string {
		return jsonConfig(sitePort[0], jsonRoute("/*", fileSourceJSON(file, refresh), body))
	}
	startCaddy(t, jsonConfig(sitePort[0], jsonRoute("/*", "", "plain")), "json")
	baseline := goroutines()

	startCaddy(t, cfg("1h", "one"), "json")
	expect(t, site, "alice-key-1", 200, "one alice")
	first := storeAt(t, file)
	if first == nil {
		t.Fatal("no store")
	}

	// Unchanged source: the same store, and the file is not read again: a
	// file that would be refused does not fail the reload.
	writeAtomic(t, file, `{"consumers": [`)
	h := startHammer(t, site, "alice-key-1")
	startCaddy(t, cfg("1h", "two"), "json")
	expect(t, site, "alice-key-1", 200, "two alice")
	// A PATCH of part of the config is a reload too.
	code, body := adminDo(t, http.MethodPatch, "/config/apps/http/servers/srv/routes/0/handle/1/body", []byte(`"patched {http.auth.user.id}"`))
	if code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	expect(t, site, "alice-key-1", 200, "patched alice")
	h.Stop(t)
	if storeAt(t, file) != first {
		t.Fatal("an unchanged source got a new store")
	}

	// Changes on disk arrive through the admin refresh, where a refused
	// file keeps the last good set.
	code, body = adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	if code != 200 || !strings.Contains(string(body), "refresh_error") {
		t.Errorf("admin refresh of a broken file: %d %s", code, body)
	}
	expect(t, site, "alice-key-1", 200, "patched alice")
	writeAtomic(t, file, consumersDoc("bob", "bob-key-1"))
	if code, body = adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil); code != 200 {
		t.Fatalf("admin refresh: %d %s", code, body)
	}
	expect(t, site, "bob-key-1", 200, "patched bob")
	expect(t, site, "alice-key-1", 401, "")

	// Changed source: a new store, read at load.
	startCaddy(t, cfg("100ms", "three"), "json")
	second := storeAt(t, file)
	if second == first || second == nil {
		t.Fatal("a changed source kept its store")
	}
	expect(t, site, "bob-key-1", 200, "three bob")
	// ... and a refused file fails a config that has to read it, while the
	// running config goes on.
	writeAtomic(t, file, `{"consumers": [{"username": "x"}, {"username": "x"}]}`)
	if code, body, err := loadConfig(cfg("150ms", "four"), "json"); err != nil || code == 200 || !strings.Contains(body, file) {
		t.Errorf("loading a config with a refused file: %d %s %v", code, body, err)
	}
	if storeAt(t, file) != second {
		t.Error("a failed load replaced the store")
	}
	expect(t, site, "bob-key-1", 200, "three bob")
	// The poller of the new store follows the file within refresh.
	writeAtomic(t, file, consumersDoc("carol", "carol-key-1"))
	eventually(t, "carol is served", func() bool {
		code, _ := getKey(t, site, "carol-key-1")
		return code == 200
	})

	// Removed source: poller gone, goroutines back.
	startCaddy(t, jsonConfig(sitePort[0], jsonRoute("/*", "", "plain again")), "json")
	if storeAt(t, file) != nil || pollers() != 0 {
		t.Error("a removed source lives on")
	}
	if g := settleGoroutines(baseline + 2); g > baseline+2 {
		t.Errorf("goroutines: %d, baseline %d", g, baseline)
	}
}

// TestReloadLeak reloads hundreds of times between two configs that each
// use file and HTTP sources, some shared by both and some not, and checks
// that goroutines and open files come back to where they were.
func TestReloadLeak(t *testing.T) {
	const loads = 200
	dir := t.TempDir()
	fileA, fileB := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	writeAtomic(t, fileA, consumersDoc("alice", "alice-key-1"))
	writeAtomic(t, fileB, consumersDoc("bob", "bob-key-1"))
	srv := newSourceServer(t, consumersDoc("carol", "carol-key-1"))
	kept, swapped := srv.URL("/kept"), srv.URL("/swapped")
	cfg := func(i int) string {
		// Odd and even configs differ in the refresh of two sources (so
		// those stores are replaced on every load) and in a body.
		refresh := []string{"100ms", "120ms"}[i%2]
		return jsonConfig(sitePort[0],
			jsonRoute("/kept-file/*", fileSourceJSON(fileA, "1h"), "kf"),
			jsonRoute("/kept-http/*", httpSourceJSON(kept, "1h", "2s"), "kh"),
			jsonRoute("/file/*", fileSourceJSON(fileB, refresh), "f"),
			jsonRoute("/http/*", httpSourceJSON(swapped, refresh, "2s"), "h"),
			jsonRoute("/*", "", fmt.Sprintf("load %d", i)),
		)
	}
	plain := func(body string) string { return jsonConfig(sitePort[0], jsonRoute("/*", "", body)) }

	startCaddy(t, plain("before"), "json")
	g0 := goroutines()
	f0 := openFiles(t)

	start := time.Now()
	for i := range loads {
		mustLoad(t, cfg(i), "json")
	}
	t.Logf("%d loads in %s", loads, time.Since(start))
	expect(t, site+"/file/", "bob-key-1", 200, "f bob")
	expect(t, site+"/kept-file/", "alice-key-1", 200, "kf alice")
	eventually(t, "the HTTP sources load", func() bool {
		c1, _ := getKey(t, site+"/http/", "carol-key-1")
		c2, _ := getKey(t, site+"/kept-http/", "carol-key-1")
		return c1 == 200 && c2 == 200
	})
	if n := pollers(); n != 4 {
		t.Errorf("%d pollers for 4 sources", n)
	}
	if got := len(storesAt(kept)); got != 1 {
		t.Errorf("%d stores for the kept source", got)
	}
	keptFetches := 0
	for _, r := range srv.Requests() {
		if strings.HasSuffix(r.URL, "/kept") {
			keptFetches++
		}
	}
	if keptFetches != 1 {
		t.Errorf("the kept source was fetched %d times over %d reloads, want 1", keptFetches, loads)
	}

	mustLoad(t, plain("after"), "json")
	if n := pollers(); n != 0 {
		t.Errorf("%d pollers after the sources were removed", n)
	}
	noLeaks(t, g0, f0, loads)
}

// writeManyConsumers writes a consumers file of n consumers with one random
// key each, and returns the first key.
func writeManyConsumers(b testing.TB, path string, n int) string {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	first := ""
	w.WriteString(`{"consumers": [`)
	for i := range n {
		if i > 0 {
			w.WriteString(",\n")
		}
		key := randomKey()
		if i == 0 {
			first = key
		}
		fmt.Fprintf(w, `{"username": "user%07d", "keys": [{"id": "cred%07d", "key": %q}]}`, i, i, key)
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return first
}

func BenchmarkReload(b *testing.B) {
	dir := b.TempDir()
	files := []struct {
		name string
		n    int
		path string
		key  string
	}{
		{name: "10", n: 10},
		{name: "1M", n: 1_000_000},
	}
	for i := range files {
		files[i].path = filepath.Join(dir, "consumers-"+files[i].name+".json")
		files[i].key = writeManyConsumers(b, files[i].path, files[i].n)
	}
	cfg := func(path string, i int) string {
		return jsonConfig(sitePort[0], jsonRoute("/*", fileSourceJSON(path, "1h"), fmt.Sprintf("reload %d", i)))
	}
	// A Caddyfile start, as caddytest logs JSON configs in full.
	startCaddy(b, globalOptions("")+fmt.Sprintf("http://:%d {\n\trespond plain\n}\n", sitePort[0]), "caddyfile")
	b.Cleanup(func() { _, _, _ = loadConfig(idleConfig, "json") })

	msPerReload := make([]float64, len(files))
	b.ResetTimer()
	for fi, f := range files {
		b.StopTimer()
		// The first load reads the file; then a few warm-up reloads.
		start := time.Now()
		mustLoad(b, cfg(f.path, -1), "json")
		b.Logf("%s consumers: first load %s", f.name, time.Since(start))
		expect(b, site+"/", f.key, 200, "reload -1 user0000000")
		for i := range 3 {
			mustLoad(b, cfg(f.path, -2-i), "json")
		}
		runtime.GC()
		b.StartTimer()

		var total time.Duration
		for i := range b.N {
			start := time.Now()
			mustLoad(b, cfg(f.path, i), "json")
			total += time.Since(start)
		}
		b.StopTimer()
		expect(b, site+"/", f.key, 200, fmt.Sprintf("reload %d user0000000", b.N-1))
		msPerReload[fi] = float64(total) / float64(b.N) / float64(time.Millisecond)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(msPerReload[0], "ms/reload-10")
	b.ReportMetric(msPerReload[1], "ms/reload-1M")
	b.ReportMetric(msPerReload[1]-msPerReload[0], "ms-more-1M")
	b.Logf("reload: %.2f ms with 10 consumers, %.2f ms with 1,000,000 (%+.2f ms)", msPerReload[0], msPerReload[1], msPerReload[1]-msPerReload[0])
}

// A reload that changes an HTTP source's token (or any option) keeps
// serving the previous configuration's set until a fetch with the new
// configuration succeeds (baseten-switch #42): a token the source refuses
// costs no request a 503, is logged without the token and shown in the
// admin view; good rotations under traffic cost no request either.
func TestReloadChangedSourceKeepsServing(t *testing.T) {
	const envName = "KEYAUTH_TEST_RELOAD_TOKEN"
	t.Setenv(envName, "token-one")
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	srv.SetToken("token-one")
	url := srv.URL("/rotating")
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", logFile)
	block := "refresh 1h\nheader Authorization \"Bearer {env." + envName + "}\""
	cfg := func(body string) string {
		return globalOptions(logOpt) + httpSourceSite(sitePort[0], url, block, "", body)
	}
	startCaddy(t, cfg("one"), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	expect(t, site+"/", "alice-key-1", 200, "one alice")

	// A token the source refuses: the previous set keeps serving.
	t.Setenv(envName, "token-refused")
	h := startHammer(t, site+"/", "alice-key-1")
	mustLoad(t, cfg("two"), "caddyfile")
	st := waitStatus(t, url, "the new token refused", func(st sources.Status) bool { return st.Failures > 0 })
	expect(t, site+"/", "alice-key-1", 200, "two alice")
	h.Stop(t)
	if !st.ServingPrevious || !st.Loaded || st.Keys != 1 || !strings.Contains(st.LastError, "status 401") {
		t.Errorf("the refused configuration's status: %+v", st)
	}
	code, body := adminDo(t, http.MethodGet, "/key_auth/sources", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"serving_previous":true`) ||
		!strings.Contains(string(body), "status 401") || strings.Contains(string(body), "token-") {
		t.Errorf("GET /key_auth/sources: %d %s", code, body)
	}
	eventually(t, "the refusal logged", func() bool {
		return countLines(t, logFile, "consumers not loaded with the source's new configuration", "status 401") == 1
	})
	if n := countLines(t, logFile, "token-"); n != 0 {
		t.Errorf("%d log lines hold a token", n)
	}

	// Good rotations under traffic: not one request without consumers.
	hs := []*hammer{startHammer(t, site+"/", "alice-key-1"), startHammer(t, site+"/", "alice-key-1")}
	for i, tok := range []string{"token-three", "token-four", "token-five", "token-six"} {
		srv.SetToken(tok)
		t.Setenv(envName, tok)
		mustLoad(t, cfg(fmt.Sprint("rotation ", i)), "caddyfile")
		waitStatus(t, url, "the rotated token's first load", func(st sources.Status) bool {
			return st.Loaded && !st.ServingPrevious && st.Failures == 0
		})
	}
	var n int64
	for _, h := range hs {
		n += h.requests.Load()
		h.Stop(t)
	}
	t.Logf("%d requests during 4 rotations", n)
	expect(t, site+"/", "alice-key-1", 200, "rotation 3 alice")
}

// A token in the source URL's query (issue 16 item 12) is a credential like
// a header token: rotating it finds the source's previous configuration,
// which keeps serving while the new token is refused and until the first
// fetch with a good one.
func TestReloadRotatedQueryTokenKeepsServing(t *testing.T) {
	const envName = "KEYAUTH_TEST_RELOAD_QUERY_TOKEN"
	t.Setenv(envName, "token-one")
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	srv.SetToken("token-one")
	url := srv.URL("/rotating")
	cfg := func(body string) string {
		return globalOptions("") + httpSourceSite(sitePort[0], `"`+url+"?token={env."+envName+`}"`, "refresh 1h", "", body)
	}
	startCaddy(t, cfg("one"), "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	expect(t, site+"/", "alice-key-1", 200, "one alice")

	t.Setenv(envName, "token-refused")
	h := startHammer(t, site+"/", "alice-key-1")
	mustLoad(t, cfg("two"), "caddyfile")
	st := waitStatus(t, url, "the new token refused", func(st sources.Status) bool { return st.Failures > 0 })
	expect(t, site+"/", "alice-key-1", 200, "two alice")
	h.Stop(t)
	if !st.ServingPrevious || !st.Loaded || st.Keys != 1 || !strings.Contains(st.LastError, "status 401") ||
		strings.Contains(st.Location+st.LastError, "token-") {
		t.Errorf("the refused configuration's status: %+v", st)
	}

	h = startHammer(t, site+"/", "alice-key-1")
	srv.SetToken("token-three")
	t.Setenv(envName, "token-three")
	mustLoad(t, cfg("three"), "caddyfile")
	waitStatus(t, url, "the rotated token's first load", func(st sources.Status) bool {
		return st.Loaded && !st.ServingPrevious && st.Failures == 0
	})
	h.Stop(t)
	expect(t, site+"/", "alice-key-1", 200, "three alice")
}

// Two sites naming one URL with two tokens in one config are two sources,
// not a source and its next configuration: the one whose token is refused
// does not serve the other's set.
func TestReloadSiblingSourceDoesNotInherit(t *testing.T) {
	srv := newSourceServer(t, consumersDoc("alice", "alice-key-1"))
	srv.SetToken("good")
	url := srv.URL("/shared")
	good := httpSourceSite(sitePort[0], url, "refresh 1h\nheader Authorization \"Bearer good\"", "", "good")
	bad := httpSourceSite(sitePort[1], url, "refresh 1h\nheader Authorization \"Bearer bad\"", "", "bad")
	startCaddy(t, globalOptions("")+good, "caddyfile")
	waitStatus(t, url, "first load", func(st sources.Status) bool { return st.Loaded })
	startCaddy(t, globalOptions("")+good+bad, "caddyfile")
	eventually(t, "the second source's refusal", func() bool {
		for _, s := range storesAt(url) {
			if s.Status().Failures > 0 {
				return true
			}
		}
		return false
	})
	expect(t, site+"/", "alice-key-1", 200, "good alice")
	wantFailure(t, get(t, site2+"/", "apikey", "alice-key-1"), http.StatusServiceUnavailable, "consumers are not loaded yet", "")
}
