package integration

// The integration tests run key_auth in a real Caddy, in this process, on
// free ports, against a real upstream that echoes what it got. One file per
// feature holds every test of that feature:
//
//   locations_test.go        where a key is found: names, header, cookie,
//                            query, body, duplicates, Authorization, HTTP/2
//   matrix_test.go           every on/off combination of the locations
//   body_test.go             form, JSON and multipart bodies, limits, timeouts
//   hide_credentials_test.go hide_credentials on every path and location
//   cookies_test.go          cookie spellings upstreams read, cross-site
//                            requests (cookie_cross_site)
//   identity_test.go         identity headers and placeholders, forgery
//   anonymous_test.go        the anonymous consumer, CORS preflight
//   failures_test.go         failure responses, realms, handle_errors
//   acl_test.go              allow, deny, groups, labels and tags
//   matcher_test.go          the consumer matcher
//   canary_test.go           canary keys
//   logs_test.go             no key in any log line or metric
//   source_file_test.go      consumers from a file
//   source_http_test.go      consumers from an HTTP source
//   source_redis_test.go     consumers in Redis
//   source_write_test.go     writing through to a source (keyauth.Writer)
//   source_admin_test.go     the admin endpoints and the metrics
//   extra_source_test.go     a source module of another package
//   reload_test.go           config reloads and their cost
//   concurrency_test.go      long runs under traffic, leaks
//   caddyfile_test.go, json_test.go   the two config languages
//   cli_test.go, binary_test.go       the caddy key-auth command, the binary
//   readme_test.go           the README's examples, run as written
//
// The toolkit:
//   helpers_caddy_test.go   ports, the in-process Caddy, loading configs
//                           (env.site for the usual site block), the admin
//                           API, a test's env (directory, consumers file,
//                           upstream, logs)
//   helpers_http_test.go    clients, requests, answers, the echo upstream,
//                           identities; a call (a request) and its outcome,
//                           named together in a testCase
//   helpers_source_test.go  the HTTP server that plays a consumers source,
//                           consumer documents, JSON configs of sources
//   helpers_wait_test.go    waiting on conditions; goroutines, pollers, files
//   fixtures_test.go        documents and configs several features share

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// The ports of this test process, free when it started: the admin
// endpoint, Caddy's http_port and https_port, and the sites'. Tests run one
// after the other against one Caddy, so they share them; other processes
// (another package, another checkout) get others.
var (
	ports                          = freePorts(11)
	adminPort, httpPort, httpsPort = ports[0], ports[1], ports[2]
	sitePort                       = [8]int(ports[3:])
)

func init() { caddytest.Default.AdminPort = adminPort }

// freePorts chooses n distinct ports on 127.0.0.1 that are free now: it
// holds every listener until all are chosen, then lets them go for Caddy
// to take. It picks them below the kernel's ephemeral range: a port in that
// range, free between two tests, can be taken meanwhile by any outgoing
// connection of the machine (the xcaddy build's downloads, another test
// process's clients), and every later test of this process would fail to
// listen on it. Without that range to read, the kernel chooses.
func freePorts(n int) []int {
	var out []int
	low := ephemeralLow()
	for tries := 0; len(out) < n; tries++ {
		addr := "127.0.0.1:0"
		if low > 10000+n && tries < 10000 {
			addr = "127.0.0.1:" + strconv.Itoa(10000+rand.IntN(low-10000))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "127.0.0.1:0" {
				panic(fmt.Sprintf("choosing a free port: %v", err))
			}
			continue // taken: another
		}
		defer ln.Close()
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0 when
// it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return low
}

var (
	adminAddr = "localhost:" + strconv.Itoa(adminPort)
	adminURL  = "http://" + adminAddr
	// site is the address of the first site of most configs; siteN are
	// the others (siteURL(i) for more; templates have {{.Site6}} and on).
	site  = siteURL(0)
	site2 = siteURL(1)
	site3 = siteURL(2)
	site4 = siteURL(3)
	site5 = siteURL(4)
)

func siteURL(i int) string { return "http://localhost:" + strconv.Itoa(sitePort[i]) }

// idleConfig is the config between tests: no apps, so the handlers of a
// test are cleaned up and its stores released.
var idleConfig = `{"admin": {"listen": "` + adminAddr + `", "config": {"persist": false}}}`

// globalOptions is the global options block of a Caddyfile: the test
// admin endpoint, this process's ports, no automatic HTTPS, and extra
// lines (a log block, server options).
func globalOptions(extra string) string {
	return fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\thttp_port %d\n\thttps_port %d\n\tauto_https off\n%s\n}\n",
		adminAddr, httpPort, httpsPort, extra)
}

// debugLog is a log block that writes every line at DEBUG, as JSON, into
// caddy.log in dir.
func debugLog(dir string) string {
	return "\tlog {\n\t\toutput file " + dir + "/caddy.log\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n"
}

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

