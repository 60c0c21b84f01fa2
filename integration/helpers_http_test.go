package integration

// The toolkit's HTTP side: clients, requests and answers, the echo
// upstream, identities, and tables of requests with their outcomes. See
// helpers_caddy_test.go for the map of the toolkit.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is what the upstream saw of a request.
type echo struct {
	Method           string      `json:"method"`
	URI              string      `json:"uri"`
	Header           http.Header `json:"header"`
	Body             []byte      `json:"body"` // only up to 4 MB
	BodyLen          int         `json:"body_len"`
	BodySHA256       string      `json:"body_sha256"`
	ContentLength    int64       `json:"content_length"`
	TransferEncoding []string    `json:"transfer_encoding"`
}

// has reports whether the upstream got the header at all.
func (e *echo) has(name string) bool {
	_, ok := e.Header[http.CanonicalHeaderKey(name)]
	return ok
}

// upstream is a real HTTP server that answers every request with an echo
// of it, as JSON, and counts the requests it got.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "upstream: reading body: "+err.Error(), http.StatusBadGateway)
			return
		}
		sum := sha256.Sum256(body)
		e := echo{
			Method: r.Method, URI: r.RequestURI, Header: r.Header,
			BodyLen: len(body), BodySHA256: hex.EncodeToString(sum[:]),
			ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding,
		}
		if len(body) <= 4<<20 {
			e.Body = body
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", "upstream")
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(u.Close)
	return u
}

// addr is the upstream's dial address.
func (u *upstream) addr() string { return u.Listener.Addr().String() }

// client talks to Caddy. Without keep-alive, no request ever lands on a
// connection of a config that has been replaced, and goroutine and file
// counts stay clean.
var client = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true, DisableCompression: true},
	Timeout:       30 * time.Second,
	CheckRedirect: noRedirect,
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// keepAliveClient keeps connections alive, for the loops that send
// thousands of requests; every request still has a deadline.
func keepAliveClient() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 32},
		Timeout:       20 * time.Second,
		CheckRedirect: noRedirect,
	}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// fromUpstream reports whether the upstream wrote the answer.
func (r *response) fromUpstream() bool { return r.header.Get("X-Echo") == "upstream" }

func (r *response) String() string {
	return fmt.Sprintf("%d %v %s", r.status, r.header, r.body)
}

// echo decodes what the upstream saw, failing the test if the request did
// not get there.
func (r *response) echo(t testing.TB) *echo {
	t.Helper()
	if r.status != http.StatusOK || !r.fromUpstream() {
		t.Fatalf("want the upstream's answer, got %s", r)
	}
	var e echo
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("decoding the upstream's echo: %v", err)
	}
	return &e
}

// req builds a request. hdr holds name, value pairs; a name may repeat,
// and it is sent exactly as spelled; "Host" sets the request's host. It
// needs no test, so that tables and goroutines can build requests: the
// URLs and pairs are the tests' own, and a mistake in them panics.
func req(method, url string, body io.Reader, hdr ...string) *http.Request {
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	if len(hdr)%2 != 0 {
		panic("req: odd number of header arguments")
	}
	for i := 0; i < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			r.Host = hdr[i+1]
			continue
		}
		r.Header[hdr[i]] = append(r.Header[hdr[i]], hdr[i+1])
	}
	return r
}

