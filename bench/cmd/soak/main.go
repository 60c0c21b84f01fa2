// Command soak is the load driver of bench/soak.sh: mixed key_auth traffic
// against a running Caddy while the consumers and the config reload every
// second, with every answer checked and Caddy's RSS and goroutines sampled.
//
//	soak -dir DIR -pid-file DIR/caddy.pid -load1 cfg1.json -load2 cfg2.json [flags]
//
// It writes the consumers file (DIR/consumers.json, set A) and serves the HTTP
// source's document (GET http://SOURCE/consumers.json, with an ETag) before
// Caddy starts; then it waits for the pid file and for Caddy to serve, and
// runs for -duration:
//
//   - -concurrency workers send about -rate requests per second in all,
//     each one of these kinds, picked at random:
//     header-valid, query-valid, rotating (a key that only one of the two
//     consumer sets has), invalid, missing, anonymous (the anonymous site,
//     with and without keys), body-json and body-form (the key_in_body +
//     hide_credentials site), http-source (the site of the HTTP source) and
//     control (a plain respond site without key_auth, for comparison);
//   - every second one reload, in turn: the consumers file is rewritten
//     atomically with the other set (and the HTTP source starts serving its
//     other set), POST /key_auth/sources/refresh, POST /load of the other
//     of two configs (they differ in the control site's answer);
//   - Caddy's VmRSS (/proc/PID/status), goroutines (the admin endpoint's
//     /metrics, go_goroutines) and open files (/proc/PID/fd) are sampled
//     just before each /load, a whole reload cycle after the previous one,
//     so that every such sample finds Caddy in the same state (the checks
//     use these), and every -sample, halfway between two reloads, for the
//     series.
//
// An answer is right when it is what the consumer set live at the time
// gives for the key sent: for a key of the set, 200 from the upstream with
// the identity headers of that key's consumer and credential; otherwise 401
// with the right message (or the anonymous consumer). While a set is being
// swapped (from the file rewrite until the admin refresh that follows has
// answered) the previous set's answer is right too, and counted as stale.
// Connection errors are counted apart when a /load was under way.
//
// It prints a report and exits 1 if a check fails: a 5xx, a wrong answer, a
// connection error or timeout outside a /load, a failed reload, or RSS or
// goroutines at the end more than -tolerance away from where they settled
// (the median of the samples taken before a /load over -window after
// -warmup, against the median of those over the last -window).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	dir         = flag.String("dir", "", "working directory: consumers.json and the report's files go here")
	pidFile     = flag.String("pid-file", "", "file holding Caddy's pid (written once Caddy is started)")
	load1       = flag.String("load1", "", "config JSON posted to /load on odd reloads")
	load2       = flag.String("load2", "", "config JSON posted to /load on even reloads")
	mark1       = flag.String("mark1", "control cfg=1", "the control site's answer under -load1")
	mark2       = flag.String("mark2", "control cfg=2", "the control site's answer under -load2")
	duration    = flag.Duration("duration", 180*time.Second, "how long the load runs")
	rate        = flag.Float64("rate", 1000, "requests per second, all workers together")
	concurrency = flag.Int("concurrency", 16, "workers, each with at most one request in flight")
	nConsumers  = flag.Int("consumers", 3000, "consumers per source, besides the anonymous one")
	nRotating   = flag.Int("rotating", 300, "consumers whose key differs between set A and set B")
	reloadEvery = flag.Duration("reload-every", time.Second, "time between reloads")
	sampleEvery = flag.Duration("sample", 2*time.Second, "time between the series' samples (the checks use those taken before each /load)")
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
	if *nRotating < 1 || *nRotating >= *nConsumers || *concurrency < 1 || *rate <= 0 {
		fatalf("need 1 <= -rotating < -consumers, -concurrency >= 1, -rate > 0")
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

// --- consumers --------------------------------------------------------------

// The two sources each have their own consumers: the file's are user-<i>,
// the HTTP source's huser-<i>. Consumers below nStable keep their key in
// both sets; the others have one key in set A and another in set B.
const (
	srcFile = iota
	srcHTTP
)

var srcPrefix = [2]string{"", "h"}

func keyOf(src int, tag string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "caddy-keyauth-soak %d %s %d", src, tag, i))
	return hex.EncodeToString(sum[:16])
}

func nStable() int { return *nConsumers - *nRotating }

func stableKey(src, i int) string { return keyOf(src, "stable", i) }

func rotKey(src, set, i int) string { return keyOf(src, "ab"[set:set+1], i) }

func setName(set int) string { return "ab"[set : set+1] }

