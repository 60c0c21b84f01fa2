package sources

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func TestOriginOf(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:8080/c.json?token=x":    "http://127.0.0.1:8080",
		"http://Example.COM/c.json":               "http://example.com:80",
		"https://user:pw@example.com/c.json#frag": "https://example.com:443",
		"HTTPS://example.com:8443":                "https://example.com:8443",
		"http://[::1]:9000/x":                     "http://[::1]:9000",
	} {
		if got, err := originOf(raw); err != nil || got != want {
			t.Errorf("originOf(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	if _, err := originOf("/relative"); err == nil {
		t.Error("a relative URL has an origin")
	}
}

// redirectSource is a source whose /start redirects to location with
// status, and whose /c.json serves a document.
func redirectSource(t *testing.T, tlsServer bool, status int, location func(self string) string) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	var srv *httptest.Server
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch {
		case strings.HasPrefix(r.URL.Path, "/loop"):
			http.Redirect(w, r, r.URL.Path+"p", status)
		case strings.HasPrefix(r.URL.Path, "/hop"):
			// /hop, /hopp, ... /hopppp: MaxHTTPRedirects in all, the
			// last to the document.
			if n := len(r.URL.Path) - len("/hop"); n < MaxHTTPRedirects-1 {
				http.Redirect(w, r, r.URL.Path+"p", status)
			} else {
				http.Redirect(w, r, "/c.json", status)
			}
		case r.URL.Path == "/start":
			http.Redirect(w, r, location(srv.URL), status)
		default:
			if r.Header.Get("X-Source-Token") != "src-secret-1" {
				http.Error(w, "no token", http.StatusForbidden)
				return
			}
			_, _ = w.Write([]byte(fileDoc("redirected")))
		}
	})
	if tlsServer {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &hits
}

func redirectFetcher(t *testing.T, url string, roots *x509.Certificate) *httpLoader {
	t.Helper()
	client, err := (&HTTPSource{URL: url}).client(caddy.Context{Context: context.Background()}, url, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if roots != nil {
		pool := x509.NewCertPool()
		pool.AddCert(roots)
		client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &httpLoader{url: url, location: RedactURL(url), maxSize: 1 << 20, client: client,
		headers: http.Header{"X-Source-Token": {"src-secret-1"}}, log: zap.NewNop}
}

// TestHTTPSourceRedirects: a redirect is followed within the source's
// origin only, a few hops at most; anywhere else it is a failed fetch that
// never reaches the other origin, and whose error names the status and
// that origin, without its path or query.
func TestHTTPSourceRedirects(t *testing.T) {
	other, otherHits := redirectSource(t, false, http.StatusFound, func(string) string { return "" })
	otherOrigin, _ := originOf(other.URL)

	for _, tc := range []struct {
		name     string
		tls      bool
		status   int
		location func(self string) string
		path     string
		want     string // in the error; "" for a good fetch
	}{
		{"same origin, absolute", false, http.StatusFound, func(self string) string { return self + "/c.json" }, "/start", ""},
		{"same origin, relative, 308", false, http.StatusPermanentRedirect, func(string) string { return "/c.json" }, "/start", ""},
		{"five hops", false, http.StatusFound, nil, "/hop", ""},
		{"six hops", false, http.StatusFound, nil, "/loop", "redirect refused: status 302, more than 5 redirects"},
		{"another port", false, http.StatusFound, func(string) string { return other.URL + "/c.json?token=leak" },
			"/start", "redirect refused: status 302 to " + otherOrigin + ", another origin"},
		{"another host name for the same address", false, http.StatusMovedPermanently,
			func(string) string { return strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + "/c.json" },
			"/start", "status 301 to http://localhost:"},
		{"https to http", true, http.StatusTemporaryRedirect, func(self string) string { return strings.Replace(self, "https:", "http:", 1) + "/c.json" },
			"/start", "status 307 to http://127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hits := redirectSource(t, tc.tls, tc.status, tc.location)
			var root *x509.Certificate
			if tc.tls {
				root = srv.Certificate()
			}
			otherHits.Store(0)
			f := redirectFetcher(t, srv.URL+tc.path, root)
			set, err := f.Load(context.Background(), true)
			if tc.want == "" {
				if err != nil || set == nil {
					t.Fatalf("fetch: %v", err)
				}
				if tc.path == "/hop" && hits.Load() != MaxHTTPRedirects+1 {
					t.Errorf("%d requests along the hops, want %d", hits.Load(), MaxHTTPRedirects+1)
				}
				if _, ok := set.Lookup(digestOf(keyMark + "-redirected")); !ok {
					t.Error("the redirected document is not the set")
				}
				return
			}
			if err == nil {
				t.Fatal("the redirect was followed")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "consumers source "+srv.URL) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			for _, leak := range []string{"c.json", "token", "leak", "src-secret-1"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q holds %q", err, leak)
				}
			}
			if n := otherHits.Load(); n != 0 {
				t.Errorf("the other origin got %d requests", n)
			}
			if tc.path == "/loop" && hits.Load() != MaxHTTPRedirects+1 {
				t.Errorf("%d requests along the hops, want %d", hits.Load(), MaxHTTPRedirects+1)
			}
		})
	}
}
