package integration

// Limits through the management API (issue 18, "Visibility and control"):
// GET /self shows the caller's limits, managers read, reset and top up a
// consumer's usage, in store local and in store redis.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

const keyQuota = "quota-secret-0001" // quota: 3 requests an hour, its key 100 a day

const usageDoc = `{"consumers": [
  {"username": "quota", "id": "quota-id", "limits": {"requests": {"max": 3, "per": "hour"}, "in_flight": 2},
   "keys": [{"id": "quota-key", "key": "` + keyQuota + `", "limits": {"requests": {"max": 100, "per": "day"}}}]},
  {"username": "guest"},
  {"username": "root", "groups": ["key-admins"], "keys": [{"id": "root-key", "key": "` + keyRoot + `"}]}
]}`

// usageSites: {{.Site}} is the API (whose own calls are not charged), with
// limits_store {{.Store}}; {{.Site2}} the protected site, counting in
// {{.Store}} too.
const usageSites = `{{.Global}}
{{.Site}} {
	key_auth {
		anonymous guest
		hide_credentials
		consumers file {{.Consumers}}
	}
	handle_path /keys/* {
		key_auth_api {
			consumers file {{.Consumers}}
			manage_group key-admins
			{{.APIStore}}
		}
	}
}
{{.Site2}} {
	key_auth {
		hide_credentials
		consumers file {{.Consumers}}
		limits {
			store {{.Store}}
		}
	}
	reverse_proxy {{.Up}}
}
`

type limitOut struct {
	Meter, Scope, Credential, Group, Per string
	Max                                  int64
	Used, Remaining                      *int64
	Reset                                int64
}

type usageOut struct {
	Username string
	Limits   []limitOut
}

// find is the limit of scope and meter.
func (u usageOut) find(t testing.TB, scope, meter string) limitOut {
	t.Helper()
	for _, l := range u.Limits {
		if l.Scope == scope && l.Meter == meter {
			return l
		}
	}
	t.Fatalf("no %s limit on %s in %+v", scope, meter, u.Limits)
	return limitOut{}
}

func newUsageEnv(t *testing.T, store string) *manageEnv {
	m := &manageEnv{env: newEnv(t), keys: []string{keyRoot, keyQuota}, file: true}
	m.writeConsumers(usageDoc)
	m.vars["Store"] = store
	m.vars["APIStore"] = "limits_store " + store
	m.load(usageSites, "caddyfile")
	t.Cleanup(func() { m.noKeyInLogs() })
	return m
}

// passes counts how many of n requests of the quota key the protected site
// lets through; the rest must be 429.
func (m *manageEnv) passes(n int) int {
	m.t.Helper()
	ok := 0
	for range n {
		switch r := get(m.t, site2+"/", "apikey", keyQuota); r.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
		default:
			m.t.Fatalf("the protected site answered %s", r)
		}
	}
	return ok
}

func (m *manageEnv) selfRemaining() int64 {
	m.t.Helper()
	var s usageOut
	m.want(m.api("GET", "/self", keyQuota, ""), http.StatusOK, &s)
	l := s.find(m.t, "consumer", "requests")
	if l.Remaining == nil || l.Max != 3 || l.Per != "hour" || l.Reset < 1 || l.Reset > 3600 {
		m.t.Fatalf("GET /self: %+v", l)
	}
	return *l.Remaining
}