// env is one test's Caddy: its directory, consumers file and upstream.
type env struct {
	t         testing.TB
	dir       string
	consumers string // the consumers file, a copy of testdata/consumers.json
	up        *upstream
	vars      map[string]string // extra template values
}

// newEnv prepares a test's directory, consumers file and upstream. When the
// test ends, Caddy is left with an empty config (so no store outlives the
// test) and the module's log lines are checked for keys.
func newEnv(t testing.TB) *env {
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

// unload loads idleConfig.
func unload(t testing.TB) {
	t.Helper()
	if status, body, err := loadConfig(idleConfig, "json"); err != nil || status != http.StatusOK {
		t.Errorf("unloading the config: %d %s %v", status, body, err)
	}
}

// unloading holds the tests that unload Caddy when they end.
var unloading sync.Map

// unloadAtEnd loads idleConfig when the test ends, once however often it
// is asked, so no store or poller outlives the test that made it.
func unloadAtEnd(t testing.TB) {
	if _, done := unloading.LoadOrStore(t, true); !done {
		t.Cleanup(func() { unload(t); unloading.Delete(t) })
	}
}

// adminClient opens a connection per request: every load replaces Caddy's
// admin server, and a kept-alive connection to the old one ends in EOF.
var adminClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   2 * time.Minute,
}

// loadConfig posts a config to the admin API; adapter is "json" or
// "caddyfile". It does not fail the test, so that a refused config can be
// checked. A connection the replaced admin server drops (EOF) is tried
// again, which is safe: loading the running config again changes nothing,
// and a refused one is refused again.
func loadConfig(cfg, adapter string) (int, string, error) {
	ct := "application/json"
	if adapter != "json" {
		ct = "text/" + adapter
	}
	var err error
	for range 5 {
		var res *http.Response
		res, err = adminClient.Post(adminURL+"/load", ct, strings.NewReader(cfg))
		if err != nil {
			time.Sleep(50 * time.Millisecond) // pacing: the new admin server is coming up
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), nil
	}
	return 0, "", err
}

// mustLoad loads a config that must load, failing the test otherwise.
func mustLoad(t testing.TB, cfg, adapter string) {
	t.Helper()
	if status, body, err := loadConfig(cfg, adapter); err != nil || status != http.StatusOK {
		t.Fatalf("loading the config: %d %s %v\n%s", status, body, err, cfg)
	}
}

// ensureCaddy starts the in-process Caddy, through caddytest, unless it
// runs already.
func ensureCaddy(t testing.TB) {
	t.Helper()
	if res, err := adminClient.Get(adminURL + "/config/"); err == nil {
		res.Body.Close()
		return
	}
	failed := t.Failed()
	caddytest.NewTester(t).InitServer(idleConfig, "json")
	if t.Failed() && !failed {
		t.FailNow()
	}
}

// startCaddy runs cfg in the in-process Caddy, starting it if need be, and
// fails the test now if Caddy refuses it or does not run it. Caddy is
// unloaded when the test ends.
func startCaddy(t testing.TB, cfg, adapter string) {
	t.Helper()
	ensureCaddy(t)
	unloadAtEnd(t)
	mustLoad(t, cfg, adapter)
	// caddytest loads it again, which changes nothing, and checks that it
	// runs. Its client is http.DefaultTransport's: no connection kept to
	// an admin server that is gone.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	failed := t.Failed()
	caddytest.NewTester(t).InitServer(cfg, adapter)
	if t.Failed() && !failed {
		t.FailNow()
	}
}

