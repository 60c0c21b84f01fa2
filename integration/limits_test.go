package integration

// Limits (issue 18) counted in store local: an exact quota under
// concurrency, the 429 and its headers, the placeholders, what is never
// charged, the anonymous consumer's shared count, in-flight slots given
// back however a request ends. Token budgets are in limits_tokens_test.go,
// a fleet on Redis in limits_redis_test.go.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	keyLim1 = "limits-secret-0001" // lim1, credential lim1-key
	keyLim2 = "limits-secret-0002" // lim2, credential lim2-key
)

// limitsDoc is a consumers document of lim1 and lim2, each with the limits
// object given (JSON, "" for none), and a keyless guest for the anonymous
// fallback with its own.
func limitsDoc(lim1, lim2, guest string) string {
	obj := func(l string) string {
		if l == "" {
			return ""
		}
		return `, "limits": ` + l
	}
	return fmt.Sprintf(`{"consumers": [
  {"username": "lim1", "id": "lim1-id", "keys": [{"id": "lim1-key", "key": %q}]%s},
  {"username": "lim2", "id": "lim2-id", "keys": [{"id": "lim2-key", "key": %q}]%s},
  {"username": "guest", "id": "guest-id", "keys": []%s}
]}`, keyLim1, obj(lim1), keyLim2, obj(lim2), obj(guest))
}

// limitsTable is a table of store local of the test's own: a table
// outlives configs (and is saved in Caddy's data directory), so each test
// counts in a fresh one.
func limitsTable(t testing.TB) string {
	return fmt.Sprintf("t%d", time.Now().UnixNano())
}

// limitsSite is a site at addr with key_auth (the options given, a limits
// block of the lines given, the env's consumers file) in front of the echo
// upstream, which gets the limits placeholders of the requests meter in
// X-Remaining, X-Max and X-Reset.
func limitsSite(addr string, options, limits []string) string {
	var b strings.Builder
	b.WriteString(addr + " {\n\tkey_auth {\n")
	for _, o := range options {
		b.WriteString("\t\t" + o + "\n")
	}
	b.WriteString("\t\tconsumers file {{.Consumers}}\n\t\tlimits {\n")
	for _, l := range limits {
		b.WriteString("\t\t\t" + l + "\n")
	}
	b.WriteString("\t\t}\n\t}\n")
	b.WriteString("\treverse_proxy {{.Up}} {\n" +
		"\t\theader_up X-Remaining {http.auth.user.limits.requests.remaining}\n" +
		"\t\theader_up X-Max {http.auth.user.limits.requests.max}\n" +
		"\t\theader_up X-Reset {http.auth.user.limits.requests.reset}\n\t}\n}\n")
	return b.String()
}

