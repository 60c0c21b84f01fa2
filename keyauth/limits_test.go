package keyauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// memStore counts in a map, all or nothing under one lock: the contract of
// LimitStore at its simplest, for the handler's unit tests (the real
// stores have their own, and the integration tests run them).
type memStore struct {
	mu      sync.Mutex
	used    map[string]int64
	fail    error
	admits  int
	settles int
	actual  [][]int64
}

type memTicket struct {
	charges []limits.Charge
	allowed bool
}

func newMemStore() *memStore { return &memStore{used: map[string]int64{}} }

func memKey(c *limits.Charge) string {
	return c.Kind.String() + "/" + c.Scope + "/" + c.Meter + "/" + strconv.FormatInt(c.Start.UnixNano(), 10)
}

func (s *memStore) Admit(_ context.Context, charges []limits.Charge) (limits.Admission, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return limits.Admission{}, s.fail
	}
	s.admits++
	a := limits.Admission{Allowed: true, Remaining: make([]int64, len(charges))}
	for i := range charges {
		c := &charges[i]
		if s.used[memKey(c)]+c.Cost > c.Max {
			a.Allowed, a.Refused = false, i
			break
		}
	}
	for i := range charges {
		c := &charges[i]
		if a.Allowed {
			s.used[memKey(c)] += c.Cost
		}
		a.Remaining[i] = max(c.Max-s.used[memKey(c)], 0)
	}
	a.Ticket = &memTicket{charges: append([]limits.Charge(nil), charges...), allowed: a.Allowed}
	return a, nil
}

func (s *memStore) Settle(_ context.Context, a limits.Admission, st limits.Settlement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settles++
	t := a.Ticket.(*memTicket)
	s.actual = append(s.actual, append([]int64(nil), st.Actual...))
	if !t.allowed {
		return nil
	}
	for i := range t.charges {
		c := &t.charges[i]
		switch {
		case c.Meter == limits.InFlight:
			s.used[memKey(c)]--
		case i < len(st.Actual) && st.Actual[i] >= 0:
			s.used[memKey(c)] += st.Actual[i] - c.Cost
		}
	}
	return nil
}

func (s *memStore) get(kind limits.ScopeKind, scope, meter string, start time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := limits.Charge{Kind: kind, Scope: scope, Meter: meter, Start: start}
	return s.used[memKey(&c)]
}

// limitedHandler is a handler with a limits block counted in store, over
// fieldConsumers' alice and guest with alice's key's and alice's own limits
// objects (JSON, "" for none).
func limitedHandler(t *testing.T, h *Handler, l *Limits, store LimitStore, keyLimits, aliceLimits string) *Handler {
	t.Helper()
	obj := func(l string) string {
		if l == "" {
			return ""
		}
		return `, "limits": ` + l
	}
	doc := `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a"` + obj(aliceLimits) + `,
   "keys": [{"id": "alice-cred", "key": "alice-key-1"` + obj(keyLimits) + `}]},
  {"username": "guest", "keys": []}
]}`
	set, err := consumers.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	h = provisioned(t, h)
	h.src = sources.StaticStore(set)
	h.Limits = l
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	h.limiter = newLimiter(l, store, zap.NewNop())
	h.now = func() time.Time { return testNow }
	return h
}

// testNow is the clock of the limits tests: 30 s into an hour.
var testNow = time.Date(2026, 12, 7, 10, 0, 30, 0, time.UTC)

// hourStart is the start of testNow's hour.
var hourStart = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// upstreamCounter answers 200 and counts what it got.
type upstreamCounter struct {
	mu   sync.Mutex
	n    int
	body string
	ct   string
	code int
	err  error
}

func (u *upstreamCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.mu.Lock()
	u.n++
	u.mu.Unlock()
	if u.err != nil {
		return u.err
	}
	if u.ct != "" {
		w.Header().Set("Content-Type", u.ct)
	}
	if u.code != 0 {
		w.WriteHeader(u.code)
	}
	_, _ = io.WriteString(w, u.body)
	return nil
}

