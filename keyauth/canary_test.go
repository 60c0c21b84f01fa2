package keyauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

const (
	canaryKey = "canary-key-planted-in-wiki"
	realKey   = "alice-key-1"
)

const canaryConsumers = `{"consumers": [
  {"username": "alice", "id": "alice-id",
   "keys": [{"id": "alice-cred", "key": "` + realKey + `"}]},
  {"username": "tripwire", "keys": [{"id": "wiki-canary", "key": "` + canaryKey + `", "canary": true}]},
  {"username": "guest", "keys": []}
]}`

// canaryHandler is a handler over canaryConsumers whose log lines are
// observed.
func canaryHandler(t *testing.T, h *Handler) (*Handler, *observer.ObservedLogs) {
	t.Helper()
	set, err := consumers.Parse([]byte(canaryConsumers))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	h.configure(zap.New(core))
	h.src = sources.StaticStore(set)
	return h, logs
}

// A canary key is answered as an unknown key, or goes on as the anonymous
// consumer like one; it is logged once at WARN with where it came from
// and counted as canary, on every path.
func TestCanary(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h        Handler
		target   string
		hdr      [][2]string
		status   int    // written by the handler; 0: went on
		errCode  int    // returned for the error routes
		username string // X-Consumer-Username of a request that went on
		location string
	}{
		{name: "header", target: "/orders/7?apikey=x&page=2", hdr: [][2]string{{"Apikey", canaryKey}}, status: 401, location: "header"},
		{name: "query", target: "/orders/7?page=2&apikey=" + canaryKey, status: 401, location: "query"},
		{name: "cookie", h: Handler{KeyInCookie: true}, target: "/orders/7", hdr: [][2]string{{"Cookie", "s=1; apikey=" + canaryKey}}, status: 401, location: "cookie"},
		{name: "anonymous", h: Handler{Anonymous: "guest", HideCredentials: true}, target: "/orders/7?page=2&apikey=" + canaryKey, username: "guest", location: "query"},
		{name: "handle_errors", h: Handler{HandleErrors: true}, target: "/orders/7", hdr: [][2]string{{"Apikey", canaryKey}}, errCode: 401, location: "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := canaryHandler(t, &tc.h)
			r, _ := fieldRequest(http.MethodGet, tc.target, nil)
			r.RemoteAddr = "203.0.113.9:4711"
			r.Host = "api.example.com"
			for _, kv := range tc.hdr {
				r.Header.Add(kv[0], kv[1])
			}
			ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "198.51.100.1"})
			r = r.WithContext(ctx)

			canaries := count(outcomes[outcomeCanary])
			others := otherOutcomes()
			w := httptest.NewRecorder()
			var seen *http.Request
			err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			}))

			switch {
			case tc.errCode != 0:
				var he caddyhttp.HandlerError
				if !errors.As(err, &he) || he.StatusCode != tc.errCode || he.Err.Error() != "Unauthorized" {
					t.Errorf("error %v, want %d Unauthorized", err, tc.errCode)
				}
			case tc.status != 0:
				if err != nil || w.Code != tc.status || w.Body.String() != `{"message":"Unauthorized"}` || seen != nil {
					t.Errorf("answer %v %d %s, want %d and Kong's unknown-key body", err, w.Code, w.Body, tc.status)
				}
			default:
				if err != nil || seen == nil {
					t.Fatalf("the request did not go on: %v", err)
				}
				if got := seen.Header.Get(headerUsername); got != tc.username {
					t.Errorf("went on as %q, want %q", got, tc.username)
				}
				if strings.Contains(seen.URL.RawQuery, canaryKey) {
					t.Errorf("hide_credentials left the canary key in the query %q", seen.URL.RawQuery)
				}
			}

			if got := count(outcomes[outcomeCanary]) - canaries; got != 1 {
				t.Errorf("canary outcome counted %v times, want 1", got)
			}
			if got := otherOutcomes(); got != others {
				t.Errorf("another outcome was counted too: %v, before %v", got, others)
			}

			warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
			if len(warns) != 1 {
				t.Fatalf("%d WARN lines, want 1: %v", len(warns), warns)
			}
			want := map[string]string{
				"credential_id": "wiki-canary", "consumer": "tripwire",
				"remote_addr": "203.0.113.9:4711", "client_ip": "198.51.100.1",
				"method": "GET", "host": "api.example.com", "path": "/orders/7",
				"key_name": "apikey", "location": tc.location,
			}
			got := warns[0].ContextMap()
			if warns[0].Message != "canary key used" || len(got) != len(want) {
				t.Errorf("WARN line %q %v, want the fields %v", warns[0].Message, got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("WARN field %s = %v, want %q", k, got[k], v)
				}
			}
			for _, e := range logs.All() {
				line := e.Message
				for k, v := range e.ContextMap() {
					line += " " + k + "=" + toString(v)
				}
				if strings.Contains(line, canaryKey) || strings.Contains(line, "page=2") {
					t.Errorf("a log line holds the key or the query: %s", line)
				}
			}
		})
	}
}

// A real key is not reported, and a canary key with another real one
// still trips the wire when it decides.
func TestCanaryNotOtherKeys(t *testing.T) {
	h, logs := canaryHandler(t, &Handler{KeyNames: []string{"apikey", "token"}})
	canaries := count(outcomes[outcomeCanary])
	r, _ := fieldRequest(http.MethodGet, "/", nil, "Apikey", realKey, "Token", canaryKey)
	var seen *http.Request
	if err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		return nil
	})); err != nil || seen == nil || seen.Header.Get(headerUsername) != "alice" {
		t.Fatalf("alice's key did not go on as alice: %v", err)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Errorf("%d WARN lines for a real key", n)
	}
	if got := count(outcomes[outcomeCanary]) - canaries; got != 0 {
		t.Errorf("canary counted %v times for a real key", got)
	}
}

func otherOutcomes() (c [numOutcomes]float64) {
	for i := range c {
		if outcome(i) != outcomeCanary {
			c[i] = count(outcomes[i])
		}
	}
	return c
}

// count reads a counter, the way a scrape would.
func count(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}
