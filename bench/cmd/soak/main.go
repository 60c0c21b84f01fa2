// Command soak is the load driver of bench/soak.sh (which documents the run):
// mixed key_auth traffic against a running Caddy while the consumers and the
// config reload, every answer checked, Caddy's RSS and goroutines sampled.
//
//	soak -dir DIR -pid-file DIR/caddy.pid -load1 cfg1.json -load2 cfg2.json [flags]
//
// It writes the consumers file and serves the HTTP source's document, waits
// for Caddy, then for -duration has vegeta send -rate requests/s of ten kinds
// picked at random, while every -reload-every one reload happens in turn (the
// file rewritten with the other set and the HTTP source switched, an admin
// refresh, a /load of the other config), and samples Caddy just before each
// /load (the checks use these) and every -sample (the series).
//
// What only this driver does is judge every answer against the consumer set
// live when the request went out: for a key of the set, 200 from the upstream
// with the identity of that key's consumer and credential; otherwise 401 with
// the right message (or the anonymous consumer). While a swap is not yet
// confirmed by an admin refresh, the previous set's answer counts too, as
// stale. vegeta paces the load and computes latencies and status counts.
//
// It exits 1 if a check fails: a 5xx, a wrong answer, a connection error or
// timeout outside a /load, a failed reload, or RSS or goroutines at the end
// more than -tolerance away from where they settled.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

var (
	dir         = flag.String("dir", "", "working directory: consumers.json and the report's files go here")
	pidFile     = flag.String("pid-file", "", "file holding Caddy's pid (written once Caddy is started)")
	load1       = flag.String("load1", "", "the config Caddy starts with (adapted), posted to /load every other time")
	load2       = flag.String("load2", "", "the other config, posted to /load first")
	mark1       = flag.String("mark1", "control cfg=1", "the control site's answer under -load1")
	mark2       = flag.String("mark2", "control cfg=2", "the control site's answer under -load2")
	duration    = flag.Duration("duration", 180*time.Second, "how long the load runs")
	rate        = flag.Int("rate", 1000, "requests per second")
	concurrency = flag.Int("concurrency", 16, "most requests in flight (vegeta's workers)")
	nConsumers  = flag.Int("consumers", 3000, "consumers per source, besides the anonymous one")
	nRotating   = flag.Int("rotating", 300, "consumers whose key differs between set A and set B")
	reloadEvery = flag.Duration("reload-every", time.Second, "time between reloads")
	sampleEvery = flag.Duration("sample", 2*time.Second, "time between the series' samples")
	warmup      = flag.Duration("warmup", 30*time.Second, "time before the settled window starts")
	window      = flag.Duration("window", 30*time.Second, "length of the settled and end windows")
	tolerance   = flag.Float64("tolerance", 0.10, "largest relative change from settled to end")
	reloadGrace = flag.Duration("reload-grace", time.Second, "after a /load answers, how long a connection error still counts as the reload's")
	timeout     = flag.Duration("timeout", 10*time.Second, "per request; longer is a hang")
	adminAddr   = flag.String("admin", "127.0.0.1:18519", "Caddy's admin endpoint")
	sourceAddr  = flag.String("source", "127.0.0.1:18510", "where to serve the HTTP source")
	fileAddr    = flag.String("file-site", "127.0.0.1:18501", "key_auth, file source, reverse_proxy")
	anonAddr    = flag.String("anon-site", "127.0.0.1:18502", "key_auth with anonymous guest")
	bodyAddr    = flag.String("body-site", "127.0.0.1:18503", "key_auth with key_in_body and hide_credentials")
	httpAddr    = flag.String("http-site", "127.0.0.1:18504", "key_auth, HTTP source")
	controlAddr = flag.String("control-site", "127.0.0.1:18505", "respond, no key_auth")
)

func main() {
	flag.Parse()
	if *dir == "" || *pidFile == "" || *load1 == "" || *load2 == "" {
		fmt.Fprintln(os.Stderr, "usage: soak -dir DIR -pid-file FILE -load1 CFG.json -load2 CFG.json [flags]")
		os.Exit(2)
	}
	if *nRotating < 1 || *nRotating >= *nConsumers || *concurrency < 1 || *rate < 1 || *sampleEvery <= 0 || *reloadEvery <= 0 {
		fatalf("need 1 <= -rotating < -consumers, and -concurrency, -rate, -sample, -reload-every > 0")
	}
	ok, err := run()
	if err != nil {
		fatalf("%v", err)
	}
	if !ok {
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s soak: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// --- the consumer sets --------------------------------------------------------

// The file source's consumers are user-<i>, the HTTP source's huser-<i>.
// Consumers below nStable keep their key in both sets; the others have one
// key in set A (0) and another in set B (1).
const (
	srcFile = iota
	srcHTTP
)

var srcPrefix = [2]string{"", "h"}

func nStable() int { return *nConsumers - *nRotating }

func keyOf(src int, tag string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "caddy-keyauth-soak %d %s %d", src, tag, i))
	return hex.EncodeToString(sum[:16])
}