// adminDo calls the admin API and returns the status and body.
func adminDo(t testing.TB, method, path string, body []byte) (int, []byte) {
	t.Helper()
	var err error
	for range 3 {
		var r *http.Request
		if r, err = http.NewRequest(method, adminURL+path, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
		var res *http.Response
		// A connection to an admin server a load has just replaced may be
		// dropped before the request is read (see loadConfig): send again.
		if res, err = adminClient.Do(r); err != nil {
			t.Logf("%s %s: %v; again", method, path, err)
			continue
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	t.Fatalf("%s %s: %v", method, path, err)
	return 0, nil
}

// adminRefresh is POST /key_auth/sources/refresh.
func adminRefresh(t testing.TB) (int, string) {
	t.Helper()
	status, body := adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	return status, string(body)
}

// adminSources is GET /key_auth/sources.
func adminSources(t testing.TB) []sources.SourceStatus {
	t.Helper()
	code, body := adminDo(t, http.MethodGet, "/key_auth/sources", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /key_auth/sources: %d %s", code, body)
	}
	var out []sources.SourceStatus
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("GET /key_auth/sources: %v in %s", err, body)
	}
	return out
}

// metrics reads the admin /metrics as name{labels} → value, and the text.
func metrics(t testing.TB) (map[string]float64, string) {
	t.Helper()
	code, body := adminDo(t, http.MethodGet, "/metrics", nil)
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

// storesAt lists the live consumer stores whose location contains loc (a
// file's path, a source's URL).
func storesAt(loc string) []*sources.Store {
	var out []*sources.Store
	for _, s := range sources.Stores() {
		if strings.Contains(s.Status().Location, loc) {
			out = append(out, s)
		}
	}
	return out
}

// storeAt is the live store at loc, or nil; two fail the test.
func storeAt(t testing.TB, loc string) *sources.Store {
	t.Helper()
	switch s := storesAt(loc); len(s) {
	case 0:
		return nil
	case 1:
		return s[0]
	default:
		t.Fatalf("%d live stores at %s", len(s), loc)
		return nil
	}
}

// render fills a config template: {{.Global}} (Caddyfiles only: the global
// options with a DEBUG log into caddy.log and e.vars["GlobalExtra"]),
// {{.Admin}}, {{.HTTPPort}}, {{.HTTPSPort}}, {{.Site}}..{{.Site8}} (site
// URLs), {{.Port}}..{{.Port8}} (their ports), {{.Dir}}, {{.Consumers}},
// {{.Up}} (the upstream's dial address) and e.vars.
func (e *env) render(tmpl string) string {
	e.t.Helper()
	data := map[string]string{
		"Dir": e.dir, "Consumers": e.consumers, "Up": e.up.addr(),
		"Admin": adminAddr, "HTTPPort": strconv.Itoa(httpPort), "HTTPSPort": strconv.Itoa(httpsPort),
	}
	for i, p := range sitePort {
		n := ""
		if i > 0 {
			n = strconv.Itoa(i + 1)
		}
		data["Site"+n], data["Port"+n] = siteURL(i), strconv.Itoa(p)
	}
	for k, v := range e.vars {
		data[k] = v
	}
	data["Global"] = globalOptions(debugLog(e.dir) + e.vars["GlobalExtra"])
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
	startCaddy(e.t, e.render(tmpl), adapter)
}

// keyAuthSite is the usual site block of a Caddyfile template: at addr
// ({{.Site}}, {{.Site2}}, ...), key_auth with the option lines given and
// the env's consumers file, in front of reverse_proxy to the echo upstream.
func keyAuthSite(addr string, options ...string) string {
	var b strings.Builder
	b.WriteString(addr + " {\n\tkey_auth {\n")
	for _, o := range options {
		b.WriteString("\t\t" + o + "\n")
	}
	b.WriteString("\t\tconsumers file {{.Consumers}}\n\t}\n\treverse_proxy {{.Up}}\n}\n")
	return b.String()
}

// site loads a Caddyfile of one keyAuthSite at {{.Site}} with the options
// given.
func (e *env) site(options ...string) {
	e.t.Helper()
	e.sites(keyAuthSite("{{.Site}}", options...))
}

// sites loads a Caddyfile of the global options and the site blocks given.
func (e *env) sites(blocks ...string) {
	e.t.Helper()
	e.load("{{.Global}}\n"+strings.Join(blocks, ""), "caddyfile")
}

// loadError renders a config and posts it to the admin API, which must
// refuse it; it returns the error message.
func (e *env) loadError(tmpl, adapter string) string {
	e.t.Helper()
	ensureCaddy(e.t)
	status, b, err := loadConfig(e.render(tmpl), adapter)
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

// writeConsumers replaces the consumers file atomically.
func (e *env) writeConsumers(doc string) { writeAtomic(e.t, e.consumers, doc) }

// writeAtomic replaces a file atomically, a temporary file renamed over
// it, as the file source asks.
func writeAtomic(t testing.TB, path, content string) {
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

// readLines returns the non-empty lines of a file; a missing file has none.
func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
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

// countLines counts the lines of a file that contain every one of subs.
func countLines(t testing.TB, path string, subs ...string) int {
	t.Helper()
	n := 0
	for _, l := range readLines(t, path) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// logLines returns the JSON lines of a log file in the test's directory.
func (e *env) logLines(name string) []string { return readLines(e.t, filepath.Join(e.dir, name)) }

// logEntry is a decoded log line; the fields are the line's own.
type logEntry map[string]any

func (l logEntry) str(k string) string { s, _ := l[k].(string); return s }

// moduleLogLines are the lines written by the module's loggers: the
// handlers' (http.handlers.key_auth, http.handlers.key_auth_api), the
// sources' (key_auth.sources.*) and the app's (key_auth).
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
		name == "http.handlers.key_auth" || strings.HasPrefix(name, "http.handlers.key_auth.") ||
		name == "http.handlers.key_auth_api"
}

// waitLog waits for a line of a log file for which match holds: Caddy may
// write the line after the response has gone out.
func (e *env) waitLog(name string, match func(logEntry) bool) logEntry {
	e.t.Helper()
	var found logEntry
	eventually(e.t, "a matching line in "+name, func() bool {
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