// document is the consumers document of a source's set (0 = A, 1 = B), with
// the anonymous consumer "guest", which has no keys.
func document(src, set int) []byte {
	p := srcPrefix[src]
	var b bytes.Buffer
	b.WriteString(`{"consumers": [` + "\n")
	b.WriteString(`{"username": "guest", "id": "guest-id"}`)
	for i := range *nConsumers {
		var key, cred string
		if i < nStable() {
			key, cred = stableKey(src, i), fmt.Sprintf("%scred-%d", p, i)
		} else {
			key, cred = rotKey(src, set, i), fmt.Sprintf("%srot-%s-%d", p, setName(set), i)
		}
		fmt.Fprintf(&b, ",\n"+`{"username": "%suser-%d", "custom_id": "c-%d", "keys": [{"id": "%s", "key": "%s"}]}`,
			p, i, i, cred, key)
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// setState is which set of a source is live. Between a swap and the admin
// refresh confirming it, the previous set may still answer.
type setState struct {
	mu        sync.Mutex
	cur, prev int
	confirmed bool
}

type setSnap struct {
	cur, prev int
	confirmed bool
}

func (s *setState) snap() setSnap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return setSnap{s.cur, s.prev, s.confirmed}
}

func (s *setState) flip() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prev, s.cur, s.confirmed = s.cur, 1-s.cur, false
	return s.cur
}

func (s *setState) confirm() {
	s.mu.Lock()
	s.confirmed = true
	s.mu.Unlock()
}

var sets [2]*setState

// The HTTP source's document, served with an ETag.
type servedDoc struct {
	body []byte
	etag string
}

var (
	httpDoc                  atomic.Pointer[servedDoc]
	httpDocs                 [2]*servedDoc
	sourceFull, sourceNotMod atomic.Int64
)

func serveSource(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/consumers.json" {
		http.NotFound(w, r)
		return
	}
	d := httpDoc.Load()
	w.Header().Set("ETag", d.etag)
	if r.Header.Get("If-None-Match") == d.etag {
		sourceNotMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	sourceFull.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(d.body)))
	w.Write(d.body)
}

// --- requests -----------------------------------------------------------------

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

const (
	siteFile = iota
	siteAnon
	siteBody
	siteHTTP
	siteControl
)

var kinds = []string{
	"header-valid", "query-valid", "rotating", "invalid", "missing",
	"anonymous", "body-json", "body-form", "http-source", "control",
}

type request struct {
	kind    int
	site    int
	ref     keyRef
	req     *http.Request
	control bool
}

func pickRef(rng *rand.Rand, src int, kinds ...int) keyRef {
	k := kinds[rng.IntN(len(kinds))]
	r := keyRef{kind: k, src: src}
	switch k {
	case refUnknown:
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		r.key = hex.EncodeToString(b[:])
	case refStable:
		r.i = rng.IntN(nStable())
		r.key = stableKey(src, r.i)
	case refRot:
		r.i = nStable() + rng.IntN(*nRotating)
		r.set = rng.IntN(2)
		r.key = rotKey(src, r.set, r.i)
	}
	return r
}