func usageWalkthrough(t *testing.T, m *manageEnv) {
	if r := m.selfRemaining(); r != 3 {
		t.Fatalf("remaining %d before any request", r)
	}
	if m.passes(1) != 1 || m.selfRemaining() != 2 {
		t.Fatal("GET /self does not show remaining decreasing")
	}
	if got := m.passes(5); got != 2 {
		t.Fatalf("a quota of 3 let %d of 5 through after 1", got)
	}
	if r := m.selfRemaining(); r != 0 {
		t.Fatalf("remaining %d after the quota was used up", r)
	}
	var s usageOut
	m.want(m.api("GET", "/self", keyQuota, ""), http.StatusOK, &s)
	if l := s.find(t, "credential", "requests"); l.Credential != "quota-key" || *l.Used != 3 || *l.Remaining != 97 || l.Per != "day" {
		t.Fatalf("the key's own limit: %+v", l)
	}
	if l := s.find(t, "consumer", "in_flight"); l.Max != 2 || l.Reset != 0 || l.Per != "" || *l.Used != 0 {
		t.Fatalf("in_flight: %+v", l)
	}

	// A manager reads the usage, tops it up by 2: exactly 2 more pass.
	var u usageOut
	m.want(m.api("GET", "/consumers/quota/usage", keyRoot, ""), http.StatusOK, &u)
	if l := u.find(t, "consumer", "requests"); *l.Used != 3 || *l.Remaining != 0 {
		t.Fatalf("usage: %+v", l)
	}
	m.want(m.api("POST", "/consumers/quota/usage/requests", keyRoot, `{"add": 2}`), http.StatusOK, &u)
	if l := u.find(t, "consumer", "requests"); *l.Used != 1 || *l.Remaining != 2 {
		t.Fatalf("after a top-up of 2: %+v", l)
	}
	if got := m.passes(5); got != 2 {
		t.Fatalf("a top-up of 2 let %d through", got)
	}
	// A top-up of the key's own limit, and one beyond the usage: the
	// room left exceeds the max for this window.
	m.want(m.api("POST", "/consumers/quota/usage/requests?credential=quota-key", keyRoot, `{"add": 10}`), http.StatusOK, &u)
	if l := u.find(t, "credential", "requests"); *l.Used != -5 || *l.Remaining != 105 {
		t.Fatalf("the key's top-up: %+v", l)
	}

	// Reset: the full quota again.
	m.want(m.api("DELETE", "/consumers/quota/usage/requests", keyRoot, ""), http.StatusOK, &u)
	if l := u.find(t, "consumer", "requests"); *l.Used != 0 || *l.Remaining != 3 {
		t.Fatalf("after a reset: %+v", l)
	}
	if got := m.passes(5); got != 3 {
		t.Fatalf("after a reset a quota of 3 let %d through", got)
	}
	m.want(m.api("DELETE", "/consumers/quota/usage", keyRoot, ""), http.StatusOK, &u)
	if l := u.find(t, "credential", "requests"); *l.Used != 0 {
		t.Fatalf("a reset of every meter left the key's: %+v", l)
	}

	// Refusals: in_flight, no such limit, bad input, not a manager.
	m.wantMessage(m.api("POST", "/consumers/quota/usage/in_flight", keyRoot, `{"add": 1}`), http.StatusBadRequest, "in_flight")
	m.wantMessage(m.api("DELETE", "/consumers/quota/usage/in_flight", keyRoot, ""), http.StatusBadRequest, "in_flight")
	m.wantMessage(m.api("POST", "/consumers/quota/usage/tokens", keyRoot, `{"add": 1}`), http.StatusNotFound, "tokens")
	m.wantMessage(m.api("POST", "/consumers/quota/usage/requests?credential=nope", keyRoot, `{"add": 1}`), http.StatusNotFound, "nope")
	m.wantMessage(m.api("POST", "/consumers/quota/usage/requests", keyRoot, `{"add": 0}`), http.StatusBadRequest, "add")
	m.wantMessage(m.api("POST", "/consumers/quota/usage/requests", keyRoot, `{"ad": 1}`), http.StatusBadRequest, "ad")
	m.wantMessage(m.api("GET", "/consumers/nobody/usage", keyRoot, ""), http.StatusNotFound, "nobody")
	m.wantMessage(m.api("POST", "/consumers/quota/usage/requests", keyQuota, `{"add": 9}`), http.StatusForbidden, "key-admins")

	var actions []string
	for _, l := range m.auditLines() {
		actions = append(actions, l.str("action")+":"+l.str("result"))
	}
	got := strings.Join(actions, " ")
	for _, want := range []string{"usage_topup:ok", "usage_reset:ok", "usage_topup:invalid", "usage_topup:not_found", "usage_topup:forbidden"} {
		if !strings.Contains(got, want) {
			t.Errorf("no audit line %s in %s", want, got)
		}
	}
}

func TestManageUsageLocal(t *testing.T) {
	m := newUsageEnv(t, "local "+limitsTable(t))
	usageWalkthrough(t, m)
}

func TestManageUsageRedis(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	m := newUsageEnv(t, fmt.Sprintf("redis %s {\n\t\t\t\tprefix usage:\n\t\t\t}", srv.Addr()))
	usageWalkthrough(t, m)
}

