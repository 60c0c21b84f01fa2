package integration

// Keys never reach a log line or a metric (README: Request handling, rule
// 10, and Security): the module's loggers at DEBUG with every option on, and
// Caddy's access log and default log with and without the README's filter.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// Request handling, rule 10: a rejected request is no ERROR line, and no
// line the module writes, no error and no metric holds a key. Every path is
// taken with the log at DEBUG; newEnv checks every module line for keys as
// well.
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

// newSecret is a random secret; its windows are what a log line must not
// hold any of.
func newSecret() string { return rand.Text() }

// secretForms are the spellings of a secret a log line might hold: as is,
// JSON-escaped, percent-encoded (upper and lower case) and, for a long
// secret, any 12-byte window of its random part, so that a key cut short
// or wrapped is found too. 12 bytes of base32 do not turn up by chance.
func secretForms(secret string) []string {
	forms := []string{secret, url.QueryEscape(secret), escapeAll(secret), strings.ToUpper(escapeAll(secret))}
	if j, err := json.Marshal(secret); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	// The random part: what is left once control bytes are taken out.
	core := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, secret)
	const w = 12
	for i := 0; i+w <= len(core) && i < 64; i++ {
		forms = append(forms, core[i:i+w])
	}
	return forms
}

// findLeaks checks every line of a log: in the raw line and in every string
// of the decoded JSON (so an escaped secret is found), no form of any
// secret. It returns the leaks found, as "logger: secret".
func findLeaks(lines []string, secrets []string) []string {
	var forms []string
	owner := map[string]string{}
	for _, s := range secrets {
		for _, f := range secretForms(s) {
			forms = append(forms, f)
			owner[f] = s
		}
	}
	var out []string
	for _, l := range lines {
		texts := []string{l}
		var v any
		if json.Unmarshal([]byte(l), &v) == nil {
			collectStrings(v, &texts)
		}
		logger := ""
		if m, ok := v.(map[string]any); ok {
			logger, _ = m["logger"].(string)
		}
	found:
		for _, txt := range texts {
			for _, f := range forms {
				if strings.Contains(txt, f) {
					out = append(out, fmt.Sprintf("%s: %.40q in %.300s", logger, owner[f], l))
					break found
				}
			}
		}
	}
	return out
}

// collectStrings collects every string of a decoded JSON value, keys included.
func collectStrings(v any, out *[]string) {
	switch v := v.(type) {
	case string:
		*out = append(*out, v)
	case []any:
		for _, e := range v {
			collectStrings(e, out)
		}
	case map[string]any:
		for k, e := range v {
			*out = append(*out, k)
			collectStrings(e, out)
		}
	}
}