func stableKey(src, i int) string   { return keyOf(src, "stable", i) }
func rotKey(src, set, i int) string { return keyOf(src, setName(set), i) }
func setName(set int) string        { return "ab"[set : set+1] }

// document is a source's consumers document for a set, with the anonymous
// consumer "guest", which has no keys.
func document(src, set int) []byte {
	p := srcPrefix[src]
	var b bytes.Buffer
	b.WriteString(`{"consumers": [` + "\n" + `{"username": "guest", "id": "guest-id"}`)
	for i := range *nConsumers {
		key, cred := stableKey(src, i), fmt.Sprintf("%scred-%d", p, i)
		if i >= nStable() {
			key, cred = rotKey(src, set, i), fmt.Sprintf("%srot-%s-%d", p, setName(set), i)
		}
		fmt.Fprintf(&b, ",\n"+`{"username": "%suser-%d", "custom_id": "c-%d", "keys": [{"id": "%s", "key": "%s"}]}`,
			p, i, i, cred, key)
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

func writeAtomic(path string, data []byte) error {
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// setState is which set of a source is live. Between a swap and the admin
// refresh confirming it, the previous set may still answer.
type setState struct {
	mu   sync.Mutex
	snap setSnap
}

type setSnap struct {
	cur, prev int
	confirmed bool
}

func (s *setState) get() setSnap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

func (s *setState) flip() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = setSnap{cur: 1 - s.snap.cur, prev: s.snap.cur}
	return s.snap.cur
}

func (s *setState) confirm() {
	s.mu.Lock()
	s.snap.confirmed = true
	s.mu.Unlock()
}

var sets = [2]*setState{{snap: setSnap{confirmed: true}}, {snap: setSnap{confirmed: true}}}

// The HTTP source's document, served with an ETag.
type servedDoc struct{ body, etag []byte }

var (
	httpDoc                  atomic.Pointer[servedDoc]
	httpDocs                 [2]*servedDoc
	sourceFull, sourceNotMod atomic.Int64
)

func serveSource(w http.ResponseWriter, r *http.Request) {
	d := httpDoc.Load()
	w.Header().Set("ETag", string(d.etag))
	if r.Header.Get("If-None-Match") == string(d.etag) {
		sourceNotMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	sourceFull.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Write(d.body)
}

// --- requests and their right answers -------------------------------------------

const (
	refNone = iota
	refUnknown
	refStable
	refRot
)

type keyRef struct {
	kind, src, i, set int
	key               string
}

var kinds = []string{
	"header-valid", "query-valid", "rotating", "invalid", "missing",
	"anonymous", "body-json", "body-form", "http-source", "control",
}

// request is what the checks need to know of a request vegeta sent: its key,
// and the state of the sets and of the config when it went out.
type request struct {
	kind     int
	anon     bool // the anonymous site
	body     bool // the key_in_body + hide_credentials site
	control  bool
	ref      keyRef
	before   setSnap
	gen      int64
	inLoad   bool
	rid      uint64
	reqStart time.Time
}

func pickRef(src int, refs ...int) keyRef {
	r := keyRef{kind: refs[rand.IntN(len(refs))], src: src}
	switch r.kind {
	case refUnknown:
		r.key = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	case refStable:
		r.i = rand.IntN(nStable())
		r.key = stableKey(src, r.i)
	case refRot:
		r.i, r.set = nStable()+rand.IntN(*nRotating), rand.IntN(2)
		r.key = rotKey(src, r.set, r.i)
	}
	return r
}

// newRequest builds a request of the kind as a vegeta target. Its URL ends
// with rid=<n>, which finds the request again from vegeta's result.
func newRequest(kind int, rid uint64) (*request, vegeta.Target) {
	q := &request{kind: kind, rid: rid}
	t := vegeta.Target{Method: http.MethodGet, Header: http.Header{}}
	url := func(addr, path string) string { return "http://" + addr + path }
	switch kinds[kind] {
	case "header-valid":
		q.ref, t.URL = pickRef(srcFile, refStable), url(*fileAddr, "/h?page=2")
		t.Header.Set("apikey", q.ref.key)
	case "query-valid":
		q.ref = pickRef(srcFile, refStable)
		t.URL = url(*fileAddr, "/q?page=2&apikey="+q.ref.key)
	case "rotating":
		q.ref, t.URL = pickRef(srcFile, refRot), url(*fileAddr, "/r?")
		t.Header.Set("apikey", q.ref.key)
	case "invalid":
		q.ref, t.URL = pickRef(srcFile, refUnknown), url(*fileAddr, "/i?")
		if rand.IntN(2) == 0 {
			t.Header.Set("apikey", q.ref.key)
		} else {
			t.URL += "apikey=" + q.ref.key
		}
	case "missing":
		q.ref, t.URL = pickRef(srcFile, refNone), url(*fileAddr, "/m?")
	case "anonymous":
		q.anon, q.ref, t.URL = true, pickRef(srcFile, refNone, refUnknown, refStable, refRot), url(*anonAddr, "/a?")
		if q.ref.key != "" {
			t.Header.Set("apikey", q.ref.key)
		}
		t.Header.Set("X-Consumer-Username", "root") // a client must not get to forge its identity
	case "body-json":
		q.body, q.ref, t.URL = true, pickRef(srcFile, refStable, refRot), url(*bodyAddr, "/j?")
		t.Method, t.Body = http.MethodPost, fmt.Appendf(nil, `{"data": "soak-%d", "apikey": "%s", "n": [1, 2]}`, rand.IntN(1000), q.ref.key)
		t.Header.Set("Content-Type", "application/json")
	case "body-form":
		q.body, q.ref, t.URL = true, pickRef(srcFile, refStable, refRot), url(*bodyAddr, "/f?")
		t.Method, t.Body = http.MethodPost, fmt.Appendf(nil, "data=soak-%d&apikey=%s&x=y", rand.IntN(1000), q.ref.key)
		t.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case "http-source":
		q.ref, t.URL = pickRef(srcHTTP, refStable, refRot), url(*httpAddr, "/s?")
		t.Header.Set("apikey", q.ref.key)
	case "control":
		q.control, t.URL = true, url(*controlAddr, "/c?")
		t.Method, t.Body = http.MethodPost, []byte("ping")
		t.Header.Set("Content-Type", "text/plain")
	}
	if !strings.HasSuffix(t.URL, "?") {
		t.URL += "&"
	}
	t.URL += "rid=" + strconv.FormatUint(rid, 10)
	if !q.control {
		q.before = sets[q.ref.src].get()
	}
	q.gen, q.inLoad, q.reqStart = loadGen.Load(), loading.Load(), time.Now()
	return q, t
}

func ridOf(url string) (uint64, bool) {
	i := strings.LastIndex(url, "rid=")
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(url[i+4:], 10, 64)
	return n, err == nil
}

// want is the answer expected for a request under one set.
type want struct {
	status            int
	user, cred, msg   string
	anon              bool
	description, body string
}

func expected(q *request, set int) want {
	reject := func(msg string) want {
		if q.anon {
			return want{status: 200, user: "guest", anon: true, description: "guest"}
		}
		return want{status: 401, msg: msg, description: "401 " + msg}
	}
	u := fmt.Sprintf("%suser-%d", srcPrefix[q.ref.src], q.ref.i)
	switch {
	case q.ref.kind == refNone:
		return reject("No API key found in request")
	case q.ref.kind == refUnknown || q.ref.kind == refRot && q.ref.set != set:
		return reject("Unauthorized")
	case q.ref.kind == refStable:
		return want{status: 200, user: u, cred: fmt.Sprintf("%scred-%d", srcPrefix[q.ref.src], q.ref.i), description: u}
	}
	return want{status: 200, user: u, cred: fmt.Sprintf("%srot-%s-%d", srcPrefix[q.ref.src], setName(set), q.ref.i), description: u}
}

// matches reports whether an answer is the one w describes; why says what
// differs. The upstream answers with the lines user=, cred=, anon=, uri=
// and body= of what it received.
func matches(q *request, w want, code int, hdr http.Header, body []byte) (ok bool, why string) {
	if code != w.status {
		return false, fmt.Sprintf("status %d, want %d (%s)", code, w.status, w.description)
	}
	if w.status == 401 {
		var m struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &m)
		if m.Message != w.msg {
			return false, fmt.Sprintf("message %q, want %q", m.Message, w.msg)
		}
		if c := hdr.Get("Www-Authenticate"); !strings.HasPrefix(c, "Key") {
			return false, fmt.Sprintf("WWW-Authenticate %q", c)
		}
		return true, ""
	}
	got := map[string]string{}
	for line := range strings.SplitSeq(string(body), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	anon := map[bool]string{true: "true"}[w.anon]
	if got["user"] != w.user || got["cred"] != w.cred || got["anon"] != anon {
		return false, fmt.Sprintf("upstream saw user=%q cred=%q anon=%q, want user=%q cred=%q anon=%q",
			got["user"], got["cred"], got["anon"], w.user, w.cred, anon)
	}
	if q.body {
		if b := got["body"]; strings.Contains(b, "apikey") || strings.Contains(b, q.ref.key) {
			return false, "hide_credentials: the upstream got the key in the body"
		} else if !strings.Contains(b, "soak-") {
			return false, fmt.Sprintf("the upstream got body %q", b)
		}
	}
	return true, ""
}

// judge checks an answer against the set live when the request went out,
// or one swapped in while it was under way, or, while a swap was not yet
// confirmed, the previous one (stale).
func judge(q *request, code int, hdr http.Header, body []byte) (ok, stale bool, why string) {
	if q.control {
		if b := string(body); code != 200 || b != *mark1 && b != *mark2 {
			return false, false, fmt.Sprintf("control answered %d", code)
		}
		return true, false, ""
	}
	ok, why = matches(q, expected(q, q.before.cur), code, hdr, body)
	if after := sets[q.ref.src].get(); !ok && after.cur != q.before.cur {
		ok, _ = matches(q, expected(q, after.cur), code, hdr, body)
	}
	if !ok && !q.before.confirmed {
		if ok, _ = matches(q, expected(q, q.before.prev), code, hdr, body); ok {
			return true, true, ""
		}
	}
	return ok, false, why
}

// --- the reloads ----------------------------------------------------------------

type span struct{ start, end time.Time }

var (
	loadMu    sync.Mutex
	loadSpans []span
	loadGen   atomic.Int64 // /load calls answered; odd means -load1 serves
	loading   atomic.Bool  // a /load is under way
)

type reloads struct {
	mu                                 sync.Mutex
	rewrites, refreshes, loads         int
	failRewrite, failRefresh, failLoad int
	refreshMs, loadMs                  []float64
	failures                           []string
}

func (r *reloads) record(n, failed *int, ms *[]float64, took time.Duration, what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*n++
	if ms != nil {
		*ms = append(*ms, took.Seconds()*1e3)
	}
	if err != nil {
		*failed++
		if len(r.failures) < 20 {
			r.failures = append(r.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), what, err))
		}
	}
}

// rewrite swaps both sources to their other set: the file is replaced
// atomically, and the HTTP source serves its other document from now on.
func (r *reloads) rewrite(path string, docs [2][]byte) {
	set := sets[srcFile].flip()
	sets[srcHTTP].flip()
	httpDoc.Store(httpDocs[set])
	err := writeAtomic(path, docs[set])
	r.record(&r.rewrites, &r.failRewrite, nil, 0, "rewriting the consumers file", err)
}

type sourceStatus struct {
	Kind, Location  string
	Consumers, Keys int
	Loaded          bool
	Handlers        int
	LastError       string `json:"last_error"`
	Failures        int    `json:"consecutive_failures"`
	RefreshError    string `json:"refresh_error"`
}

// refresh asks Caddy to reload every source now; once it has answered, the
// sets written by the last rewrite are live.
func (r *reloads) refresh() {
	start := time.Now()
	var st []sourceStatus
	err := admin(http.MethodPost, "/key_auth/sources/refresh", nil, &st)
	if err == nil {
		err = checkSources(st, false)
	}
	r.record(&r.refreshes, &r.failRefresh, &r.refreshMs, time.Since(start), "POST /key_auth/sources/refresh", err)
	if err == nil {
		sets[srcFile].confirm()
		sets[srcHTTP].confirm()
	}
}

func checkSources(st []sourceStatus, final bool) error {
	if len(st) != 2 {
		return fmt.Errorf("%d sources, want 2 (a file and an http source)", len(st))
	}
	for _, s := range st {
		if !s.Loaded || s.Consumers != *nConsumers+1 || s.Keys != *nConsumers {
			return fmt.Errorf("%s source: loaded=%v, %d consumers, %d keys; want %d and %d",
				s.Kind, s.Loaded, s.Consumers, s.Keys, *nConsumers+1, *nConsumers)
		}
		if s.RefreshError != "" || final && s.LastError != "" {
			return fmt.Errorf("%s source: %s%s", s.Kind, s.RefreshError, s.LastError)
		}
	}
	return nil
}

// load posts the other config to /load.
func (r *reloads) load(cfgs [2][]byte) {
	n := loadGen.Load() + 1
	loading.Store(true)
	defer loading.Store(false)
	start := time.Now()
	loadMu.Lock()
	loadSpans = append(loadSpans, span{start: start})
	i := len(loadSpans) - 1
	loadMu.Unlock()
	err := admin(http.MethodPost, "/load", cfgs[(n+1)%2], nil)
	end := time.Now()
	loadMu.Lock()
	loadSpans[i].end = end
	loadMu.Unlock()
	if err == nil {
		loadGen.Store(n)
	}
	r.record(&r.loads, &r.failLoad, &r.loadMs, end.Sub(start), "POST /load", err)
}

// markOf is the control site's answer under the config of load generation n.
func markOf(n int64) string { return map[bool]string{true: *mark1, false: *mark2}[n%2 == 1] }

// duringLoad reports whether [start, end] overlaps a /load, from its
// request until -reload-grace after its answer.
func duringLoad(start, end time.Time) bool {
	loadMu.Lock()
	defer loadMu.Unlock()
	for _, s := range loadSpans {
		e := s.end
		if e.IsZero() {
			e = time.Now()
		}
		if !end.Before(s.start.Add(-50*time.Millisecond)) && !start.After(e.Add(*reloadGrace)) {
			return true
		}
	}
	return false
}

var adminClient = &http.Client{Timeout: 60 * time.Second}

// admin calls Caddy's admin endpoint; a 200's JSON answer goes into out.
func admin(method, path string, body []byte, out any) error {
	req, err := http.NewRequest(method, "http://"+*adminAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := adminClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("answer %.300q: %w", b, err)
		}
	}
	return nil
}

