package integration

// Issue 11: keys in cookies and canary keys, against a real Caddy and the
// echo upstream.

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
)

const (
	ccAliceKey  = "alice-key-1"
	ccCanaryKey = "canary-key-planted-in-the-wiki"
	// ccMarker is a query value that must never reach a log line of the
	// module: the query may hold a key.
	ccMarker = "query-marker-7c1"
)

const ccDoc = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": "` + ccAliceKey + `"}]},
  {"username": "tripwire", "keys": [{"id": "wiki-canary", "key": "` + ccCanaryKey + `", "canary": true}]},
  {"username": "guest", "keys": []}
]}`

var (
	ccAlice  = identity{"alice", "alice-id", "cust-a", "alice-cred", absent}
	ccGuest  = identity{"guest", "guest", absent, absent, "true"}
	ccNobody = idNobody
)

// ccConfig has a site per path a request can go on by, each with
// key_in_cookie and hide_credentials, and one without hide_credentials.
const ccConfig = `{{.Global}}
(auth) {
	key_auth {
		key_names apikey token
		key_in_cookie
		hide_credentials
		consumers file {{.Consumers}}
		{args[:]}
	}
	reverse_proxy {{.Up}}
}
http://localhost:{{.Port}} {
	log {
		output file {{.Dir}}/access.log
	}
	import auth
}
http://localhost:{{.Port2}} {
	import auth anonymous guest
}
http://localhost:{{.Port3}} {
	import auth run_on_preflight false
}
http://localhost:{{.Port4}} {
	import auth handle_errors
	handle_errors {
		reverse_proxy {{.Up}}
	}
}
http://localhost:{{.Port5}} {
	key_auth {
		key_in_cookie true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`

// The sites of ccConfig.
var (
	ccSite          = site
	ccSiteAnon      = site2
	ccSitePreflight = site3
	ccSiteErrors    = site4
	ccSiteKeep      = site5
)

func newCookieCanaryEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.writeConsumers(ccDoc)
	t.Cleanup(func() {
		for _, l := range e.moduleLogLines("caddy.log") {
			if strings.Contains(l, ccAliceKey) || strings.Contains(l, ccCanaryKey) || strings.Contains(l, ccMarker) {
				t.Errorf("a log line of the module holds a key or the query: %s", l)
			}
		}
	})
	e.load(ccConfig, "caddyfile")
	return e
}

// cookies returns the Cookie header lines the upstream got.
func cookies(e *echo) []string { return e.Header["Cookie"] }

// A key in a cookie authenticates; the header comes before it and it comes
// before the query; two cookies of the name are a duplicate.
func TestCookieKey(t *testing.T) {
	e := newCookieCanaryEnv(t)
	for _, tc := range []struct {
		name string
		base string
		path string
		hdr  []string
		want outcome
	}{
		{"cookie", ccSite, "/", []string{"Cookie", "session=s1; apikey=" + ccAliceKey + "; theme=dark"}, pass(ccAlice)},
		{"second key name's cookie", ccSite, "/", []string{"Cookie", "token=" + ccAliceKey}, pass(ccAlice)},
		{"quoted cookie value", ccSite, "/", []string{"Cookie", `apikey="` + ccAliceKey + `"`}, pass(ccAlice)},
		{"wrong key in a cookie", ccSite, "/", []string{"Cookie", "apikey=wrong"}, reject(msgInvalid)},
		{"header before cookie: header decides", ccSite, "/", []string{"apikey", "wrong", "Cookie", "apikey=" + ccAliceKey}, reject(msgInvalid)},
		{"header before cookie: right header", ccSite, "/", []string{"apikey", ccAliceKey, "Cookie", "apikey=wrong"}, pass(ccAlice)},
		{"cookie before query: cookie decides", ccSite, "/?apikey=" + ccAliceKey, []string{"Cookie", "apikey=wrong"}, reject(msgInvalid)},
		{"cookie before query: right cookie", ccSite, "/?apikey=wrong", []string{"Cookie", "apikey=" + ccAliceKey}, pass(ccAlice)},
		{"first name's cookie before second name's header", ccSite, "/", []string{"token", "wrong", "Cookie", "apikey=" + ccAliceKey}, pass(ccAlice)},
		{"cookie names are case-sensitive", ccSite, "/", []string{"Cookie", "ApiKey=" + ccAliceKey}, reject(msgNoKey)},
		{"empty cookie decides", ccSite, "/?apikey=" + ccAliceKey, []string{"Cookie", "apikey="}, reject(msgNoKey)},
		{"duplicate in one Cookie header", ccSite, "/", []string{"Cookie", "apikey=" + ccAliceKey + "; x=1; apikey=" + ccAliceKey}, reject(msgDuplicate)},
		{"duplicate across Cookie headers", ccSite, "/", []string{"Cookie", "apikey=" + ccAliceKey, "Cookie", "apikey=" + ccAliceKey}, reject(msgDuplicate)},
		{"duplicate cookie, anonymous", ccSiteAnon, "/", []string{"Cookie", "apikey=" + ccAliceKey + "; apikey=" + ccAliceKey}, pass(ccGuest)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, get(t, tc.base+tc.path, tc.hdr...), "Key")
		})
	}

	// Without hide_credentials the cookies reach the upstream as sent.
	got := wantIdentity(t, get(t, ccSiteKeep+"/", "Cookie", "a=1;apikey="+ccAliceKey+"; b=2"), ccAlice)
	if c := cookies(got); len(c) != 1 || c[0] != "a=1;apikey="+ccAliceKey+"; b=2" {
		t.Errorf("upstream got Cookie %q without hide_credentials", c)
	}

	// Caddy's access log redacts the Cookie header: a key there is not
	// logged.
	get(t, ccSite+"/logged", "Cookie", "apikey="+ccAliceKey)
	le := e.waitLog("access.log", func(le logEntry) bool {
		r, _ := le["request"].(map[string]any)
		return r != nil && r["uri"] == "/logged"
	})
	hdrs, _ := le["request"].(map[string]any)["headers"].(map[string]any)
	if c, _ := hdrs["Cookie"].([]any); len(c) != 1 || c[0] != "REDACTED" {
		t.Errorf("access log Cookie %v, want [REDACTED]", hdrs["Cookie"])
	}
	for _, l := range e.logLines("access.log") {
		if strings.Contains(l, `"uri":"/logged"`) && strings.Contains(l, ccAliceKey) {
			t.Errorf("the access log holds the cookie's key: %s", l)
		}
	}
}

// With hide_credentials, the key's cookie is removed on every path a
// request goes on by, and the other cookies reach the upstream as sent.
func TestCookieHideEveryPath(t *testing.T) {
	newCookieCanaryEnv(t)
	const others = `session=s1;theme="dark mode"; lang=en`
	for _, tc := range []struct {
		name   string
		base   string
		method string
		hdr    []string
		cookie []string // the Cookie lines the upstream must get
		who    identity
	}{
		{name: "authenticated by the cookie", base: ccSite,
			hdr:    []string{"Cookie", "session=s1;apikey=" + ccAliceKey + `;theme="dark mode"; lang=en`},
			cookie: []string{others}, who: ccAlice},
		{name: "authenticated by the header, cookie copy first", base: ccSite,
			hdr:    []string{"apikey", ccAliceKey, "Cookie", "apikey=" + ccAliceKey + "; " + others},
			cookie: []string{others}, who: ccAlice},
		{name: "authenticated, copies under both names in two Cookie headers", base: ccSite,
			hdr:    []string{"Cookie", "token=" + ccAliceKey + "; a=1", "Cookie", "b=2; apikey=" + ccAliceKey},
			cookie: []string{"a=1", "b=2"}, who: ccAlice},
		{name: "authenticated, the only cookie", base: ccSite,
			hdr: []string{"Cookie", "apikey=" + ccAliceKey}, who: ccAlice},
		{name: "anonymous, wrong key and a copy of the right one", base: ccSiteAnon,
			hdr:    []string{"apikey", "wrong", "Cookie", others + "; apikey=" + ccAliceKey},
			cookie: []string{others}, who: ccGuest},
		{name: "anonymous, duplicate cookie", base: ccSiteAnon,
			hdr:    []string{"Cookie", "apikey=" + ccAliceKey + "; " + others + "; apikey=" + ccAliceKey},
			cookie: []string{others}, who: ccGuest},
		{name: "preflight let through", base: ccSitePreflight, method: http.MethodOptions,
			hdr:    []string{"Origin", "https://app.example", "Access-Control-Request-Method", "GET", "Cookie", others + ";apikey=" + ccAliceKey},
			cookie: []string{others}, who: ccNobody},
		{name: "rejected, handed to handle_errors", base: ccSiteErrors,
			hdr:    []string{"Cookie", "apikey=wrong; " + others + "; token=" + ccAliceKey},
			cookie: []string{others}, who: ccNobody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			got := wantIdentity(t, do(t, req(method, tc.base+"/p?x=1&apikey="+ccAliceKey, nil, tc.hdr...)), tc.who)
			if c := cookies(got); strings.Join(c, "\n") != strings.Join(tc.cookie, "\n") {
				t.Errorf("upstream got Cookie %q, want %q", c, tc.cookie)
			}
			if got.URI != "/p?x=1" {
				t.Errorf("upstream got URI %q", got.URI)
			}
			for name, v := range got.Header {
				if strings.Contains(strings.Join(v, ","), ccAliceKey) {
					t.Errorf("upstream got the key in %s", name)
				}
			}
		})
	}
}

// A canary key is answered as an unknown key (or goes on as the anonymous
// consumer), logged once at WARN with where it came from and never the key
// or the query, and counted as canary.
func TestCanaryKey(t *testing.T) {
	e := newCookieCanaryEnv(t)
	outcome := func(o string) string { return metricKey("caddy_key_auth_requests_total", "outcome", o) }
	before, _ := metrics(t)

	type sent struct {
		base, path, location string
		hdr                  []string
	}
	var canaries []sent
	// Rejected: the same answer as an unknown key, byte for byte.
	unknown := get(t, ccSite+"/", "apikey", "nobody-has-this-key")
	for i, c := range []sent{
		{ccSite, "/orders/1?page=2&trace=" + ccMarker, "header", []string{"apikey", ccCanaryKey}},
		{ccSite, "/orders/2?apikey=" + ccCanaryKey + "&trace=" + ccMarker, "query", nil},
		{ccSite, "/orders/3?trace=" + ccMarker, "cookie", []string{"Cookie", "s=1; apikey=" + ccCanaryKey}},
	} {
		res := get(t, c.base+c.path, c.hdr...)
		want401(t, res, msgInvalid)
		if string(res.body) != string(unknown.body) || res.header.Get("Www-Authenticate") != unknown.header.Get("Www-Authenticate") {
			t.Errorf("canary %d answered %s, an unknown key %s", i, res, unknown)
		}
		canaries = append(canaries, c)
	}
	// Anonymous: goes on as the guest, the key hidden.
	c := sent{ccSiteAnon, "/orders/4?trace=" + ccMarker, "cookie", []string{"Cookie", "a=1; apikey=" + ccCanaryKey}}
	got := wantIdentity(t, get(t, c.base+c.path, c.hdr...), ccGuest)
	if cs := cookies(got); len(cs) != 1 || cs[0] != "a=1" {
		t.Errorf("upstream got Cookie %q, want a=1", cs)
	}
	canaries = append(canaries, c)
	// handle_errors: the error routes get the 401.
	c = sent{ccSiteErrors, "/orders/5?trace=" + ccMarker, "header", []string{"token", ccCanaryKey}}
	wantIdentity(t, get(t, c.base+c.path, c.hdr...), ccNobody)
	canaries = append(canaries, c)
	// A real key is no canary.
	wantIdentity(t, get(t, ccSite+"/orders/6", "apikey", ccAliceKey), ccAlice)

	// One WARN line per canary request, in the order sent.
	isCanary := func(le logEntry) bool { return le.str("msg") == "canary key used" }
	e.waitLog("caddy.log", func(le logEntry) bool { return isCanary(le) && le.str("path") == "/orders/5" })
	var lines []logEntry
	for _, l := range e.moduleLogLines("caddy.log") {
		var le logEntry
		if err := json.Unmarshal([]byte(l), &le); err != nil {
			t.Fatal(err)
		}
		if isCanary(le) {
			lines = append(lines, le)
			if le.str("level") != "warn" {
				t.Errorf("canary line at %s: %s", le.str("level"), l)
			}
		}
	}
	if len(lines) != len(canaries) {
		t.Fatalf("%d canary lines for %d canary requests", len(lines), len(canaries))
	}
	for i, le := range lines {
		c := canaries[i]
		host := strings.TrimPrefix(c.base, "http://")
		path, _, _ := strings.Cut(c.path, "?")
		want := map[string]string{
			"logger": "http.handlers.key_auth", "credential_id": "wiki-canary", "consumer": "tripwire",
			"method": "GET", "host": host, "path": path, "location": c.location,
		}
		for k, v := range want {
			if le.str(k) != v {
				t.Errorf("canary line %d: %s = %q, want %q", i, k, le.str(k), v)
			}
		}
		ip, port, err := net.SplitHostPort(le.str("remote_addr"))
		if err != nil || port == "" || !net.ParseIP(ip).IsLoopback() {
			t.Errorf("canary line %d: remote_addr %q, want the client's loopback address and port", i, le.str("remote_addr"))
		}
		if !net.ParseIP(le.str("client_ip")).IsLoopback() {
			t.Errorf("canary line %d: client_ip %q", i, le.str("client_ip"))
		}
	}

	// Counted as canary, and as nothing else.
	after, body := metrics(t)
	if d := after[outcome("canary")] - before[outcome("canary")]; d != float64(len(canaries)) {
		t.Errorf("canary outcome went up by %v, want %d\n%s", d, len(canaries), body)
	}
	if d := after[outcome("invalid")] - before[outcome("invalid")]; d != 1 { // the unknown key
		t.Errorf("invalid outcome went up by %v, want 1", d)
	}
	if d := after[outcome("anonymous")] - before[outcome("anonymous")]; d != 0 {
		t.Errorf("anonymous outcome went up by %v, want 0", d)
	}
	if d := after[outcome("authenticated")] - before[outcome("authenticated")]; d != 1 {
		t.Errorf("authenticated outcome went up by %v, want 1", d)
	}
	if strings.Contains(body, ccCanaryKey) {
		t.Errorf("the metrics hold the canary key")
	}
}