func newRequest(rng *rand.Rand, kind int) *request {
	q := &request{kind: kind}
	var method, target, ctype string
	var body []byte
	header := http.Header{}
	switch kinds[kind] {
	case "header-valid":
		q.site, q.ref = siteFile, pickRef(rng, srcFile, refStable)
		target = "http://" + *fileAddr + "/h?page=2"
		header.Set("apikey", q.ref.key)
	case "query-valid":
		q.site, q.ref = siteFile, pickRef(rng, srcFile, refStable)
		target = "http://" + *fileAddr + "/q?page=2&apikey=" + q.ref.key
	case "rotating":
		q.site, q.ref = siteFile, pickRef(rng, srcFile, refRot)
		target = "http://" + *fileAddr + "/r"
		header.Set("apikey", q.ref.key)
	case "invalid":
		q.site, q.ref = siteFile, pickRef(rng, srcFile, refUnknown)
		if rng.IntN(2) == 0 {
			target = "http://" + *fileAddr + "/i"
			header.Set("apikey", q.ref.key)
		} else {
			target = "http://" + *fileAddr + "/i?apikey=" + q.ref.key
		}
	case "missing":
		q.site, q.ref = siteFile, pickRef(rng, srcFile, refNone)
		target = "http://" + *fileAddr + "/m"
	case "anonymous":
		q.site, q.ref = siteAnon, pickRef(rng, srcFile, refNone, refUnknown, refStable, refRot)
		target = "http://" + *anonAddr + "/a"
		if q.ref.key != "" {
			header.Set("apikey", q.ref.key)
		}
		// A client must not get to forge its identity.
		header.Set("X-Consumer-Username", "root")
	case "body-json":
		q.site, q.ref = siteBody, pickRef(rng, srcFile, refStable, refRot)
		method, ctype, target = http.MethodPost, "application/json", "http://"+*bodyAddr+"/j"
		body = fmt.Appendf(nil, `{"data": "soak-%d", "apikey": "%s", "n": [1, 2]}`, rng.IntN(1000), q.ref.key)
	case "body-form":
		q.site, q.ref = siteBody, pickRef(rng, srcFile, refStable, refRot)
		method, ctype, target = http.MethodPost, "application/x-www-form-urlencoded", "http://"+*bodyAddr+"/f"
		body = fmt.Appendf(nil, "data=soak-%d&apikey=%s&x=y", rng.IntN(1000), q.ref.key)
	case "http-source":
		q.site, q.ref = siteHTTP, pickRef(rng, srcHTTP, refStable, refRot)
		target = "http://" + *httpAddr + "/s"
		header.Set("apikey", q.ref.key)
	case "control":
		q.site, q.control = siteControl, true
		method, ctype, target = http.MethodPost, "text/plain", "http://"+*controlAddr+"/c"
		body = []byte("ping")
	}
	if method == "" {
		method = http.MethodGet
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		panic(err)
	}
	if ctype != "" {
		header.Set("Content-Type", ctype)
	}
	copyHeader(req.Header, header)
	q.req = req
	return q
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// want is the answer expected for a request under one set.
type want struct {
	status      int
	user, cred  string
	anon        bool
	message     string
	description string
}

func expected(q *request, set int) want {
	p := srcPrefix[q.ref.src]
	reject := func(msg string) want {
		if q.site == siteAnon {
			return want{status: 200, user: "guest", anon: true, description: "guest"}
		}
		return want{status: 401, message: msg, description: "401 " + msg}
	}
	switch q.ref.kind {
	case refNone:
		return reject("No API key found in request")
	case refUnknown:
		return reject("Unauthorized")
	case refStable:
		u := fmt.Sprintf("%suser-%d", p, q.ref.i)
		return want{status: 200, user: u, cred: fmt.Sprintf("%scred-%d", p, q.ref.i), description: u}
	default: // refRot
		if q.ref.set != set {
			return reject("Unauthorized")
		}
		u := fmt.Sprintf("%suser-%d", p, q.ref.i)
		return want{status: 200, user: u, cred: fmt.Sprintf("%srot-%s-%d", p, setName(set), q.ref.i), description: u}
	}
}

// answer is what came back.
type answer struct {
	status                 int
	user, cred, anon, body string
	message                string
	challenge              string
	raw                    string
}

func parseAnswer(resp *http.Response, body []byte) answer {
	a := answer{status: resp.StatusCode, challenge: resp.Header.Get("Www-Authenticate"), raw: string(body)}
	if resp.StatusCode == 200 {
		for line := range strings.SplitSeq(string(body), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "user":
				a.user = v
			case "cred":
				a.cred = v
			case "anon":
				a.anon = v
			case "body":
				a.body = v
			}
		}
	} else {
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &m) == nil {
			a.message = m.Message
		}
	}
	return a
}

// matches reports whether a is the answer w describes; why says what differs.
func matches(q *request, w want, a answer) (ok bool, why string) {
	if a.status != w.status {
		return false, fmt.Sprintf("status %d, want %d (%s)", a.status, w.status, w.description)
	}
	if w.status == 401 {
		if a.message != w.message {
			return false, fmt.Sprintf("message %q, want %q", a.message, w.message)
		}
		if !strings.HasPrefix(a.challenge, "Key") {
			return false, fmt.Sprintf("WWW-Authenticate %q", a.challenge)
		}
		return true, ""
	}
	anon := ""
	if w.anon {
		anon = "true"
	}
	if a.user != w.user || a.cred != w.cred || a.anon != anon {
		return false, fmt.Sprintf("upstream saw user=%q cred=%q anon=%q, want user=%q cred=%q anon=%q",
			a.user, a.cred, a.anon, w.user, w.cred, anon)
	}
	if q.site == siteBody {
		if strings.Contains(a.body, "apikey") || (q.ref.key != "" && strings.Contains(a.body, q.ref.key)) {
			return false, "hide_credentials: the upstream got the key in the body"
		}
		if !strings.Contains(a.body, "soak-") {
			return false, fmt.Sprintf("the upstream got body %q", a.body)
		}
	}
	return true, ""
}

// --- results ------------------------------------------------------------------

type connErr struct {
	kind       int
	start, end time.Time
	err        string
	timeout    bool
}

type kindStats struct {
	total, ok, stale, wrong, s5xx int
	status                        map[int]int
	errs                          int // connection errors and timeouts
	retried                       int // GETs the client resent after Caddy closed a kept-alive connection
	oldConfig                     int // control answers from the config before the last /load
	lat                           []float32
}

type workerStats struct {
	kinds   []kindStats
	errs    []connErr
	retries []loadSpan // when the GETs counted in retried went out
	wrongs  []string
}

func newWorkerStats() *workerStats {
	w := &workerStats{kinds: make([]kindStats, len(kinds))}
	for i := range w.kinds {
		w.kinds[i].status = map[int]int{}
	}
	return w
}

// The reload log.
type loadSpan struct{ start, end time.Time }

var (
	loadMu    sync.Mutex
	loadSpans []loadSpan
	loadGen   atomic.Int64 // /load calls answered; odd means -load1 serves
	loading   atomic.Bool  // a /load is under way
	mark      atomic.Pointer[string]
)

// --- the run ------------------------------------------------------------------