func serve(t *testing.T, h *Handler, next caddyhttp.Handler, method, target string, hdr ...string) (*httptest.ResponseRecorder, *caddy.Replacer, error) {
	t.Helper()
	r, repl := fieldRequest(method, target, nil, hdr...)
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, next)
	return w, repl, err
}

func TestLimitsQuota(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{}, &Limits{}, store, `{"requests": {"max": 3, "per": "hour"}}`, "")
	up := &upstreamCounter{}
	for i := range 5 {
		w, _, err := serve(t, h, up, "GET", "/?apikey=alice-key-1")
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			if w.Code != 200 {
				t.Fatalf("request %d: %d, want 200", i, w.Code)
			}
			want := `"requests-credential";r=` + string(rune('2'-i)) + ";t=3570"
			if got := w.Header().Get("RateLimit"); got != want {
				t.Errorf("request %d: RateLimit %q, want %q", i, got, want)
			}
			if got := w.Header().Get("RateLimit-Policy"); got != `"requests-credential";q=3;w=3600` {
				t.Errorf("RateLimit-Policy %q", got)
			}
			continue
		}
		if w.Code != http.StatusTooManyRequests || w.Body.String() != `{"message":"API rate limit exceeded"}` {
			t.Fatalf("request %d: %d %s, want 429", i, w.Code, w.Body)
		}
		if got := w.Header().Get("Retry-After"); got != "3570" {
			t.Errorf("Retry-After %q, want 3570", got)
		}
		if got := w.Header().Get("RateLimit"); got != `"requests-credential";r=0;t=3570` {
			t.Errorf("refused RateLimit %q", got)
		}
	}
	if up.n != 3 {
		t.Errorf("upstream got %d requests, want 3", up.n)
	}
	if store.admits != 5 || store.settles != 5 {
		t.Errorf("%d admissions and %d settlements, want 5 and 5 (refused ones settle too)", store.admits, store.settles)
	}
}

// Refused and failed requests, and preflights, are never charged; a
// consumer without limits costs the store nothing.
func TestLimitsNotCharged(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{RunOnPreflight: ptr(false), Allow: []string{"gold"}}, &Limits{}, store, "", `{"requests": {"max": 1, "per": "hour"}}`)
	up := &upstreamCounter{}
	for _, c := range []struct {
		method, target string
		hdr            []string
		code           int
	}{
		{"GET", "/", nil, 401},
		{"GET", "/?apikey=wrong", nil, 401},
		{"GET", "/?apikey=alice-key-1", nil, 403}, // not in gold
		{"OPTIONS", "/", []string{"Origin", "https://a.example", "Access-Control-Request-Method", "GET"}, 200},
	} {
		w, _, err := serve(t, h, up, c.method, c.target, c.hdr...)
		if err != nil || w.Code != c.code {
			t.Fatalf("%s %s: %d %v, want %d", c.method, c.target, w.Code, err, c.code)
		}
		if w.Header().Get("RateLimit") != "" {
			t.Errorf("%s %s: RateLimit on a request not charged", c.method, c.target)
		}
	}
	if store.admits != 0 {
		t.Errorf("%d admissions, want none", store.admits)
	}
}

func TestLimitsInFlight(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{}, &Limits{}, store, "", `{"in_flight": 1}`)
	release := make(chan struct{})
	entered := make(chan struct{})
	slow := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		close(entered)
		<-release
		return errors.New("upstream went away")
	})
	done := make(chan error)
	go func() {
		_, _, err := serve(t, h, slow, "GET", "/?apikey=alice-key-1")
		done <- err
	}()
	<-entered
	w, _, _ := serve(t, h, &upstreamCounter{}, "GET", "/?apikey=alice-key-1")
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("second request in flight: %d Retry-After %q, want 429 and 1", w.Code, w.Header().Get("Retry-After"))
	}
	if got := w.Header().Get("RateLimit-Policy"); got != `"in_flight-consumer";q=1;qu="concurrent-requests"` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	close(release)
	if err := <-done; err == nil {
		t.Fatal("the upstream's error was lost")
	}
	// The slot came back though the upstream failed.
	if w, _, _ := serve(t, h, &upstreamCounter{}, "GET", "/?apikey=alice-key-1"); w.Code != 200 {
		t.Fatalf("after the first ended: %d, want 200", w.Code)
	}
	if n := store.get(limits.Consumer, "alice-id", limits.InFlight, time.Time{}); n != 0 {
		t.Errorf("%d slots held, want 0", n)
	}
}

