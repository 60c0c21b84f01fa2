package integration

// Concurrency and long runs, with the race detector on: many clients
// while the consumers flip between two sets hundreds of times, hundreds of
// config reloads under traffic, and thousands of hostile requests that
// leave the heap and the goroutines where they were.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The two consumer sets the flip test alternates. The same key belongs to
// erin in one and to frank in the other; each set has a key of its own; the
// anonymous consumer has a different id in each.
const (
	flipSetA = `{"consumers": [
  {"username": "erin", "id": "erin-A", "custom_id": "custom-A", "keys": [{"id": "erin-cred-A", "key": "flip-shared-key"}]},
  {"username": "gina", "id": "gina-A", "keys": [{"id": "gina-cred-A", "key": "flip-a-only-key"}]},
  {"username": "guest", "id": "anon-A"}
]}`
	flipSetB = `{"consumers": [
  {"username": "pad-1", "keys": [{"key": "flip-pad-1"}]},
  {"username": "guest", "id": "anon-B", "custom_id": "anon-custom-B"},
  {"username": "frank", "id": "frank-B", "custom_id": "custom-B", "keys": [{"id": "frank-cred-B", "key": "flip-shared-key"}]},
  {"username": "harry", "id": "harry-B", "keys": [{"id": "harry-cred-B", "key": "flip-b-only-key"}]},
  {"username": "pad-2", "keys": [{"key": "flip-pad-2"}]}
]}`
)

// flipAnswer is what a request came to: who the upstream was told
// about, or the failure.
type flipAnswer struct {
	status int
	who    identity
	msg    string
}

func (a flipAnswer) String() string {
	if a.status == http.StatusOK {
		return fmt.Sprintf("200 %+v", a.who)
	}
	return fmt.Sprintf("%d %s", a.status, a.msg)
}

const flipConfig = `{{.Global}}
{{.Site}} {
	key_auth {
		consumers file {{.Consumers}} {
			refresh 50ms
		}
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	key_auth {
		key_in_body true
		hide_credentials
		anonymous guest
		consumers file {{.Consumers}} {
			refresh 50ms
		}
	}
	reverse_proxy {{.Up}}
}
`