func run() (bool, error) {
	if *sampleEvery <= 0 || *reloadEvery <= 0 {
		return false, errors.New("-sample and -reload-every must be positive")
	}
	cfg1, err := os.ReadFile(*load1)
	if err != nil {
		return false, err
	}
	cfg2, err := os.ReadFile(*load2)
	if err != nil {
		return false, err
	}
	for src := range 2 {
		sets[src] = &setState{confirmed: true}
	}
	for set := range 2 {
		d := document(srcHTTP, set)
		sum := sha256.Sum256(d)
		httpDocs[set] = &servedDoc{body: d, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	httpDoc.Store(httpDocs[0])
	consumersPath := filepath.Join(*dir, "consumers.json")
	fileDocs := [2][]byte{document(srcFile, 0), document(srcFile, 1)}
	if err := writeAtomic(consumersPath, fileDocs[0]); err != nil {
		return false, err
	}
	m := *mark1
	mark.Store(&m)

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
	client := newClient()
	admin := &http.Client{Timeout: 60 * time.Second}
	if err := waitReady(client, pid); err != nil {
		return false, err
	}

	// The set files start with set A; Caddy has loaded it.
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		samples []sample
		sampMu  sync.Mutex
		rel     reloadStats
		dead    atomic.Bool
	)
	t0 := time.Now()
	takeSample := func(steady bool) {
		s := sampleCaddy(admin, pid, time.Since(t0))
		s.steady = steady
		if s.gone {
			dead.Store(true)
		}
		sampMu.Lock()
		samples = append(samples, s)
		sampMu.Unlock()
	}
	takeSample(false)

	wg.Add(1)
	go func() { // sampler
		defer wg.Done()
		// Samples fall halfway between two reloads, away from the moment a
		// /load swaps configs and closes the idle connections.
		select {
		case <-stop:
			return
		case <-time.After(*reloadEvery / 2):
		}
		takeSample(false)
		t := time.NewTicker(*sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				takeSample(false)
			}
		}
	}()

	wg.Add(1)
	go func() { // reloader
		defer wg.Done()
		t := time.NewTicker(*reloadEvery)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			switch n % 3 {
			case 0:
				rel.rewrite(consumersPath, fileDocs)
			case 1:
				rel.refresh(admin)
			case 2:
				// The checks use these samples: each is taken a whole
				// cycle after the previous /load, so each sees Caddy in
				// the same state.
				takeSample(true)
				rel.load(admin, cfg1, cfg2)
			}
		}
	}()

	workers := make([]*workerStats, *concurrency)
	var sent atomic.Int64
	interval := time.Duration(float64(*concurrency) / *rate * float64(time.Second))
	deadline := t0.Add(*duration)
	var lwg sync.WaitGroup
	for w := range *concurrency {
		workers[w] = newWorkerStats()
		lwg.Add(1)
		go func(ws *workerStats, seed uint64) {
			defer lwg.Done()
			// A worker has at most one request in flight, so it keeps one
			// connection per site: Caddy serves a steady number of them.
			client := newClient()
			rng := rand.New(rand.NewPCG(seed, 0x50a4))
			// Spread the workers over the first interval.
			next := time.Now().Add(time.Duration(rng.Int64N(int64(interval) + 1)))
			for {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				now := time.Now()
				if now.After(deadline) || dead.Load() {
					return
				}
				next = next.Add(interval)
				if now.Sub(next) > interval { // behind: no burst to catch up
					next = now
				}
				do(client, ws, rng, rng.IntN(len(kinds)))
				sent.Add(1)
			}
		}(workers[w], uint64(w)+1)
	}
	// Progress, every 10% of the run.
	go func() {
		step := *duration / 10
		for i := 1; i < 10; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(t0.Add(time.Duration(i) * step))):
			}
			sampMu.Lock()
			last := samples[len(samples)-1]
			sampMu.Unlock()
			logf("%3.0f s: %d requests, rss %.1f MiB, %d goroutines, %d reloads",
				time.Since(t0).Seconds(), sent.Load(), float64(last.rssKiB)/1024, last.goroutines, rel.count())
		}
	}()
	lwg.Wait()
	close(stop)
	wg.Wait()
	elapsed := time.Since(t0)
	takeSample(false)

	return report(workers, samples, &rel, elapsed, pid, admin, dead.Load()), nil
}

// newClient is a client with keep-alive connections, at most one idle per
// site.
func newClient() *http.Client {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	return &http.Client{Transport: tr, Timeout: *timeout}
}

func waitPid(path string, limit time.Duration) (int, error) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no pid in %s after %s", path, limit)
}

