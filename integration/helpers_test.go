package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// The keys of testdata/consumers.json, the standard consumers file.
const (
	keyAlice   = "alice-secret-0001"           // alice (id a11ce, custom id cust-1), credential alice-key
	keySpecial = "sp ace+plus/slash=eq&amp%25" // alice, credential alice-special
	keyBob     = "bob-secret-0002"             // bob, stored as a hash, credential bob-hashed
	keyExpired = "bob-expired-0003"            // bob, expired in 2020
	keyNoID    = "bob-noid-0004"               // bob, credential without an id: bob#3
	keyWrong   = "wrong-secret-9999"           // nobody's
)

// secrets are strings no log line of the module may contain.
var secrets = []string{keyAlice, keySpecial, keyBob, keyExpired, keyNoID, keyWrong,
	"64708caec1a9013e7e2ea53b462e4cbca55c79f7e8cdcf61da944f2a05effebb"}

const (
	adminURL = "http://localhost:2999"
	// site is the address of the first site of most configs; siteN are
	// the others.
	site  = "http://localhost:9081"
	site2 = "http://localhost:9082"
	site3 = "http://localhost:9083"
)

// global is the global options block of every Caddyfile config: the test
// admin endpoint, ports in the test range and every log line at DEBUG into
// caddy.log in the test's directory.
const global = `{
	admin localhost:2999
	persist_config off
	http_port 9080
	https_port 9443
	auto_https off
	log {
		output file {{.Dir}}/caddy.log
		format json
		level DEBUG
	}
{{.GlobalExtra}}}
`

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

func newUpstream(t *testing.T) *upstream {
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

// env is one test's Caddy: its directory, consumers file and upstream.
type env struct {
	t         *testing.T
	dir       string
	consumers string // the consumers file, a copy of testdata/consumers.json
	up        *upstream
	vars      map[string]string // extra template values
}

// newEnv prepares a test's directory, consumers file and upstream. When the
// test ends, Caddy is left with an empty config (so no store outlives the
// test) and the module's log lines are checked for keys.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), up: newUpstream(t), vars: map[string]string{}}
	e.consumers = filepath.Join(e.dir, "consumers.json")
	doc, err := os.ReadFile("testdata/consumers.json")
	if err != nil {
		t.Fatal(err)
	}
	e.writeConsumers(string(doc))
	t.Cleanup(func() {
		unload(t)
		for _, l := range e.moduleLogLines("caddy.log") {
			for _, s := range secrets {
				if strings.Contains(l, s) {
					t.Errorf("a log line of the module contains the key %q: %s", s, l)
				}
			}
		}
	})
	return e
}

// idle is the config between tests: no apps, so the handlers of a test are
// cleaned up and its stores released.
const idle = `{"admin": {"listen": "localhost:2999", "config": {"persist": false}}}`

// unload loads idle.
func unload(t *testing.T) {
	t.Helper()
	if status, body, err := postLoad(idle, "json"); err != nil || status != http.StatusOK {
		t.Errorf("unloading the config: %d %s %v", status, body, err)
	}
}

// adminClient opens a connection per request: every load replaces Caddy's
// admin server, and a kept-alive connection to the old one ends in EOF.
var adminClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   time.Minute,
}

// postLoad posts a config to the admin API. A connection the replaced admin
// server drops is tried again, which is safe: loading the running config
// again changes nothing, and a refused one is refused again.
func postLoad(cfg, adapter string) (int, string, error) {
	ct := "application/json"
	if adapter != "json" {
		ct = "text/" + adapter
	}
	var err error
	for range 5 {
		var res *http.Response
		res, err = adminClient.Post(adminURL+"/load", ct, strings.NewReader(cfg))
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), nil
	}
	return 0, "", err
}

// ensureCaddy starts the in-process Caddy, through caddytest, unless it
// runs already.
func ensureCaddy(t *testing.T) {
	t.Helper()
	if res, err := adminClient.Get(adminURL + "/config/"); err == nil {
		res.Body.Close()
		return
	}
	failed := t.Failed()
	caddytest.NewTester(t).InitServer(idle, "json")
	if t.Failed() && !failed {
		t.FailNow()
	}
}