// metricLines are the lines of the admin /metrics that start with prefix.
func metricLines(prefix string) []string {
	resp, err := adminClient.Get("http://" + *adminAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			out = append(out, v)
		}
	}
	return out
}

// --- sampling -------------------------------------------------------------------

type sample struct {
	beforeLoad      bool // taken just before a /load, a cycle after the previous one
	t               time.Duration
	rssKiB          int64
	goroutines, fds int
	gone            bool
}

func sampleCaddy(pid int, t time.Duration) sample {
	s := sample{t: t, goroutines: -1, fds: -1}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		s.gone = true
		return s
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	// The admin endpoint restarts on every /load: try again briefly.
	for try := 0; try < 5 && s.goroutines < 0; try++ {
		if try > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if l := metricLines("go_goroutines "); len(l) > 0 {
			n, _ := strconv.ParseFloat(strings.TrimSpace(l[0]), 64)
			s.goroutines = int(n)
		}
	}
	return s
}

// --- the run --------------------------------------------------------------------

type connErr struct {
	kind       int
	start, end time.Time
	err        string
	timeout    bool
}

type kindStats struct {
	m                          vegeta.Metrics
	stale, wrong, s5xx, oldCfg int
}

type results struct {
	kinds  []kindStats
	all    vegeta.Metrics
	errs   []connErr
	wrongs []string
}

