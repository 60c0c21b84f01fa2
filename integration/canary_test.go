package integration

// Canary keys (README: Request handling, Canary keys).

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// A canary key is answered as an unknown key (or goes on as the anonymous
// consumer), logged once at WARN with where it came from and never the key
// or the query, and counted as canary.
func TestCanaryKey(t *testing.T) {
	e := newCookieEnv(t)
	outcome := func(o string) string { return metricKey("caddy_key_auth_requests_total", "outcome", o) }
	before, _ := metrics(t)

	type sent struct {
		base, path, location string
		hdr                  []string
	}
	var canaries []sent
	// Rejected: the same answer as an unknown key, byte for byte.
	unknown := get(t, cookieSite+"/", "apikey", "nobody-has-this-key")
	for i, c := range []sent{
		{cookieSite, "/orders/1?page=2&trace=" + queryMarker, "header", []string{"apikey", canaryKey}},
		{cookieSite, "/orders/2?apikey=" + canaryKey + "&trace=" + queryMarker, "query", nil},
		{cookieSite, "/orders/3?trace=" + queryMarker, "cookie", []string{"Cookie", "s=1; apikey=" + canaryKey}},
	} {
		res := get(t, c.base+c.path, c.hdr...)
		want401(t, res, msgInvalid)
		if string(res.body) != string(unknown.body) || res.header.Get("Www-Authenticate") != unknown.header.Get("Www-Authenticate") {
			t.Errorf("canary %d answered %s, an unknown key %s", i, res, unknown)
		}
		canaries = append(canaries, c)
	}
	// Anonymous: goes on as the guest, the key hidden.
	c := sent{cookieSiteAnon, "/orders/4?trace=" + queryMarker, "cookie", []string{"Cookie", "a=1; apikey=" + canaryKey}}
	got := wantIdentity(t, get(t, c.base+c.path, c.hdr...), cookieGuest)
	if cs := cookies(got); len(cs) != 1 || cs[0] != "a=1" {
		t.Errorf("upstream got Cookie %q, want a=1", cs)
	}
	canaries = append(canaries, c)
	// handle_errors: the error routes get the 401.
	c = sent{cookieSiteErrors, "/orders/5?trace=" + queryMarker, "header", []string{"token", canaryKey}}
	wantIdentity(t, get(t, c.base+c.path, c.hdr...), cookieNobody)
	canaries = append(canaries, c)
	// A real key is no canary.
	wantIdentity(t, get(t, cookieSite+"/orders/6", "apikey", cookieAliceKey), cookieAlice)

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
	if strings.Contains(body, canaryKey) {
		t.Errorf("the metrics hold the canary key")
	}
}