// Many clients while the consumers file flips between flipSetA and
// flipSetB hundreds of times: every answer is one of the two sets' answers
// in full, never a mix of both.
func TestConsumersFlipUnderTraffic(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(flipSetA)
	e.load(flipConfig, "caddyfile")

	var (
		erin  = identity{"erin", "erin-A", "custom-A", "erin-cred-A", absent}
		gina  = identity{"gina", "gina-A", absent, "gina-cred-A", absent}
		anonA = identity{"guest", "anon-A", absent, absent, "true"}
		frank = identity{"frank", "frank-B", "custom-B", "frank-cred-B", absent}
		harry = identity{"harry", "harry-B", absent, "harry-cred-B", absent}
		anonB = identity{"guest", "anon-B", "anon-custom-B", absent, "true"}
	)
	ok := func(who identity) flipAnswer { return flipAnswer{status: 200, who: who} }
	no := func(msg string) flipAnswer { return flipAnswer{status: 401, msg: msg} }
	// For each key, the answer under set A and under set B, on the plain
	// site and on the anonymous one.
	type expect struct{ a, b, anonA, anonB flipAnswer }
	keys := map[string]expect{
		"flip-shared-key": {ok(erin), ok(frank), ok(erin), ok(frank)},
		"flip-a-only-key": {ok(gina), no(msgInvalid), ok(gina), ok(anonB)},
		"flip-b-only-key": {no(msgInvalid), ok(harry), ok(anonA), ok(harry)},
		"flip-wrong-key":  {no(msgInvalid), no(msgInvalid), ok(anonA), ok(anonB)},
		"":                {no(msgNoKey), no(msgNoKey), ok(anonA), ok(anonB)},
	}
	keyList := []string{"flip-shared-key", "flip-a-only-key", "flip-b-only-key", "flip-wrong-key", ""}

	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	// send sends key from a location to a site and reports what came of it
	// and whether it is one of the two answers the sets allow.
	send := func(rng *rand.Rand) (string, error) {
		key := keyList[rng.IntN(len(keyList))]
		anon := rng.IntN(2) == 1
		base := site
		if anon {
			base = site2
		}
		loc := rng.IntN(3)
		if !anon && loc == 2 {
			loc = 0
		}
		var r *http.Request
		switch {
		case key == "":
			r = req(http.MethodGet, base+"/", nil)
		case loc == 0:
			r = req(http.MethodGet, base+"/", nil, "apikey", key)
		case loc == 1:
			r = req(http.MethodGet, base+"/?apikey="+url.QueryEscape(key), nil)
		default:
			r = req(http.MethodPost, base+"/", strings.NewReader(`{"apikey": "`+key+`", "n": 1}`), "Content-Type", jsonType)
		}
		res, err := send(cl, r)
		if err != nil {
			return "", err
		}
		var got flipAnswer
		got.status = res.status
		switch {
		case res.status == http.StatusOK && res.fromUpstream():
			var up echo
			if err := json.Unmarshal(res.body, &up); err != nil {
				return "", err
			}
			got.who = identityOf(&up)
			// The upstream got this request's key, or none when hidden:
			// nothing of another request's.
			sawKey := up.Header.Get("Apikey") + up.URI + string(up.Body)
			if anon {
				if strings.Contains(sawKey, "flip-") {
					return "", fmt.Errorf("key %q: the upstream got a key: %s", key, sawKey)
				}
			} else if key != "" && loc == 0 && up.Header.Get("Apikey") != key {
				return "", fmt.Errorf("key %q: the upstream got apikey %q", key, up.Header.Get("Apikey"))
			}
		case res.status == http.StatusUnauthorized:
			var m struct{ Message string }
			_ = json.Unmarshal(res.body, &m)
			got.msg = m.Message
		default:
			return "", fmt.Errorf("key %q: answer %s", key, res)
		}
		want := keys[key]
		a, b := want.a, want.b
		if anon {
			a, b = want.anonA, want.anonB
		}
		switch got {
		case a:
			return "A", nil
		case b:
			return "B", nil
		}
		return "", fmt.Errorf("key %q (anonymous site %v, location %d): got %s, want %s (set A) or %s (set B)", key, anon, loc, got, a, b)
	}

	// The flipper writes the other set and swaps it in at once through the
	// admin API, while the poller (50ms) also reads the file.
	const flips = 300
	stop := make(chan struct{})
	var seen [2]atomic.Int64
	var requests atomic.Int64
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 5))
			for {
				select {
				case <-stop:
					return
				default:
				}
				set, err := send(rng)
				requests.Add(1)
				if err != nil {
					mu.Lock()
					if len(bad) < 10 {
						bad = append(bad, err.Error())
					}
					mu.Unlock()
					continue
				}
				if set == "A" {
					seen[0].Add(1)
				} else {
					seen[1].Add(1)
				}
			}
		})
	}
	start := time.Now()
	refreshClient := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	for i := range flips {
		v := flipSetB
		if i%2 == 1 {
			v = flipSetA
		}
		if err := writeFileAtomic(e.consumers, v); err != nil {
			t.Fatal(err)
		}
		res, err := refreshClient.Post(adminURL+"/key_auth/sources/refresh", "", nil)
		if err != nil {
			t.Fatalf("admin refresh %d: %v", i, err)
		}
		var st []struct {
			RefreshError string `json:"refresh_error"`
		}
		err = json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || len(st) != 1 || st[0].RefreshError != "" {
			t.Fatalf("admin refresh %d: %d %+v %v", i, res.StatusCode, st, err)
		}
		time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond) // pacing: flips at uneven moments
	}
	close(stop)
	wg.Wait()
	t.Logf("%d flips in %s; %d requests, %d saw set A and %d set B",
		flips, time.Since(start).Round(time.Millisecond), requests.Load(), seen[0].Load(), seen[1].Load())
	for _, b := range bad {
		t.Error(b)
	}
	if seen[0].Load() == 0 || seen[1].Load() == 0 {
		t.Errorf("requests saw set A %d times and set B %d times: the flips did not reach them", seen[0].Load(), seen[1].Load())
	}
}