// writeConsumers replaces the consumers file atomically: a temporary file
// renamed over it.
func (e *env) writeConsumers(doc string) { writeAtomic(e.t, e.consumers, doc) }

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	if err := writeFileAtomic(path, content); err != nil {
		t.Fatal(err)
	}
}

func writeFileAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// render fills a config template: {{.Global}} (Caddyfiles only, with
// e.vars["GlobalExtra"] inside), {{.Dir}}, {{.Consumers}}, {{.Up}} (the
// upstream's dial address) and e.vars.
func (e *env) render(tmpl string) string {
	e.t.Helper()
	data := map[string]string{"Dir": e.dir, "Consumers": e.consumers, "Up": e.up.addr(), "GlobalExtra": ""}
	for k, v := range e.vars {
		data[k] = v
	}
	var g bytes.Buffer
	if err := template.Must(template.New("global").Parse(global)).Execute(&g, data); err != nil {
		e.t.Fatal(err)
	}
	data["Global"] = g.String()
	var out bytes.Buffer
	if err := template.Must(template.New("config").Parse(tmpl)).Execute(&out, data); err != nil {
		e.t.Fatal(err)
	}
	return out.String()
}

// load renders a config template and runs it in Caddy; adapter is
// "caddyfile" or "json". It fails the test now if Caddy refuses it.
func (e *env) load(tmpl, adapter string) {
	e.t.Helper()
	cfg := e.render(tmpl)
	ensureCaddy(e.t)
	status, body, err := postLoad(cfg, adapter)
	if err != nil || status != http.StatusOK {
		e.t.Fatalf("loading the config: %d %s %v\n%s", status, body, err, cfg)
	}
	// caddytest loads it again, which changes nothing, and checks that it
	// runs. Its client is http.DefaultTransport's: no connection kept to
	// an admin server that is gone.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	failed := e.t.Failed()
	caddytest.NewTester(e.t).InitServer(cfg, adapter)
	if e.t.Failed() && !failed {
		e.t.FailNow()
	}
}

// loadError renders a config and posts it to the admin API, which must
// refuse it; it returns the error message.
func (e *env) loadError(tmpl, adapter string) string {
	e.t.Helper()
	ensureCaddy(e.t)
	status, b, err := postLoad(e.render(tmpl), adapter)
	if err != nil {
		e.t.Fatal(err)
	}
	if status == http.StatusOK {
		e.t.Fatalf("the config loaded; want it refused")
	}
	var msg struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(b), &msg); err != nil || msg.Error == "" {
		e.t.Fatalf("admin API answered %d: %s", status, b)
	}
	return msg.Error
}

