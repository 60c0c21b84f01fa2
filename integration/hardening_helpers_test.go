package integration

// Issue 5: helpers of the hardening tests (hardening_*_test.go).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The keys of the hardening consumer "odd", added to the standard file by
// hardConsumers: one of the bytes that need escaping in every location (a
// control byte would be refused at load, issue 8), one of exactly
// model.MaxKeyLength bytes and one of multi-byte UTF-8.
var (
	hardCtlKey  = "ctl \"\\%00+&=;#?<>'`-key"
	hardLongKey = hardLong(4096)
	hardUTF8Key = "ütf-8 ключ 🔑"

	idOddCtl  = identity{"odd", "odd-1", absent, "odd-ctl", absent}
	idOddLong = identity{"odd", "odd-1", absent, "odd-long", absent}
	idOddUTF8 = identity{"odd", "odd-1", absent, "odd-utf8", absent}
)

// hardLong is a key of n bytes that is not a repetition of one byte.
func hardLong(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "long-%d-", i)
	}
	return b.String()[:n]
}

// hardConsumers writes the standard consumers file with the consumer
// "odd" added.
func hardConsumers(e *env) {
	e.t.Helper()
	std, err := os.ReadFile("testdata/consumers.json")
	if err != nil {
		e.t.Fatal(err)
	}
	keys, err := json.Marshal([]map[string]string{
		{"id": "odd-ctl", "key": hardCtlKey},
		{"id": "odd-long", "key": hardLongKey},
		{"id": "odd-utf8", "key": hardUTF8Key},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	doc := strings.TrimSpace(string(std))
	if !strings.HasSuffix(doc, "]}") {
		e.t.Fatal("testdata/consumers.json does not end in ]}")
	}
	doc = doc[:len(doc)-2] + `, {"username": "odd", "id": "odd-1", "keys": ` + string(keys) + "}\n]}"
	e.writeConsumers(doc)
}

// hardClient keeps connections alive, for the loops that send thousands of
// requests; every request still has a deadline.
func hardClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 32},
		Timeout:   20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// hardSend sends a request and reads the answer whole, without a test, so
// that it can run on any goroutine.
func hardSend(c *http.Client, r *http.Request) (*response, error) {
	res, err := c.Do(r)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// hardRaw builds an HTTP/1.1 request byte for byte, for what Go's client
// refuses to send: hdr holds name, value pairs written as given. A body
// gets a Content-Length.
func hardRaw(host, method, target string, body []byte, hdr ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, host)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// hardRawSend writes raw to a new connection to addr and reads one answer,
// all within a deadline.
func hardRawSend(addr string, raw []byte) (*response, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return nil, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// hardWant is the answer a hostile request must get.
type hardWant struct {
	outcome
	// server: the request never reaches Caddy's handlers; Go's HTTP server
	// itself answers with this status in plain text (a control byte in a
	// header, a header block over max_header_size).
	server int
	// upstream, when set, checks what the upstream got of a request that
	// passed.
	upstream func(t *testing.T, e *echo)
}

func hardPass(who identity) hardWant { return hardWant{outcome: pass(who)} }
func hardReject(msg string) hardWant { return hardWant{outcome: reject(msg)} }
func hardServer(status int) hardWant { return hardWant{server: status} }

func (w hardWant) String() string {
	if w.server != 0 {
		return fmt.Sprintf("%d from Go's server", w.server)
	}
	return w.outcome.String()
}

// status is the status the answer must have.
func (w hardWant) status() int {
	if w.server != 0 {
		return w.server
	}
	return w.outcome.status
}

// check checks an answer in full.
func (w hardWant) check(t *testing.T, r *response) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("a 5xx: %s", r)
	}
	if w.server != 0 {
		if r.status != w.server || r.fromUpstream() || !bytes.HasPrefix(r.body, []byte(fmt.Sprint(w.server))) {
			t.Fatalf("want Go's server's %d, got %s", w.server, r)
		}
		return
	}
	if e := w.outcome.check(t, r, "Key"); e != nil && w.upstream != nil {
		w.upstream(t, e)
	}
}

// quick checks an answer by its status and source only, on any goroutine.
func (w hardWant) quick(r *response) error {
	if r.status != w.status() || (r.status == http.StatusOK) != r.fromUpstream() {
		return fmt.Errorf("got %d (from upstream %v), want %s", r.status, r.fromUpstream(), w)
	}
	return nil
}

// hardCase is one hostile request: built anew for every send (a body is
// read once), sent through Go's client or, when raw is set, over a bare
// connection.
type hardCase struct {
	name  string
	build func(base string) *http.Request
	raw   func(host string) []byte
	want  hardWant
}

// send sends the case to the site at base (http://host:port).
func (c hardCase) send(cl *http.Client, base string) (*response, error) {
	host := strings.TrimPrefix(base, "http://")
	if c.raw != nil {
		return hardRawSend(host, c.raw(host))
	}
	return hardSend(cl, c.build(base))
}

// hardGet is a case of a GET with header pairs.
func hardGet(name, path string, want hardWant, hdr ...string) hardCase {
	return hardCase{name: name, want: want, build: func(base string) *http.Request {
		return hardNewReq(http.MethodGet, base+path, nil, hdr...)
	}}
}

// hardPost is a case of a POST of body with a content type; chunked hides
// the length.
func hardPost(name, path, ctype string, body []byte, chunk bool, want hardWant, hdr ...string) hardCase {
	return hardCase{name: name, want: want, build: func(base string) *http.Request {
		var rd io.Reader = bytes.NewReader(body)
		if chunk {
			rd = chunked(body)
		}
		r := hardNewReq(http.MethodPost, base+path, rd, append([]string{"Content-Type", ctype}, hdr...)...)
		if chunk {
			r.ContentLength = -1
		}
		return r
	}}
}

// hardRawCase is a case written byte for byte.
func hardRawCase(name, method, target string, body []byte, want hardWant, hdr ...string) hardCase {
	return hardCase{name: name, want: want, raw: func(host string) []byte {
		return hardRaw(host, method, target, body, hdr...)
	}}
}

// hardNewReq is req without a test: the URLs are the tests' own.
func hardNewReq(method, url string, body io.Reader, hdr ...string) *http.Request {
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header[hdr[i]] = append(r.Header[hdr[i]], hdr[i+1])
	}
	return r
}

// hardRun sends each case once and checks its answer in full.
func hardRun(t *testing.T, cl *http.Client, base string, cases []hardCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.send(cl, base)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			c.want.check(t, r)
		})
	}
}

// hardHammer sends every case rounds times from workers goroutines and
// returns the first few wrong answers.
func hardHammer(cl *http.Client, base string, cases []hardCase, rounds, workers int) []string {
	var mu sync.Mutex
	var bad []string
	jobs := make(chan hardCase)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c := range jobs {
				r, err := c.send(cl, base)
				if err == nil {
					err = c.want.quick(r)
				}
				if err != nil {
					mu.Lock()
					if len(bad) < 10 {
						bad = append(bad, c.name+": "+err.Error())
					}
					mu.Unlock()
				}
			}
		})
	}
	for range rounds {
		for _, c := range cases {
			jobs <- c
		}
	}
	close(jobs)
	wg.Wait()
	return bad
}

// hardHeap is the heap in use once garbage is collected.
func hardHeap() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// hardGoroutines waits up to d for the goroutine count to come down to at
// most limit and returns the last count.
func hardGoroutines(limit int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
