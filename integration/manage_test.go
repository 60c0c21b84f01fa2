package integration

// The management API, key_auth_api (README: Management API), against a real
// Caddy: a site whose key_auth authenticates the managers and whose
// handle_path /keys/* mounts the API, and a protected site whose key_auth
// reads the source the API manages.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
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
		hide_credentials
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
	file bool // the managed source is the env's consumers file
}

func newManageEnv(t *testing.T, scope string) *manageEnv {
	t.Helper()
	m := &manageEnv{env: newEnv(t), keys: []string{keyRoot, keyAnn, keyGus, keyAcme, keyGlobex, keyLost}, file: true}
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
	if hashIn.Match(r.body) {
		m.t.Errorf("the answer holds a hash: %s", r.body)
	}
	if out != nil {
		// Decoded afresh: a field the answer leaves out must not keep
		// the value of an earlier answer.
		reflect.ValueOf(out).Elem().SetZero()
		if err := json.Unmarshal(r.body, out); err != nil {
			m.t.Fatalf("decoding %s: %v", r.body, err)
		}
	}
}

// hashIn matches a hash: the prefix and hex digits.
var hashIn = regexp.MustCompile(`sha256:[0-9a-fA-F]{8}`)

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

// consumerOut is a consumer as the API shows it.
type consumerOut struct {
	Username string            `json:"username"`
	ID       string            `json:"id"`
	CustomID string            `json:"custom_id"`
	Tags     []string          `json:"tags"`
	Groups   []string          `json:"groups"`
	Labels   map[string]string `json:"labels"`
	Disabled bool              `json:"disabled"`
	Keys     []keyOut          `json:"keys"`
}

type keyOut struct {
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at"`
	CreatedAt string `json:"created_at"`
	LastUsed  string `json:"last_used"`
	Disabled  bool   `json:"disabled"`
	Previous  []struct {
		ExpiresAt string `json:"expires_at"`
	} `json:"previous"`
}

type pageOut struct {
	Consumers []consumerOut `json:"consumers"`
	Next      string        `json:"next"`
}

type issuedOut struct {
	ID                string `json:"id"`
	ExpiresAt         string `json:"expires_at"`
	CreatedAt         string `json:"created_at"`
	Key               string `json:"key"`
	PreviousExpiresAt string `json:"previous_expires_at"`
}

// keyOf is the key of c with id, zero if none.
func keyOf(c consumerOut, id string) keyOut {
	for _, k := range c.Keys {
		if k.ID == id {
			return k
		}
	}
	return keyOut{}
}

func usernames(p pageOut) string {
	var out []string
	for _, c := range p.Consumers {
		out = append(out, c.Username)
	}
	return strings.Join(out, " ")
}

// recent reports whether an RFC 3339 time is within the last two minutes.
func recent(s string) bool {
	t, err := time.Parse(time.RFC3339, s)
	return err == nil && time.Since(t) < 2*time.Minute && time.Until(t) < time.Minute
}

// Every endpoint against the file source: each change is in the file at
// once (keys as hashes, with created_at) and answered at once by the
// protected site, which never polls the file.
func TestManageEndpointsFile(t *testing.T) {
	needWriter(t, "file")
	newManageEnv(t, "").endpoints()
}