// logLines returns the JSON lines of a log file in the test's directory.
func (e *env) logLines(name string) []string {
	b, err := os.ReadFile(filepath.Join(e.dir, name))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// logEntry is a decoded log line; the fields are the line's own.
type logEntry map[string]any

func (l logEntry) str(k string) string { s, _ := l[k].(string); return s }

// moduleLogLines are the lines written by the module's loggers: the
// handler's (http.handlers.key_auth), the sources' (key_auth.sources.*) and
// the app's (key_auth).
func (e *env) moduleLogLines(name string) []string {
	var out []string
	for _, l := range e.logLines(name) {
		var le logEntry
		if json.Unmarshal([]byte(l), &le) != nil {
			continue
		}
		if isModuleLogger(le.str("logger")) {
			out = append(out, l)
		}
	}
	return out
}

func isModuleLogger(name string) bool {
	return name == "key_auth" || strings.HasPrefix(name, "key_auth.") ||
		name == "http.handlers.key_auth" || strings.HasPrefix(name, "http.handlers.key_auth.")
}

// waitLog waits for a line of a log file for which match holds: Caddy may
// write the line after the response has gone out.
func (e *env) waitLog(name string, match func(logEntry) bool) logEntry {
	e.t.Helper()
	var found logEntry
	eventually(e.t, 5*time.Second, "a matching line in "+name, func() bool {
		for _, l := range e.logLines(name) {
			var le logEntry
			if json.Unmarshal([]byte(l), &le) == nil && match(le) {
				found = le
				return true
			}
		}
		return false
	})
	return found
}

// eventually polls cond every 20ms until it holds, failing the test after
// timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storesFor lists the live consumer stores whose source names path.
func storesFor(path string) []*consumers.Store {
	var out []*consumers.Store
	for _, s := range consumers.Stores() {
		if s.Status().Location == path {
			out = append(out, s)
		}
	}
	return out
}

// client talks to Caddy. Without keep-alive, no request ever lands on a
// connection of a config that has been replaced.
var client = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
	Timeout:   30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
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
func (r *response) echo(t *testing.T) *echo {
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
// and it is sent exactly as spelled.
func req(t *testing.T, method, url string, body io.Reader, hdr ...string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr)%2 != 0 {
		t.Fatal("req: odd number of header arguments")
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

// do sends a request and reads the answer.
func do(t *testing.T, r *http.Request) *response {
	t.Helper()
	res, err := client.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", r.Method, r.URL, err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}
}

// get sends a GET with the given header pairs.
func get(t *testing.T, url string, hdr ...string) *response {
	t.Helper()
	return do(t, req(t, http.MethodGet, url, nil, hdr...))
}

// post sends a POST with a body of the given content type.
func post(t *testing.T, url, contentType string, body []byte, hdr ...string) *response {
	t.Helper()
	return do(t, req(t, http.MethodPost, url, bytes.NewReader(body), append([]string{"Content-Type", contentType}, hdr...)...))
}

// The failure messages of the contract.
const (
	msgNoKey     = "No API key found in request"
	msgDuplicate = "Duplicate API key found"
	msgInvalid   = "Unauthorized" // Kong 3.7+
)

// wantFailure checks an answer of key_auth itself: the status, a JSON body
// that is exactly {"message": message}, and for a 401 the challenge.
func wantFailure(t *testing.T, r *response, status int, message, challenge string) {
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
func want401(t *testing.T, r *response, message string) {
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
func wantIdentity(t *testing.T, r *response, who identity) *echo {
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
func multipartBody(t *testing.T, parts ...part) ([]byte, string) {
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
func postChunked(t *testing.T, url, contentType string, body []byte, hdr ...string) *response {
	t.Helper()
	r := req(t, http.MethodPost, url, chunked(body), append([]string{"Content-Type", contentType}, hdr...)...)
	r.ContentLength = -1
	return do(t, r)
}

// wantBody checks that the upstream got exactly body, with a length that
// matches it.
func wantBody(t *testing.T, e *echo, body []byte) {
	t.Helper()
	if !bytes.Equal(e.Body, body) {
		t.Errorf("upstream got body %q, want %q", e.Body, body)
	}
	if e.ContentLength != -1 && e.ContentLength != int64(len(e.Body)) {
		t.Errorf("upstream got Content-Length %d for a body of %d bytes", e.ContentLength, len(e.Body))
	}
}

// outcome is what a request should come to: the upstream, told who, or a
// failure of key_auth.
type outcome struct {
	who     identity
	status  int
	message string
}

func pass(who identity) outcome { return outcome{who: who, status: http.StatusOK} }
func reject(message string) outcome {
	return outcome{status: http.StatusUnauthorized, message: message}
}

func (o outcome) String() string {
	if o.status == http.StatusOK {
		return fmt.Sprintf("200 as %s", o.who.username)
	}
	return fmt.Sprintf("%d %s", o.status, o.message)
}

// check checks an answer against the outcome; challenge is the expected
// WWW-Authenticate of a 401. It returns the echo of a request that passed.
func (o outcome) check(t *testing.T, r *response, challenge string) *echo {
	t.Helper()
	if o.status == http.StatusOK {
		return wantIdentity(t, r, o.who)
	}
	wantFailure(t, r, o.status, o.message, challenge)
	return nil
}

// call is a request of a table: GET unless it has a body, which is POSTed.
type call struct {
	path    string   // path and query, default "/"
	hdr     []string // header pairs, sent as spelled
	ctype   string   // the body's content type
	body    string
	chunked bool // send the body with no Content-Length
}

func (c call) send(t *testing.T, base string) *response {
	t.Helper()
	path := c.path
	if path == "" {
		path = "/"
	}
	if c.body == "" && c.ctype == "" {
		return get(t, base+path, c.hdr...)
	}
	if c.chunked {
		return postChunked(t, base+path, c.ctype, []byte(c.body), c.hdr...)
	}
	return post(t, base+path, c.ctype, []byte(c.body), c.hdr...)
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