// The slot comes back when the next handler panics too.
func TestLimitsInFlightPanic(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{}, &Limits{}, store, "", `{"in_flight": 1}`)
	func() {
		defer func() { _ = recover() }()
		_, _, _ = serve(t, h, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { panic("boom") }), "GET", "/?apikey=alice-key-1")
	}()
	if n := store.get(limits.Consumer, "alice-id", limits.InFlight, time.Time{}); n != 0 {
		t.Errorf("%d slots held after a panic, want 0", n)
	}
}

// The slot comes back when the handler itself panics after admitting the
// request and before passing it on: here identifyWith, writing the
// identity headers into a request without a header map.
func TestLimitsInFlightPanicBeforeNext(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{}, &Limits{}, store, "", `{"in_flight": 1}`)
	up := &upstreamCounter{}
	panicked := func() (p any) {
		defer func() { p = recover() }()
		r, _ := fieldRequest("GET", "/?apikey=alice-key-1", nil)
		r.Header = nil
		_ = h.ServeHTTP(httptest.NewRecorder(), r, up)
		return nil
	}()
	if panicked == nil {
		t.Fatal("no panic: the test no longer reaches the path between admission and next")
	}
	if n := store.get(limits.Consumer, "alice-id", limits.InFlight, time.Time{}); n != 0 {
		t.Errorf("%d slots held after a panic before next, want 0", n)
	}
	if w, _, _ := serve(t, h, up, "GET", "/?apikey=alice-key-1"); w.Code != 200 {
		t.Errorf("after the panic: %d, want 200", w.Code)
	}
}

func TestLimitsTokens(t *testing.T) {
	start := hourStart
	for _, c := range []struct {
		name     string
		up       *upstreamCounter
		want     int64 // settled
		wantCode int
	}{
		{"usage read", &upstreamCounter{ct: "text/event-stream", body: "data: {\"usage\":{\"total_tokens\":42}}\n\ndata: [DONE]\n\n"}, 42, 200},
		{"no usage keeps the reservation", &upstreamCounter{ct: "application/json", body: `{"x":1}`}, 100, 200},
		{"5xx refunds", &upstreamCounter{ct: "application/json", code: 502, body: `{"usage":{"total_tokens":42}}`}, 0, 502},
		{"no answer refunds", &upstreamCounter{err: caddyhttp.Error(502, errors.New("dial"))}, 0, 200},
		{"4xx without usage refunds", &upstreamCounter{ct: "application/json", code: 400, body: `{"error":"x"}`}, 0, 400},
		{"compressed is not read", &upstreamCounter{ct: "application/json", body: `{"usage":{"total_tokens":42}}`}, 100, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := newMemStore()
			h := limitedHandler(t, &Handler{}, &Limits{Costs: []Cost{{Meter: "tokens", Amount: "100", Usage: true}}}, store, "", `{"tokens": {"max": 1000, "per": "hour"}}`)
			next := caddyhttp.Handler(c.up)
			if c.name == "compressed is not read" {
				next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					w.Header().Set("Content-Encoding", "gzip")
					return c.up.ServeHTTP(w, r)
				})
			}
			w, _, _ := serve(t, h, next, "POST", "/?apikey=alice-key-1")
			if w.Code != c.wantCode {
				t.Fatalf("%d, want %d", w.Code, c.wantCode)
			}
			if got := store.get(limits.Consumer, "alice-id", "tokens", start); got != c.want {
				t.Errorf("tokens used %d, want %d", got, c.want)
			}
			if got := w.Header().Get("RateLimit-Policy"); got != `"tokens-consumer";q=1000;w=3600;keyauth-unit="tokens"` {
				t.Errorf("RateLimit-Policy %q", got)
			}
		})
	}
}

