package integration

// Helpers of the consumer-source tests (issue 3): a real HTTP server that
// plays the consumers source, and ways to drive and observe the in-process
// Caddy that caddytest runs. Every identifier here starts with "src" so it
// never collides with the other integration tests in this package.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/keyauth/caddy-keyauth/consumers"
)

const (
	srcAdmin = "http://localhost:2999"
	// srcGlobal is the global options block of every Caddyfile here; %s is
	// an optional extra line (such as a log block).
	srcGlobal = `{
	admin localhost:2999
	persist_config off
	auto_https off
	http_port 9280
	%s
}
`
)

// srcMode is how the source answers.
type srcMode int

const (
	srcOK              srcMode = iota
	srcFail                    // 500
	srcHang                    // never answers until the client gives up
	srcInvalid                 // 200 with a document that is not JSON
	srcRefusedDoc              // 200 with JSON that fails the checks
	srcOversize                // 200 with a valid document over max_size, Content-Length set
	srcOversizeChunked         // the same, chunked, without Content-Length
)

// srcRequest is what the source recorded of one request.
type srcRequest struct {
	At     time.Time
	Header http.Header
	URL    string
	Status int
}

// srcHangRecord is one request the source held until the client gave up.
type srcHangRecord struct {
	Start, End time.Time
}

// srcServer is a consumers source under the test's control: it serves a
// document that can be changed, counts and records requests, honours
// If-None-Match and If-Modified-Since with 304, and can fail, hang, refuse
// connections or serve bad answers.
type srcServer struct {
	t    testing.TB
	addr string

	mu          sync.Mutex
	srv         *http.Server
	doc         []byte
	etag        string
	lastMod     time.Time
	noETag      bool // answer with Last-Modified only
	mode        srcMode
	oversize    []byte // the document served by the oversize modes
	requests    []srcRequest
	notModified int
	hangs       []srcHangRecord
	release     chan struct{} // closed to let hanging requests go
}

// srcNewServer starts a source on 127.0.0.1 serving doc.
func srcNewServer(t testing.TB, doc []byte) *srcServer {
	t.Helper()
	s := &srcServer{t: t, release: make(chan struct{})}
	s.SetDoc(doc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(func() {
		s.mu.Lock()
		close(s.release)
		srv := s.srv
		s.srv = nil
		s.mu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
	})
	return s
}

func (s *srcServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// URL is the source's address with path p.
func (s *srcServer) URL(p string) string { return "http://" + s.addr + p }

// Refuse closes the listener and every connection: connections are refused
// until Accept.
func (s *srcServer) Refuse() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Accept listens again on the same address.
func (s *srcServer) Accept() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listening again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// SetDoc changes the document served.
func (s *srcServer) SetDoc(doc []byte) {
	sum := sha256.Sum256(doc)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc = doc
	s.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	s.lastMod = time.Now()
}

// SetMode changes how the source answers.
func (s *srcServer) SetMode(m srcMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// SetNoETag makes the source send Last-Modified only.
func (s *srcServer) SetNoETag(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noETag = v
}

// SetOversize sets the document of the oversize modes.
func (s *srcServer) SetOversize(doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oversize = doc
}

// Count is the number of requests received so far.
func (s *srcServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// NotModified is the number of 304 answers given.
func (s *srcServer) NotModified() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notModified
}

// Requests returns a copy of the recorded requests.
func (s *srcServer) Requests() []srcRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]srcRequest(nil), s.requests...)
}

// Hangs returns the requests held by srcHang that have ended.
func (s *srcServer) Hangs() []srcHangRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]srcHangRecord(nil), s.hangs...)
}

// ETag is the entity tag of the current document.
func (s *srcServer) ETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

