package integration

// Limits counted in Redis by a fleet of two Caddy instances: this
// process's, and a second one, the binary built with xcaddy, run as a
// process of its own (so that it can be killed with SIGKILL). Both count in
// one real redis-server.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

// instance is the second Caddy of a fleet: a process serving one site.
type instance struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// startInstance runs the built binary with a Caddyfile of one site at a
// free port, the block given ({{.Port}} is that port), and waits until it
// answers. It is stopped when the test ends, if it still runs.
func startInstance(t *testing.T, site string) *instance {
	t.Helper()
	bin := caddyBinary(t)
	dir := t.TempDir()
	port := freePorts(1)[0]
	cfg := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n}\n%s",
		strings.ReplaceAll(site, "{{.Port}}", strconv.Itoa(port)))
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{cmd: cmd, url: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(in.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // this test's own process, by its pid
		<-in.done
	})
	eventually(t, "the second instance serving", func() bool {
		select {
		case <-in.done:
			b, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
			t.Fatalf("the second instance exited:\n%s", b)
		default:
		}
		res, err := client.Get(in.url + "/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return true
	})
	return in
}

// fleetSite is a site with key_auth and a limits block of the lines given,
// counting in store redis at addr under prefix, in front of upstream.
func fleetSite(addr, consumers, redisAddr, prefix, upstream string, limits ...string) string {
	return fmt.Sprintf(`%s {
	key_auth {
		consumers file %s
		limits {
			%s
			store redis %s {
				prefix %s
				lease_ttl 2s
			}
		}
	}
	reverse_proxy %s
}
`, addr, consumers, strings.Join(limits, "\n\t\t\t"), redisAddr, prefix, upstream)
}

// A quota of 100, 400 requests over 50 connections split across two
// instances: exactly 100 go through, 300 get 429.
func TestLimitsRedisExactTwoInstances(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"requests": {"max": 100, "per": "day"}}`, "", ""))
	second := startInstance(t, fleetSite("http://127.0.0.1:{{.Port}}", e.consumers, srv.Addr(), "exact:", e.up.addr(), "cost requests 1"))
	e.sites(fleetSite("{{.Site}}", "{{.Consumers}}", srv.Addr(), "exact:", "{{.Up}}", "cost requests 1"))

	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	var next atomic.Int64
	for i := range 50 {
		url := siteURL(0) + "/"
		if i%2 == 1 {
			url = second.url + "/"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := keepAliveClient()
			defer c.CloseIdleConnections()
			for next.Add(1) <= 400 {
				r, err := send(c, req(http.MethodGet, url, nil, "apikey", keyLim1))
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
	wg.Wait()
	if counts[200] != 100 || counts[429] != 300 || len(counts) != 2 {
		t.Errorf("answers %v, want exactly 100 200s and 300 429s", counts)
	}
	if n := e.up.hits.Load(); n != 100 {
		t.Errorf("the upstream got %d requests, want 100", n)
	}
}

// holdingUpstream holds each request until its current gate opens (but
// /quick, answered at once) and counts the requests it holds at once.
type holdingUpstream struct {
	*gate
	mu   sync.Mutex
	hold chan struct{}
}

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	u := &holdingUpstream{hold: make(chan struct{})}
	u.gate = newGate(t, func(w http.ResponseWriter, r *http.Request, g *gate) {
		if r.URL.Path == "/quick" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		u.mu.Lock()
		h := u.hold
		u.mu.Unlock()
		select {
		case <-h:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "ok")
	})
	t.Cleanup(u.open)
	return u
}

// open lets the held requests go, and holds the next ones.
func (u *holdingUpstream) open() {
	u.mu.Lock()
	close(u.hold)
	u.hold = make(chan struct{})
	u.mu.Unlock()
}

// burst sends n requests at once, half to each url, and returns how many
// were refused with 429 as they come (done is closed when all ended).
func burst(t *testing.T, urls []string, n int) (refused *atomic.Int64, ok *atomic.Int64, done chan struct{}) {
	refused, ok, done = new(atomic.Int64), new(atomic.Int64), make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := send(client, req(http.MethodGet, urls[i%len(urls)]+"/", nil, "apikey", keyLim1))
			switch {
			case err != nil:
			case r.status == 429:
				refused.Add(1)
			case r.status == 200:
				ok.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	return refused, ok, done
}

// An in_flight of 3 across two instances in front of a slow upstream: the
// upstream never holds more than 3 at once, and afterwards 3 new requests
// all pass, at once.
func TestLimitsRedisInFlightTwoInstances(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"in_flight": 3}`, "", ""))
	up := newHoldingUpstream(t)
	second := startInstance(t, fleetSite("http://127.0.0.1:{{.Port}}", e.consumers, srv.Addr(), "inflight:", up.addr()))
	e.vars["Slow"] = up.addr()
	e.sites(fleetSite("{{.Site}}", "{{.Consumers}}", srv.Addr(), "inflight:", "{{.Slow}}"))
	urls := []string{siteURL(0), second.url}

	refused, _, done := burst(t, urls, 20)
	eventually(t, "20 requests held or refused", func() bool { return up.now.Load()+refused.Load() == 20 })
	if held := up.now.Load(); held != 3 {
		t.Errorf("%d requests held at the upstream, want 3", held)
	}
	up.open()
	<-done
	refused, ok, done := burst(t, urls, 3)
	eventually(t, "3 new requests at the upstream", func() bool { return up.now.Load() == 3 })
	up.open()
	<-done
	if ok.Load() != 3 || refused.Load() != 0 {
		t.Errorf("afterwards: %d passed, %d refused, want 3 and 0", ok.Load(), refused.Load())
	}
	if most := up.most.Load(); most > 3 {
		t.Errorf("the upstream held %d requests at once, want at most 3", most)
	}
}