// storm sends n GETs with key to url over conns connections at once and
// counts the answers by status.
func storm(t *testing.T, url, key string, n, conns int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	var next atomic.Int64
	start := make(chan struct{})
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := keepAliveClient()
			defer c.CloseIdleConnections()
			<-start
			for next.Add(1) <= int64(n) {
				r, err := send(c, req(http.MethodGet, url, nil, "apikey", key))
				mu.Lock()
				if err != nil {
					counts[-1]++
				} else {
					counts[r.status]++
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

// A quota of 100, 400 requests over 50 connections at once: exactly 100
// go through (the upstream counts them) and 300 get 429.
func TestLimitsExactQuotaLocal(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"requests": {"max": 100, "per": "day"}}`, "", ""))
	e.sites(limitsSite("{{.Site}}", nil, []string{"cost requests 1", "store local " + limitsTable(t)}))
	counts := storm(t, siteURL(0)+"/", keyLim1, 400, 50)
	if counts[200] != 100 || counts[429] != 300 || len(counts) != 2 {
		t.Errorf("answers %v, want exactly 100 200s and 300 429s", counts)
	}
	if n := e.up.hits.Load(); n != 100 {
		t.Errorf("the upstream got %d requests, want 100", n)
	}
}

// The 429: Kong's body, Retry-After, the RateLimit headers of draft -10
// on every limited answer, and the placeholders.
func TestLimitsHeaders(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"requests": {"max": 2, "per": "hour"}}`, "", ""))
	e.sites(limitsSite("{{.Site}}", nil, []string{"store local " + limitsTable(t)}))
	for i := range 2 {
		r := get(t, siteURL(0)+"/", "apikey", keyLim1)
		ec := r.echo(t)
		reset := ec.Header.Get("X-Reset")
		if got := ec.Header.Get("X-Remaining") + " " + ec.Header.Get("X-Max"); got != strconv.Itoa(1-i)+" 2" {
			t.Errorf("request %d: the upstream got remaining and max %q, want %d 2", i, got, 1-i)
		}
		if s, err := strconv.Atoi(reset); err != nil || s < 1 || s > 3600 {
			t.Errorf("request %d: reset %q, want 1..3600 seconds", i, reset)
		}
		if got, want := r.header.Get("RateLimit-Policy"), `"requests-consumer";q=2;w=3600`; got != want {
			t.Errorf("RateLimit-Policy %q, want %q", got, want)
		}
		if got, want := r.header.Get("RateLimit"), `"requests-consumer";r=`+strconv.Itoa(1-i)+";t="+reset; got != want {
			t.Errorf("RateLimit %q, want %q", got, want)
		}
	}
	r := get(t, siteURL(0)+"/", "apikey", keyLim1)
	wantFailure(t, r, http.StatusTooManyRequests, "API rate limit exceeded", "")
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 3600 {
		t.Errorf("Retry-After %q, want 1..3600", r.header.Get("Retry-After"))
	}
	if got, want := r.header.Get("RateLimit"), `"requests-consumer";r=0;t=`+strconv.Itoa(retry); got != want {
		t.Errorf("RateLimit %q, want %q", got, want)
	}
	if r.header.Get("RateLimit-Policy") == "" {
		t.Error("a 429 without RateLimit-Policy")
	}
	// A consumer without limits: no headers, no count.
	r = get(t, siteURL(0)+"/", "apikey", keyLim2)
	if r.status != 200 || r.header.Get("RateLimit") != "" || r.header.Get("RateLimit-Policy") != "" {
		t.Errorf("a consumer without limits: %d RateLimit %q", r.status, r.header.Get("RateLimit"))
	}
	if m, _ := metrics(t); m[`caddy_key_auth_limits_refused_total{meter="requests",scope="consumer"}`] < 1 {
		t.Error("the refusal is not counted by meter and scope kind")
	}
}

// A refused, failed or preflight request is not charged: the quota is
// whole afterwards.
func TestLimitsNotCharged(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(`{"consumers": [
  {"username": "lim1", "groups": ["blocked"], "keys": [{"id": "blocked-key", "key": "blocked-secret"}],
   "limits": {"requests": {"max": 5, "per": "day"}}},
  {"username": "lim2", "keys": [{"id": "lim2-key", "key": "` + keyLim2 + `"}],
   "limits": {"requests": {"max": 5, "per": "day"}}}
]}`)
	e.sites(limitsSite("{{.Site}}", []string{"run_on_preflight false", "deny blocked"}, []string{"store local " + limitsTable(t)}))
	for _, c := range []struct {
		method string
		hdr    []string
		status int
	}{
		{"GET", []string{"apikey", "blocked-secret"}, 403},
		{"GET", []string{"apikey", "nobody's"}, 401},
		{"GET", nil, 401},
		{"OPTIONS", []string{"Origin", "https://app.example", "Access-Control-Request-Method", "POST", "apikey", keyLim2}, 200},
	} {
		r := do(t, req(c.method, siteURL(0)+"/", nil, c.hdr...))
		if r.status != c.status || r.header.Get("RateLimit") != "" {
			t.Errorf("%s %v: %d RateLimit %q, want %d and none", c.method, c.hdr, r.status, r.header.Get("RateLimit"), c.status)
		}
	}
	if got := get(t, siteURL(0)+"/", "apikey", keyLim2).header.Get("RateLimit"); !strings.Contains(got, ";r=4;") {
		t.Errorf("first charged request: RateLimit %q, want r=4 (nothing charged before)", got)
	}
}