// TestReloadUnderTraffic extends TestReloadLeak (JSON configs,
// static answers, no traffic during the loads) to what a user runs: 200
// Caddyfile loads through the admin API, alternating two configs of
// key_auth in front of reverse_proxy with every option in play, while
// clients send valid, invalid, missing, anonymous and body keys. No answer
// is a 5xx or a mix, and goroutines and open files end where they started.
// Upstream keep-alive is off: Caddy 2.11.9's reverse_proxy keeps a
// replaced handler's idle connections (see CADDY-NOTES.md).
func TestReloadUnderTraffic(t *testing.T) {
	e := newEnv(t)
	const tmpl = `{{.Global}}
{{.Site}} {
	handle /anon/* {
		key_auth {
			key_in_body true
			hide_credentials
			anonymous guest
			realm {{.Realm}}
			consumers file {{.Consumers}} {
				refresh {{.Refresh}}
			}
		}
		reverse_proxy {{.Up}} {
			transport http {
				keepalive off
			}
		}
	}
	handle {
		key_auth {
			key_names apikey authorization
			realm {{.Realm}}
			consumers file {{.Consumers}}
		}
		reverse_proxy {{.Up}} {
			transport http {
				keepalive off
			}
		}
	}
}
`
	const plain = `{{.Global}}
{{.Site}} {
	reverse_proxy {{.Up}} {
		transport http {
			keepalive off
		}
	}
}
`
	variant := func(i int) string {
		e.vars["Realm"] = fmt.Sprintf("r%d", i%2)
		e.vars["Refresh"] = []string{"100ms", "150ms"}[i%2]
		return e.render(tmpl)
	}
	// One round trip through a key_auth config first, so what Caddy and
	// the modules start once per process (not per load) is in the
	// baseline: the test is about what 200 loads leave behind.
	e.load(variant(0), "caddyfile")
	e.load(plain, "caddyfile")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	g0 := goroutines()
	f0 := openFiles(t)

	type call struct {
		url, key, body string
		want           []flipAnswer // any of these
	}
	base := site
	calls := []call{
		{base + "/", keyAlice, "", []flipAnswer{{status: 200, who: idAlice}}},
		{base + "/?apikey=" + url.QueryEscape(keyBob), "", "", []flipAnswer{{status: 200, who: idBob}}},
		{base + "/", keyWrong, "", []flipAnswer{{status: 401, msg: msgInvalid}}},
		{base + "/", "", "", []flipAnswer{{status: 401, msg: msgNoKey}}},
		{base + "/anon/", keyWrong, "", []flipAnswer{{status: 200, who: idGuest}}},
		{base + "/anon/", "", `{"apikey": "` + keyAlice + `"}`, []flipAnswer{{status: 200, who: idAlice}}},
		{base + "/anon/", "", `{"apikey": 1}`, []flipAnswer{{status: 200, who: idGuest}}},
	}
	// The clients start once the first config with key_auth runs.
	if status, body, err := loadConfig(variant(0), "caddyfile"); err != nil || status != http.StatusOK {
		t.Fatalf("load: %d %s %v", status, body, err)
	}
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	var requests, dropped atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := calls[i%len(calls)]
				var r *http.Request
				if c.body != "" {
					r = req(http.MethodPost, c.url, strings.NewReader(c.body), "Content-Type", jsonType)
				} else {
					r = req(http.MethodGet, c.url, nil)
				}
				if c.key != "" {
					r.Header.Set("Apikey", c.key)
				}
				res, err := send(noKeepAlive, r)
				requests.Add(1)
				if err != nil {
					// Caddy may drop a connection the stopping server
					// accepted during a reload (not key_auth's doing; see
					// hammer): only answers count. A timeout is a hang.
					if dropped.Add(1) == 1 {
						t.Logf("first dropped connection: %v", err)
					}
					if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s: %v", c.url, err))
						mu.Unlock()
					}
					continue
				}
				got := flipAnswer{status: res.status}
				switch {
				case res.status == http.StatusOK && res.fromUpstream():
					var up echo
					if json.Unmarshal(res.body, &up) == nil {
						got.who = identityOf(&up)
					}
				case res.status == http.StatusUnauthorized:
					var m struct{ Message string }
					_ = json.Unmarshal(res.body, &m)
					got.msg = m.Message
					if ch := res.header.Get("Www-Authenticate"); ch != `Key realm="r0"` && ch != `Key realm="r1"` {
						got.msg += " challenge " + ch
					}
				}
				okAnswer := false
				for _, w := range c.want {
					okAnswer = okAnswer || got == w
				}
				if !okAnswer {
					mu.Lock()
					if len(bad) < 10 {
						bad = append(bad, fmt.Sprintf("%s key %q: %s", c.url, c.key, got))
					}
					mu.Unlock()
				}
			}
		})
	}
	const loads = 200
	start := time.Now()
	for i := 1; i < loads; i++ {
		cfg := variant(i)
		status, body, err := loadConfig(cfg, "caddyfile")
		if err != nil || status != http.StatusOK {
			close(stop)
			wg.Wait()
			t.Fatalf("load %d: %d %s %v", i, status, body, err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d loads in %s; %d requests, %d connections dropped by Caddy during reloads",
		loads, time.Since(start).Round(time.Millisecond), requests.Load(), dropped.Load())
	for _, b := range bad {
		t.Error(b)
	}
	if requests.Load() < loads {
		t.Errorf("only %d requests during %d loads", requests.Load(), loads)
	}
	if answered := requests.Load() - dropped.Load(); answered < loads {
		t.Errorf("only %d of %d requests were answered", answered, requests.Load())
	}
	// One store kept across the loads, one replaced by each (its refresh
	// differs).
	if n := len(storesAt(e.consumers)); n != 2 {
		t.Errorf("%d stores for the file's two sources after the loads", n)
	}

	e.load(plain, "caddyfile")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if n := len(storesAt(e.consumers)); n != 0 {
		t.Errorf("%d stores left once no config names the file", n)
	}
	noLeaks(t, g0, f0, loads)
}

func hostileCases() []testCase {
	var all []testCase
	for _, cs := range [][]testCase{oddByteCases(), longKeyCases(), repeatCases(), hostileJSONCases(), hostileMultipartCases()} {
		all = append(all, cs...)
	}
	return all
}

// TestHostileRequestsMemory sends every hostile request 15 times from 8
// clients, some 1700 requests: the answers stay right, and the heap and the
// goroutines come back to where they were, whatever the attack sent.
func TestHostileRequestsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends thousands of requests")
	}
	newHostileEnv(t)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	cases := hostileCases()
	var sent int64 // per round, roughly: bodies, queries and header values
	for _, c := range cases {
		if c.raw {
			continue
		}
		r := c.request("http://x")
		sent += max(r.ContentLength, 0) + int64(len(r.URL.RawQuery))
		for _, vs := range r.Header {
			for _, v := range vs {
				sent += int64(len(v))
			}
		}
	}
	// Warm up: pools, buffers and lazily made structures reach their size.
	if bad := hammerCases(cl, hostileBareSite, cases, 2, 8); len(bad) > 0 {
		t.Fatalf("wrong answers: %q", bad)
	}
	cl.CloseIdleConnections()
	g0 := goroutines()
	h0 := heapInUse()

	const rounds = 15
	start := time.Now()
	bad := hammerCases(cl, hostileBareSite, cases, rounds, 8)
	n := rounds * len(cases)
	if len(bad) > 0 {
		t.Errorf("wrong answers: %q", bad)
	}
	cl.CloseIdleConnections()
	g1 := settleGoroutines(g0 + 2)
	h1 := heapInUse()
	runtime.KeepAlive(cases) // the requests' own bytes count in both
	t.Logf("%d hostile requests (%d MB sent) in %s; heap in use %d → %d KB; goroutines %d → %d",
		n, int64(rounds)*sent>>20, time.Since(start).Round(time.Millisecond), h0>>10, h1>>10, g0, g1)
	// The attack sends about 100 MB, 2 MB of it keys per round; keeping
	// the keys, or a twentieth of the rest, would show (a test that kept
	// every key grew by 9 MB over 12 rounds; a clean run moves by less
	// than 1 MB). The bound leaves room for the runtime's and Caddy's own
	// caches.
	const bound = 4 << 20
	if h1 > h0+bound {
		t.Errorf("heap in use grew by %d KB over the attack (bound %d KB)", (h1-h0)>>10, bound>>10)
	}
	if g1 > g0+2 {
		t.Errorf("goroutines: %d before the attack, %d after", g0, g1)
	}
}
