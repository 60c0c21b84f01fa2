package integration

// Issue 8, items 3 to 5: keys that can never be sent as stored are refused
// by every source; the HTTP source keeps its secrets with its origin; a
// failing source logs like an operator wants.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// fieldBadKeys are keys that can never be sent as stored, with what the
// error says of each. The document of issue 8 with alice's key replaced.
var fieldBadKeys = []struct{ name, key, fault string }{
	{"a space", " ", "the key is blank"},
	{"a tab", "\t", "the key is blank"},
	{"leading space", " edged-key", "the key begins with whitespace"},
	{"trailing tab", "edged-key\t", "the key ends with whitespace"},
	{"NUL inside", "edged\x00key", "the key contains a control character"},
	{"DEL inside", "edged\x7fkey", "the key contains a control character"},
}

func fieldDocWithKey(aliceKey string) string {
	k, _ := json.Marshal(aliceKey)
	return `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": ` + string(k) + `}]},
  {"username": "guest", "keys": []}
]}`
}

// fieldSendsAsBadKey are requests that would carry one of fieldBadKeys, as
// a client can spell them.
var fieldSendsAsBadKey = []string{"/?apikey=+", "/?apikey=%20", "/?apikey=%09", "/?apikey=+edged-key",
	"/?apikey=edged-key%09", "/?apikey=edged%00key", "/?apikey=edged%7Fkey"}

// fieldNoKeyIn fails the test when text holds one of the bad keys in any
// form an error or a log could give it.
func fieldNoKeyIn(t *testing.T, what, text string) {
	t.Helper()
	for _, leak := range []string{"edged-key", "edged\\u0000key", "edged\\x00key", "edged\x00key", "edged\\u007fkey", "edged\x7fkey", `"key": " "`, `\"key\": \" \"`} {
		if strings.Contains(text, leak) {
			t.Errorf("%s holds the key (%q): %s", what, leak, text)
		}
	}
}

// A consumers file with such a key is refused at /load, and refused again
// when it appears while Caddy runs; no spelling of it ever logs in.
func TestFieldBadKeyRefusedFromFile(t *testing.T) {
	e := newEnv(t)
	for _, bk := range fieldBadKeys {
		e.writeConsumers(fieldDocWithKey(bk.key))
		for _, adapter := range []string{"caddyfile", "json"} {
			cfg := refreshSite
			if adapter == "json" {
				cfg = jsonSite
			}
			msg := e.loadError(cfg, adapter)
			for _, w := range []string{e.consumers, `consumer "alice", credential "alice-cred"`, bk.fault} {
				if !strings.Contains(msg, w) {
					t.Errorf("%s, %s: the error does not say %q: %s", bk.name, adapter, w, msg)
				}
			}
			fieldNoKeyIn(t, bk.name+": the error", msg)
		}
	}

	// A good file loads; each bad one written while it runs is refused and
	// the good set keeps serving.
	e.writeConsumers(fieldDocWithKey("alice-key-1"))
	e.load(refreshSite, "caddyfile")
	wantIdentity(t, get(t, site+"/", "apikey", "alice-key-1"), identity{"alice", "alice-id", "cust-a", "alice-cred", absent})
	for i, bk := range fieldBadKeys {
		e.writeConsumers(fieldDocWithKey(bk.key))
		e.waitLog("caddy.log", func(l logEntry) bool {
			return strings.Contains(l.str("msg"), "not reloaded") && strings.Contains(l.str("error"), bk.fault) &&
				strings.Contains(l.str("error"), `credential "alice-cred"`)
		})
		for _, q := range fieldSendsAsBadKey {
			if r := get(t, site+q); r.status != http.StatusUnauthorized {
				t.Errorf("%s: GET %s: %s, want 401", bk.name, q, r)
			}
		}
		if !works(t, site, "alice-key-1") {
			t.Errorf("%s: the last good set does not serve", bk.name)
		}
		if i%2 == 1 {
			// Back to good between some of them, so both a streak's first
			// and a later refusal are seen.
			e.writeConsumers(fieldDocWithKey("alice-key-1"))
			e.waitLog("caddy.log", func(l logEntry) bool { return l.str("msg") == "consumers source recovered" })
		}
	}
	for _, l := range e.moduleLogLines("caddy.log") {
		fieldNoKeyIn(t, "a log line", l)
	}
}