// add judges one of vegeta's results.
func (rs *results) add(q *request, res *vegeta.Result) {
	ks := &rs.kinds[q.kind]
	ks.m.Add(res)
	rs.all.Add(res)
	if res.Code == 0 {
		rs.errs = append(rs.errs, connErr{kind: q.kind, start: res.Timestamp, end: res.Timestamp.Add(res.Latency), err: res.Error,
			timeout: strings.Contains(res.Error, "Timeout") || strings.Contains(res.Error, "deadline exceeded")})
		return
	}
	if res.Code >= 500 {
		ks.s5xx++
	}
	ok, stale, why := judge(q, int(res.Code), res.Headers, res.Body)
	switch {
	case !ok:
		ks.wrong++
		if len(rs.wrongs) < 20 {
			rs.wrongs = append(rs.wrongs, fmt.Sprintf("%s %s %s: %s (answer %.200q)",
				res.Timestamp.Format("15:04:05.000"), kinds[q.kind], res.URL, why, res.Body))
		}
	case stale:
		ks.stale++
	case q.control && !q.inLoad && !loading.Load() && q.gen == loadGen.Load() && string(res.Body) != markOf(q.gen):
		ks.oldCfg++ // sent after a /load answered, and still the previous config
	}
}

func run() (bool, error) {
	var cfgs [2][]byte
	for i, f := range []string{*load1, *load2} {
		var err error
		if cfgs[i], err = os.ReadFile(f); err != nil {
			return false, err
		}
	}
	for set := range 2 {
		d := document(srcHTTP, set)
		sum := sha256.Sum256(d)
		httpDocs[set] = &servedDoc{body: d, etag: fmt.Appendf(nil, `"%x"`, sum[:8])}
	}
	httpDoc.Store(httpDocs[0])
	consumersPath := filepath.Join(*dir, "consumers.json")
	fileDocs := [2][]byte{document(srcFile, 0), document(srcFile, 1)}
	if err := writeAtomic(consumersPath, fileDocs[0]); err != nil {
		return false, err
	}
	loadGen.Store(1) // Caddy starts with -load1's Caddyfile

	ln, err := net.Listen("tcp", *sourceAddr)
	if err != nil {
		return false, fmt.Errorf("HTTP source: %w", err)
	}
	go http.Serve(ln, http.HandlerFunc(serveSource))
	logf("serving the HTTP source at http://%s/consumers.json; waiting for Caddy", *sourceAddr)
	pid, err := waitPid(*pidFile, 2*time.Minute)
	if err != nil {
		return false, err
	}
	if err := waitReady(pid); err != nil {
		return false, err
	}

	atk := vegeta.NewAttacker(vegeta.Workers(uint64(*concurrency)), vegeta.MaxWorkers(uint64(*concurrency)),
		vegeta.Connections(*concurrency), vegeta.Timeout(*timeout), vegeta.Redirects(-1))
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		samples []sample
		sampMu  sync.Mutex
		rel     reloads
		dead    atomic.Bool
		t0      = time.Now()
	)
	takeSample := func(beforeLoad bool) {
		s := sampleCaddy(pid, time.Since(t0))
		s.beforeLoad = beforeLoad
		if s.gone && !dead.Swap(true) {
			atk.Stop()
		}
		sampMu.Lock()
		samples = append(samples, s)
		sampMu.Unlock()
	}
	takeSample(false)
	every := func(d, offset time.Duration, f func(n int)) {
		wg.Go(func() {
			select {
			case <-stop:
				return
			case <-time.After(offset):
			}
			t := time.NewTicker(d)
			defer t.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-t.C:
					f(n)
				}
			}
		})
	}
	// The series' samples fall halfway between two reloads, away from a /load.
	every(*sampleEvery, *reloadEvery/2, func(int) { takeSample(false) })
	every(*reloadEvery, 0, func(n int) {
		switch n % 3 {
		case 0:
			rel.rewrite(consumersPath, fileDocs)
		case 1:
			rel.refresh()
		case 2:
			takeSample(true) // a whole cycle after the previous /load
			rel.load(cfgs)
		}
	})
	every(*duration/10, 0, func(int) {
		sampMu.Lock()
		last := samples[len(samples)-1]
		sampMu.Unlock()
		logf("%3.0f s: rss %.1f MiB, %d goroutines", time.Since(t0).Seconds(), float64(last.rssKiB)/1024, last.goroutines)
	})

	var pending sync.Map // rid -> *request
	var rid atomic.Uint64
	targeter := func(t *vegeta.Target) error {
		q, tgt := newRequest(rand.IntN(len(kinds)), rid.Add(1))
		pending.Store(q.rid, q)
		*t = tgt
		return nil
	}
	rs := &results{kinds: make([]kindStats, len(kinds))}
	for res := range atk.Attack(targeter, vegeta.ConstantPacer{Freq: *rate, Per: time.Second}, *duration, "soak") {
		n, ok := ridOf(res.URL)
		q, found := pending.LoadAndDelete(n)
		if !ok || !found {
			return false, fmt.Errorf("a result for no request sent: %q", res.URL)
		}
		rs.add(q.(*request), res)
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(t0)
	takeSample(false)
	return report(rs, samples, &rel, elapsed, pid, dead.Load()), nil
}