// The anonymous consumer is one consumer: its limits are shared by every
// request that falls back to it.
func TestLimitsAnonymousShared(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(limitsDoc("", "", `{"requests": {"max": 3, "per": "day"}}`))
	e.sites(limitsSite("{{.Site}}", []string{"anonymous guest"}, []string{"store local " + limitsTable(t)}))
	var got []int
	for i := range 5 {
		// Different clients, different wrong keys or none: one count.
		r := get(t, siteURL(0)+"/", "X-Forwarded-For", "192.0.2."+strconv.Itoa(i), "apikey", "not-a-key-"+strconv.Itoa(i))
		got = append(got, r.status)
	}
	if fmt.Sprint(got) != "[200 200 200 429 429]" {
		t.Errorf("anonymous answers %v, want [200 200 200 429 429]", got)
	}
	// An authenticated consumer without limits is not held by it.
	if r := get(t, siteURL(0)+"/", "apikey", keyLim1); r.status != 200 {
		t.Errorf("lim1 after the anonymous quota ran out: %d", r.status)
	}
}

// gate is an upstream that holds each request until released, counting
// those it holds at once and the most it ever held.
type gate struct {
	*httptest.Server
	release chan struct{}
	now     atomic.Int64
	most    atomic.Int64
}

func newGate(t *testing.T, h func(w http.ResponseWriter, r *http.Request, g *gate)) *gate {
	g := &gate{release: make(chan struct{})}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := g.now.Add(1)
		defer g.now.Add(-1)
		for {
			m := g.most.Load()
			if n <= m || g.most.CompareAndSwap(m, n) {
				break
			}
		}
		h(w, r, g)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gate) addr() string { return g.Listener.Addr().String() }