// An HTTP source that serves such a key keeps the last good set, and says
// why in GET /key_auth/sources; before a first load, it keeps answering 503.
func TestFieldBadKeyRefusedFromHTTPSource(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy-log.json")
	logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)
	srv := newSourceServer(t, fieldDocWithKey(" "))
	url := srv.URL("/consumers.json")
	startCaddy(t, globalOptions(logOpt)+httpSourceSite(sitePort[0], url, "refresh 100ms", "", "ok"), "caddyfile")
	site := siteURL(0)

	// Nothing loaded yet: 503, whatever is sent, and the log says so.
	waitStatus(t, url, "a refused first fetch", func(st sources.Status) bool { return st.Failures > 0 })
	for _, q := range append([]string{"/"}, fieldSendsAsBadKey...) {
		if code, _ := getKey(t, site+q, ""); code != http.StatusServiceUnavailable {
			t.Errorf("before a first load, GET %s: %d, want 503", q, code)
		}
	}
	eventually(t, "the failure logged", func() bool {
		return countLines(t, logFile, "consumers not loaded; requests get 503 until a load succeeds", `credential \"alice-cred\"`) == 1
	})

	srv.SetDoc(fieldDocWithKey("alice-key-1"))
	waitStatus(t, url, "the first load", func(st sources.Status) bool { return st.Loaded && st.Failures == 0 })
	expect(t, site+"/", "alice-key-1", 200, "ok alice")
	good := storeAt(t, url).Set()

	for _, bk := range fieldBadKeys {
		srv.SetDoc(fieldDocWithKey(bk.key))
		// An admin refresh fetches now, whatever the back-off.
		refreshed := fieldRefresh(t, url)
		last := fieldSource(t, url)
		for _, msg := range []string{refreshed.RefreshError, last.LastError} {
			if !strings.Contains(msg, `consumer "alice", credential "alice-cred": `+bk.fault) {
				t.Errorf("%s: the error does not name the credential and the fault: %q", bk.name, msg)
			}
			fieldNoKeyIn(t, bk.name+": the error", msg)
		}
		if last.Failures == 0 || last.Consumers != 2 {
			t.Errorf("%s: source status %+v", bk.name, last)
		}
		if storeAt(t, url).Set() != good {
			t.Errorf("%s: the set changed", bk.name)
		}
		expect(t, site+"/", "alice-key-1", 200, "ok alice")
		for _, q := range fieldSendsAsBadKey {
			if code, _ := getKey(t, site+q, ""); code != http.StatusUnauthorized {
				t.Errorf("%s: GET %s: %d, want 401", bk.name, q, code)
			}
		}
	}
	logs, _ := os.ReadFile(logFile)
	fieldNoKeyIn(t, "the log", string(logs))
}

// fieldRecorder is an origin that records every connection and request it
// gets, and answers what its handler says.
type fieldRecorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	conns    int
	requests []*http.Request
	certs    int // requests that came with a client certificate
	handler  http.HandlerFunc
}

func newFieldRecorder(t *testing.T, withTLS bool, h http.HandlerFunc) *fieldRecorder {
	t.Helper()
	r := &fieldRecorder{handler: h}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Clone(req.Context()))
		if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
			r.certs++
		}
		h := r.handler
		r.mu.Unlock()
		h(w, req)
	}))
	r.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
		}
	}
	if withTLS {
		r.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fieldRecorder) set(h http.HandlerFunc) {
	r.mu.Lock()
	r.handler = h
	r.mu.Unlock()
}

func (r *fieldRecorder) seen() (conns, requests, certs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, len(r.requests), r.certs
}

func (r *fieldRecorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[len(r.requests)-1]
}

// origin is the server's scheme://host:port under the given host name.
func (r *fieldRecorder) origin(host string) string {
	u, _ := url.Parse(r.srv.URL)
	return u.Scheme + "://" + net.JoinHostPort(host, u.Port())
}

func fieldServe(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}
}

func fieldRedirect(status int, to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, status) }
}

