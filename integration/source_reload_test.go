package integration

// Issue 3: config reloads keep, swap or stop the consumer stores, and leak
// nothing.

import (
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// srcJSONConfig is a JSON config with one server on port whose routes are
// given; the admin endpoint is the tests' one.
func srcJSONConfig(port int, routes ...string) string {
	return fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999", "config": {"persist": false}},
	"apps": {"http": {"http_port": 9280, "servers": {"src%d": {
		"listen": [":%d"],
		"automatic_https": {"disable": true},
		"routes": [%s]
	}}}}
}`, port, port, strings.Join(routes, ","))
}

// srcRoute is a JSON route for path that authenticates against source (a
// JSON object, or "" for no key_auth) and answers "<body> <username>".
func srcRoute(path, source, body string) string {
	auth := ""
	if source != "" {
		auth = fmt.Sprintf(`{"handler": "key_auth", "consumers": %s},`, source)
	}
	return fmt.Sprintf(`{"match": [{"path": [%q]}], "handle": [%s
		{"handler": "static_response", "body": "%s {http.auth.user.id}"}]}`, path, auth, body)
}

func srcFileSource(path, refresh string) string {
	return fmt.Sprintf(`{"source": "file", "path": %q, "refresh": %q}`, path, refresh)
}

func srcHTTPSource(url, refresh, timeout string) string {
	return fmt.Sprintf(`{"source": "http", "url": %q, "refresh": %q, "timeout": %q}`, url, refresh, timeout)
}

// srcHammer sends requests with key to url until stopped, and reports any
// answer other than 200.
type srcHammer struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	requests atomic.Int64
	dropped  atomic.Int64
	mu       sync.Mutex
	bad      []string
}

func srcStartHammer(t testing.TB, url, key string) *srcHammer {
	h := &srcHammer{stop: make(chan struct{})}
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
			resp, err := srcClient.Do(req)
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
func (h *srcHammer) Stop(t testing.TB) {
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
	srv := srcNewServer(t, srcDoc("alice", "alice-key-1"))
	url := srv.URL("/reload")
	site := "http://127.0.0.1:9220/"
	cfg := func(block, body string) string {
		return fmt.Sprintf(srcGlobal, "") + srcHTTPSite(9220, url, block, "", body)
	}
	plain := func(body string) string {
		return fmt.Sprintf(srcGlobal, "") + fmt.Sprintf("http://:9220 {\n\trespond %q\n}\n", body)
	}

	// The baseline: the same site without key_auth.
	srcStart(t, plain("plain"), "caddyfile")
	srcUnloadAtEnd(t)
	baseline := srcSettle(0, 300*time.Millisecond)

	srcStart(t, cfg("refresh 1h\ntimeout 2s", "one"), "caddyfile")
	srcWaitStatus(t, url, 3*time.Second, "first load", func(st consumers.Status) bool { return st.Loaded })
	srcExpect(t, site, "alice-key-1", 200, "one alice")
	first := srcStoreAt(url)
	if n := srv.Count(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}

	// Unchanged source: same store, no fetch, no request without consumers.
	h := srcStartHammer(t, site, "alice-key-1")
	srcStart(t, cfg("refresh 1h\ntimeout 2s", "two"), "caddyfile")
	srcExpect(t, site, "alice-key-1", 200, "two alice")
	h.Stop(t)
	if srcStoreAt(url) != first {
		t.Error("an unchanged source got a new store")
	}
	time.Sleep(200 * time.Millisecond) // time for a fetch that must not come
	if n := srv.Count(); n != 1 {
		t.Errorf("%d fetches after a reload that keeps the source, want 1", n)
	}

	// Changed source: a new store, which fetches; the old one is gone.
	srcStart(t, cfg("refresh 100ms\ntimeout 2s", "three"), "caddyfile")
	second := srcStoreAt(url)
	if second == first || second == nil {
		t.Fatal("a changed source kept its store")
	}
	srcEventually(t, 3*time.Second, "the new store polls", func() bool { return srv.Count() >= 4 })
	srcExpect(t, site, "alice-key-1", 200, "three alice")
	for _, s := range consumers.Stores() {
		if s == first {
			t.Error("the replaced store is still live")
		}
	}
	if n := srcPollers(); n != 1 {
		t.Errorf("%d pollers, want 1", n)
	}

	// Removed source: its poller stops, its connections close, the
	// goroutines come back to the baseline.
	srcStart(t, plain("plain again"), "caddyfile")
	if srcStoreAt(url) != nil {
		t.Error("a removed source's store is still live")
	}
	if n := srcPollers(); n != 0 {
		t.Errorf("%d pollers after the source was removed", n)
	}
	n := srv.Count()
	time.Sleep(400 * time.Millisecond) // four refresh periods
	if got := srv.Count(); got != n {
		t.Errorf("the removed source was fetched %d more times", got-n)
	}
	if g := srcSettle(baseline+2, 5*time.Second); g > baseline+2 {
		t.Errorf("goroutines: %d, baseline %d", g, baseline)
	}
}

func TestReloadFileSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "consumers.json")
	srcWriteDoc(t, file, srcDoc("alice", "alice-key-1"))
	site := "http://127.0.0.1:9221/"
	cfg := func(refresh, body string) string {
		return srcJSONConfig(9221, srcRoute("/*", srcFileSource(file, refresh), body))
	}
	srcStart(t, srcJSONConfig(9221, srcRoute("/*", "", "plain")), "json")
	srcUnloadAtEnd(t)
	baseline := srcSettle(0, 300*time.Millisecond)

	srcStart(t, cfg("1h", "one"), "json")
	srcExpect(t, site, "alice-key-1", 200, "one alice")
	first := srcStoreAt(file)
	if first == nil {
		t.Fatal("no store")
	}

	// Unchanged source: the same store, and the file is not read again: a
	// file that would be refused does not fail the reload.
	srcWriteDoc(t, file, []byte(`{"consumers": [`))
	h := srcStartHammer(t, site, "alice-key-1")
	srcStart(t, cfg("1h", "two"), "json")
	srcExpect(t, site, "alice-key-1", 200, "two alice")
	// A PATCH of part of the config is a reload too.
	code, body := srcAdminDo(t, http.MethodPatch, "/config/apps/http/servers/src9221/routes/0/handle/1/body", []byte(`"patched {http.auth.user.id}"`))
	if code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	srcExpect(t, site, "alice-key-1", 200, "patched alice")
	h.Stop(t)
	if srcStoreAt(file) != first {
		t.Fatal("an unchanged source got a new store")
	}

	// Changes on disk arrive through the admin refresh, where a refused
	// file keeps the last good set.
	code, body = srcAdminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	if code != 200 || !strings.Contains(string(body), "refresh_error") {
		t.Errorf("admin refresh of a broken file: %d %s", code, body)
	}
	srcExpect(t, site, "alice-key-1", 200, "patched alice")
	srcWriteDoc(t, file, srcDoc("bob", "bob-key-1"))
	if code, body = srcAdminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil); code != 200 {
		t.Fatalf("admin refresh: %d %s", code, body)
	}
	srcExpect(t, site, "bob-key-1", 200, "patched bob")
	srcExpect(t, site, "alice-key-1", 401, "")

	// Changed source: a new store, read at load.
	srcStart(t, cfg("100ms", "three"), "json")
	second := srcStoreAt(file)
	if second == first || second == nil {
		t.Fatal("a changed source kept its store")
	}
	srcExpect(t, site, "bob-key-1", 200, "three bob")
	// ... and a refused file fails a config that has to read it, while the
	// running config goes on.
	srcWriteDoc(t, file, []byte(`{"consumers": [{"username": "x"}, {"username": "x"}]}`))
	if code, body, err := srcLoad(cfg("150ms", "four"), "application/json"); err != nil || code == 200 || !strings.Contains(body, file) {
		t.Errorf("loading a config with a refused file: %d %s %v", code, body, err)
	}
	if srcStoreAt(file) != second {
		t.Error("a failed load replaced the store")
	}
	srcExpect(t, site, "bob-key-1", 200, "three bob")
	// The poller of the new store follows the file within refresh.
	srcWriteDoc(t, file, srcDoc("carol", "carol-key-1"))
	srcEventually(t, 2*time.Second, "carol is served", func() bool {
		code, _ := srcGet(t, site, "carol-key-1")
		return code == 200
	})

	// Removed source: poller gone, goroutines back.
	srcStart(t, srcJSONConfig(9221, srcRoute("/*", "", "plain again")), "json")
	if srcStoreAt(file) != nil || srcPollers() != 0 {
		t.Error("a removed source lives on")
	}
	if g := srcSettle(baseline+2, 5*time.Second); g > baseline+2 {
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
	srcWriteDoc(t, fileA, srcDoc("alice", "alice-key-1"))
	srcWriteDoc(t, fileB, srcDoc("bob", "bob-key-1"))
	srv := srcNewServer(t, srcDoc("carol", "carol-key-1"))
	kept, swapped := srv.URL("/kept"), srv.URL("/swapped")
	cfg := func(i int) string {
		// Odd and even configs differ in the refresh of two sources (so
		// those stores are replaced on every load) and in a body.
		refresh := []string{"100ms", "120ms"}[i%2]
		return srcJSONConfig(9222,
			srcRoute("/kept-file/*", srcFileSource(fileA, "1h"), "kf"),
			srcRoute("/kept-http/*", srcHTTPSource(kept, "1h", "2s"), "kh"),
			srcRoute("/file/*", srcFileSource(fileB, refresh), "f"),
			srcRoute("/http/*", srcHTTPSource(swapped, refresh, "2s"), "h"),
			srcRoute("/*", "", fmt.Sprintf("load %d", i)),
		)
	}
	plain := func(body string) string { return srcJSONConfig(9222, srcRoute("/*", "", body)) }

	srcStart(t, plain("before"), "json")
	srcUnloadAtEnd(t)
	g0 := srcSettle(0, 500*time.Millisecond)
	f0 := srcOpenFiles(t)

	start := time.Now()
	for i := range loads {
		srcMustLoad(t, cfg(i), "application/json")
	}
	t.Logf("%d loads in %s", loads, time.Since(start))
	srcExpect(t, "http://127.0.0.1:9222/file/", "bob-key-1", 200, "f bob")
	srcExpect(t, "http://127.0.0.1:9222/kept-file/", "alice-key-1", 200, "kf alice")
	srcEventually(t, 3*time.Second, "the HTTP sources load", func() bool {
		c1, _ := srcGet(t, "http://127.0.0.1:9222/http/", "carol-key-1")
		c2, _ := srcGet(t, "http://127.0.0.1:9222/kept-http/", "carol-key-1")
		return c1 == 200 && c2 == 200
	})
	if n := srcPollers(); n != 4 {
		t.Errorf("%d pollers for 4 sources", n)
	}
	if got := srcStoresAt(kept); got != 1 {
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

	srcMustLoad(t, plain("after"), "application/json")
	if n := srcPollers(); n != 0 {
		t.Errorf("%d pollers after the sources were removed", n)
	}
	g := srcSettle(g0+3, 10*time.Second)
	var f int
	srcEventually(t, 5*time.Second, "open files back", func() bool {
		f = srcOpenFiles(t)
		return f <= f0+3
	})
	t.Logf("goroutines %d → %d, open files %d → %d", g0, g, f0, f)
	if g > g0+3 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after %d reloads, %d before\n%s", g, loads, g0, buf[:runtime.Stack(buf, true)])
	}
}
