package integration

// The toolkit's consumers sources: a real HTTP server that plays the
// consumers source, consumer documents, and configs that use sources. See
// helpers_caddy_test.go for the map of the toolkit.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sourceMode is how the source answers.
type sourceMode int

const (
	sourceOK              sourceMode = iota
	sourceFail                       // 500
	sourceHang                       // never answers until the client gives up
	sourceInvalid                    // 200 with a document that is not JSON
	sourceRefusedDoc                 // 200 with JSON that fails the checks
	sourceOversize                   // 200 with a valid document over max_size, Content-Length set
	sourceOversizeChunked            // the same, chunked, without Content-Length
	sourceRefusedLimits              // 200 with JSON whose limits fail the checks
)

// sourceRequest is what the source recorded of one request.
type sourceRequest struct {
	At     time.Time
	Header http.Header
	URL    string
	Status int
}

// hangRecord is one request the source held until the client gave up.
type hangRecord struct {
	Start, End time.Time
}

// sourceServer is a consumers source under the test's control: it serves a
// document that can be changed, counts and records requests, honours
// If-None-Match and If-Modified-Since with 304, and can fail, hang, refuse
// connections or serve bad answers.
type sourceServer struct {
	t    testing.TB
	addr string

	mu          sync.Mutex
	srv         *http.Server
	doc         []byte
	etag        string
	lastMod     time.Time
	noETag      bool // answer with Last-Modified only
	mode        sourceMode
	oversize    []byte // the document served by the oversize modes
	requests    []sourceRequest
	notModified int
	hangs       []hangRecord
	release     chan struct{} // closed to let hanging requests go
	token       string        // when set, a request without "Authorization: Bearer <token>" gets 401
}

// newSourceServer starts a source on 127.0.0.1 serving doc.
func newSourceServer(t testing.TB, doc string) *sourceServer {
	t.Helper()
	s := &sourceServer{t: t, release: make(chan struct{})}
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

func (s *sourceServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// URL is the source's address with path p.
func (s *sourceServer) URL(p string) string { return "http://" + s.addr + p }

// Refuse closes the listener and every connection: connections are refused
// until Accept.
func (s *sourceServer) Refuse() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Accept listens again on the same address.
func (s *sourceServer) Accept() {
	s.t.Helper()
	var ln net.Listener
	// The closed listener's port may take a moment to be free again.
	eventually(s.t, "listening again on "+s.addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	})
	s.serve(ln)
}

// SetDoc changes the document served.
func (s *sourceServer) SetDoc(doc string) {
	sum := sha256.Sum256([]byte(doc))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc = []byte(doc)
	s.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	s.lastMod = time.Now()
}

// SetMode changes how the source answers.
func (s *sourceServer) SetMode(m sourceMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// SetToken makes the source answer 401 to a request with neither
// "Authorization: Bearer <token>" nor "?token=<token>"; "" accepts any.
func (s *sourceServer) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// SetNoETag makes the source send Last-Modified only.
func (s *sourceServer) SetNoETag(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noETag = v
}

// SetOversize sets the document of the oversize modes.
func (s *sourceServer) SetOversize(doc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oversize = []byte(doc)
}

// Count is the number of requests received so far.
func (s *sourceServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// NotModified is the number of 304 answers given.
func (s *sourceServer) NotModified() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notModified
}

// Requests returns a copy of the recorded requests.
func (s *sourceServer) Requests() []sourceRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sourceRequest(nil), s.requests...)
}

// Hangs returns the requests held by sourceHang that have ended.
func (s *sourceServer) Hangs() []hangRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hangRecord(nil), s.hangs...)
}

// ETag is the entity tag of the current document.
func (s *sourceServer) ETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

func (s *sourceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.requests)
	s.requests = append(s.requests, sourceRequest{At: time.Now(), Header: r.Header.Clone(), URL: r.URL.String()})
	mode, doc, etag, lastMod, noETag, over, release := s.mode, s.doc, s.etag, s.lastMod, s.noETag, s.oversize, s.release
	refused := s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token &&
		r.URL.Query().Get("token") != s.token
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

	switch {
	case refused:
		status = http.StatusUnauthorized
		http.Error(w, "bad token", status)
		return
	}
	switch mode {
	case sourceFail:
		status = http.StatusInternalServerError
		http.Error(w, "source is down", status)
	case sourceHang:
		start := time.Now()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		status = 0
		s.mu.Lock()
		s.hangs = append(s.hangs, hangRecord{Start: start, End: time.Now()})
		s.mu.Unlock()
	case sourceInvalid:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"consumers": [{"username": "x", `)
	case sourceRefusedDoc:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, consumersDoc("dup", "dup-key-1", "dup", "dup-key-2"))
	case sourceRefusedLimits:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"groups": {"free": {"member_limits": {"requests": {"max": 1000, "per": "fortnight"}}}},
			"consumers": [{"username": "bob", "groups": ["free"], "keys": [{"key": "bob-key-1"}]}]}`)
	case sourceOversize:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(over)))
		_, _ = w.Write(over)
	case sourceOversizeChunked:
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

