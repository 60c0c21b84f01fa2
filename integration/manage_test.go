package integration

// The management API, key_auth_api (README: Management API), against a real
// Caddy: a site whose key_auth authenticates the managers and whose
// handle_path /keys/* mounts the API, and a protected site whose key_auth
// reads the source the API manages.

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// The keys of manageDoc.
const (
	keyRoot   = "root-secret-0001"  // root, a manager (key-admins)
	keyAnn    = "ann-secret-0001"   // ann, staff, tenant acme
	keyGus    = "gus-secret-0001"   // gus, tenant globex
	keyAcme   = "acme-secret-0001"  // acme-admin, a manager of tenant acme
	keyGlobex = "globex-secret-001" // globex-admin, a manager of tenant globex
	keyLost   = "lost-secret-0001"  // lost-admin, a manager without a tenant
)

// manageDoc is the consumers document the API manages and key_auth reads.
const manageDoc = `{"consumers": [
  {"username": "acme-admin", "groups": ["key-admins"], "labels": {"tenant": "acme"},
   "keys": [{"id": "acme-admin-key", "key": "` + keyAcme + `"}]},
  {"username": "ann", "id": "ann-1", "custom_id": "crm-7", "groups": ["staff"], "labels": {"tenant": "acme"},
   "keys": [{"id": "ann-key", "key": "` + keyAnn + `", "expires_at": "2099-01-01T00:00:00Z"}]},
  {"username": "globex-admin", "groups": ["key-admins"], "labels": {"tenant": "globex"},
   "keys": [{"id": "globex-admin-key", "key": "` + keyGlobex + `"}]},
  {"username": "guest"},
  {"username": "gus", "groups": ["staff"], "labels": {"tenant": "globex"},
   "keys": [{"id": "gus-key", "key": "` + keyGus + `"}]},
  {"username": "lost-admin", "groups": ["key-admins"],
   "keys": [{"id": "lost-admin-key", "key": "` + keyLost + `"}]},
  {"username": "root", "groups": ["key-admins"],
   "keys": [{"id": "root-key", "key": "` + keyRoot + `"}]}
]}`

// manageSites: {{.Site}} is the API under /keys/, behind a key_auth that
// lets requests without a key on as guest (so the API's own 401 shows) and
// hides the key from what follows (handle_path logs the request at DEBUG);
// {{.Site2}} is a protected site. Both read the managed file, which is
// never polled (refresh 1h): a change reaches key_auth through the shared
// store alone. {{.Scope}} is an extra line of key_auth_api.
const manageSites = `{{.Global}}
{{.Site}} {
	key_auth {
		anonymous guest
		hide_credentials
		consumers file {{.Consumers}} {
			refresh 1h
		}
	}
	handle_path /keys/* {
		key_auth_api {
			consumers file {{.Consumers}} {
				refresh 1h
			}
			manage_group key-admins
			{{.Scope}}
		}
	}
	respond "not the API"
}
{{.Site2}} {
	key_auth {
		consumers file {{.Consumers}} {
			refresh 1h
		}
	}
	reverse_proxy {{.Up}}
}
`

// manageEnv is an env running manageSites over manageDoc. Every key a test
// uses goes into keys: when the test ends, no line of Caddy's log (the
// audit lines included) may hold one, nor its digest.
type manageEnv struct {
	*env
	keys []string
}

func newManageEnv(t *testing.T, scope string) *manageEnv {
	t.Helper()
	m := &manageEnv{env: newEnv(t), keys: []string{keyRoot, keyAnn, keyGus, keyAcme, keyGlobex, keyLost}}
	m.writeConsumers(manageDoc)
	m.vars["Scope"] = scope
	m.load(manageSites, "caddyfile")
	t.Cleanup(func() { m.noKeyInLogs() })
	return m
}

// noKeyInLogs fails the test if a log line holds a key the test used, in
// plain text or as its hash.
func (m *manageEnv) noKeyInLogs() {
	m.t.Helper()
	for _, l := range m.logLines("caddy.log") {
		for _, k := range m.keys {
			if strings.Contains(l, k) || strings.Contains(l, strings.TrimPrefix(consumers.HashKey(k), consumers.HashPrefix)) {
				m.t.Errorf("a log line holds a key or its hash: %s", l)
			}
		}
	}
}

// api calls the API as the holder of key ("" for none), with a JSON body
// unless body is "".
func (m *manageEnv) api(method, path, key, body string) *response {
	m.t.Helper()
	var rd io.Reader
	var hdr []string
	if key != "" {
		hdr = append(hdr, "apikey", key)
	}
	if body != "" {
		rd = strings.NewReader(body)
		hdr = append(hdr, "Content-Type", "application/json")
	}
	return do(m.t, req(method, site+"/keys"+path, rd, hdr...))
}