// An in_flight slot comes back when the request ends, however it ends:
// answered, its client gone, the upstream failing, a stream closed, a
// WebSocket closed.
func TestLimitsInFlightRelease(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"in_flight": 1}`, "", ""))
	held := newGate(t, func(w http.ResponseWriter, r *http.Request, g *gate) {
		switch r.URL.Path {
		case "/fail":
			// The upstream dies mid-answer: the proxy gets no answer.
			<-g.release
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			_ = c.Close()
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			for {
				if _, err := io.WriteString(w, "data: {}\n\n"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond): // the stream's pace
				}
			}
		case "/ws":
			hj, _ := w.(http.Hijacker)
			c, brw, _ := hj.Hijack()
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(io.Discard, c) // until the client's side closes
		default:
			select {
			case <-g.release:
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, "ok")
		}
	})
	e.vars["Held"] = held.addr()
	e.sites(`{{.Site}} {
	key_auth {
		consumers file {{.Consumers}}
		limits {
			store local ` + limitsTable(t) + `
		}
	}
	reverse_proxy {{.Held}} {
		flush_interval -1
	}
}
`)
	busy := func(why string) {
		t.Helper()
		r := get(t, siteURL(0)+"/other", "apikey", keyLim1)
		if r.status != 429 || r.header.Get("Retry-After") != "1" {
			t.Fatalf("%s: a second request got %d Retry-After %q, want 429 and 1", why, r.status, r.header.Get("Retry-After"))
		}
	}
	free := func(why string) {
		t.Helper()
		eventually(t, "the slot back after "+why, func() bool {
			r, err := send(client, req(http.MethodGet, siteURL(0)+"/quick", nil, "apikey", keyLim1))
			if err == nil && r.status == 200 {
				return true
			}
			// Not yet back: the request went no further than key_auth.
			return false
		})
	}
	// Answered.
	done := make(chan *response, 1)
	go func() { r, _ := send(client, req(http.MethodGet, siteURL(0)+"/", nil, "apikey", keyLim1)); done <- r }()
	eventually(t, "the first request at the upstream", func() bool { return held.now.Load() == 1 })
	busy("a request in flight")
	close(held.release) // from now on every held request is answered at once
	if r := <-done; r == nil || r.status != 200 {
		t.Fatalf("the held request: %v", r)
	}
	free("an answer")

	// A stream its client leaves.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// As for the WebSocket below, a 429 from free's last slot is retried.
	var stream *http.Response
	eventually(t, "the stream begun", func() bool {
		r := req(http.MethodGet, siteURL(0)+"/stream", nil, "apikey", keyLim1).WithContext(ctx)
		res, err := client.Do(r)
		if err != nil {
			t.Fatalf("the stream: %v", err)
		}
		if res.StatusCode == http.StatusTooManyRequests {
			_ = res.Body.Close()
			return false
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("the stream: %d", res.StatusCode)
		}
		stream = res
		return true
	})
	if _, err := bufio.NewReader(stream.Body).ReadString('\n'); err != nil { // the stream has begun
		t.Fatalf("the stream: %v", err)
	}
	go func() {
		<-ctx.Done() // the client leaves mid-stream
		_ = stream.Body.Close()
	}()
	busy("a stream under way")
	cancel()
	eventually(t, "the stream over at the upstream", func() bool { return held.now.Load() == 0 })
	free("a stream its client left")

	// The upstream failing.
	var failed *response
	eventually(t, "the failing upstream reached", func() bool {
		failed = get(t, siteURL(0)+"/fail", "apikey", keyLim1)
		return failed.status != http.StatusTooManyRequests // free's last slot, a moment more
	})
	if failed.status != http.StatusBadGateway {
		t.Errorf("a failed upstream: %d, want 502", failed.status)
	}
	free("an upstream failure")

	// A WebSocket closed by its client. free's own last request may still
	// hold the slot for a moment after its answer reached the client (the
	// slot goes back when the handler returns), so a 429 here is retried.
	var c net.Conn
	eventually(t, "the WebSocket upgraded", func() bool {
		conn, err := net.Dial("tcp", strings.TrimPrefix(siteURL(0), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: localhost\r\napikey: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", keyLim1)
		status, err := bufio.NewReader(conn).ReadString('\n')
		switch {
		case err == nil && strings.Contains(status, "101"):
			c = conn
			return true
		case err == nil && strings.Contains(status, "429"):
			_ = conn.Close()
			return false
		}
		t.Fatalf("the WebSocket upgrade: %q %v", status, err)
		return false
	})
	busy("an open WebSocket")
	_ = c.Close()
	free("a WebSocket closed")
}

// Stacked key_auth handlers: only the one with a limits block charges, so a
// request is charged once, whichever of the two has it.
func TestLimitsStacked(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("limits_on_first=%v", first), func(t *testing.T) {
			e := newEnv(t)
			e.writeConsumers(limitsDoc(`{"requests": {"max": 10, "per": "day"}}`, "", ""))
			limits := "\t\tlimits {\n\t\t\tstore local " + limitsTable(t) + "\n\t\t}\n"
			a, b := limits, ""
			if !first {
				a, b = b, a
			}
			e.sites(`{{.Site}} {
	route {
		key_auth {
			consumers file {{.Consumers}}
	` + a + `	}
		key_auth {
			consumers file {{.Consumers}}
	` + b + `	}
		reverse_proxy {{.Up}}
	}
}
`)
			for i := range 3 {
				r := get(t, siteURL(0)+"/", "apikey", keyLim1)
				if want := fmt.Sprintf(";r=%d;", 9-i); r.status != 200 || !strings.Contains(r.header.Get("RateLimit"), want) {
					t.Fatalf("request %d: %d RateLimit %q, want %s (charged once)", i, r.status, r.header.Get("RateLimit"), want)
				}
			}
		})
	}
}
