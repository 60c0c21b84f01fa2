package integration

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// The HTTP source's URL may use {env.*} placeholders, host and query alike:
// they are filled in when the config loads, the source is fetched there,
// and operators see the URL filled in but without its query.
func TestSourceHTTPURLPlaceholders(t *testing.T) {
	var fetched atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/c.json" || r.URL.Query().Get("token") != "url-token-1" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fetched.Add(1)
		_, _ = w.Write([]byte(`{"consumers": [{"username": "gina", "keys": [{"id": "gina-k", "key": "gina-key-1"}]}]}`))
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("KEYAUTH_IT_SRC_HOST", host)
	t.Setenv("KEYAUTH_IT_SRC_TOKEN", "url-token-1")

	e := newEnv(t)
	e.load(`{{.Global}}
http://localhost:{{.Port}} {
	key_auth {
		consumers http "http://{env.KEYAUTH_IT_SRC_HOST}/c.json?token={env.KEYAUTH_IT_SRC_TOKEN}"
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	location := "http://" + host + "/c.json?REDACTED"
	// The first fetch runs when the app starts; wait for its set.
	for {
		var st *sources.Status
		for _, s := range sources.Stores() {
			if s.Status().Location == location {
				v := s.Status()
				st = &v
			}
		}
		if st != nil && st.Loaded {
			break
		}
		if st == nil && len(sources.Stores()) > 0 {
			var locs []string
			for _, s := range sources.Stores() {
				locs = append(locs, s.Status().Location)
			}
			t.Fatalf("no store at %s; stores at %q", location, locs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fetched.Load() == 0 {
		t.Fatal("the source was never fetched at the filled-in URL")
	}
	wantIdentity(t, get(t, site+"/", "apikey", "gina-key-1"), identity{"gina", "gina", absent, "gina-k", absent})
}
