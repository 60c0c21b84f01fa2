package integration

// Issue 5: a body that trickles in is bounded by the server's read
// timeout, and while key_auth waits for it no lock is held: other requests
// are served and the consumers are swapped meanwhile.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const hardSlowConfig = `{{.Global}}
{{.Site}} {
	key_auth {
		key_in_body true
		consumers file {{.Consumers}} {
			refresh 0
		}
	}
	reverse_proxy {{.Up}}
}
`

// hardTrickle is a request whose body goes out a few bytes at a time.
type hardTrickle struct {
	start  time.Time
	took   time.Duration
	status int
	body   string
	err    error
}

// hardSendTrickle sends head, then body in pieces of n bytes every
// interval, and reads the answer, which may come before the body is done.
func hardSendTrickle(addr, head, body string, n int, interval time.Duration) (tr hardTrickle) {
	tr.start = time.Now()
	defer func() { tr.took = time.Since(tr.start) }()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tr.err = err
		return tr
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		tr.err = err
		return tr
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for rest := body; rest != ""; {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			k := min(n, len(rest))
			if _, err := io.WriteString(conn, rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
		}
	})
	defer wg.Wait()
	defer close(done)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tr.err = err
		return tr
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	tr.status, tr.body = res.StatusCode, string(b)
	return tr
}

func hardTrickleHead(path, ctype string, length int, hdr ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n", path, strings.TrimPrefix(site, "http://"), ctype)
	if length >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	} else {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	return b.String() + "\r\n"
}

func TestHardeningSlowBody(t *testing.T) {
	e := newEnv(t)
	// read_body is the window in which the other requests must all be
	// served while the slow bodies are still being read.
	const readBody = 4 * time.Second
	e.vars["GlobalExtra"] = fmt.Sprintf("\tservers {\n\t\ttimeouts {\n\t\t\tread_body %s\n\t\t}\n\t}\n", readBody)
	e.load(hardSlowConfig, "caddyfile")
	addr := strings.TrimPrefix(site, "http://")
	base := site

	// A body that arrives in time, slowly: the key in it is found.
	form := "apikey=" + keyAlice
	tr := hardSendTrickle(addr, hardTrickleHead("/", formType, len(form)), form, 2, 60*time.Millisecond)
	if tr.err != nil || tr.status != http.StatusOK {
		t.Fatalf("a slow body within the timeout: %d %q %v", tr.status, tr.body, tr.err)
	}

	// Bodies that never finish: 1 byte every 100 ms of a declared 1000, one
	// declared and one chunked, from several clients at once.
	var wg sync.WaitGroup
	var ended atomic.Int64
	results := make([]hardTrickle, 6)
	for i := range results {
		wg.Go(func() {
			defer ended.Add(1)
			head := hardTrickleHead("/", formType, 1000)
			body := "apikey=" + keyAlice + "&pad=" + strings.Repeat("x", 1000)
			if i%2 == 1 {
				head = hardTrickleHead("/", jsonType, -1)
				// One chunk of a byte at a time: "1\r\nX\r\n".
				var b strings.Builder
				for _, c := range `{"apikey": "` + keyAlice + `", "pad": "` + strings.Repeat("x", 1000) {
					fmt.Fprintf(&b, "1\r\n%c\r\n", c)
				}
				body = b.String()
				results[i] = hardSendTrickle(addr, head, body, 6, 100*time.Millisecond)
				return
			}
			results[i] = hardSendTrickle(addr, head, body, 1, 100*time.Millisecond)
		})
	}

	// Meanwhile, once key_auth is reading every slow body (its handlers
	// are blocked in the read): other requests are served, and the
	// consumers are swapped (an admin refresh) and the new set is served,
	// all before any slow body has ended. Nothing waited on them.
	eventually(t, "key_auth reading the slow bodies", func() bool {
		return goroutinesIn("keyauth.(*request).readBody(") >= len(results)
	})
	var slowest time.Duration
	for range 20 {
		st := time.Now()
		wantIdentity(t, get(t, base+"/", "apikey", keyAlice), idAlice)
		slowest = max(slowest, time.Since(st))
	}
	e.writeConsumers(doc("carol", "carol-key-1"))
	st := time.Now()
	if status, body := adminRefresh(t); status != http.StatusOK || strings.Contains(body, "refresh_error") {
		t.Errorf("admin refresh during slow bodies: %d %s", status, body)
	}
	refresh := time.Since(st)
	wantIdentity(t, get(t, base+"/", "apikey", "carol-key-1"), identity{"carol", "carol", absent, "carol-1", absent})
	want401(t, get(t, base+"/", "apikey", keyAlice), msgInvalid)
	t.Logf("while bodies trickled: slowest of 20 requests %s, admin refresh %s", slowest, refresh)
	if n := ended.Load(); n > 0 {
		t.Errorf("%d slow bodies ended before the other requests and the refresh were done: they waited on them", n)
	}

	wg.Wait()
	for i, r := range results {
		// The read timeout ends the wait; the answer is the module's 408
		// (the body did not arrive in time, so the request cannot go on
		// intact), or the connection closes.
		t.Logf("slow body %d: %d %q %v after %s", i, r.status, r.body, r.err, r.took.Round(time.Millisecond))
		// The timeout cannot fire early; late is a loaded machine, within
		// reason (the connection's deadline).
		if r.took < readBody-200*time.Millisecond || r.took > readBody+10*time.Second {
			t.Errorf("slow body %d ended after %s; read_body is %s", i, r.took, readBody)
		}
		if r.err == nil && (r.status != http.StatusRequestTimeout || !strings.Contains(r.body, `{"message":"Request timeout"}`)) {
			t.Errorf("slow body %d: %d %q", i, r.status, r.body)
		}
		if r.status >= 500 {
			t.Errorf("slow body %d: a 5xx", i)
		}
	}
	if hits := e.up.hits.Load(); hits != 22 {
		t.Errorf("the upstream got %d requests, want 22 (no slow body reached it)", hits)
	}
}