// An instance killed with SIGKILL while it holds in-flight slots: its
// leases expire, and the slots come back to the fleet within lease_ttl.
func TestLimitsRedisKill9(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"in_flight": 3}`, "", ""))
	up := newHoldingUpstream(t)
	second := startInstance(t, fleetSite("http://127.0.0.1:{{.Port}}", e.consumers, srv.Addr(), "kill:", up.addr()))
	e.vars["Slow"] = up.addr()
	e.sites(fleetSite("{{.Site}}", "{{.Consumers}}", srv.Addr(), "kill:", "{{.Slow}}"))

	_, _, _ = burst(t, []string{second.url}, 3)
	eventually(t, "the second instance holding 3 slots", func() bool { return up.now.Load() == 3 })
	if r := get(t, siteURL(0)+"/quick", "apikey", keyLim1); r.status != 429 {
		t.Fatalf("with 3 slots held elsewhere: %d, want 429", r.status)
	}
	// Leases are renewed while their requests run: once every lease has
	// been renewed past the first expiry seen, the slots still hold.
	rc := redistest.Client(t, srv.Addr())
	leases := "{kill:limits}:consumer:7:lim1-id:in_flight"
	expiries := func() []float64 {
		v, _ := redistest.Do(t, rc, "ZRANGE", leases, "0", "-1", "WITHSCORES").AsZScores()
		var out []float64
		for _, z := range v {
			out = append(out, z.Score)
		}
		return out
	}
	first := expiries()
	if len(first) != 3 {
		t.Fatalf("%d leases in %s, want 3", len(first), leases)
	}
	last := slices.Max(first)
	eventually(t, "every lease renewed past the first expiries", func() bool {
		e := expiries()
		return len(e) == 3 && slices.Min(e) > last
	})
	if r := get(t, siteURL(0)+"/quick", "apikey", keyLim1); r.status != 429 {
		t.Fatalf("slots of a live instance lost after their TTL: %d, want 429", r.status)
	}
	killed := time.Now()
	_ = second.cmd.Process.Kill() // SIGKILL: no Settle, no goodbye
	<-second.done
	up.open() // the upstream's side of the dead requests ends
	eventually(t, "the slots back", func() bool {
		r, err := send(client, req(http.MethodGet, siteURL(0)+"/quick", nil, "apikey", keyLim1))
		return err == nil && r.status == 200
	})
	back := time.Since(killed)
	t.Logf("slots back %s after kill -9 (lease_ttl 2s)", back.Round(10*time.Millisecond))
	if back > 2*time.Second+time.Second {
		t.Errorf("slots back after %s, want within lease_ttl (2s) and a margin", back)
	}
}

// A store that cannot answer: 503 with on_error deny, the request let on
// uncounted (and counted as such) with allow.
func TestLimitsStoreDown(t *testing.T) {
	dead := "127.0.0.1:" + strconv.Itoa(freePorts(1)[0]) // nothing listens there
	for _, onError := range []string{"deny", "allow"} {
		t.Run(onError, func(t *testing.T) {
			e := newEnv(t)
			e.writeConsumers(limitsDoc(`{"requests": {"max": 10, "per": "day"}}`, "", ""))
			e.sites(limitsSite("{{.Site}}", nil, []string{"store redis " + dead, "on_error " + onError}))
			before, _ := metrics(t)
			r := get(t, siteURL(0)+"/", "apikey", keyLim1)
			after, _ := metrics(t)
			uncounted := after["caddy_key_auth_limits_uncounted_total"] - before["caddy_key_auth_limits_uncounted_total"]
			switch onError {
			case "deny":
				wantFailure(t, r, http.StatusServiceUnavailable, "limits store unavailable", "")
			case "allow":
				if r.status != 200 || !r.fromUpstream() || uncounted != 1 {
					t.Errorf("allow: %d from upstream %v, %v uncounted, want 200, true, 1", r.status, r.fromUpstream(), uncounted)
				}
			}
			if line := e.waitLog("caddy.log", func(l logEntry) bool {
				return strings.HasPrefix(l.str("msg"), "limits store unavailable")
			}); line == nil {
				t.Error("the failure is not logged")
			}
		})
	}
}
