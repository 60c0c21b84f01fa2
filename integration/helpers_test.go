package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
	http_port 9080
	https_port 9443
	auto_https off
	log {
		output file {{.Dir}}/caddy.log
		format json
		level DEBUG
	}
}
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

// unload replaces the running config with one that has no apps, so the
// handlers of a test are cleaned up and its stores released.
func unload(t *testing.T) {
	t.Helper()
	res, err := http.Post(adminURL+"/load", "application/json",
		strings.NewReader(`{"admin":{"listen":"localhost:2999"}}`))
	if err != nil {
		t.Errorf("unloading the config: %v", err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Errorf("unloading the config: %s: %s", res.Status, b)
	}
}

// writeConsumers replaces the consumers file atomically: a temporary file
// renamed over it.
func (e *env) writeConsumers(doc string) { writeAtomic(e.t, e.consumers, doc) }

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// render fills a config template: {{.Global}} (Caddyfiles only), {{.Dir}},
// {{.Consumers}}, {{.Up}} (the upstream's dial address) and e.vars.
func (e *env) render(tmpl string) string {
	e.t.Helper()
	data := map[string]string{"Dir": e.dir, "Consumers": e.consumers, "Up": e.up.addr()}
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
	caddytest.NewTester(e.t).InitServer(e.render(tmpl), adapter)
	if e.t.Failed() {
		e.t.FailNow()
	}
}

// loadError renders a config and posts it to the admin API, which must
// refuse it; it returns the error message.
func (e *env) loadError(tmpl, adapter string) string {
	e.t.Helper()
	// Make sure Caddy runs: caddytest starts it with the first config.
	caddytest.NewTester(e.t).InitServer(e.render(`{{.Global}}`), "caddyfile")
	ct := "application/json"
	if adapter != "json" {
		ct = "text/" + adapter
	}
	res, err := http.Post(adminURL+"/load", ct, strings.NewReader(e.render(tmpl)))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusOK {
		e.t.Fatalf("the config loaded; want it refused")
	}
	var msg struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &msg); err != nil || msg.Error == "" {
		e.t.Fatalf("admin API answered %s: %s", res.Status, b)
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
	eventually(e.t, 3*time.Second, "a matching line in "+name, func() bool {
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
	msgInvalid   = "Invalid authentication credentials"
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
