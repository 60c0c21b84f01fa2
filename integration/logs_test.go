package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Rule 11: a rejected request is no ERROR line, and no line the module
// writes, no error and no metric holds a key. Every path is taken with the
// log at DEBUG; newEnv checks every module line for keys as well.
func TestNoKeyInLogsOrMetrics(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
(auth) {
	key_auth {
		key_names apikey authorization
		key_in_body true
		hide_credentials
		{args[:]}
		consumers file {{.Consumers}} {
			refresh 100ms
		}
	}
	reverse_proxy {{.Up}}
}
{{.Site}} {
	import auth realm x
}
{{.Site2}} {
	import auth anonymous guest
}
{{.Site3}} {
	import auth handle_errors
	handle_errors {
		respond "{http.error.message}"
	}
}
`, "caddyfile")
	const leaked = "leaky-key-of-a-broken-file"
	all := append([]string{leaked}, secrets...)

	for _, base := range []string{site, site2, site3} {
		for _, k := range []string{keyAlice, keySpecial, keyBob, keyExpired, keyNoID, keyWrong} {
			get(t, base+"/", "apikey", k)
			get(t, base+"/?apikey="+escapeAll(k))
			get(t, base+"/", "Authorization", "Bearer "+k)
			get(t, base+"/", "apikey", k, "apikey", k)
			post(t, base+"/", formType, []byte("apikey="+escapeAll(k)))
			post(t, base+"/", jsonType, []byte(`{"apikey": ["`+k+`"]}`))
		}
		get(t, base+"/")
	}
	// A refused file while running, then a good one again.
	e.writeConsumers(`{"consumers": [{"username": "x", "keys": [{"key": "` + leaked + `"}, {"key": "` + leaked + `"}]}]}`)
	e.waitLog("caddy.log", func(l logEntry) bool { return strings.Contains(l.str("msg"), "not reloaded") })
	e.writeConsumers(`{"consumers": [{"username": "x", "keys": [{"key": "` + leaked + `"}], "id": `)
	e.waitLog("caddy.log", func(l logEntry) bool { return strings.Contains(l.str("error"), "unexpected end") })
	e.writeConsumers(`{"consumers": [{"username": "alice", "keys": [{"key": "` + keyAlice + `"}]}]}`)
	e.waitLog("caddy.log", func(l logEntry) bool { return l.str("msg") == "consumers loaded" })
	wantIdentity(t, get(t, site+"/", "apikey", keyAlice), identity{"alice", "alice", absent, "alice#1", absent})

	// The module said something about each of those, at DEBUG for the
	// rejections.
	var rejected, expired, refused int
	for _, l := range e.moduleLogLines("caddy.log") {
		var le logEntry
		if err := json.Unmarshal([]byte(l), &le); err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if strings.Contains(l, s) {
				t.Errorf("a module log line holds the key %q: %s", s, l)
			}
		}
		switch le.str("msg") {
		case "request rejected":
			rejected++
			if le.str("level") != "debug" {
				t.Errorf("a rejection logged at %s: %s", le.str("level"), l)
			}
		case "credential expired":
			expired++
		}
		if strings.Contains(le.str("msg"), "not reloaded") {
			refused++
			if !strings.Contains(le.str("error"), e.consumers) {
				t.Errorf("the refusal does not name the file: %s", l)
			}
		}
	}
	if rejected == 0 || expired == 0 || refused != 2 {
		t.Errorf("module log lines: %d rejections, %d expiries, %d refusals (want 2)", rejected, expired, refused)
	}
	// Nothing at ERROR but the two refusals, from anyone.
	for _, l := range e.logLines("caddy.log") {
		var le logEntry
		_ = json.Unmarshal([]byte(l), &le)
		if le.str("level") == "error" && !strings.Contains(le.str("msg"), "not reloaded") {
			t.Errorf("an ERROR line: %s", l)
		}
	}

	// The metrics count outcomes, not keys.
	res, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	m, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(m), `caddy_key_auth_requests_total{outcome="invalid"}`) {
		t.Errorf("no key_auth request metric in:\n%s", m)
	}
	for _, s := range all {
		if strings.Contains(string(m), s) {
			t.Errorf("the metrics hold the key %q", s)
		}
	}
}