func TestLimitsStoreDown(t *testing.T) {
	for _, allow := range []bool{false, true} {
		store := newMemStore()
		store.fail = errors.New("connection refused")
		l := &Limits{}
		if allow {
			l.OnError = onErrorAllow
		}
		h := limitedHandler(t, &Handler{}, l, store, "", `{"requests": {"max": 10, "per": "hour"}}`)
		before := counterValue(limitUncounted)
		up := &upstreamCounter{}
		w, _, _ := serve(t, h, up, "GET", "/?apikey=alice-key-1")
		switch {
		case !allow && (w.Code != 503 || w.Body.String() != `{"message":"limits store unavailable"}`):
			t.Errorf("deny: %d %s, want 503", w.Code, w.Body)
		case allow && (w.Code != 200 || up.n != 1):
			t.Errorf("allow: %d, upstream %d, want 200 and 1", w.Code, up.n)
		case allow && counterValue(limitUncounted) != before+1:
			t.Errorf("allow: uncounted not counted")
		}
	}
}

func TestLimitsPlaceholders(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{}, &Limits{Costs: []Cost{{Meter: "requests", Amount: "{http.request.header.X-Cost}"}}}, store,
		`{"requests": {"max": 10, "per": "hour"}}`, `{"requests": {"max": 100, "per": "day"}, "in_flight": 5}`)
	var got string
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		got = repl.ReplaceAll("{http.auth.user.limits.requests.remaining} {http.auth.user.limits.requests.max} {http.auth.user.limits.requests.reset} {http.auth.user.limits.in_flight.remaining} [{http.auth.user.limits.in_flight.reset}] [{http.auth.user.limits.tokens.max}]", "?")
		return nil
	})
	w, _, _ := serve(t, h, next, "GET", "/?apikey=alice-key-1", "X-Cost", "4")
	if w.Code != 200 {
		t.Fatalf("%d", w.Code)
	}
	// An empty value is ReplaceAll's "?".
	if want := "6 10 3570 4 [?] [?]"; got != want {
		t.Errorf("placeholders %q, want %q", got, want)
	}
	// Least room: the credential's 6 of 10 over the consumer's 96 of 100
	// and the slots' 4 of 5.
	if got := w.Header().Get("RateLimit"); got != `"requests-credential";r=6;t=3570` {
		t.Errorf("RateLimit %q", got)
	}
	if got := w.Header().Get("RateLimit-Policy"); got != `"requests-credential";q=10;w=3600, "in_flight-consumer";q=5;qu="concurrent-requests", "requests-consumer";q=100;w=86400` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	for _, bad := range []string{"", "x", "-1", "1.5"} {
		w, _, _ := serve(t, h, next, "GET", "/?apikey=alice-key-1", "X-Cost", bad)
		if w.Code != 400 {
			t.Errorf("X-Cost %q: %d, want 400", bad, w.Code)
		}
	}
}

// A refused request goes to the error routes like any other failure, with
// its headers.
func TestLimitsHandleErrors(t *testing.T) {
	store := newMemStore()
	h := limitedHandler(t, &Handler{HandleErrors: true}, &Limits{}, store, "", `{"requests": {"max": 0, "per": "hour"}}`)
	w, _, err := serve(t, h, &upstreamCounter{}, "GET", "/?apikey=alice-key-1")
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 429 {
		t.Fatalf("error %v, want a 429 handler error", err)
	}
	if w.Header().Get("Retry-After") == "" || w.Header().Get("RateLimit") == "" {
		t.Errorf("headers %v, want Retry-After and RateLimit", w.Header())
	}
}