// waitReady waits until each site answers a right answer.
func waitReady(client *http.Client, pid int) error {
	end := time.Now().Add(60 * time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kind := range []string{"header-valid", "http-source", "anonymous", "body-json", "control"} {
		k := slices.Index(kinds, kind)
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return fmt.Errorf("caddy (pid %d) exited", pid)
			}
			ws := newWorkerStats()
			q := newRequest(rng, k)
			if q.ref.kind == refRot {
				continue
			}
			do(client, ws, rng, -1, q)
			if ws.kinds[k].ok == 1 {
				break
			}
			if time.Now().After(end) {
				why := "connection error"
				if len(ws.wrongs) > 0 {
					why = ws.wrongs[0]
				} else if len(ws.errs) > 0 {
					why = ws.errs[0].err
				}
				return fmt.Errorf("the %s site is not serving after 60 s: %s", kind, why)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// do sends one request of the kind (or q) and records the result in ws.
func do(client *http.Client, ws *workerStats, rng *rand.Rand, kind int, pre ...*request) {
	var q *request
	if len(pre) > 0 {
		q = pre[0]
	} else {
		q = newRequest(rng, kind)
	}
	ks := &ws.kinds[q.kind]
	var before setSnap
	if !q.control {
		before = sets[q.ref.src].snap()
	}
	gen0, loading0 := loadGen.Load(), loading.Load()
	conns := 0
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { conns++ },
	})
	start := time.Now()
	resp, err := client.Do(q.req.WithContext(ctx))
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	end := time.Now()
	ks.total++
	if conns > 1 {
		ks.retried++
		ws.retries = append(ws.retries, loadSpan{start, end})
	}
	if err != nil {
		ks.errs++
		var ne net.Error
		ws.errs = append(ws.errs, connErr{kind: q.kind, start: start, end: end, err: err.Error(),
			timeout: errors.As(err, &ne) && ne.Timeout()})
		return
	}
	ks.lat = append(ks.lat, float32(end.Sub(start).Seconds()*1e3))
	ks.status[resp.StatusCode]++
	if resp.StatusCode >= 500 {
		ks.s5xx++
	}
	a := parseAnswer(resp, body)
	wrong := func(why string) {
		ks.wrong++
		if len(ws.wrongs) < 20 {
			ws.wrongs = append(ws.wrongs, fmt.Sprintf("%s %s %s: %s (answer %.200q)",
				end.Format("15:04:05.000"), kinds[q.kind], q.req.URL.Path, why, a.raw))
		}
	}
	if q.control {
		m1, m2 := *mark1, *mark2
		switch {
		case resp.StatusCode != 200 || (a.raw != m1 && a.raw != m2):
			wrong(fmt.Sprintf("control answered %d", resp.StatusCode))
		default:
			ks.ok++
			// A request sent after a /load answered must see the new config.
			if !loading0 && !loading.Load() && gen0 == loadGen.Load() && a.raw != *mark.Load() {
				ks.oldConfig++
			}
		}
		return
	}
	after := sets[q.ref.src].snap()
	w := expected(q, before.cur)
	ok, why := matches(q, w, a)
	if !ok && after.cur != before.cur {
		ok, _ = matches(q, expected(q, after.cur), a)
	}
	if ok {
		ks.ok++
		return
	}
	if !before.confirmed {
		if ok2, _ := matches(q, expected(q, before.prev), a); ok2 {
			ks.ok++
			ks.stale++
			return
		}
	}
	wrong(why)
}

// --- reloads ------------------------------------------------------------------

type reloadStats struct {
	mu                                 sync.Mutex
	rewrites, refreshes, loads         int
	rewriteFail, refreshFail, loadFail int
	loadMs, refreshMs                  []float64
	failures                           []string
}

func (r *reloadStats) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rewrites + r.refreshes + r.loads
}

func (r *reloadStats) fail(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < 20 {
		r.failures = append(r.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), what, err))
	}
}

// rewrite swaps both sources to their other set: the file is replaced
// atomically, and the HTTP source serves its other document from now on.
func (r *reloadStats) rewrite(path string, docs [2][]byte) {
	set := sets[srcFile].flip()
	sets[srcHTTP].flip()
	httpDoc.Store(httpDocs[set])
	err := writeAtomic(path, docs[set])
	r.mu.Lock()
	r.rewrites++
	if err != nil {
		r.rewriteFail++
	}
	r.mu.Unlock()
	if err != nil {
		r.fail("rewriting the consumers file", err)
	}
}

type sourceStatus struct {
	Kind         string `json:"kind"`
	Location     string `json:"location"`
	Consumers    int    `json:"consumers"`
	Keys         int    `json:"keys"`
	Loaded       bool   `json:"loaded"`
	LastError    string `json:"last_error"`
	Failures     int    `json:"consecutive_failures"`
	Handlers     int    `json:"handlers"`
	RefreshError string `json:"refresh_error"`
}

// refresh asks Caddy to reload every source now; once it has answered, the
// sets written by the last rewrite are live.
func (r *reloadStats) refresh(admin *http.Client) {
	start := time.Now()
	st, err := postRefresh(admin)
	if err == nil {
		err = checkSources(st, false)
	}
	ms := time.Since(start).Seconds() * 1e3
	r.mu.Lock()
	r.refreshes++
	r.refreshMs = append(r.refreshMs, ms)
	if err != nil {
		r.refreshFail++
	}
	r.mu.Unlock()
	if err != nil {
		r.fail("POST /key_auth/sources/refresh", err)
		return
	}
	sets[srcFile].confirm()
	sets[srcHTTP].confirm()
}