// endpoints calls every endpoint and checks each answer, the protected
// site's answers to the keys changed, and, for the file source, the file.
func (m *manageEnv) endpoints() {
	t := m.t
	const keyTom, keyTomMig = "tom-secret-0001", "tom-migrated-0002"
	m.keys = append(m.keys, keyTom, keyTomMig)

	// List: in username order, no secrets, filters, pages.
	var p pageOut
	m.want(m.api(http.MethodGet, "/consumers", keyRoot, ""), http.StatusOK, &p)
	if got := usernames(p); got != "acme-admin ann globex-admin guest gus lost-admin root" || p.Next != "" {
		t.Errorf("list: %s, next %q", got, p.Next)
	}
	ann := p.Consumers[1]
	if ann.ID != "ann-1" || ann.CustomID != "crm-7" || ann.Labels["tenant"] != "acme" || len(ann.Keys) != 1 ||
		ann.Keys[0].ID != "ann-key" || ann.Keys[0].ExpiresAt != "2099-01-01T00:00:00Z" || ann.Keys[0].Disabled {
		t.Errorf("ann: %+v", ann)
	}
	m.want(m.api(http.MethodGet, "/consumers?group=staff", keyRoot, ""), http.StatusOK, &p)
	if got := usernames(p); got != "ann gus" {
		t.Errorf("?group=staff: %s", got)
	}
	m.want(m.api(http.MethodGet, "/consumers?label=tenant:globex&group=key-admins", keyRoot, ""), http.StatusOK, &p)
	if got := usernames(p); got != "globex-admin" {
		t.Errorf("?label=tenant:globex&group=key-admins: %s", got)
	}
	var pages []string
	for after, n := "", 0; n < 10; n++ {
		m.want(m.api(http.MethodGet, "/consumers?limit=3&after="+after, keyRoot, ""), http.StatusOK, &p)
		pages = append(pages, usernames(p))
		if after = p.Next; after == "" {
			break
		}
	}
	if got := strings.Join(pages, " | "); got != "acme-admin ann globex-admin | guest gus lost-admin | root" {
		t.Errorf("pages: %s", got)
	}

	// One consumer; the key the protected site saw has a last use (the
	// file source's at once; Redis's once the instance writes it there,
	// see TestManageRedisTwoInstances).
	m.protected(keyAnn, "ann")
	var c consumerOut
	m.want(m.api(http.MethodGet, "/consumers/ann", keyRoot, ""), http.StatusOK, &c)
	if c.Username != "ann" || m.file && !recent(c.Keys[0].LastUsed) {
		t.Errorf("GET ann: %+v", c)
	}
	m.wantMessage(m.api(http.MethodGet, "/consumers/nobody", keyRoot, ""), http.StatusNotFound, `no consumer "nobody"`)

	// PUT creates tom, his key stored as its hash, live at once.
	m.protected(keyTom, "")
	m.want(m.api(http.MethodPut, "/consumers/tom", keyRoot,
		`{"custom_id": "t-1", "groups": ["staff"], "keys": [{"id": "tom-key", "key": "`+keyTom+`"}]}`), http.StatusCreated, &c)
	if c.Username != "tom" || c.CustomID != "t-1" || len(c.Keys) != 1 || c.Keys[0].ID != "tom-key" || !recent(c.Keys[0].CreatedAt) {
		t.Errorf("PUT tom: %+v", c)
	}
	m.protected(keyTom, "tom")
	if m.file {
		tom, _ := m.document().Consumer("tom")
		if tom == nil || tom.Keys[0].Key != "" || tom.Keys[0].Hash != consumers.HashKey(keyTom) || tom.Keys[0].CreatedAt != c.Keys[0].CreatedAt {
			t.Fatalf("tom in the file: %+v", tom)
		}
	}
	created := c.Keys[0].CreatedAt
	// PUT again replaces (200); the unchanged key keeps its created_at.
	m.want(m.api(http.MethodPut, "/consumers/tom", keyRoot,
		`{"username": "tom", "tags": ["x"], "keys": [{"id": "tom-key", "key": "`+keyTom+`"}]}`), http.StatusOK, &c)
	if c.CustomID != "" || len(c.Tags) != 1 || c.Keys[0].CreatedAt != created {
		t.Errorf("PUT tom again: %+v", c)
	}

	// PATCH: a merge patch; disabled stops the keys, null brings them back.
	m.want(m.api(http.MethodPatch, "/consumers/tom", keyRoot, `{"disabled": true, "labels": {"plan": "gold", "tier": "1"}}`), http.StatusOK, &c)
	if !c.Disabled || c.Labels["plan"] != "gold" || len(c.Tags) != 1 {
		t.Errorf("PATCH tom: %+v", c)
	}
	m.protected(keyTom, "")
	m.want(m.api(http.MethodPatch, "/consumers/tom", keyRoot, `{"disabled": null, "labels": {"tier": null}, "tags": null}`), http.StatusOK, &c)
	if c.Disabled || len(c.Labels) != 1 || c.Labels["plan"] != "gold" || c.Tags != nil {
		t.Errorf("PATCH tom back: %+v", c)
	}
	m.protected(keyTom, "tom")

	// POST keys: generated, with the configured prefix (the CLI's default
	// here), and given; the same id again is 409.
	var iss issuedOut
	m.want(m.api(http.MethodPost, "/consumers/tom/keys", keyRoot, ""), http.StatusCreated, &iss)
	if !strings.HasPrefix(iss.Key, "ka_") || !strings.HasPrefix(iss.ID, "tom-") || !recent(iss.CreatedAt) || iss.ExpiresAt != "" {
		t.Errorf("a generated key: %+v", iss)
	}
	m.keys = append(m.keys, iss.Key)
	m.protected(iss.Key, "tom")
	generated, generatedKey := iss.ID, iss.Key
	m.want(m.api(http.MethodPost, "/consumers/tom/keys", keyRoot,
		`{"id": "tom-mig", "key": "`+keyTomMig+`", "expires_at": "2098-01-01T00:00:00Z"}`), http.StatusCreated, &iss)
	if iss.Key != "" || iss.ID != "tom-mig" || iss.ExpiresAt != "2098-01-01T00:00:00Z" {
		t.Errorf("a given key: %s", iss.Key)
	}
	m.protected(keyTomMig, "tom")
	m.wantMessage(m.api(http.MethodPost, "/consumers/tom/keys", keyRoot, `{"id": "tom-mig", "key": "`+keyTomMig+`"}`),
		http.StatusConflict, `"tom-mig" is already in use`)
	m.wantMessage(m.api(http.MethodPost, "/consumers/tom/keys", keyRoot, `{"id": "ann-key"}`), http.StatusConflict)
	m.wantMessage(m.api(http.MethodPost, "/consumers/nobody/keys", keyRoot, `{"id": "n-1"}`), http.StatusNotFound)

	// PATCH a key: expired in the past, then never.
	var k keyOut
	m.want(m.api(http.MethodPatch, "/consumers/tom/keys/tom-mig", keyRoot, `{"expires_at": "2020-01-01T00:00:00Z"}`), http.StatusOK, &k)
	if k.ID != "tom-mig" || k.ExpiresAt != "2020-01-01T00:00:00Z" {
		t.Errorf("PATCH tom-mig: %+v", k)
	}
	m.protected(keyTomMig, "")
	m.want(m.api(http.MethodPatch, "/consumers/tom/keys/tom-mig", keyRoot, `{"expires_at": null, "disabled": true}`), http.StatusOK, &k)
	m.protected(keyTomMig, "")
	m.want(m.api(http.MethodPatch, "/consumers/tom/keys/tom-mig", keyRoot, `{"disabled": false}`), http.StatusOK, &k)
	if k.ExpiresAt != "" || k.Disabled {
		t.Errorf("PATCH tom-mig back: %+v", k)
	}
	m.protected(keyTomMig, "tom")
	m.wantMessage(m.api(http.MethodPatch, "/consumers/tom/keys/nope", keyRoot, `{"disabled": true}`), http.StatusNotFound, `no credential "nope"`)

	// Roll: a new secret for tom-key; the old one goes on, as tom-key,
	// for the grace; with no grace it stops at once.
	var rolled issuedOut
	m.want(m.api(http.MethodPost, "/consumers/tom/keys/tom-key/roll", keyRoot, `{"grace": "1h"}`), http.StatusCreated, &rolled)
	if rolled.ID != "tom-key" || !strings.HasPrefix(rolled.Key, "ka_") || rolled.CreatedAt != created {
		t.Errorf("roll: %+v", rolled)
	}
	m.keys = append(m.keys, rolled.Key)
	if until, err := time.Parse(time.RFC3339, rolled.PreviousExpiresAt); err != nil || time.Until(until) < 58*time.Minute || time.Until(until) > time.Hour {
		t.Errorf("roll: the old secret ends at %q", rolled.PreviousExpiresAt)
	}
	for _, k := range []string{keyTom, rolled.Key} {
		if got := get(t, site2+"/", "apikey", k).echo(t).Header.Get("X-Credential-Identifier"); got != "tom-key" {
			t.Errorf("after the roll, a secret of tom-key is credential %q", got)
		}
	}
	m.want(m.api(http.MethodGet, "/consumers/tom", keyRoot, ""), http.StatusOK, &c)
	if k := keyOf(c, "tom-key"); len(k.Previous) != 1 || k.Previous[0].ExpiresAt != rolled.PreviousExpiresAt {
		t.Errorf("tom-key after the roll: %+v", k)
	}
	var again issuedOut
	m.want(m.api(http.MethodPost, "/consumers/tom/keys/tom-key/roll", keyRoot, ``), http.StatusCreated, &again)
	m.keys = append(m.keys, again.Key)
	if again.PreviousExpiresAt != "" {
		t.Errorf("a roll without grace kept the old secret until %s", again.PreviousExpiresAt)
	}
	m.protected(rolled.Key, "")
	m.protected(keyTom, "tom") // the first roll's grace goes on
	m.protected(again.Key, "tom")
	m.wantMessage(m.api(http.MethodPost, "/consumers/tom/keys/tom-key/roll", keyRoot, `{"grace": "soon"}`), http.StatusBadRequest, "grace")
	m.wantMessage(m.api(http.MethodPost, "/consumers/tom/keys/nope/roll", keyRoot, `{"grace": "1h"}`), http.StatusNotFound)

	// DELETE a key: revoked at once; again, 404.
	m.want(m.api(http.MethodDelete, "/consumers/tom/keys/tom-mig", keyRoot, ""), http.StatusNoContent, nil)
	m.protected(keyTomMig, "")
	m.protected(generatedKey, "tom")
	m.wantMessage(m.api(http.MethodDelete, "/consumers/tom/keys/tom-mig", keyRoot, ""), http.StatusNotFound)

	// DELETE the consumer: every key stops.
	m.want(m.api(http.MethodDelete, "/consumers/tom", keyRoot, ""), http.StatusNoContent, nil)
	m.protected(keyTom, "")
	m.wantMessage(m.api(http.MethodGet, "/consumers/tom", keyRoot, ""), http.StatusNotFound)
	m.wantMessage(m.api(http.MethodDelete, "/consumers/tom", keyRoot, ""), http.StatusNotFound)
	m.want(m.api(http.MethodGet, "/consumers", keyRoot, ""), http.StatusOK, &p)
	if got := usernames(p); got != "acme-admin ann globex-admin guest gus lost-admin root" {
		t.Errorf("the consumers left: %s", got)
	}
	if m.file {
		if d := m.document(); len(d.Consumers) != 7 {
			t.Errorf("%d consumers left in the file, want 7", len(d.Consumers))
		}
	}

	// Every change has its audit line: root, its credential, the action,
	// the consumer, the credential, the result.
	var got []string
	for _, l := range m.auditLines() {
		if l.str("manager") != "root" || l.str("manager_credential") != "root-key" {
			t.Errorf("audit line: %v", l)
		}
		got = append(got, l.str("action")+" "+l.str("consumer")+" "+l.str("credential_id")+" "+l.str("result"))
	}
	want := []string{
		"create_consumer tom  ok", "replace_consumer tom  ok", "patch_consumer tom  ok", "patch_consumer tom  ok",
		"add_key tom " + generated + " ok", "add_key tom tom-mig ok", "add_key tom tom-mig conflict", "add_key tom ann-key conflict",
		"add_key nobody n-1 not_found",
		"patch_key tom tom-mig ok", "patch_key tom tom-mig ok", "patch_key tom tom-mig ok", "patch_key tom nope not_found",
		"roll_key tom tom-key ok", "roll_key tom tom-key ok", "roll_key tom tom-key invalid", "roll_key tom nope not_found",
		"delete_key tom tom-mig ok", "delete_key tom tom-mig not_found", "delete_consumer tom  ok", "delete_consumer tom  not_found",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit lines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// And its count.
	mt, _ := metrics(t)
	if n := mt[`caddy_key_auth_api_changes_total{action="add_key",result="conflict"}`]; n < 2 {
		t.Errorf("caddy_key_auth_api_changes_total add_key conflict = %v", n)
	}
}

// APISIX's getting-started walkthrough, through the API: create tom with
// the key secret-key by a PUT, and it works on the protected site at once;
// disable tom, it stops; delete tom, it stays stopped.
func TestManageAPISIXWalkthrough(t *testing.T) {
	needWriter(t, "file")
	m := newManageEnv(t, "")
	m.keys = append(m.keys, "secret-key")
	m.protected("secret-key", "")
	m.want(m.api(http.MethodPut, "/consumers/tom", keyRoot, `{"keys": [{"key": "secret-key"}]}`), http.StatusCreated, nil)
	m.protected("secret-key", "tom")
	m.want(m.api(http.MethodPatch, "/consumers/tom", keyRoot, `{"disabled": true}`), http.StatusOK, nil)
	m.protected("secret-key", "")
	m.want(m.api(http.MethodDelete, "/consumers/tom", keyRoot, ""), http.StatusNoContent, nil)
	m.protected("secret-key", "")
	if b, _ := os.ReadFile(m.consumers); strings.Contains(string(b), "secret-key") || strings.Contains(string(b), `"tom"`) {
		t.Errorf("the file after the walkthrough:\n%s", b)
	}
}

// scope label tenant: a manager sees and changes only the consumers of its
// own tenant, gives that tenant to what it creates, cannot move a consumer
// out of it, and one without the label manages nothing.
func TestManageScope(t *testing.T) {
	needWriter(t, "file")
	m := newManageEnv(t, "scope label tenant")
	var p pageOut
	m.want(m.api(http.MethodGet, "/consumers", keyAcme, ""), http.StatusOK, &p)
	if got := usernames(p); got != "acme-admin ann" {
		t.Errorf("acme's list: %s", got)
	}
	m.want(m.api(http.MethodGet, "/consumers?group=staff", keyGlobex, ""), http.StatusOK, &p)
	if got := usernames(p); got != "gus" {
		t.Errorf("globex's staff: %s", got)
	}
	before, _ := os.ReadFile(m.consumers)
	// Another tenant's consumer is not there for acme.
	m.wantMessage(m.api(http.MethodGet, "/consumers/gus", keyAcme, ""), http.StatusNotFound)
	m.wantMessage(m.api(http.MethodPatch, "/consumers/gus", keyAcme, `{"disabled": true}`), http.StatusNotFound)
	m.wantMessage(m.api(http.MethodDelete, "/consumers/gus", keyAcme, ""), http.StatusNotFound)
	m.wantMessage(m.api(http.MethodPost, "/consumers/gus/keys", keyAcme, ""), http.StatusNotFound)
	m.wantMessage(m.api(http.MethodDelete, "/consumers/gus/keys/gus-key", keyAcme, ""), http.StatusNotFound)
	m.wantMessage(m.api(http.MethodPut, "/consumers/gus", keyAcme, `{}`), http.StatusConflict, `username "gus" is taken`)
	// Nor can acme move ann out, or create for globex.
	m.wantMessage(m.api(http.MethodPatch, "/consumers/ann", keyAcme, `{"labels": {"tenant": "globex"}}`), http.StatusBadRequest, "labels.tenant")
	m.wantMessage(m.api(http.MethodPatch, "/consumers/ann", keyAcme, `{"labels": null}`), http.StatusBadRequest, "labels.tenant")
	m.wantMessage(m.api(http.MethodPut, "/consumers/zed", keyAcme, `{"labels": {"tenant": "globex"}}`), http.StatusBadRequest, "labels.tenant")
	// A manager without the label: 403 on every management endpoint.
	m.wantMessage(m.api(http.MethodGet, "/consumers", keyLost, ""), http.StatusForbidden, `has no "tenant" label`)
	m.wantMessage(m.api(http.MethodPut, "/consumers/zed", keyLost, `{}`), http.StatusForbidden)
	if after, _ := os.ReadFile(m.consumers); string(after) != string(before) {
		t.Fatalf("refused changes wrote the file:\n%s", after)
	}
	// What acme creates is acme's.
	var c consumerOut
	m.want(m.api(http.MethodPut, "/consumers/zed", keyAcme, `{"labels": {"plan": "free"}}`), http.StatusCreated, &c)
	if c.Labels["tenant"] != "acme" || c.Labels["plan"] != "free" {
		t.Errorf("zed: %+v", c)
	}
	m.want(m.api(http.MethodPatch, "/consumers/zed", keyAcme, `{"labels": {"plan": "gold"}}`), http.StatusOK, &c)
	m.wantMessage(m.api(http.MethodGet, "/consumers/zed", keyGlobex, ""), http.StatusNotFound)
	m.want(m.api(http.MethodGet, "/consumers?label=plan:gold", keyAcme, ""), http.StatusOK, &p)
	if got := usernames(p); got != "zed" {
		t.Errorf("acme's gold: %s", got)
	}
	// root, a manager without a tenant, manages nothing here.
	m.wantMessage(m.api(http.MethodGet, "/consumers", keyRoot, ""), http.StatusForbidden)
}

// Bad input is 400 naming the field (413 for a body over 1 MiB), never
// echoes a key, and writes nothing: the file stays byte for byte.
func TestManageBadInput(t *testing.T) {
	needWriter(t, "file")
	m := newManageEnv(t, "")
	before, _ := os.ReadFile(m.consumers)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		says                     string
	}{
		{"unknown field", http.MethodPut, "/consumers/tom", `{"grups": ["a"]}`, 400, `unknown field "grups"`},
		{"unknown key field", http.MethodPut, "/consumers/tom", `{"keys": [{"kee": "x"}]}`, 400, `unknown field "kee"`},
		{"wrong type", http.MethodPut, "/consumers/tom", `{"groups": "staff"}`, 400, "groups: want an array"},
		{"not JSON", http.MethodPut, "/consumers/tom", `{"groups": [`, 400, "not valid JSON"},
		{"not an object", http.MethodPut, "/consumers/tom", `["tom"]`, 400, "must be a JSON object"},
		{"two values", http.MethodPut, "/consumers/tom", `{} {}`, 400, "more than one JSON value"},
		{"empty body", http.MethodPut, "/consumers/tom", ``, 400, "empty"},
		{"other username", http.MethodPut, "/consumers/tom", `{"username": "ann"}`, 400, "username"},
		{"empty username in path", http.MethodGet, "/consumers/", ``, 400, "username is empty"},
		{"bad group", http.MethodPut, "/consumers/tom", `{"groups": ["a b"]}`, 400, `group "a b"`},
		{"group twice", http.MethodPut, "/consumers/tom", `{"groups": ["a", "a"]}`, 400, `group "a" twice`},
		{"bad label", http.MethodPut, "/consumers/tom", `{"labels": {"a b": "x"}}`, 400, `label name "a b"`},
		{"key and hash", http.MethodPut, "/consumers/tom", `{"keys": [{"key": "edged-key-1", "hash": "sha256:` + strings.Repeat("0", 64) + `"}]}`, 400, "both key and hash"},
		{"malformed hash", http.MethodPut, "/consumers/tom", `{"keys": [{"hash": "md5:x"}]}`, 400, "malformed hash"},
		{"bad expiry", http.MethodPut, "/consumers/tom", `{"keys": [{"key": "edged-key-1", "expires_at": "tomorrow"}]}`, 400, "expires_at"},
		{"empty credential id", http.MethodPatch, "/consumers/ann/keys/", `{}`, 400, "credential id is empty"},
		{"patch keys", http.MethodPatch, "/consumers/ann", `{"keys": []}`, 400, `unknown field "keys"`},
		{"patch username", http.MethodPatch, "/consumers/ann", `{"username": "x"}`, 400, `unknown field "username"`},
		{"patch wrong type", http.MethodPatch, "/consumers/ann", `{"disabled": "yes"}`, 400, "disabled: want true or false"},
		{"patch bad group", http.MethodPatch, "/consumers/ann", `{"groups": [""]}`, 400, "group #1 is empty"},
		{"patch not an object", http.MethodPatch, "/consumers/ann", `true`, 400, "must be a JSON object"},
		{"key patch field", http.MethodPatch, "/consumers/ann/keys/ann-key", `{"key": "edged-key-1"}`, 400, `unknown field "key"`},
		{"key patch expiry", http.MethodPatch, "/consumers/ann/keys/ann-key", `{"expires_at": "soon"}`, 400, "expires_at: want an RFC 3339 time"},
		{"new key expiry", http.MethodPost, "/consumers/ann/keys", `{"expires_at": "2020-01-01T00:00:00Z"}`, 400, "not in the future"},
		{"new key unknown", http.MethodPost, "/consumers/ann/keys", `{"secret": "edged-key-1"}`, 400, `unknown field "secret"`},
		{"list limit", http.MethodGet, "/consumers?limit=0", ``, 400, "limit"},
		{"list big limit", http.MethodGet, "/consumers?limit=1001", ``, 400, "limit"},
		{"list label", http.MethodGet, "/consumers?label=tenant", ``, 400, "name:value"},
		{"list group", http.MethodGet, "/consumers?group=a,b", ``, 400, "group"},
		{"list param", http.MethodGet, "/consumers?page=2", ``, 400, `unknown query parameter "page"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			m.t = t
			m.wantMessage(m.api(c.method, c.path, keyRoot, c.body), c.status, c.says)
		})
	}
	// Keys the document would refuse, in a PUT and a POST: named, never
	// quoted.
	for _, bk := range badKeys {
		t.Run("key "+bk.name, func(t *testing.T) {
			m.t = t
			k, _ := json.Marshal(bk.key)
			msg := m.wantMessage(m.api(http.MethodPut, "/consumers/tom", keyRoot, `{"keys": [{"id": "t1", "key": `+string(k)+`}]}`), 400, bk.fault, `"t1"`)
			noKeyIn(t, "the answer", msg)
			msg = m.wantMessage(m.api(http.MethodPost, "/consumers/ann/keys", keyRoot, `{"key": `+string(k)+`}`), 400, "key: "+bk.fault)
			noKeyIn(t, "the answer", msg)
		})
	}
	m.t = t
	long, _ := json.Marshal(strings.Repeat("k", consumers.MaxKeyLength+1))
	m.wantMessage(m.api(http.MethodPost, "/consumers/ann/keys", keyRoot, `{"key": `+string(long)+`}`), 400, "key: longer than 4096 bytes")
	// A key another consumer's credential has: refused, naming neither.
	msg := m.wantMessage(m.api(http.MethodPost, "/consumers/root/keys", keyRoot, `{"key": "`+keyAnn+`"}`), http.StatusConflict)
	if strings.Contains(msg, "ann") {
		t.Errorf("the refusal names the other credential: %s", msg)
	}
	// Over 1 MiB: 413.
	big := `{"tags": ["` + strings.Repeat("x", 1<<20) + `"]}`
	m.wantMessage(m.api(http.MethodPut, "/consumers/tom", keyRoot, big), http.StatusRequestEntityTooLarge, "larger than 1048576 bytes")
	if after, _ := os.ReadFile(m.consumers); string(after) != string(before) {
		t.Fatalf("bad input wrote the file:\n%s", after)
	}
	for _, l := range m.logLines("caddy.log") {
		noKeyIn(t, "a log line", l)
	}
}

// Many API writers at once and a CLI-style writer of the same file
// (docfile, as `caddy key-auth` edits it) lose nothing: every key a POST
// got 201 for, and every consumer the other writer saved, is in the file
// and answered by the protected site.
func TestManageConcurrentWriters(t *testing.T) {
	needWriter(t, "file")
	m := newManageEnv(t, "")
	const writers, each, cliWrites = 8, 6, 10
	var wg sync.WaitGroup
	keys := make([][]string, writers)
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("c-%d-%d", w, i)
				key := fmt.Sprintf("concurrent-key-%d-%d", w, i)
				for try := 0; ; try++ {
					r, err := send(client, req(http.MethodPost, site+"/keys/consumers/root/keys",
						strings.NewReader(`{"id": "`+id+`", "key": "`+key+`"}`), "apikey", keyRoot))
					if err != nil {
						errs <- err
						return
					}
					if r.status == http.StatusCreated || r.status == http.StatusConflict && strings.Contains(string(r.body), "already in use") {
						break
					}
					if r.status != http.StatusConflict || try > 50 {
						errs <- fmt.Errorf("POST %s: %s", id, r)
						return
					}
					// 409: another writer's change won; nothing written, send again.
				}
				keys[w] = append(keys[w], key)
			}
		})
	}
	var cliUsers []string
	wg.Go(func() {
		for i := range cliWrites {
			name := fmt.Sprintf("cli-user-%d", i)
			for try := 0; ; try++ {
				f, err := docfile.Open(m.consumers)
				if err == nil {
					f.Doc.Consumers = append(f.Doc.Consumers, consumers.ConsumerEntry{Username: name,
						Keys: []consumers.CredentialEntry{{ID: name + "-key", Key: "cli-key-" + name}}})
					if err = f.Save(); err == nil {
						break
					}
				}
				if !errors.Is(err, keyauth.ErrConflict) || try > 50 {
					errs <- fmt.Errorf("the CLI-style writer: %w", err)
					return
				}
			}
			cliUsers = append(cliUsers, name)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d := m.document()
	root, _ := d.Consumer("root")
	if n := len(root.Keys); n != 1+writers*each {
		t.Errorf("root has %d keys, want %d", n, 1+writers*each)
	}
	for _, ks := range keys {
		for _, k := range ks {
			m.keys = append(m.keys, k)
			m.protected(k, "root")
		}
	}
	for _, u := range cliUsers {
		if _, ok := d.Consumer(u); !ok {
			t.Errorf("%s is missing from the file", u)
		}
	}
	// The store follows the file the other writer replaced when the API
	// writes next, or at once on a refresh.
	adminRefresh(t)
	m.protected("cli-key-cli-user-0", "cli-user-0")
}

// A key's last use, shown by the API, survives a restart of Caddy.
func TestManageLastUsedAcrossRestart(t *testing.T) {
	needWriter(t, "file")
	m := newManageEnv(t, "")
	m.protected(keyGus, "gus")
	var c consumerOut
	m.want(m.api(http.MethodGet, "/consumers/gus", keyRoot, ""), http.StatusOK, &c)
	used := c.Keys[0].LastUsed
	if !recent(used) {
		t.Fatalf("gus-key's last use: %q", used)
	}
	unload(t)
	m.load(manageSites, "caddyfile")
	m.want(m.api(http.MethodGet, "/consumers/gus", keyRoot, ""), http.StatusOK, &c)
	if c.Keys[0].LastUsed != used {
		t.Errorf("gus-key's last use after a restart: %q, want %q", c.Keys[0].LastUsed, used)
	}
}

// A consumer's and a key's limits are shown as the document holds them, so
// a client that reads a consumer and writes it back keeps them.
func TestManageShowsLimits(t *testing.T) {
	needWriter(t, "file")
	m := newManageEnv(t, "")
	m.keys = append(m.keys, "limited-key-0001")
	body := `{"limits": {"tokens": {"max": 2000, "per": "month", "timezone": "Europe/Berlin"}, "in_flight": 2},
		"keys": [{"id": "lim-1", "key": "limited-key-0001", "limits": {"requests": {"max": 100, "per": "90m"}}}]}`
	m.want(m.api(http.MethodPut, "/consumers/lim", keyRoot, body), http.StatusCreated, nil)
	r := m.api(http.MethodGet, "/consumers/lim", keyRoot, "")
	var got struct {
		Limits consumers.LimitsEntry `json:"limits"`
		Keys   []struct {
			ID     string                `json:"id"`
			Limits consumers.LimitsEntry `json:"limits"`
		} `json:"keys"`
	}
	m.want(r, http.StatusOK, &got)
	want := consumers.LimitsEntry{"tokens": {Max: 2000, Per: "month", Timezone: "Europe/Berlin"}, consumers.InFlight: {Max: 2}}
	if !reflect.DeepEqual(got.Limits, want) {
		t.Errorf("consumer limits %+v, want %+v", got.Limits, want)
	}
	if len(got.Keys) != 1 || !reflect.DeepEqual(got.Keys[0].Limits, consumers.LimitsEntry{"requests": {Max: 100, Per: "1h30m"}}) { // 90m, as Go spells it
		t.Errorf("keys %+v", got.Keys)
	}
}