// TestNoKeyInModuleLogsWithEveryOption runs a real Caddy at DEBUG with every
// option on: hide_credentials off and on, anonymous, body keys, a realm,
// handle_errors, and an HTTP source with secret headers (from the
// environment and literal) that fails, is refused and recovers, next to a
// file source that is refused and recovers; then all kinds of traffic, an
// admin refresh, a reload and an unload. No line of the module's loggers,
// anywhere in the log file, holds a key or a header value in any spelling.
// It extends TestNoKeyInLogsOrMetrics (hide_credentials on only, file
// source only, the standard keys only, raw spellings only).
func TestNoKeyInModuleLogsWithEveryOption(t *testing.T) {
	e := newEnv(t)
	var (
		kPlain   = newSecret()
		kHashed  = newSecret()
		kExpired = newSecret()
		kCtl     = "\x00\x01" + newSecret() + "\x7f"
		kLong    = strings.Repeat(newSecret(), 200)[:consumers.MaxKeyLength]
		kHTTP    = newSecret()
		kHTTP2   = newSecret()
		kWrong   = newSecret()
		kLeakDup = newSecret() // in a file the module refuses
		kLeakSyn = newSecret() // in a file that is not JSON
		kSrcDup  = newSecret() // in a source answer the module refuses
		envToken = newSecret()
		litToken = newSecret()
	)
	digest := sha256.Sum256([]byte(kHashed))
	hashHex := hex.EncodeToString(digest[:])
	secrets := []string{kPlain, kHashed, kExpired, kCtl, kLong, kHTTP, kHTTP2, kWrong, kLeakDup, kLeakSyn, kSrcDup, envToken, litToken, hashHex}

	fileDoc := func() string {
		b, err := json.Marshal(map[string]any{"consumers": []map[string]any{
			{"username": "alice", "id": "a11ce", "keys": []map[string]string{
				{"id": "alice-plain", "key": kPlain},
				{"id": "alice-hashed", "hash": "sha256:" + hashHex},
				{"id": "alice-expired", "key": kExpired, "expires_at": "2001-01-01T00:00:00Z"},
				// kCtl is not one of them: a key with control bytes is
				// refused at load; it is still sent, unknown.
				{"id": "alice-long", "key": kLong},
			}},
			{"username": "guest", "id": "anon-1"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	e.writeConsumers(fileDoc())
	srv := newSourceServer(t, consumersDoc("carol", kHTTP, "guest", ""))
	t.Setenv("HARD_SRC_TOKEN", envToken)
	e.vars["Src"] = srv.URL("/consumers")
	e.vars["LitToken"] = litToken
	e.vars["Realm"] = "one"
	e.vars["GlobalExtra"] = "\tservers {\n\t\tmax_header_size 1MB\n\t}\n"
	const tmpl = `{{.Global}}
(file) {
	consumers file {{.Consumers}} {
		refresh 100ms
	}
}
(http) {
	consumers http {{.Src}} {
		refresh 100ms
		timeout 2s
		header Authorization "Bearer {env.HARD_SRC_TOKEN}"
		header X-Source-Token {{.LitToken}}
		cache {{.Dir}}/source-cache.json
	}
}
(opts) {
	key_names apikey authorization api_key
	key_in_body true
	realm {{.Realm}}
	run_on_preflight false
}
{{.Site}} {
	key_auth {
		import opts
		anonymous guest
		import file
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	key_auth {
		import opts
		hide_credentials
		anonymous guest
		import file
	}
	reverse_proxy {{.Up}}
}
{{.Site3}} {
	key_auth {
		import opts
		hide_credentials
		handle_errors
		import file
	}
	reverse_proxy {{.Up}}
	handle_errors {
		respond "{http.error.message}" {http.error.status_code}
	}
}
{{.Site4}} {
	key_auth {
		import opts
		anonymous guest
		import http
	}
	reverse_proxy {{.Up}}
}
{{.Site5}} {
	key_auth {
		import opts
		hide_credentials
		max_body_size 4KiB
		import http
	}
	reverse_proxy {{.Up}}
}
`
	e.load(tmpl, "caddyfile")
	waitStatus(t, srv.URL("/consumers"), "the HTTP source loads", func(st sources.Status) bool { return st.Loaded })

	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	sites := []string{site, site2, site3, site4, site5}
	traffic := func(keys ...string) {
		t.Helper()
		for _, base := range sites {
			for _, k := range keys {
				qk := url.QueryEscape(k)
				reqs := []*http.Request{
					req(http.MethodGet, base+"/?x=1&apikey="+qk, nil),
					req(http.MethodGet, base+"/?api%6Bey="+qk, nil),
					req(http.MethodGet, base+"/?apikey="+qk+"&apikey="+qk, nil),
					req(http.MethodPost, base+"/", strings.NewReader("apikey="+qk), "Content-Type", formType),
					req(http.MethodPost, base+"/", strings.NewReader(`{"apikey": `+string(must(json.Marshal(k)))+`}`), "Content-Type", jsonType),
					req(http.MethodPost, base+"/", strings.NewReader(`{"apikey": [`+string(must(json.Marshal(k)))+`]}`), "Content-Type", jsonType),
					req(http.MethodPost, base+"/", strings.NewReader(string(rawMultipart(false, part{name: "apikey", value: k}))), "Content-Type", multipartType),
					req(http.MethodPost, base+"/", strings.NewReader(string(rawMultipart(true, part{name: "apikey", value: k}))), "Content-Type", multipartType),
				}
				if !strings.ContainsAny(k, "\x00\x01\x7f") {
					reqs = append(reqs,
						req(http.MethodGet, base+"/", nil, "Apikey", k),
						req(http.MethodGet, base+"/", nil, "Api-Key", k),
						req(http.MethodGet, base+"/", nil, "Authorization", "Bearer "+k),
						req(http.MethodGet, base+"/", nil, "Authorization", k),
						req(http.MethodGet, base+"/", nil, "Apikey", k, "Apikey", k),
						req(http.MethodOptions, base+"/", nil, "Apikey", k, "Origin", "http://x", "Access-Control-Request-Method", "GET"),
						req(http.MethodGet, base+"/", nil, "Apikey", k+"\xff"),
					)
				}
				for _, r := range reqs {
					res, err := send(cl, r)
					if err != nil {
						t.Fatalf("%s %s: %v", r.Method, r.URL, err)
					}
					if res.status >= 500 {
						t.Errorf("%s %s: %s", r.Method, r.URL, res)
					}
				}
			}
			send(cl, req(http.MethodGet, base+"/", nil))
		}
	}
	traffic(kPlain, kHashed, kExpired, kCtl, kLong, kHTTP, kWrong, kLong+"x", longKey(100<<10))

	// The file is refused twice (a key on two credentials, then not JSON),
	// and comes back.
	e.writeConsumers(`{"consumers": [{"username": "x", "keys": [{"key": "` + kLeakDup + `"}, {"key": "` + kLeakDup + `"}]}]}`)
	e.waitLog("caddy.log", func(l logEntry) bool { return strings.Contains(l.str("msg"), "not reloaded") })
	if status, body := adminRefresh(t); status != http.StatusOK || containsAny(body, secrets) {
		t.Errorf("admin refresh of a refused file: %d, with a secret: %v", status, containsAny(body, secrets))
	}
	e.writeConsumers(`{"consumers": [{"username": "x", "keys": [{"key": "` + kLeakSyn + `"}]], "id": `)
	e.waitLog("caddy.log", func(l logEntry) bool {
		return strings.Contains(l.str("msg"), "not reloaded") && strings.Contains(l.str("error"), "line")
	})
	e.writeConsumers(fileDoc())

	// The source fails, answers what is not JSON, is refused, recovers with
	// a new document.
	for _, m := range []sourceMode{sourceFail, sourceInvalid} {
		srv.SetMode(m)
		waitStatus(t, srv.URL("/consumers"), "a failed fetch", func(st sources.Status) bool { return st.Failures >= 1 })
		srv.SetMode(sourceOK)
		waitStatus(t, srv.URL("/consumers"), "recovery", func(st sources.Status) bool { return st.Failures == 0 })
	}
	srv.SetDoc(consumersDoc("dup", kSrcDup, "dup2", kSrcDup))
	waitStatus(t, srv.URL("/consumers"), "a refused answer", func(st sources.Status) bool { return st.Failures >= 1 })
	if status, body := adminRefresh(t); status != http.StatusOK || containsAny(body, secrets) {
		t.Errorf("admin refresh of a refused source: %d, with a secret: %v", status, containsAny(body, secrets))
	}
	srv.SetDoc(consumersDoc("carol", kHTTP2, "guest", ""))
	waitStatus(t, srv.URL("/consumers"), "recovery", func(st sources.Status) bool { return st.Failures == 0 })
	traffic(kPlain, kHTTP2, kHTTP)

	// A reload (the realm changes, the stores stay), then the admin API's
	// views, then an unload that stops the stores.
	e.vars["Realm"] = "two"
	e.load(tmpl, "caddyfile")
	traffic(kPlain, kHTTP2)
	for _, p := range []string{"/key_auth/sources", "/metrics"} {
		code, body := adminDo(t, http.MethodGet, p, nil)
		if code != http.StatusOK || containsAny(string(body), secrets) {
			t.Errorf("GET %s: %d, with a secret: %v", p, code, containsAny(string(body), secrets))
		}
	}
	unload(t)

	all := e.logLines("caddy.log")
	module := e.moduleLogLines("caddy.log")
	for _, leak := range findLeaks(module, secrets) {
		t.Errorf("a module log line holds a secret: %s", leak)
	}
	loggers := map[string]int{}
	for _, l := range module {
		var le logEntry
		_ = json.Unmarshal([]byte(l), &le)
		loggers[le.str("logger")+" "+le.str("msg")]++
	}
	var seen []string
	for k, n := range loggers {
		seen = append(seen, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(seen)
	t.Logf("%d log lines, %d of them the module's:\n\t%s", len(all), len(module), strings.Join(seen, "\n\t"))
	for _, want := range []string{"request rejected", "credential expired", "not reloaded"} {
		found := false
		for k := range loggers {
			found = found || strings.Contains(k, want)
		}
		if !found {
			t.Errorf("no module line %q: the test did not take that path", want)
		}
	}
	// Other loggers are Caddy's: at DEBUG reverse_proxy logs the headers
	// it sends upstream, and with handle_errors the server logs the
	// request of each error. Not the module's doing; reported, not failed.
	others := map[string]int{}
	for _, leak := range findLeaks(all, secrets) {
		others[leak[:strings.IndexByte(leak, ':')]]++
	}
	t.Logf("lines of other loggers with a secret (Caddy's own, at DEBUG): %v", others)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func containsAny(s string, secrets []string) bool {
	for _, sec := range secrets {
		for _, f := range secretForms(sec) {
			if strings.Contains(s, f) {
				return true
			}
		}
	}
	return false
}

// accessLogConfig is the site block's log directive the README's Security
// section shows, word for word: it removes the apikey header and query
// parameter from Caddy's access log, which records the request as it came
// in. The test writes the log to its own directory instead.
const accessLogConfig = `log {
	output file /var/log/caddy/access.log
	format filter {
		wrap json
		request>headers>Apikey delete
		request>uri query {
			delete apikey
		}
	}
}`

// TestAccessLogFilter: Caddy's access log holds the key of a
// header or query without the filter, hide_credentials or not; with the
// README's filter it holds none, in any spelling of the name, over HTTP/1.1
// and h2c; a Bearer key Caddy redacts by itself.
func TestAccessLogFilter(t *testing.T) {
	e := newEnv(t)
	e.vars["AccessLog"] = strings.Replace(accessLogConfig, "/var/log/caddy/access.log", filepath.Join(e.dir, "access-filtered.log"), 1)
	e.vars["GlobalExtra"] = "\tservers {\n\t\tprotocols h1 h2c\n\t\tmax_header_size 1MB\n\t}\n"
	e.load(`{{.Global}}
(auth) {
	key_auth {
		key_names apikey authorization
		hide_credentials
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site}} {
	{{.AccessLog}}
	import auth
}
{{.Site2}} {
	log {
		output file {{.Dir}}/access-plain.log
		format json
	}
	import auth
}
`, "caddyfile")

	keys := map[string]string{"header": newSecret(), "query": newSecret(), "bearer": newSecret(), "encoded": newSecret(), "many": newSecret(), "h2c": newSecret()}
	var all []string
	for _, k := range keys {
		all = append(all, k)
	}
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2cTransport := &http.Transport{Protocols: &protos}
	defer h2cTransport.CloseIdleConnections()
	h2c := &http.Client{Transport: protoOnly{h2cTransport, 2}, Timeout: 20 * time.Second}
	for _, base := range []string{site, site2} {
		// The keys are nobody's: the access log records rejected
		// requests as well, and what it records does not depend on the
		// answer (a valid key is checked below).
		for _, r := range []struct {
			c *http.Client
			r *http.Request
		}{
			{cl, req(http.MethodGet, base+"/h?x=1", nil, "Apikey", keys["header"], "X-Kept", "yes")},
			{cl, req(http.MethodGet, base+"/q?x=1&apikey="+keys["query"]+"&y=2", nil)},
			{cl, req(http.MethodGet, base+"/b", nil, "Authorization", "Bearer "+keys["bearer"])},
			{cl, req(http.MethodGet, base+"/e?api%6Bey="+keys["encoded"]+"&%61%70%69%6b%65%79="+keys["encoded"]+"&x=%zz&z=1;2", nil)},
			{cl, req(http.MethodGet, base+"/m?"+manyParams(10000)+"&apikey="+keys["many"], nil)},
			{h2c, req(http.MethodGet, base+"/2?apikey="+keys["h2c"], nil, "apikey", keys["h2c"])},
			{cl, req(http.MethodGet, base+"/ok?apikey="+url.QueryEscape(keyAlice), nil)},
			{cl, req(http.MethodGet, base+"/ok", nil, "Apikey", keyAlice)},
		} {
			res, err := send(r.c, r.r)
			if err != nil {
				t.Fatalf("%s: %v", r.r.URL.Path, err)
			}
			if r.r.URL.Path == "/ok" {
				wantIdentity(t, res, idAlice)
			} else {
				want401(t, res, map[bool]string{true: msgDuplicate, false: msgInvalid}[r.r.URL.Path == "/e"])
			}
		}
	}
	// Everything is logged once both answers are out: wait for the last.
	read := func(name string) []string {
		var lines []string
		eventually(t, "8 lines in "+name, func() bool {
			lines = e.logLines(name)
			return len(lines) >= 8
		})
		return lines
	}
	filtered, plain := read("access-filtered.log"), read("access-plain.log")
	secrets := append([]string{keyAlice}, all...)

	// Without the filter, hide_credentials or not, the access log holds the
	// header and the query keys; which proves this test can fail.
	leaks := strings.Join(findLeaks(plain, secrets), "\n")
	for _, name := range []string{"header", "query", "encoded", "many", "h2c"} {
		if !strings.Contains(leaks, keys[name][:12]) {
			t.Errorf("the plain access log does not hold the %s key: the test proves nothing", name)
		}
	}
	if !strings.Contains(leaks, keyAlice[:12]) {
		t.Error("the plain access log does not hold the valid key")
	}
	// Caddy redacts Authorization by itself.
	if strings.Contains(leaks, keys["bearer"][:12]) {
		t.Error("the plain access log holds the Bearer key")
	}

	// With the filter: no key at all, and the rest of the request is kept.
	for _, leak := range findLeaks(filtered, secrets) {
		t.Errorf("the filtered access log holds a key: %s", leak)
	}
	byPath := map[string]logEntry{}
	for _, l := range filtered {
		var le logEntry
		if err := json.Unmarshal([]byte(l), &le); err != nil {
			t.Fatal(err)
		}
		req, _ := le["request"].(map[string]any)
		uri, _ := req["uri"].(string)
		path, _, _ := strings.Cut(uri, "?")
		byPath[path] = le
	}
	uriOf := func(p string) string {
		req, _ := byPath[p]["request"].(map[string]any)
		s, _ := req["uri"].(string)
		return s
	}
	headersOf := func(p string) map[string]any {
		req, _ := byPath[p]["request"].(map[string]any)
		h, _ := req["headers"].(map[string]any)
		return h
	}
	if h := headersOf("/h"); h["X-Kept"] == nil || h["Apikey"] != nil {
		t.Errorf("filtered headers: %v", h)
	}
	if got := uriOf("/q"); got != "/q?x=1&y=2" {
		t.Errorf("filtered URI %q, want /q?x=1&y=2", got)
	}
	// Percent-encoded spellings of the name are decoded, and deleted, by
	// the filter; so is a pair that does not decode (x=%zz) or holds a
	// ';', which the filter drops rather than keeps.
	if got := uriOf("/e"); got != "/e" {
		t.Errorf("filtered URI %q, want /e", got)
	}
	// Over 10000 parameters Go's query parser gives up and the filter logs
	// no query at all.
	if got := uriOf("/m"); got != "/m" {
		t.Errorf("filtered URI of 10001 parameters: %.100q, want /m", got)
	}
	if h := headersOf("/2"); h["Apikey"] != nil || uriOf("/2") != "/2" {
		t.Errorf("filtered h2c request: %s %v", uriOf("/2"), h)
	}
	if h := headersOf("/b"); fmt.Sprint(h["Authorization"]) != "[REDACTED]" {
		t.Errorf("filtered Authorization: %v", h["Authorization"])
	}
	if got := byPath["/ok"].str("user_id"); got != "alice" {
		t.Errorf("user_id %q in the filtered log, want alice", got)
	}
}

// TestDefaultLogFilter: at DEBUG, Caddy's own loggers record the
// request too (reverse_proxy the headers it sends upstream, and the server
// the request of an error handed to handle_errors). The same filter on the
// default log removes the key from those lines; without it they hold it.
func TestDefaultLogFilter(t *testing.T) {
	e := newEnv(t)
	e.load(`{
	admin {{.Admin}}
	persist_config off
	http_port {{.HTTPPort}}
	auto_https off
	log {
		output file {{.Dir}}/default.log
		format filter {
			wrap json
			request>headers>Apikey delete
			request>uri query {
				delete apikey
			}
		}
		level DEBUG
	}
	log unfiltered {
		output file {{.Dir}}/unfiltered.log
		format json
		level DEBUG
	}
}
{{.Site}} {
	key_auth {
		handle_errors
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	wrong := newSecret()
	for _, r := range []*http.Request{
		req(http.MethodGet, site+"/?apikey="+wrong, nil),
		req(http.MethodGet, site+"/", nil, "Apikey", wrong),
		req(http.MethodGet, site+"/?apikey="+keyAlice, nil),
		req(http.MethodGet, site+"/", nil, "Apikey", keyAlice),
	} {
		if _, err := send(cl, r); err != nil {
			t.Fatal(err)
		}
	}
	secrets := []string{wrong, keyAlice}
	var unfiltered []string
	eventually(t, "the unfiltered lines hold both keys", func() bool {
		unfiltered = findLeaks(e.logLines("unfiltered.log"), secrets)
		j := strings.Join(unfiltered, "\n")
		return strings.Contains(j, "http.log.error: ") && strings.Contains(j, "http.handlers.reverse_proxy: ")
	})
	lines := e.logLines("default.log")
	for _, leak := range findLeaks(lines, secrets) {
		t.Errorf("the filtered default log holds a key: %s", leak)
	}
	// ... and it has those lines, filtered.
	loggers := map[string]int{}
	for _, l := range lines {
		var le logEntry
		if json.Unmarshal([]byte(l), &le) == nil && le["request"] != nil {
			loggers[le.str("logger")]++
		}
	}
	if loggers["http.log.error"] < 2 || loggers["http.handlers.reverse_proxy"] < 2 {
		t.Errorf("lines with a request in the filtered default log: %v", loggers)
	}
}