func postRefresh(admin *http.Client) ([]sourceStatus, error) {
	resp, err := admin.Post("http://"+*adminAddr+"/key_auth/sources/refresh", "application/json", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	var st []sourceStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("answer %.300q: %w", b, err)
	}
	return st, nil
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
		if s.RefreshError != "" || (final && s.LastError != "") {
			return fmt.Errorf("%s source: %s%s", s.Kind, s.RefreshError, s.LastError)
		}
	}
	return nil
}

// load posts the other config to /load.
func (r *reloadStats) load(admin *http.Client, cfg1, cfg2 []byte) {
	n := loadGen.Load() + 1
	cfg, m := cfg1, *mark1
	if n%2 == 0 {
		cfg, m = cfg2, *mark2
	}
	loading.Store(true)
	defer loading.Store(false)
	start := time.Now()
	loadMu.Lock()
	loadSpans = append(loadSpans, loadSpan{start: start})
	i := len(loadSpans) - 1
	loadMu.Unlock()
	err := postLoad(admin, cfg)
	end := time.Now()
	loadMu.Lock()
	loadSpans[i].end = end
	loadMu.Unlock()
	if err == nil {
		mark.Store(&m)
		loadGen.Store(n)
	}
	r.mu.Lock()
	r.loads++
	r.loadMs = append(r.loadMs, end.Sub(start).Seconds()*1e3)
	if err != nil {
		r.loadFail++
	}
	r.mu.Unlock()
	if err != nil {
		r.fail("POST /load", err)
	}
}