// send sends a request and reads the answer whole, without a test, so
// that it can run on any goroutine.
func send(c *http.Client, r *http.Request) (*response, error) {
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

// do sends a request with client and reads the answer, failing the test if
// there is none. Just after a reload, Caddy (not key_auth: it happens
// without it too) may drop a connection the stopping server accepted: a
// request without a body is sent again.
func do(t testing.TB, r *http.Request) *response {
	t.Helper()
	res, err := send(client, r)
	for i := 0; i < 3 && err != nil && r.Body == nil; i++ {
		t.Logf("%s %s: %v; again", r.Method, r.URL, err)
		res, err = send(client, r)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	return res
}

// getKey sends a GET with key in the apikey header ("" for none) and
// returns the status and body.
func getKey(t testing.TB, url, key string) (int, string) {
	t.Helper()
	var hdr []string
	if key != "" {
		hdr = []string{"apikey", key}
	}
	r := get(t, url, hdr...)
	return r.status, string(r.body)
}

// expect checks the answer to a GET with key: its status and, unless
// empty, its body without the trailing white space.
func expect(t testing.TB, url, key string, status int, body string) {
	t.Helper()
	code, got := getKey(t, url, key)
	if code != status || (body != "" && strings.TrimSpace(got) != body) {
		t.Fatalf("GET %s with key %q: got %d %q, want %d %q", url, key, code, got, status, body)
	}
}

// get sends a GET with the given header pairs.
func get(t testing.TB, url string, hdr ...string) *response {
	t.Helper()
	return do(t, req(http.MethodGet, url, nil, hdr...))
}

// post sends a POST with a body of the given content type.
func post(t testing.TB, url, contentType string, body []byte, hdr ...string) *response {
	t.Helper()
	return do(t, req(http.MethodPost, url, bytes.NewReader(body), append([]string{"Content-Type", contentType}, hdr...)...))
}

// The failure messages of the contract.
const (
	msgNoKey     = "No API key found in request"
	msgDuplicate = "Duplicate API key found"
	msgInvalid   = "Unauthorized" // Kong 3.7+
)

// wantFailure checks an answer of key_auth itself: the status, a JSON body
// that is exactly {"message": message}, and for a 401 the challenge.
func wantFailure(t testing.TB, r *response, status int, message, challenge string) {
	t.Helper()
	if r.fromUpstream() {
		t.Fatalf("the request reached the upstream; want %d %q", status, message)
	}
	if r.status != status {
		t.Errorf("status %d, want %d (%s)", r.status, status, r.body)
	}
	if ct := r.header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Errorf("body %q is not JSON: %v", r.body, err)
	} else if len(got) != 1 || got["message"] != message {
		t.Errorf("body %s, want {\"message\": %q}", r.body, message)
	}
	wa := r.header.Values("Www-Authenticate")
	switch {
	case status == http.StatusUnauthorized && (len(wa) != 1 || wa[0] != challenge):
		t.Errorf("WWW-Authenticate %q, want %q", wa, challenge)
	case status != http.StatusUnauthorized && len(wa) != 0:
		t.Errorf("WWW-Authenticate %q on a %d", wa, status)
	}
}

// want401 checks a 401 with the plain `Key` challenge.
func want401(t testing.TB, r *response, message string) {
	t.Helper()
	wantFailure(t, r, http.StatusUnauthorized, message, "Key")
}

// identity is what the identity headers told the upstream; a header that
// is absent is "<absent>".
type identity struct {
	username, consumerID, customID, credential, anonymous string
}

const absent = "<absent>"

func identityOf(e *echo) identity {
	get := func(name string) string {
		v, ok := e.Header[name]
		switch {
		case !ok:
			return absent
		case len(v) != 1:
			return fmt.Sprintf("%q", v)
		}
		return v[0]
	}
	return identity{
		username:   get("X-Consumer-Username"),
		consumerID: get("X-Consumer-Id"),
		customID:   get("X-Consumer-Custom-Id"),
		credential: get("X-Credential-Identifier"),
		anonymous:  get("X-Anonymous-Consumer"),
	}
}

// The identities of the standard consumers file.
var (
	idAlice        = identity{"alice", "a11ce", "cust-1", "alice-key", absent}
	idAliceSpecial = identity{"alice", "a11ce", "cust-1", "alice-special", absent}
	idBob          = identity{"bob", "bob", absent, "bob-hashed", absent}
	idBobNoID      = identity{"bob", "bob", absent, "bob#3", absent}
	idGuest        = identity{"guest", "anon-1", absent, absent, "true"}
	idNobody       = identity{absent, absent, absent, absent, absent}
)

// wantIdentity checks that the request reached the upstream as who.
func wantIdentity(t testing.TB, r *response, who identity) *echo {
	t.Helper()
	e := r.echo(t)
	if got := identityOf(e); got != who {
		t.Errorf("upstream was told %+v, want %+v", got, who)
	}
	return e
}

// forged are identity headers a client tries to slip through.
var forged = []string{
	"X-Consumer-Id", "forged-id",
	"x-consumer-custom-id", "forged-custom",
	"X-CONSUMER-USERNAME", "forged-user",
	"X-Credential-Identifier", "forged-cred",
	"X-Anonymous-Consumer", "forged",
}

// part is a field or, with a file name, a file of a multipart body.
type part struct{ name, file, value string }

// multipartBody encodes parts; it returns the body and its content type.
func multipartBody(t testing.TB, parts ...part) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.file != "" {
			w, err = mw.CreateFormFile(p.name, p.file)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, p.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

// chunked hides a body's length, so the client sends it chunked.
func chunked(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }

// postChunked sends a POST whose body goes chunked, with no Content-Length.
func postChunked(t testing.TB, url, contentType string, body []byte, hdr ...string) *response {
	t.Helper()
	r := req(http.MethodPost, url, chunked(body), append([]string{"Content-Type", contentType}, hdr...)...)
	r.ContentLength = -1
	return do(t, r)
}

// wantBody checks that the upstream got exactly body, with a length that
// matches it.
func wantBody(t testing.TB, e *echo, body []byte) {
	t.Helper()
	if !bytes.Equal(e.Body, body) {
		t.Errorf("upstream got body %q, want %q", e.Body, body)
	}
	if e.ContentLength != -1 && e.ContentLength != int64(len(e.Body)) {
		t.Errorf("upstream got Content-Length %d for a body of %d bytes", e.ContentLength, len(e.Body))
	}
}

const (
	formType = "application/x-www-form-urlencoded"
	jsonType = "application/json"
)

// escapeAll percent-encodes every byte of s.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02x", s[i])
	}
	return b.String()
}