// Without limits_store, GET /self shows the limits without usage, and the
// usage endpoints say what is missing.
func TestManageUsageWithoutStore(t *testing.T) {
	m := &manageEnv{env: newEnv(t), keys: []string{keyRoot, keyQuota}, file: true}
	m.writeConsumers(usageDoc)
	m.vars["Store"] = "local " + limitsTable(t)
	m.vars["APIStore"] = ""
	m.load(usageSites, "caddyfile")
	var s usageOut
	m.want(m.api("GET", "/self", keyQuota, ""), http.StatusOK, &s)
	if l := s.find(t, "consumer", "requests"); l.Used != nil || l.Remaining != nil || l.Max != 3 || l.Reset < 1 {
		t.Fatalf("GET /self without a store: %+v", l)
	}
	m.wantMessage(m.api("GET", "/consumers/quota/usage", keyRoot, ""), http.StatusConflict, "limits_store")
	m.wantMessage(m.api("POST", "/consumers/quota/usage/requests", keyRoot, `{"add": 1}`), http.StatusConflict, "limits_store")
	// A consumer without limits has none in /self.
	m.want(m.api("GET", "/self", keyRoot, ""), http.StatusOK, nil)
	if r := m.api("GET", "/self", keyRoot, ""); strings.Contains(string(r.body), "limits") {
		t.Fatalf("limits for a consumer without any: %s", r.body)
	}
}

// scopedUsageDoc is usageDoc in two tenants: quota and its manager in acme,
// gus and its manager in globex; both quota and gus have 3 requests an
// hour.
const scopedUsageDoc = `{"consumers": [
  {"username": "quota", "id": "quota-id", "labels": {"tenant": "acme"}, "limits": {"requests": {"max": 3, "per": "hour"}},
   "keys": [{"id": "quota-key", "key": "` + keyQuota + `"}]},
  {"username": "gus", "labels": {"tenant": "globex"}, "limits": {"requests": {"max": 3, "per": "hour"}},
   "keys": [{"id": "gus-key", "key": "` + keyGus + `"}]},
  {"username": "guest"},
  {"username": "acme-admin", "groups": ["key-admins"], "labels": {"tenant": "acme"},
   "keys": [{"id": "acme-admin-key", "key": "` + keyAcme + `"}]},
  {"username": "globex-admin", "groups": ["key-admins"], "labels": {"tenant": "globex"},
   "keys": [{"id": "globex-admin-key", "key": "` + keyGlobex + `"}]},
  {"username": "lost-admin", "groups": ["key-admins"],
   "keys": [{"id": "lost-admin-key", "key": "` + keyLost + `"}]}
]}`