func postLoad(admin *http.Client, cfg []byte) error {
	resp, err := admin.Post("http://"+*adminAddr+"/load", "application/json", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	return nil
}

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

// --- sampling -----------------------------------------------------------------

type sample struct {
	steady     bool // taken just before a /load, a cycle after the previous one
	t          time.Duration
	rssKiB     int64
	goroutines int
	fds        int
	gone       bool
}

func sampleCaddy(admin *http.Client, pid int, t time.Duration) sample {
	s := sample{t: t, goroutines: -1, fds: -1, rssKiB: -1}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		s.gone = true
		return s
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	f.Close()
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	// The admin endpoint restarts on every /load: try again briefly.
	for try := 0; try < 5 && s.goroutines < 0; try++ {
		if try > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		s.goroutines = goroutines(admin)
	}
	return s
}

func goroutines(admin *http.Client) int {
	resp, err := admin.Get("http://" + *adminAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

func keyAuthOutcomes(admin *http.Client) string {
	resp, err := admin.Get("http://" + *adminAddr + "/metrics")
	if err != nil {
		return "unavailable: " + err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "caddy_key_auth_requests_total{"); ok {
			lbl, num, _ := strings.Cut(v, "} ")
			out = append(out, strings.TrimPrefix(strings.ReplaceAll(lbl, `"`, ""), "outcome=")+" "+num)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// --- the report ---------------------------------------------------------------

func percentile(sorted []float32, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return float64(sorted[max(0, min(i, len(sorted)-1))])
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(workers []*workerStats, samples []sample, rel *reloadStats, elapsed time.Duration, pid int, admin *http.Client, dead bool) bool {
	pass := true
	check := func(ok bool, format string, args ...any) {
		verdict := "ok"
		if !ok {
			verdict, pass = "FAILED", false
		}
		fmt.Printf("  %-6s  %s\n", verdict, fmt.Sprintf(format, args...))
	}

	// Merge the workers' results.
	all := newWorkerStats()
	for _, w := range workers {
		for k := range kinds {
			a, b := &all.kinds[k], &w.kinds[k]
			a.total += b.total
			a.ok += b.ok
			a.stale += b.stale
			a.wrong += b.wrong
			a.s5xx += b.s5xx
			a.errs += b.errs
			a.retried += b.retried
			a.oldConfig += b.oldConfig
			a.lat = append(a.lat, b.lat...)
			for s, n := range b.status {
				a.status[s] += n
			}
		}
		all.errs = append(all.errs, w.errs...)
		all.retries = append(all.retries, w.retries...)
		all.wrongs = append(all.wrongs, w.wrongs...)
	}
	errsInLoad := make([]int, len(kinds))
	errsOutside := make([]int, len(kinds))
	var outside []connErr
	timeouts := 0
	for _, e := range all.errs {
		if e.timeout {
			timeouts++
		}
		if !e.timeout && duringLoad(e.start, e.end) {
			errsInLoad[e.kind]++
		} else {
			errsOutside[e.kind]++
			outside = append(outside, e)
		}
	}

	rel.mu.Lock()
	defer rel.mu.Unlock()
	fmt.Printf("bench/soak.sh: %.0f s of load, %.0f req/s asked, %d workers, %d consumers per source (%d with a key that differs between set A and set B) + the anonymous one\n",
		elapsed.Seconds(), *rate, *concurrency, *nConsumers, *nRotating)
	fmt.Printf("reloads, one every %s in turn: %d consumers file rewrites (HTTP source switched with them), %d admin refreshes (median %.1f ms), %d /load (median %.1f ms, max %.1f ms)\n",
		*reloadEvery, rel.rewrites, rel.refreshes, median(rel.refreshMs), rel.loads, median(rel.loadMs), slices.Max(append([]float64{0}, rel.loadMs...)))
	fmt.Printf("HTTP source: %d full answers, %d not modified\n", sourceFull.Load(), sourceNotMod.Load())
	fmt.Println()

	fmt.Printf("%-13s %9s %8s %8s %6s %6s %6s %10s %9s %8s %8s %8s\n",
		"kind", "requests", "200", "401", "5xx", "stale", "wrong", "dropped@ld", "err other", "retried", "p50 ms", "p99 ms")
	var tot kindStats
	var allLat []float32
	for k, name := range kinds {
		s := &all.kinds[k]
		slices.Sort(s.lat)
		allLat = append(allLat, s.lat...)
		fmt.Printf("%-13s %9d %8d %8d %6d %6d %6d %10d %9d %8d %8.2f %8.2f\n", name, s.total, s.status[200], s.status[401],
			s.s5xx, s.stale, s.wrong, errsInLoad[k], errsOutside[k], s.retried, percentile(s.lat, 0.50), percentile(s.lat, 0.99))
		tot.total += s.total
		tot.ok += s.ok
		tot.stale += s.stale
		tot.wrong += s.wrong
		tot.s5xx += s.s5xx
		tot.retried += s.retried
		tot.oldConfig += s.oldConfig
		tot.errs += s.errs
	}
	slices.Sort(allLat)
	st200, st401 := 0, 0
	otherStatus := map[int]int{}
	for k := range kinds {
		for code, n := range all.kinds[k].status {
			switch code {
			case 200:
				st200 += n
			case 401:
				st401 += n
			default:
				otherStatus[code] += n
			}
		}
	}
	nIn, nOut := 0, 0
	for k := range kinds {
		nIn += errsInLoad[k]
		nOut += errsOutside[k]
	}
	fmt.Printf("%-13s %9d %8d %8d %6d %6d %6d %10d %9d %8d %8.2f %8.2f\n", "total", tot.total, st200, st401,
		tot.s5xx, tot.stale, tot.wrong, nIn, nOut, tot.retried, percentile(allLat, 0.50), percentile(allLat, 0.99))
	if len(otherStatus) > 0 {
		fmt.Printf("other statuses: %v\n", otherStatus)
	}
	fmt.Printf("latency over all answers: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; %.0f req/s\n",
		percentile(allLat, 0.5), percentile(allLat, 0.99), percentile(allLat, 0.999), percentile(allLat, 1), float64(tot.total)/elapsed.Seconds())
	fmt.Println("stale: the previous set's answer while a swap was under way (allowed). dropped@ld: the connection failed")
	fmt.Println("while a /load was under way (reported, allowed). retried: a GET the client resent by itself after")
	fmt.Println("Caddy closed the kept-alive connection it went out on (not an error to the client).")
	if tot.oldConfig > 0 {
		fmt.Printf("control answers from the previous config although sent after the /load answered: %d\n", tot.oldConfig)
	}
	fmt.Printf("key_auth's own count (caddy_key_auth_requests_total): %s\n", keyAuthOutcomes(admin))
	if st, err := getSources(admin); err == nil {
		for _, s := range st {
			fmt.Printf("source %s %s: %d consumers, %d keys, loaded %v, %d handlers, consecutive failures %d%s\n",
				s.Kind, s.Location, s.Consumers, s.Keys, s.Loaded, s.Handlers, s.Failures, ifs(s.LastError != "", ", last error: "+s.LastError))
		}
	}
	fmt.Println()

	// The series.
	var rssSettled, rssEnd, grSettled, grEnd, fdSettled, fdEnd []float64
	wEnd := elapsed - *window
	fmt.Println("Caddy over time: the samples taken just before a /load, one a cycle (the checks use these);")
	fmt.Printf("every %s sample, halfway between two reloads, is in series.tsv too\n", *sampleEvery)
	fmt.Printf("%7s %9s %11s %6s\n", "t s", "rss MiB", "goroutines", "fds")
	tsv := "t_s\trss_kib\tgoroutines\tfds\tsample\n"
	for _, s := range samples {
		what := "regular"
		if s.steady {
			what = "before_load"
		}
		tsv += fmt.Sprintf("%.2f\t%d\t%d\t%d\t%s\n", s.t.Seconds(), s.rssKiB, s.goroutines, s.fds, what)
		if !s.steady || s.gone || s.goroutines < 0 {
			continue
		}
		fmt.Printf("%7.0f %9.1f %11d %6d\n", s.t.Seconds(), float64(s.rssKiB)/1024, s.goroutines, s.fds)
		if s.t >= *warmup && s.t < *warmup+*window {
			rssSettled = append(rssSettled, float64(s.rssKiB))
			grSettled = append(grSettled, float64(s.goroutines))
			fdSettled = append(fdSettled, float64(s.fds))
		}
		if s.t >= wEnd {
			rssEnd = append(rssEnd, float64(s.rssKiB))
			grEnd = append(grEnd, float64(s.goroutines))
			fdEnd = append(fdEnd, float64(s.fds))
		}
	}
	_ = os.WriteFile(filepath.Join(*dir, "series.tsv"), []byte(tsv), 0o644)
	fmt.Println()

	fmt.Printf("checks (settled: median over %.0f-%.0f s; end: median over the last %.0f s, %.0f-%.0f s):\n",
		warmup.Seconds(), (*warmup + *window).Seconds(), window.Seconds(), wEnd.Seconds(), elapsed.Seconds())
	check(!dead, "Caddy ran to the end (pid %d)", pid)
	for k, name := range kinds {
		if all.kinds[k].total == 0 {
			check(false, "no %s requests were sent", name)
		}
	}
	check(tot.s5xx == 0, "5xx answers: %d", tot.s5xx)
	check(tot.wrong == 0, "wrong answers (status, message or identity not those of the live set): %d", tot.wrong)
	check(nOut == 0, "connection errors and timeouts outside /load: %d (timeouts: %d)", nOut, timeouts)
	check(rel.rewriteFail+rel.refreshFail+rel.loadFail == 0, "failed reloads: %d rewrites, %d admin refreshes, %d /load",
		rel.rewriteFail, rel.refreshFail, rel.loadFail)
	st, err := getSources(admin)
	if err == nil {
		err = checkSources(st, true)
	}
	check(err == nil, "both sources loaded at the end, without an error%s", ifs(err != nil, fmt.Sprintf(": %v", err)))
	within := func(what, unit string, scale float64, settled, end []float64) {
		if len(settled) == 0 || len(end) == 0 {
			check(false, "%s: no samples in a window (run longer than -warmup + 2 -window)", what)
			return
		}
		a, b := median(settled), median(end)
		d := (b - a) / a
		check(math.Abs(d) <= *tolerance, "%s: settled %.1f%s, end %.1f%s: %+.1f%% (limit ±%.0f%%)",
			what, a/scale, unit, b/scale, unit, d*100, *tolerance*100)
	}
	within("RSS", " MiB", 1024, rssSettled, rssEnd)
	within("goroutines", "", 1, grSettled, grEnd)
	if len(fdSettled) > 0 && len(fdEnd) > 0 {
		fmt.Printf("  info    open files: settled %.0f, end %.0f\n", median(fdSettled), median(fdEnd))
	}
	retriedOutside := 0
	for _, r := range all.retries {
		if !duringLoad(r.start, r.end) {
			retriedOutside++
		}
	}
	fmt.Printf("  info    dropped connections during /load: %d (%d of them on the control site, which has no key_auth); GETs resent by the client: %d (%d outside a /load)\n",
		nIn, errsInLoad[slices.Index(kinds, "control")], tot.retried, retriedOutside)

	if len(all.wrongs) > 0 {
		fmt.Println("\nwrong answers (first ones):")
		slices.Sort(all.wrongs)
		for _, w := range all.wrongs[:min(len(all.wrongs), 20)] {
			fmt.Println("  " + w)
		}
	}
	if len(outside) > 0 {
		fmt.Println("\nconnection errors outside /load (first ones):")
		slices.SortFunc(outside, func(a, b connErr) int { return a.start.Compare(b.start) })
		for _, e := range outside[:min(len(outside), 20)] {
			fmt.Printf("  %s %s: %s\n", e.start.Format("15:04:05.000"), kinds[e.kind], e.err)
		}
	}
	var inLoad []connErr
	for _, e := range all.errs {
		if !e.timeout && duringLoad(e.start, e.end) {
			inLoad = append(inLoad, e)
		}
	}
	if len(inLoad) > 0 {
		fmt.Println("\nconnection errors during /load (first ones):")
		slices.SortFunc(inLoad, func(a, b connErr) int { return a.start.Compare(b.start) })
		for _, e := range inLoad[:min(len(inLoad), 10)] {
			fmt.Printf("  %s %s: %s\n", e.start.Format("15:04:05.000"), kinds[e.kind], e.err)
		}
	}
	if len(rel.failures) > 0 {
		fmt.Println("\nfailed reloads (first ones):")
		for _, f := range rel.failures {
			fmt.Println("  " + f)
		}
	}
	fmt.Println()
	if pass {
		fmt.Println("soak: PASS")
	} else {
		fmt.Println("soak: FAIL")
	}
	return pass
}

func getSources(admin *http.Client) ([]sourceStatus, error) {
	resp, err := admin.Get("http://" + *adminAddr + "/key_auth/sources")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st []sourceStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return st, nil
}

func ifs(c bool, s string) string {
	if c {
		return s
	}
	return ""
}