// want checks an answer of the API: its status and, for a body, that it is
// JSON, is never cached, and holds every one of contains; it decodes the
// body into out, unless out is nil.
func (m *manageEnv) want(r *response, status int, out any, contains ...string) {
	m.t.Helper()
	if r.status != status {
		m.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if status == http.StatusNoContent {
		if len(r.body) != 0 {
			m.t.Errorf("a 204 with a body: %s", r.body)
		}
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		m.t.Errorf("Content-Type %q", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		m.t.Errorf("Cache-Control %q", cc)
	}
	for _, s := range contains {
		if !strings.Contains(string(r.body), s) {
			m.t.Errorf("the answer does not hold %s: %s", s, r.body)
		}
	}
	for _, k := range m.keys {
		if strings.Contains(string(r.body), k) {
			m.t.Errorf("the answer holds a key: %s", r.body)
		}
	}
	if strings.Contains(string(r.body), consumers.HashPrefix) {
		m.t.Errorf("the answer holds a hash: %s", r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			m.t.Fatalf("decoding %s: %v", r.body, err)
		}
	}
}

// wantMessage checks an error answer: status and {"message": ...} holding
// every one of contains.
func (m *manageEnv) wantMessage(r *response, status int, contains ...string) string {
	m.t.Helper()
	var msg struct {
		Message string `json:"message"`
	}
	m.want(r, status, &msg)
	if msg.Message == "" {
		m.t.Errorf("no message: %s", r.body)
	}
	for _, s := range contains {
		if !strings.Contains(msg.Message, s) {
			m.t.Errorf("message %q does not hold %q", msg.Message, s)
		}
	}
	return msg.Message
}

// protected checks how the protected site answers key: 200 as who, or
// 401.
func (m *manageEnv) protected(key, who string) {
	m.t.Helper()
	r := get(m.t, site2+"/", "apikey", key)
	if who == "" {
		if r.status != http.StatusUnauthorized {
			m.t.Errorf("the protected site let the key on: %s", r)
		}
		return
	}
	if got := r.echo(m.t).Header.Get("X-Consumer-Username"); got != who {
		m.t.Errorf("the protected site let the key on as %q, want %q", got, who)
	}
}

// document reads the managed file as a document.
func (m *manageEnv) document() *consumers.Document {
	m.t.Helper()
	b, err := os.ReadFile(m.consumers)
	if err != nil {
		m.t.Fatal(err)
	}
	d, err := consumers.DecodeDocument(b)
	if err != nil {
		m.t.Fatalf("the managed file: %v", err)
	}
	return d
}

// auditLines are the API's audit lines so far.
func (m *manageEnv) auditLines() []logEntry {
	var out []logEntry
	for _, l := range m.logLines("caddy.log") {
		var le logEntry
		if json.Unmarshal([]byte(l), &le) == nil && le.str("logger") == "http.handlers.key_auth_api" && le.str("msg") == "consumers change" {
			out = append(out, le)
		}
	}
	return out
}

// needWriter skips a test whose source cannot be written yet: the file
// source becomes a keyauth.Writer with the writers' branch.
func needWriter(t *testing.T, source string) {
	t.Helper()
	mod, err := caddy.GetModule("key_auth.sources." + source)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mod.New().(keyauth.Writer); !ok {
		t.Skipf("the %s source does not implement keyauth.Writer yet", source)
	}
}

// The API's own answers to callers: 401 without a consumer (here the
// anonymous one), 403 outside manage_group on every endpoint (with an audit
// line for a change), and GET /self for any consumer with a key, managers
// or not. No key is needed in a source that can be written for these.
func TestManageAuthentication(t *testing.T) {
	m := newManageEnv(t, "")
	// Without a key key_auth lets the request on as guest: no credential.
	r := m.api(http.MethodGet, "/self", "", "")
	m.wantMessage(r, http.StatusUnauthorized, "no consumer was authenticated")
	if r.header.Get("WWW-Authenticate") != "Key" {
		m.t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	m.wantMessage(m.api(http.MethodGet, "/consumers", "", ""), http.StatusUnauthorized)
	m.wantMessage(m.api(http.MethodPut, "/consumers/x", "", `{}`), http.StatusUnauthorized)

	// /self: ann is no manager.
	var self struct {
		Username, ID string
		CustomID     string `json:"custom_id"`
		Groups       []string
		Credential   map[string]string
	}
	m.want(m.api(http.MethodGet, "/self", keyAnn, ""), http.StatusOK, &self)
	if self.Username != "ann" || self.ID != "ann-1" || self.CustomID != "crm-7" || len(self.Groups) != 1 || self.Groups[0] != "staff" {
		t.Errorf("/self: %+v", self)
	}
	if c := self.Credential; c["id"] != "ann-key" || c["expires_at"] != "2099-01-01T00:00:00Z" || c["last_used"] == "" || len(c) != 3 {
		t.Errorf("/self credential: %v", c)
	} else if lu, err := time.Parse(time.RFC3339, c["last_used"]); err != nil || time.Since(lu) > 2*time.Minute {
		t.Errorf("/self last_used %q: %v", c["last_used"], err)
	}
	m.wantMessage(m.api(http.MethodPost, "/self", keyAnn, ""), http.StatusMethodNotAllowed)

	// ann manages nothing: 403 everywhere else, before the source is asked.
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/consumers", ""},
		{http.MethodGet, "/consumers/ann", ""},
		{http.MethodPut, "/consumers/ann", `{"groups": ["key-admins"]}`},
		{http.MethodPatch, "/consumers/ann", `{"groups": ["key-admins"]}`},
		{http.MethodDelete, "/consumers/gus", ""},
		{http.MethodPost, "/consumers/ann/keys", `{}`},
		{http.MethodPatch, "/consumers/ann/keys/ann-key", `{"disabled": false}`},
		{http.MethodDelete, "/consumers/gus/keys/gus-key", ""},
		{http.MethodPost, "/consumers/ann/keys/ann-key/roll", `{"grace": "1h"}`},
	} {
		m.wantMessage(m.api(c.method, c.path, keyAnn, c.body), http.StatusForbidden, `"ann" is not in the group "key-admins"`)
	}
	if doc, _ := os.ReadFile(m.consumers); string(doc) != manageDoc {
		t.Errorf("the managed file changed:\n%s", doc)
	}
	// Seven refused changes, seven audit lines.
	lines := m.auditLines()
	if len(lines) != 7 {
		t.Fatalf("%d audit lines, want 7", len(lines))
	}
	for _, l := range lines {
		if l.str("manager") != "ann" || l.str("manager_credential") != "ann-key" || l.str("result") != "forbidden" || l.str("level") != "info" {
			t.Errorf("audit line: %v", l)
		}
	}

	// Paths the API does not have, and methods it does not take.
	m.wantMessage(m.api(http.MethodGet, "/consumer", keyRoot, ""), http.StatusNotFound, "no such endpoint")
	r = m.api(http.MethodPost, "/consumers/ann", keyRoot, `{}`)
	m.wantMessage(r, http.StatusMethodNotAllowed)
	if got := r.header.Get("Allow"); got != "GET, PUT, PATCH, DELETE" {
		t.Errorf("Allow: %q", got)
	}
}

// The HTTP source cannot be written: every endpoint but /self answers 409,
// saying where consumers are managed, and the protected site goes on.
func TestManageHTTPSourceReadOnly(t *testing.T) {
	srv := newSourceServer(t, manageDoc)
	e := newEnv(t)
	e.vars["URL"] = srv.URL("/c.json")
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		hide_credentials
		consumers http {{.URL}}
	}
	handle_path /keys/* {
		key_auth_api {
			consumers http {{.URL}}
			manage_group key-admins
		}
	}
}
`, "caddyfile")
	waitStatus(t, srv.URL("/c.json"), "first load", func(st sources.Status) bool { return st.Loaded })
	m := &manageEnv{env: e, keys: []string{keyRoot, keyAnn}}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/consumers", ""},
		{http.MethodGet, "/consumers/ann", ""},
		{http.MethodPut, "/consumers/tom", `{"keys": [{"key": "tom-secret-0001"}]}`},
		{http.MethodPatch, "/consumers/ann", `{"disabled": true}`},
		{http.MethodDelete, "/consumers/ann", ""},
		{http.MethodPost, "/consumers/ann/keys", ``},
		{http.MethodPatch, "/consumers/ann/keys/ann-key", `{"disabled": true}`},
		{http.MethodDelete, "/consumers/ann/keys/ann-key", ""},
		{http.MethodPost, "/consumers/ann/keys/ann-key/roll", `{"grace": "1h"}`},
	} {
		m.wantMessage(m.api(c.method, c.path, keyRoot, c.body), http.StatusConflict,
			"consumers are managed where the source is served")
	}
	var self map[string]any
	m.want(m.api(http.MethodGet, "/self", keyAnn, ""), http.StatusOK, &self)
	if self["username"] != "ann" {
		t.Errorf("/self: %v", self)
	}
}

// A config without manage_group is refused at load, in JSON and in a
// Caddyfile (at the directive's line); so is a source that is no source.
func TestManageConfigRefused(t *testing.T) {
	e := newEnv(t)
	msg := e.loadError(`{{.Global}}
{{.Site}} {
	key_auth_api {
		consumers file {{.Consumers}}
	}
}
`, "caddyfile")
	if !strings.Contains(msg, "key_auth_api needs manage_group") || !strings.Contains(msg, "Caddyfile:") {
		t.Errorf("error: %s", msg)
	}
	msg = e.loadError(jsonConfig(sitePort[0], `{"handle": [{"handler": "key_auth_api",
		"consumers": {"source": "file", "path": "{{.Consumers}}"}}]}`), "json")
	if !strings.Contains(msg, "manage_group is required") {
		t.Errorf("error: %s", msg)
	}
	msg = e.loadError(jsonConfig(sitePort[0], `{"handle": [{"handler": "key_auth_api", "manage_group": "a"}]}`), "json")
	if !strings.Contains(msg, "consumers is required") {
		t.Errorf("error: %s", msg)
	}
	msg = e.loadError(jsonConfig(sitePort[0], `{"handle": [{"handler": "key_auth_api", "manage_group": "a", "scope": {"label": ""},
		"consumers": {"source": "file", "path": "{{.Consumers}}"}}]}`), "json")
	if !strings.Contains(msg, "scope: a label name is required") {
		t.Errorf("error: %s", msg)
	}
}