// The HTTP source follows a redirect within its origin only: a redirect to
// another port, another host name or from https to http is a failed fetch
// that never reaches the other origin, neither its configured header, nor
// the URL's user info (Authorization), nor the client certificate.
func TestFieldSourceRedirects(t *testing.T) {
	const token, pass = "src-secret-1-x7f3", "url-pass-9c2e"
	for _, withTLS := range []bool{false, true} {
		name := "http"
		if withTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			logFile := filepath.Join(dir, "caddy-log.json")
			logOpt := fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)
			a := newFieldRecorder(t, withTLS, fieldServe([]byte(consumersDoc("alice", "alice-key-1"))))
			b := newFieldRecorder(t, false, fieldServe([]byte(consumersDoc("mallory", "mallory-key-1"))))
			c := newFieldRecorder(t, true, fieldServe([]byte(consumersDoc("mallory", "mallory-key-1"))))

			au, _ := url.Parse(a.srv.URL)
			au.User = url.UserPassword("src", pass)
			au.Path = "/consumers.json"
			block := "refresh 100ms\n\t\t\theader X-Source-Token " + token
			if withTLS {
				cert, key := fieldClientCert(t, dir)
				root := filepath.Join(dir, "root.pem")
				if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}), 0o600); err != nil {
					t.Fatal(err)
				}
				block += fmt.Sprintf("\n\t\t\ttls {\n\t\t\t\tclient_certificate %s %s\n\t\t\t\troot_ca %s\n\t\t\t}", cert, key, root)
			}
			port := sitePort[0]
			if withTLS {
				port = sitePort[1]
			}
			site := fmt.Sprintf("http://127.0.0.1:%d/", port)
			startCaddy(t, globalOptions(logOpt)+httpSourceSite(port, au.String(), block, "", "ok"), "caddyfile")
			loc := a.origin("127.0.0.1")
			waitStatus(t, loc, "the first load", func(st sources.Status) bool { return st.Loaded })
			expect(t, site, "alice-key-1", 200, "ok alice")
			// What the configured origin receives: the header, the user
			// info and, over TLS, the client certificate.
			r := a.last()
			if user, pw, ok := r.BasicAuth(); !ok || user != "src" || pw != pass || r.Header.Get("X-Source-Token") != token {
				t.Fatalf("the source got %v", r.Header)
			}
			if _, _, certs := a.seen(); withTLS && certs == 0 {
				t.Fatal("the source got no client certificate")
			}
			good := storeAt(t, loc).Set()

			targets := []struct {
				name, to, origin string
			}{
				{"another port", b.srv.URL + "/consumers.json?sig=q1", b.origin("127.0.0.1")},
				{"another host name", b.origin("localhost") + "/consumers.json?sig=q2", b.origin("localhost")},
				{"another https origin", c.srv.URL + "/consumers.json?sig=q3", c.origin("127.0.0.1")},
			}
			if withTLS {
				// The same host and port, in plain http.
				targets = append(targets, struct{ name, to, origin string }{"https to http", "http://" + au.Host + "/consumers.json?sig=q4", "http://" + au.Host})
			}
			for _, tg := range targets {
				a.set(fieldRedirect(http.StatusFound, tg.to))
				want := "redirect refused: status 302 to " + tg.origin + ", another origin"
				// An admin refresh fetches now, whatever the back-off.
				refreshed := fieldRefresh(t, redactedSourceURL(au))
				st := fieldSource(t, redactedSourceURL(au))
				for _, msg := range []string{refreshed.RefreshError, st.LastError} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: error %q, want %q", tg.name, msg, want)
					}
					for _, leak := range []string{"consumers.json?", "sig=", pass, token} {
						if strings.Contains(msg, leak) {
							t.Errorf("%s: the error shows %q: %s", tg.name, leak, msg)
						}
					}
				}
				if st.Failures == 0 {
					t.Errorf("%s: no failure counted: %+v", tg.name, st)
				}
				if storeAt(t, loc).Set() != good {
					t.Errorf("%s: the set changed", tg.name)
				}
				expect(t, site, "alice-key-1", 200, "ok alice")
				expect(t, site, "mallory-key-1", 401, "")
			}
			// No other origin saw as much as a connection, so no header,
			// user info or certificate either.
			for _, o := range []*fieldRecorder{b, c} {
				if conns, reqs, certs := o.seen(); conns+reqs+certs != 0 {
					t.Errorf("%s saw %d connections, %d requests, %d certificates", o.srv.URL, conns, reqs, certs)
				}
			}

			// Within the origin, a redirect is followed with everything.
			a.set(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/consumers.json" {
					fieldServe([]byte(consumersDoc("alice", "alice-key-2")))(w, r)
					return
				}
				http.Redirect(w, r, "/v2/consumers.json", http.StatusMovedPermanently)
			})
			eventually(t, "the redirected document", func() bool {
				code, _ := getKey(t, site, "alice-key-2")
				return code == http.StatusOK
			})
			r = a.last()
			if user, pw, ok := r.BasicAuth(); r.URL.Path != "/v2/consumers.json" || !ok || user != "src" || pw != pass || r.Header.Get("X-Source-Token") != token {
				t.Errorf("the redirected request: %s %v", r.URL, r.Header)
			}
			expect(t, site, "alice-key-1", 401, "")

			logs, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(logs), "redirect refused") {
				t.Error("no refused redirect in the log")
			}
			for _, secret := range []string{token, pass, "alice-key-1", "alice-key-2"} {
				if strings.Contains(string(logs), secret) {
					t.Errorf("the log holds %q", secret)
				}
			}
		})
	}
}

// fieldRefresh asks the admin API to refresh every source now and returns
// what it says of the one at loc.
func fieldRefresh(t *testing.T, loc string) sources.SourceStatus {
	t.Helper()
	code, body := adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	var out []sources.SourceStatus
	if err := json.Unmarshal(body, &out); code != http.StatusOK || err != nil {
		t.Fatalf("POST /key_auth/sources/refresh: %d %s %v", code, body, err)
	}
	for _, s := range out {
		if s.Location == loc {
			return s
		}
	}
	t.Fatalf("no source at %s in %s", loc, body)
	return sources.SourceStatus{}
}

// fieldSource is what GET /key_auth/sources says of the source at loc.
func fieldSource(t *testing.T, loc string) sources.SourceStatus {
	t.Helper()
	for _, s := range adminSources(t) {
		if s.Location == loc {
			return s
		}
	}
	t.Fatalf("no source at %s", loc)
	return sources.SourceStatus{}
}

// redactedSourceURL is how the source names u: without its user info.
func redactedSourceURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// fieldClientCert writes a self-signed client certificate and its key.
func fieldClientCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "keyauth-source-client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