// consumersDoc builds a consumers document from username, key pairs. Each consumer
// has one plain-text key whose credential id is "<username>-cred".
func consumersDoc(pairs ...string) string {
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
	return string(b)
}

// bigConsumersDoc is a valid document of at least n bytes.
func bigConsumersDoc(n int) string {
	var pairs []string
	for i := 0; ; i++ {
		pairs = append(pairs, fmt.Sprintf("user%05d", i), fmt.Sprintf("key-%05d-%s", i, strings.Repeat("x", 40)))
		if i%50 == 0 {
			if d := consumersDoc(pairs...); len(d) >= n {
				return d
			}
		}
	}
}

// doc is a consumers document with one consumer and its keys, whose
// credential ids are <username>-1, <username>-2, ...
func doc(username string, keys ...string) string {
	var ks []string
	for i, k := range keys {
		ks = append(ks, fmt.Sprintf(`{"id": "%s-%d", "key": %q}`, username, i+1, k))
	}
	return fmt.Sprintf(`{"consumers": [{"username": %q, "keys": [%s]}]}`, username, strings.Join(ks, ", "))
}

// randomKey is a fresh random key.
func randomKey() string { return rand.Text() }

// httpSourceSite is a Caddyfile site on port that authenticates against an
// HTTP source with the given source block and handler options, and answers
// "<body> <username>".
func httpSourceSite(port int, url, block, opts, body string) string {
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

// jsonConfig is a JSON config with one server, "srv", on port, whose
// routes are given.
func jsonConfig(port int, routes ...string) string {
	return fmt.Sprintf(`{
	"admin": {"listen": %q, "config": {"persist": false}},
	"apps": {"http": {"http_port": %d, "https_port": %d, "servers": {"srv": {
		"listen": [":%d"],
		"automatic_https": {"disable": true},
		"routes": [%s]
	}}}}
}`, adminAddr, httpPort, httpsPort, port, strings.Join(routes, ","))
}

// jsonRoute is a JSON route for path that authenticates against source (a
// JSON object, or "" for no key_auth) and answers "<body> <username>".
func jsonRoute(path, source, body string) string {
	auth := ""
	if source != "" {
		auth = fmt.Sprintf(`{"handler": "key_auth", "consumers": %s},`, source)
	}
	return fmt.Sprintf(`{"match": [{"path": [%q]}], "handle": [%s
		{"handler": "static_response", "body": "%s {http.auth.user.id}"}]}`, path, auth, body)
}

func fileSourceJSON(path, refresh string) string {
	return fmt.Sprintf(`{"source": "file", "path": %q, "refresh": %q}`, path, refresh)
}

func httpSourceJSON(url, refresh, timeout string) string {
	return fmt.Sprintf(`{"source": "http", "url": %q, "refresh": %q, "timeout": %q}`, url, refresh, timeout)
}

// badKeys are keys that can never be sent as stored, with what the
// error says of each.
var badKeys = []struct{ name, key, fault string }{
	{"a space", " ", "the key is blank"},
	{"a tab", "\t", "the key is blank"},
	{"leading space", " edged-key", "the key begins with whitespace"},
	{"trailing tab", "edged-key\t", "the key ends with whitespace"},
	{"NUL inside", "edged\x00key", "the key contains a control character"},
	{"DEL inside", "edged\x7fkey", "the key contains a control character"},
}

// docWithAliceKey is smallDoc with alice's key replaced.
func docWithAliceKey(aliceKey string) string {
	k, _ := json.Marshal(aliceKey)
	return `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": ` + string(k) + `}]},
  {"username": "guest", "keys": []}
]}`
}

// badKeySentAs are requests that would carry one of badKeys, as
// a client can spell them.
var badKeySentAs = []string{"/?apikey=+", "/?apikey=%20", "/?apikey=%09", "/?apikey=+edged-key",
	"/?apikey=edged-key%09", "/?apikey=edged%00key", "/?apikey=edged%7Fkey"}

// noKeyIn fails the test when text holds one of the bad keys in any
// form an error or a log could give it.
func noKeyIn(t *testing.T, what, text string) {
	t.Helper()
	for _, leak := range []string{"edged-key", "edged\\u0000key", "edged\\x00key", "edged\x00key", "edged\\u007fkey", "edged\x7fkey", `"key": " "`, `\"key\": \" \"`} {
		if strings.Contains(text, leak) {
			t.Errorf("%s holds the key (%q): %s", what, leak, text)
		}
	}
}