// scope label tenant on the usage endpoints: another tenant's consumer is
// not there (404, as one that does not exist, and its usage untouched), a
// manager reads and tops up its own tenant's, and one without the label
// manages no usage.
func TestManageUsageScope(t *testing.T) {
	m := &manageEnv{env: newEnv(t), keys: []string{keyQuota, keyGus, keyAcme, keyGlobex, keyLost}, file: true}
	m.writeConsumers(scopedUsageDoc)
	store := "local " + limitsTable(t)
	m.vars["Store"] = store
	m.vars["APIStore"] = "limits_store " + store + "\n\t\t\tscope label tenant"
	m.load(usageSites, "caddyfile")
	t.Cleanup(func() { m.noKeyInLogs() })

	gusPasses := func(n int) int {
		ok := 0
		for range n {
			switch r := get(t, site2+"/", "apikey", keyGus); r.status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("the protected site answered %s", r)
			}
		}
		return ok
	}
	if got := gusPasses(4); got != 3 {
		t.Fatalf("gus's quota of 3 let %d of 4 through", got)
	}

	// acme's manager: gus is not there on any usage endpoint, and reads as
	// a consumer that does not exist.
	nobody := m.wantMessage(m.api("GET", "/consumers/nobody/usage", keyAcme, ""), http.StatusNotFound, "nobody")
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/consumers/gus/usage", ""},
		{"DELETE", "/consumers/gus/usage", ""},
		{"DELETE", "/consumers/gus/usage/requests", ""},
		{"POST", "/consumers/gus/usage/requests", `{"add": 5}`},
		{"POST", "/consumers/gus/usage/requests?credential=gus-key", `{"add": 5}`},
	} {
		msg := m.wantMessage(m.api(c.method, c.path, keyAcme, c.body), http.StatusNotFound, "gus")
		if msg != strings.ReplaceAll(nobody, "nobody", "gus") {
			t.Errorf("%s %s: %q, not as for a consumer that does not exist (%q)", c.method, c.path, msg, nobody)
		}
	}
	if got := gusPasses(1); got != 0 {
		t.Fatal("another tenant's manager gave gus room")
	}
	// globex's manager tops gus up.
	var u usageOut
	m.want(m.api("GET", "/consumers/gus/usage", keyGlobex, ""), http.StatusOK, &u)
	if l := u.find(t, "consumer", "requests"); *l.Used != 3 || *l.Remaining != 0 {
		t.Fatalf("gus's usage to globex: %+v", l)
	}
	m.want(m.api("POST", "/consumers/gus/usage/requests", keyGlobex, `{"add": 1}`), http.StatusOK, &u)
	if got := gusPasses(2); got != 1 {
		t.Fatalf("a top-up of 1 by gus's manager let %d through", got)
	}

	// acme's manager tops up and resets its own consumer's usage.
	if got := m.passes(4); got != 3 {
		t.Fatalf("quota's quota of 3 let %d of 4 through", got)
	}
	m.want(m.api("POST", "/consumers/quota/usage/requests", keyAcme, `{"add": 2}`), http.StatusOK, &u)
	if l := u.find(t, "consumer", "requests"); *l.Used != 1 || *l.Remaining != 2 {
		t.Fatalf("quota after acme's top-up of 2: %+v", l)
	}
	if got := m.passes(3); got != 2 {
		t.Fatalf("acme's top-up of 2 let %d through", got)
	}
	m.wantMessage(m.api("GET", "/consumers/quota/usage", keyGlobex, ""), http.StatusNotFound, "quota")
	m.want(m.api("DELETE", "/consumers/quota/usage", keyAcme, ""), http.StatusOK, &u)
	if l := u.find(t, "consumer", "requests"); *l.Used != 0 {
		t.Fatalf("quota after acme's reset: %+v", l)
	}
	// A manager without the label manages no usage.
	m.wantMessage(m.api("GET", "/consumers/quota/usage", keyLost, ""), http.StatusForbidden, `has no "tenant" label`)
	m.wantMessage(m.api("POST", "/consumers/quota/usage/requests", keyLost, `{"add": 1}`), http.StatusForbidden, `has no "tenant" label`)

	var got []string
	for _, l := range m.auditLines() {
		got = append(got, l.str("consumer")+":"+l.str("action")+":"+l.str("result"))
	}
	all := strings.Join(got, " ")
	for _, want := range []string{"gus:usage_reset:not_found", "gus:usage_topup:not_found", "gus:usage_topup:ok",
		"quota:usage_topup:ok", "quota:usage_reset:ok", "quota:usage_topup:forbidden"} {
		if !strings.Contains(all, want) {
			t.Errorf("no audit line %s in %s", want, all)
		}
	}
}

// A limits store that cannot answer: every usage endpoint is 503 with a
// message, a change's audit line says unavailable, and no key is logged
// (newUsageEnv checks).
func TestManageUsageStoreDown(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	m := newUsageEnv(t, fmt.Sprintf("redis %s {\n\t\t\t\tprefix usage:\n\t\t\t}", srv.Addr()))
	if m.passes(1) != 1 {
		t.Fatal("the protected site refused the first request")
	}
	m.want(m.api("GET", "/consumers/quota/usage", keyRoot, ""), http.StatusOK, nil)
	srv.Stop()
	m.wantMessage(m.api("GET", "/consumers/quota/usage", keyRoot, ""), http.StatusServiceUnavailable, "limits store is unavailable")
	m.wantMessage(m.api("GET", "/self", keyQuota, ""), http.StatusServiceUnavailable, "limits store is unavailable")
	for _, c := range []struct{ method, path, body string }{
		{"DELETE", "/consumers/quota/usage", ""},
		{"DELETE", "/consumers/quota/usage/requests", ""},
		{"POST", "/consumers/quota/usage/requests", `{"add": 2}`},
		{"POST", "/consumers/quota/usage/requests?credential=quota-key", `{"add": 2}`},
	} {
		m.wantMessage(m.api(c.method, c.path, keyRoot, c.body), http.StatusServiceUnavailable, "limits store is unavailable; usage may be unchanged")
	}
	var got []string
	for _, l := range m.auditLines() {
		got = append(got, l.str("consumer")+":"+l.str("action")+":"+l.str("result"))
	}
	want := "quota:usage_reset:unavailable quota:usage_reset:unavailable quota:usage_topup:unavailable quota:usage_topup:unavailable"
	if all := strings.Join(got, " "); all != want {
		t.Errorf("audit lines %s, want %s", all, want)
	}
}