// rawRequest builds an HTTP/1.1 request byte for byte, for what Go's client
// refuses to send: hdr holds name, value pairs written as given. A body
// gets a Content-Length.
func rawRequest(host, method, target string, body []byte, hdr ...string) []byte {
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

// sendRaw writes raw to a new connection to addr and reads one answer,
// all within a deadline.
func sendRaw(addr string, raw []byte) (*response, error) {
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

// outcome is what a request should come to: the upstream, told who; a
// failure of key_auth; or an answer of Go's own HTTP server, for a request
// that never reaches Caddy's handlers.
type outcome struct {
	who     identity
	status  int
	message string
	// server: Go's HTTP server itself answers with this status in plain
	// text (a control byte in a header, a header block over
	// max_header_size); key_auth never sees the request.
	server int
	// upstream, when set, checks what the upstream got of a request that
	// passed.
	upstream func(t testing.TB, e *echo)
}

func pass(who identity) outcome { return outcome{who: who, status: http.StatusOK} }
func reject(message string) outcome {
	return outcome{status: http.StatusUnauthorized, message: message}
}
func serverRefuses(status int) outcome { return outcome{server: status} }

// then adds a check of what the upstream got to an outcome that passes.
func (o outcome) then(upstream func(t testing.TB, e *echo)) outcome {
	o.upstream = upstream
	return o
}

func (o outcome) String() string {
	switch {
	case o.server != 0:
		return fmt.Sprintf("%d from Go's server", o.server)
	case o.status == http.StatusOK:
		return fmt.Sprintf("200 as %s", o.who.username)
	}
	return fmt.Sprintf("%d %s", o.status, o.message)
}

// check checks an answer against the outcome; challenge is the expected
// WWW-Authenticate of a 401. It returns the echo of a request that passed.
// A 5xx nobody asked for stops the test at once.
func (o outcome) check(t testing.TB, r *response, challenge string) *echo {
	t.Helper()
	if r.status >= 500 && o.status < 500 {
		t.Fatalf("a 5xx: %s", r)
	}
	if o.server != 0 {
		if r.status != o.server || r.fromUpstream() || !bytes.HasPrefix(r.body, []byte(fmt.Sprint(o.server))) {
			t.Fatalf("want Go's server's %d, got %s", o.server, r)
		}
		return nil
	}
	if o.status == http.StatusOK {
		e := wantIdentity(t, r, o.who)
		if o.upstream != nil {
			o.upstream(t, e)
		}
		return e
	}
	wantFailure(t, r, o.status, o.message, challenge)
	return nil
}

// quick checks an answer by its status and source only, on any goroutine.
func (o outcome) quick(r *response) error {
	status := o.status
	if o.server != 0 {
		status = o.server
	}
	if r.status != status || (r.status == http.StatusOK) != r.fromUpstream() {
		return fmt.Errorf("got %d (from upstream %v), want %s", r.status, r.fromUpstream(), o)
	}
	return nil
}

// call is a request: GET unless it has a body or a content type, which is
// POSTed. It is built anew for every send, so it can be sent again.
type call struct {
	path    string   // path and query, default "/"
	hdr     []string // header pairs, sent as spelled
	ctype   string   // the body's content type
	body    string
	chunked bool // send the body with no Content-Length
	// raw sends the request byte for byte over a bare connection, for
	// what Go's client refuses to send (a control byte, a bad name).
	raw bool
}

func (c call) target() string {
	if c.path == "" {
		return "/"
	}
	return c.path
}

func (c call) method() string {
	if c.body == "" && c.ctype == "" {
		return http.MethodGet
	}
	return http.MethodPost
}

// request builds the request for the site at base (http://host:port).
func (c call) request(base string) *http.Request {
	if c.method() == http.MethodGet {
		return req(http.MethodGet, base+c.target(), nil, c.hdr...)
	}
	hdr := append([]string{"Content-Type", c.ctype}, c.hdr...)
	if !c.chunked {
		return req(http.MethodPost, base+c.target(), strings.NewReader(c.body), hdr...)
	}
	r := req(http.MethodPost, base+c.target(), chunked([]byte(c.body)), hdr...)
	r.ContentLength = -1
	return r
}

// exchange sends the call with cl and reads the answer, without a test, so
// that it can run on any goroutine.
func (c call) exchange(cl *http.Client, base string) (*response, error) {
	if !c.raw {
		return send(cl, c.request(base))
	}
	host := strings.TrimPrefix(base, "http://")
	hdr := c.hdr
	var body []byte
	if c.method() == http.MethodPost {
		hdr = append([]string{"Content-Type", c.ctype}, hdr...)
		body = []byte(c.body)
	}
	return sendRaw(host, rawRequest(host, c.method(), c.target(), body, hdr...))
}

// send sends the call with client, as do does, failing the test if there
// is no answer.
func (c call) send(t testing.TB, base string) *response {
	t.Helper()
	if !c.raw {
		return do(t, c.request(base))
	}
	r, err := c.exchange(client, base)
	if err != nil {
		t.Fatalf("%s: no answer: %v", c.target(), err)
	}
	return r
}

// testCase is a named call and the outcome it must come to.
type testCase struct {
	name string
	call
	want outcome
}

// getCase is a case of a GET of path with header pairs.
func getCase(name, path string, want outcome, hdr ...string) testCase {
	return testCase{name: name, call: call{path: path, hdr: hdr}, want: want}
}

// postCase is a case of a POST of body with a content type; chunk hides
// the length.
func postCase(name, path, ctype string, body []byte, chunk bool, want outcome, hdr ...string) testCase {
	return testCase{name: name, call: call{path: path, hdr: hdr, ctype: ctype, body: string(body), chunked: chunk}, want: want}
}

// rawCase is a case of a GET written byte for byte: hdr pairs are written
// as given.
func rawCase(name, path string, want outcome, hdr ...string) testCase {
	return testCase{name: name, call: call{path: path, hdr: hdr, raw: true}, want: want}
}

// runCases sends each case once with cl and checks its answer in full.
func runCases(t *testing.T, cl *http.Client, base string, cases []testCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.exchange(cl, base)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			c.want.check(t, r, "Key")
		})
	}
}

// hammerCases sends every case rounds times from workers goroutines and
// returns the first few wrong answers.
func hammerCases(cl *http.Client, base string, cases []testCase, rounds, workers int) []string {
	var mu sync.Mutex
	var bad []string
	jobs := make(chan testCase)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c := range jobs {
				r, err := c.exchange(cl, base)
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
