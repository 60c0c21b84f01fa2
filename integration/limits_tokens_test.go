package integration

// Token budgets (issue 18): a reservation at admission, settled with the
// usage the answer carries as it streams through Caddy, refunded when the
// upstream fails; and the overshoot of concurrent streams within the
// README's bound.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// llmFixtures are real answers (keyauth/usage/testdata, SOURCES.md says
// whose) and the tokens each says it used.
var llmFixtures = []struct {
	path, file, contentType string
	tokens                  int64
}{
	{"/api/chat", "ollama-chat-stream.ndjson", "application/x-ndjson", 26 + 282},
	{"/api/generate", "ollama-generate.json", "application/json; charset=utf-8", 26 + 290},
	{"/v1/chat/completions", "openai-chat-stream-usage.sse", "text/event-stream", 15},
	{"/v1/responses", "openai-responses-stream.sse", "text/event-stream", 48},
	{"/v1/completions", "openai-chat-completion.json", "application/json", 29},
}

// llmUpstream answers each fixture's path with it, written in small
// flushed pieces as a model streams; /v1/fail answers 500 with usage,
// /v1/nousage a 200 without.
func llmUpstream(t *testing.T) *gate {
	t.Helper()
	bodies := map[string][]byte{}
	types := map[string]string{}
	for _, f := range llmFixtures {
		b, err := os.ReadFile(filepath.Join("..", "keyauth", "usage", "testdata", f.file))
		if err != nil {
			t.Fatal(err)
		}
		bodies[f.path], types[f.path] = b, f.contentType
	}
	return newGate(t, func(w http.ResponseWriter, r *http.Request, g *gate) {
		switch r.URL.Path {
		case "/v1/fail":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"usage":{"total_tokens":999}}`)
			return
		case "/v1/nousage":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"choices":[]}`)
			return
		}
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", types[r.URL.Path])
		for len(b) > 0 {
			n := min(len(b), 37)
			_, _ = w.Write(b[:n])
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	})
}

var rateRemaining = regexp.MustCompile(`;r=(\d+)`)

// remaining is the r of an answer's RateLimit field.
func remaining(t *testing.T, r *response) int64 {
	t.Helper()
	m := rateRemaining.FindStringSubmatch(r.header.Get("RateLimit"))
	if m == nil {
		t.Fatalf("no remaining in RateLimit %q (%d %s)", r.header.Get("RateLimit"), r.status, r.body)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// Each answer's usage replaces the reservation: the next admission's room
// shows it exactly. A 5xx is refunded; a 2xx without usage keeps the
// reservation.
func TestLimitsTokensSettled(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"tokens": {"max": 100000, "per": "month"}}`, "", ""))
	up := llmUpstream(t)
	e.vars["LLM"] = up.addr()
	e.sites(`{{.Site}} {
	key_auth {
		key_names authorization
		consumers file {{.Consumers}}
		limits {
			cost tokens usage 1000
			store local ` + limitsTable(t) + `
		}
	}
	request_header -Accept-Encoding
	reverse_proxy {{.LLM}} {
		flush_interval -1
	}
}
`)
	used := int64(0)
	call := func(path string) *response {
		return do(t, req(http.MethodPost, siteURL(0)+path, strings.NewReader(`{"stream": true}`),
			"Authorization", "Bearer "+keyLim1, "Content-Type", "application/json", "Accept-Encoding", "gzip"))
	}
	check := func(what string, want int64) {
		t.Helper()
		// The next admission reserves 1000 more: its room is what is left.
		r := call("/v1/nousage")
		if got := 100000 - 1000 - remaining(t, r); got != want {
			t.Errorf("after %s: %d tokens used, want %d", what, got, want)
		}
		used = want + 1000 // that request kept its reservation
	}
	for _, f := range llmFixtures {
		r := call(f.path)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", f.path, r.status, r.body)
		}
		check(f.file, used+f.tokens)
	}
	if r := call("/v1/fail"); r.status != 500 {
		t.Fatalf("/v1/fail: %d", r.status)
	}
	check("a 500", used)
}

// 20 streams at once against a budget: the budget is overshot by no more
// than the README's bound, the streams in flight together times what each
// used beyond its reservation, and the next request is refused.
func TestLimitsTokensOvershoot(t *testing.T) {
	const (
		streams = 20
		budget  = 500
		reserve = 50
		usage   = 120 // what each stream says it used
	)
	e := newEnv(t)
	doc := func(max int) string {
		return limitsDoc(fmt.Sprintf(`{"tokens": {"max": %d, "per": "day"}}`, max), "", "")
	}
	e.writeConsumers(doc(budget))
	up := newGate(t, func(w http.ResponseWriter, r *http.Request, g *gate) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"token %d\"}}],\"usage\":null}\n\n", i)
			w.(http.Flusher).Flush()
		}
		<-g.release // every stream admitted is under way before any ends
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":100,\"total_tokens\":%d}}\n\ndata: [DONE]\n\n", usage)
	})
	e.vars["LLM"] = up.addr()
	table := limitsTable(t)
	e.sites(`{{.Site}} {
	key_auth {
		consumers file {{.Consumers}}
		limits {
			cost tokens usage ` + strconv.Itoa(reserve) + `
			store local ` + table + `
		}
	}
	reverse_proxy {{.LLM}} {
		flush_interval -1
	}
}
`)
	var refused, served atomic.Int64
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := client.Do(req(http.MethodPost, siteURL(0)+"/v1/chat/completions", nil, "apikey", keyLim1))
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			if res.StatusCode == 429 {
				refused.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, bufio.NewReader(res.Body))
			served.Add(1)
		}()
	}
	eventually(t, "every stream admitted or refused", func() bool {
		return up.now.Load()+refused.Load() == streams
	})
	inFlight := up.most.Load()
	close(up.release)
	wg.Wait()
	if served.Load() != inFlight || inFlight != budget/reserve {
		t.Errorf("%d streams served, %d in flight at once, want %d (the budget over the reservation)", served.Load(), inFlight, budget/reserve)
	}
	if r := get(t, siteURL(0)+"/v1/chat/completions", "apikey", keyLim1); r.status != 429 {
		t.Errorf("after the budget was spent: %d, want 429", r.status)
	}
	// Raise the max (the count stays: it is the window's) to read the
	// usage off the next admission's room.
	const big = 1_000_000
	e.writeConsumers(doc(big))
	if status, body := adminRefresh(t); status != http.StatusOK {
		t.Fatalf("refreshing the sources: %d %s", status, body)
	}
	var used int64
	eventually(t, "the raised budget loaded", func() bool {
		r, err := send(client, req(http.MethodGet, siteURL(0)+"/v1/chat/completions", nil, "apikey", keyLim1))
		if err != nil || r.status != 200 {
			return false
		}
		used = big - reserve - remaining(t, r)
		return true
	})
	bound := inFlight * (usage - reserve)
	t.Logf("%d streams at once against a budget of %d (reservation %d, each used %d): %d served, used %d, overshoot %d, bound %d",
		streams, budget, reserve, usage, served.Load(), used, used-budget, bound)
	if used != served.Load()*usage {
		t.Errorf("used %d, want %d (each served stream's usage)", used, served.Load()*usage)
	}
	if used-budget > bound {
		t.Errorf("overshoot %d over the bound %d", used-budget, bound)
	}
}