func (s *srcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.requests)
	s.requests = append(s.requests, srcRequest{At: time.Now(), Header: r.Header.Clone(), URL: r.URL.String()})
	mode, doc, etag, lastMod, noETag, over, release := s.mode, s.doc, s.etag, s.lastMod, s.noETag, s.oversize, s.release
	s.mu.Unlock()
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.requests[i].Status = status
		if status == http.StatusNotModified {
			s.notModified++
		}
		s.mu.Unlock()
	}()

	switch mode {
	case srcFail:
		status = http.StatusInternalServerError
		http.Error(w, "source is down", status)
	case srcHang:
		start := time.Now()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		status = 0
		s.mu.Lock()
		s.hangs = append(s.hangs, srcHangRecord{Start: start, End: time.Now()})
		s.mu.Unlock()
	case srcInvalid:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"consumers": [{"username": "x", `)
	case srcRefusedDoc:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(srcDoc("dup", "dup-key-1", "dup", "dup-key-2"))
	case srcOversize:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(over)))
		_, _ = w.Write(over)
	case srcOversizeChunked:
		w.Header().Set("Content-Type", "application/json")
		for b := over; len(b) > 0; {
			n := min(len(b), 256)
			_, _ = w.Write(b[:n])
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	default:
		lm := lastMod.UTC().Format(http.TimeFormat)
		if inm := r.Header.Get("If-None-Match"); inm != "" && !noETag {
			if inm == etag {
				status = http.StatusNotModified
				w.WriteHeader(status)
				return
			}
		} else if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !lastMod.Truncate(time.Second).After(ims) {
			status = http.StatusNotModified
			w.WriteHeader(status)
			return
		}
		if !noETag {
			w.Header().Set("ETag", etag)
		}
		w.Header().Set("Last-Modified", lm)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		_, _ = w.Write(doc)
	}
}

// srcDoc builds a consumers document from username, key pairs. Each consumer
// has one plain-text key whose credential id is "<username>-cred".
func srcDoc(pairs ...string) []byte {
	type key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	type consumer struct {
		Username string `json:"username"`
		Keys     []key  `json:"keys,omitempty"`
	}
	var doc struct {
		Consumers []consumer `json:"consumers"`
	}
	doc.Consumers = []consumer{}
	for i := 0; i+1 < len(pairs); i += 2 {
		c := consumer{Username: pairs[i]}
		if pairs[i+1] != "" {
			c.Keys = []key{{ID: pairs[i] + "-cred-" + strconv.Itoa(i), Key: pairs[i+1]}}
		}
		doc.Consumers = append(doc.Consumers, c)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// srcBigDoc is a valid document of at least n bytes.
func srcBigDoc(n int) []byte {
	var pairs []string
	for i := 0; ; i++ {
		pairs = append(pairs, fmt.Sprintf("user%05d", i), fmt.Sprintf("key-%05d-%s", i, strings.Repeat("x", 40)))
		if i%50 == 0 {
			if d := srcDoc(pairs...); len(d) >= n {
				return d
			}
		}
	}
}

// srcWriteDoc writes a consumers file atomically (temporary file, rename),
// as the file source asks.
func srcWriteDoc(t testing.TB, path string, doc []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// srcRandomKey is a fresh random key.
func srcRandomKey() string { return rand.Text() }

// srcClient talks to Caddy without keeping connections, so goroutine and
// file counts stay clean.
var srcClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// srcGet requests url with the key in the apikey header ("" for none).
func srcGet(t testing.TB, url, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("apikey", key)
	}
	resp, err := srcClient.Do(req)
	// Just after a reload, Caddy (not key_auth: it happens without it too)
	// may drop a connection the stopping server accepted: send it again.
	for i := 0; i < 3 && err != nil; i++ {
		t.Logf("GET %s: %v; again", url, err)
		resp, err = srcClient.Do(req)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// srcExpect asserts the answer to a request with key.
func srcExpect(t testing.TB, url, key string, status int, body string) {
	t.Helper()
	code, got := srcGet(t, url, key)
	if code != status || (body != "" && strings.TrimSpace(got) != body) {
		t.Fatalf("GET %s with key %q: got %d %q, want %d %q", url, key, code, got, status, body)
	}
}

// srcAdminDo calls the admin API.
func srcAdminDo(t testing.TB, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srcAdmin+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srcClient.Do(req)
	// A connection to the admin server a load has just replaced may be
	// dropped before the request is read (see srcMustLoad): send it again.
	for i := 0; i < 3 && err != nil; i++ {
		t.Logf("%s %s: %v; again", method, path, err)
		req.Body = io.NopCloser(bytes.NewReader(body))
		resp, err = srcClient.Do(req)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// srcSources is GET /key_auth/sources.
func srcSources(t testing.TB) []consumers.SourceStatus {
	t.Helper()
	code, body := srcAdminDo(t, http.MethodGet, "/key_auth/sources", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /key_auth/sources: %d %s", code, body)
	}
	var out []consumers.SourceStatus
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("GET /key_auth/sources: %v in %s", err, body)
	}
	return out
}

// srcStart makes sure the in-process Caddy runs and loads cfg through
// caddytest, which fails the test if the config does not load.
func srcStart(t testing.TB, cfg, adapter string) {
	t.Helper()
	caddytest.NewTester(t).InitServer(cfg, adapter)
	if t.Failed() {
		t.FailNow()
	}
}

// srcLoad POSTs a config to /load and returns the answer; it does not fail
// the test, so a refused config can be checked.
func srcLoad(cfg, contentType string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, srcAdmin+"/load", strings.NewReader(cfg))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", contentType)
	c := &http.Client{Timeout: 2 * time.Minute, Transport: srcClient.Transport}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// srcMustLoad loads a config that must load. Each load replaces Caddy's
// admin server and stops the old one in the background, which may drop a
// connection just accepted (EOF): such a load is sent again, which is safe
// since loading the running config again changes nothing.
func srcMustLoad(t testing.TB, cfg, contentType string) {
	t.Helper()
	code, body, err := srcLoad(cfg, contentType)
	for i := 0; i < 3 && err != nil; i++ {
		t.Logf("loading config: %v; again", err)
		code, body, err = srcLoad(cfg, contentType)
	}
	if err != nil || code != http.StatusOK {
		t.Fatalf("loading config: %d %s %v", code, body, err)
	}
}

// srcIdle is a config with no key_auth at all: loading it destroys every
// store.
const srcIdle = `{"admin": {"listen": "localhost:2999", "config": {"persist": false}}}`

// srcUnloadAtEnd loads srcIdle when the test ends, so no poller outlives
// the test that started it.
func srcUnloadAtEnd(t testing.TB) {
	t.Cleanup(func() {
		if _, _, err := srcLoad(srcIdle, "application/json"); err != nil {
			t.Logf("unloading: %v", err)
		}
	})
}

// srcStoreAt is the live store whose location contains loc, or nil.
func srcStoreAt(loc string) *consumers.Store {
	var found *consumers.Store
	for _, s := range consumers.Stores() {
		if strings.Contains(s.Status().Location, loc) {
			if found != nil {
				panic("two live stores at " + loc)
			}
			found = s
		}
	}
	return found
}

// srcStoresAt counts the live stores whose location contains loc.
func srcStoresAt(loc string) int {
	n := 0
	for _, s := range consumers.Stores() {
		if strings.Contains(s.Status().Location, loc) {
			n++
		}
	}
	return n
}

// srcPollers counts the running store pollers.
func srcPollers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return bytes.Count(buf, []byte("consumers.(*Store).poll("))
}

// srcOpenFiles counts this process's open file descriptors.
func srcOpenFiles(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// srcEventually polls cond until it holds or d passes.
func srcEventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// srcSettle waits for the goroutine count to come down to at most limit,
// and returns the last count seen.
func srcSettle(limit int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		runtime.GC()
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// srcMetrics reads the admin /metrics as name{labels} → value.
func srcMetrics(t testing.TB) (map[string]float64, string) {
	t.Helper()
	code, body := srcAdminDo(t, http.MethodGet, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, string(body)
}

// srcLogLines counts the lines of a log file that contain every one of
// the given substrings.
func srcLogLines(t testing.TB, path string, subs ...string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}