func TestLimitsCaddyfile(t *testing.T) {
	const src = "\tconsumers file c.json\n"
	for _, c := range []struct{ name, in, want string }{
		{"bare", "key_auth {\n" + src + "\tlimits\n}", `{"limits": {}}`},
		{"empty block", "key_auth {\n" + src + "\tlimits {\n\t}\n}", `{"limits": {}}`},
		{"costs", "key_auth {\n" + src + "\tlimits {\n\t\tcost requests 1\n\t\tcost tokens usage 4000\n\t\tcost gpu {http.request.header.X-GPU}\n\t\ton_error allow\n\t}\n}",
			`{"limits": {"costs": [{"meter": "requests", "amount": 1}, {"meter": "tokens", "amount": 4000, "usage": true}, {"meter": "gpu", "amount": "{http.request.header.X-GPU}"}], "on_error": "allow"}}`},
	} {
		got, err := parseJSON(t, c.in)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		m := got.(map[string]any)
		delete(m, "consumers")
		if !jsonEqual(t, m, c.want) {
			t.Errorf("%s: got %v, want %s", c.name, m, c.want)
		}
	}
	for _, c := range []struct {
		name, in, want string
		line           int
	}{
		{"argument", "limits x", "wrong argument count", 2},
		{"unknown option", "limits {\n\t\tquota 5\n\t}", "unrecognized limits option 'quota'", 3},
		{"cost without amount", "limits {\n\t\tcost requests\n\t}", "cost wants <meter> <amount> or <meter> usage <reserve>, got 1 argument(s)", 3},
		{"cost usage without reserve", "limits {\n\t\tcost tokens usage\n\t}", "cost tokens usage needs a reserve", 3},
		{"cost negative", "limits {\n\t\tcost requests -1\n\t}", `amount "-1" is not a non-negative integer or a placeholder`, 3},
		{"cost not a number", "limits {\n\t\tcost requests lots\n\t}", `amount "lots"`, 3},
		{"cost in_flight", "limits {\n\t\tcost in_flight 1\n\t}", "in_flight is not charged by a cost", 3},
		{"cost bad meter", "limits {\n\t\tcost \"a b\" 1\n\t}", "is not 1 to 64 letters, digits", 3},
		{"cost twice", "limits {\n\t\tcost requests 1\n\t\tcost requests 2\n\t}", "meter requests is charged twice", 4},
		{"cost block", "limits {\n\t\tcost requests 1 {\n\t\t\tx\n\t\t}\n\t}", "cost takes no block", 4},
		{"on_error bad", "limits {\n\t\ton_error maybe\n\t}", "on_error must be deny or allow, got 'maybe'", 3},
		{"on_error twice", "limits {\n\t\ton_error deny\n\t\ton_error allow\n\t}", "on_error given twice", 4},
		{"store unknown", "limits {\n\t\tstore memcached\n\t}", "unknown limits store 'memcached'", 3},
		{"store missing", "limits {\n\t\tstore\n\t}", "wrong argument count", 3},
		{"limits twice", "limits\n\tlimits", "limits given twice", 3},
	} {
		_, err := parseJSON(t, "key_auth {\n\t"+c.in+"\n"+src+"}")
		if err == nil {
			t.Errorf("%s: no error, want %q", c.name, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasSuffix(err.Error(), ", at Testfile:"+itoa(c.line)) {
			t.Errorf("%s: %q, want %q at line %d", c.name, err, c.want, c.line)
		}
	}
}

func TestLimitsValidateJSON(t *testing.T) {
	for _, c := range []struct {
		l    Limits
		want string
	}{
		{Limits{Costs: []Cost{{Meter: "requests"}}}, "cost requests: an amount is required"},
		{Limits{Costs: []Cost{{Amount: "1"}}}, "a cost needs a meter"},
		{Limits{Costs: []Cost{{Meter: "a", Amount: "1"}, {Meter: "a", Amount: "2"}}}, "meter a is charged twice"},
		{Limits{OnError: "ignore"}, `on_error must be deny or allow, got "ignore"`},
	} {
		err := (&Handler{Limits: &c.l}).Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.l, err, c.want)
		}
	}
}

func jsonEqual(t *testing.T, got any, want string) bool {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	return reflect.DeepEqual(got, w)
}

func itoa(n int) string { return strconv.Itoa(n) }

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