func waitPid(path string, limit time.Duration) (int, error) {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no pid in %s after %s", path, limit)
}

// waitReady waits until each kind of site gives a right answer.
func waitReady(pid int) error {
	client := &http.Client{Timeout: *timeout}
	end := time.Now().Add(60 * time.Second)
	for _, kind := range []string{"header-valid", "http-source", "anonymous", "body-json", "control"} {
		for why := ""; ; time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return fmt.Errorf("caddy (pid %d) exited", pid)
			}
			if time.Now().After(end) {
				return fmt.Errorf("the %s site is not serving after 60 s: %s", kind, why)
			}
			q, t := newRequest(slices.Index(kinds, kind), 0)
			if q.ref.kind == refRot {
				continue // its set is not known yet
			}
			req, err := t.Request()
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				why = err.Error()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ok bool
			if ok, _, why = judge(q, resp.StatusCode, resp.Header, body); ok {
				break
			}
		}
	}
	return nil
}

// --- the report -----------------------------------------------------------------

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(v))
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }

func report(rs *results, samples []sample, rel *reloads, elapsed time.Duration, pid int, dead bool) bool {
	pass := true
	check := func(ok bool, format string, args ...any) {
		verdict := "ok"
		if !ok {
			verdict, pass = "FAILED", false
		}
		fmt.Printf("  %-6s  %s\n", verdict, fmt.Sprintf(format, args...))
	}
	// A connection error while a /load was under way is Caddy closing its
	// idle connections, as it does with or without key_auth.
	inLoad, outside := make([]int, len(kinds)), make([]int, len(kinds))
	var outsideErrs, inLoadErrs []connErr
	timeouts := 0
	for _, e := range rs.errs {
		if e.timeout {
			timeouts++
		}
		if !e.timeout && duringLoad(e.start, e.end) {
			inLoad[e.kind]++
			inLoadErrs = append(inLoadErrs, e)
		} else {
			outside[e.kind]++
			outsideErrs = append(outsideErrs, e)
		}
	}
	rs.all.Close()

	rel.mu.Lock()
	defer rel.mu.Unlock()
	fmt.Printf("bench/soak.sh: %.0f s of load, %d req/s asked, up to %d in flight, %d consumers per source (%d with a key that differs between set A and set B) + the anonymous one\n",
		elapsed.Seconds(), *rate, *concurrency, *nConsumers, *nRotating)
	fmt.Printf("reloads, one every %s in turn: %d consumers file rewrites (HTTP source switched with them), %d admin refreshes (median %.1f ms), %d /load (median %.1f ms, max %.1f ms)\n",
		*reloadEvery, rel.rewrites, rel.refreshes, median(rel.refreshMs), rel.loads, median(rel.loadMs), slices.Max(append([]float64{0}, rel.loadMs...)))
	fmt.Printf("HTTP source: %d full answers, %d not modified\n\n", sourceFull.Load(), sourceNotMod.Load())

	row := "%-13s %9d %8d %8d %6d %6d %6d %10d %9d %8.2f %8.2f\n"
	fmt.Printf("%-13s %9s %8s %8s %6s %6s %6s %10s %9s %8s %8s\n",
		"kind", "requests", "200", "401", "5xx", "stale", "wrong", "dropped@ld", "err other", "p50 ms", "p99 ms")
	var tot kindStats
	for k, name := range kinds {
		s := &rs.kinds[k]
		s.m.Close()
		fmt.Printf(row, name, s.m.Requests, s.m.StatusCodes["200"], s.m.StatusCodes["401"], s.s5xx, s.stale, s.wrong,
			inLoad[k], outside[k], ms(s.m.Latencies.P50), ms(s.m.Latencies.P99))
		tot.s5xx, tot.stale, tot.wrong, tot.oldCfg = tot.s5xx+s.s5xx, tot.stale+s.stale, tot.wrong+s.wrong, tot.oldCfg+s.oldCfg
	}
	nIn, nOut := len(inLoadErrs), len(outsideErrs)
	a := &rs.all
	fmt.Printf(row, "total", a.Requests, a.StatusCodes["200"], a.StatusCodes["401"], tot.s5xx, tot.stale, tot.wrong,
		nIn, nOut, ms(a.Latencies.P50), ms(a.Latencies.P99))
	fmt.Printf("status codes (0: no answer): %v\n", a.StatusCodes)
	fmt.Printf("latency over all answers (vegeta): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; %.0f req/s\n",
		ms(a.Latencies.P50), ms(a.Latencies.P99), ms(a.Latencies.Quantile(0.999)), ms(a.Latencies.Max), a.Rate)
	fmt.Println("stale: the previous set's answer while a swap was under way (allowed). dropped@ld: the connection failed")
	fmt.Println("while a /load was under way (reported, allowed).")
	if tot.oldCfg > 0 {
		fmt.Printf("control answers from the previous config although sent after the /load answered: %d\n", tot.oldCfg)
	}
	outcomes := metricLines("caddy_key_auth_requests_total{")
	for i, l := range outcomes {
		outcomes[i] = strings.TrimPrefix(strings.NewReplacer(`"`, "", "} ", " ").Replace(l), "outcome=")
	}
	slices.Sort(outcomes)
	fmt.Printf("key_auth's own count (caddy_key_auth_requests_total): %s\n", strings.Join(outcomes, ", "))
	var st []sourceStatus
	stErr := admin(http.MethodGet, "/key_auth/sources", nil, &st)
	for _, s := range st {
		fmt.Printf("source %s %s: %d consumers, %d keys, loaded %v, %d handlers, consecutive failures %d %s\n",
			s.Kind, s.Location, s.Consumers, s.Keys, s.Loaded, s.Handlers, s.Failures, s.LastError)
	}

	var rssSettled, rssEnd, grSettled, grEnd, fdSettled, fdEnd []float64
	wEnd := elapsed - *window
	fmt.Printf("\nCaddy over time: the samples taken just before a /load (the checks use these); series.tsv has all\n")
	fmt.Printf("%7s %9s %11s %6s\n", "t s", "rss MiB", "goroutines", "fds")
	tsv := "t_s\trss_kib\tgoroutines\tfds\tbefore_load\n"
	for _, s := range samples {
		tsv += fmt.Sprintf("%.2f\t%d\t%d\t%d\t%v\n", s.t.Seconds(), s.rssKiB, s.goroutines, s.fds, s.beforeLoad)
		if !s.beforeLoad || s.gone || s.goroutines < 0 {
			continue
		}
		fmt.Printf("%7.0f %9.1f %11d %6d\n", s.t.Seconds(), float64(s.rssKiB)/1024, s.goroutines, s.fds)
		if s.t >= *warmup && s.t < *warmup+*window {
			rssSettled, grSettled, fdSettled = append(rssSettled, float64(s.rssKiB)), append(grSettled, float64(s.goroutines)), append(fdSettled, float64(s.fds))
		}
		if s.t >= wEnd {
			rssEnd, grEnd, fdEnd = append(rssEnd, float64(s.rssKiB)), append(grEnd, float64(s.goroutines)), append(fdEnd, float64(s.fds))
		}
	}
	_ = os.WriteFile(filepath.Join(*dir, "series.tsv"), []byte(tsv), 0o644)

	fmt.Printf("\nchecks (settled: median over %.0f-%.0f s; end: median over the last %.0f s, %.0f-%.0f s):\n",
		warmup.Seconds(), (*warmup + *window).Seconds(), window.Seconds(), wEnd.Seconds(), elapsed.Seconds())
	check(!dead, "Caddy ran to the end (pid %d)", pid)
	for k, name := range kinds {
		if rs.kinds[k].m.Requests == 0 {
			check(false, "no %s requests were sent", name)
		}
	}
	check(tot.s5xx == 0, "5xx answers: %d", tot.s5xx)
	check(tot.wrong == 0, "wrong answers (status, message or identity not those of the live set): %d", tot.wrong)
	check(nOut == 0, "connection errors and timeouts outside /load: %d (timeouts: %d)", nOut, timeouts)
	check(rel.failRewrite+rel.failRefresh+rel.failLoad == 0, "failed reloads: %d rewrites, %d admin refreshes, %d /load",
		rel.failRewrite, rel.failRefresh, rel.failLoad)
	if stErr == nil {
		stErr = checkSources(st, true)
	}
	why := ""
	if stErr != nil {
		why = ": " + stErr.Error()
	}
	check(stErr == nil, "both sources loaded at the end, without an error%s", why)
	within := func(what, unit string, scale float64, settled, end []float64) {
		if len(settled) == 0 || len(end) == 0 {
			check(false, "%s: no samples in a window (run longer than -warmup + 2 -window)", what)
			return
		}
		a, b := median(settled), median(end)
		check(math.Abs(b-a)/a <= *tolerance, "%s: settled %.1f%s, end %.1f%s: %+.1f%% (limit ±%.0f%%)",
			what, a/scale, unit, b/scale, unit, (b-a)/a*100, *tolerance*100)
	}
	within("RSS", " MiB", 1024, rssSettled, rssEnd)
	within("goroutines", "", 1, grSettled, grEnd)
	if len(fdSettled) > 0 && len(fdEnd) > 0 {
		fmt.Printf("  info    open files: settled %.0f, end %.0f\n", median(fdSettled), median(fdEnd))
	}
	fmt.Printf("  info    dropped connections during /load: %d (%d of them on the control site, which has no key_auth)\n",
		nIn, inLoad[slices.Index(kinds, "control")])

	list := func(title string, lines []string) {
		if len(lines) > 0 {
			fmt.Printf("\n%s (first ones):\n  %s\n", title, strings.Join(lines[:min(len(lines), 20)], "\n  "))
		}
	}
	errLines := func(errs []connErr) (out []string) {
		slices.SortFunc(errs, func(a, b connErr) int { return a.start.Compare(b.start) })
		for _, e := range errs {
			out = append(out, fmt.Sprintf("%s %s: %s", e.start.Format("15:04:05.000"), kinds[e.kind], e.err))
		}
		return out
	}
	slices.Sort(rs.wrongs)
	list("wrong answers", rs.wrongs)
	list("connection errors outside /load", errLines(outsideErrs))
	list("connection errors during /load", errLines(inLoadErrs))
	list("failed reloads", rel.failures)
	fmt.Println()
	if pass {
		fmt.Println("soak: PASS")
	} else {
		fmt.Println("soak: FAIL")
	}
	return pass
}
