package integration

// Consumers documents and configs that several feature files share: a
// small document (alice and guest), the cookie sites, and the hostile
// requests' sites with the consumer "odd" and its keys.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// smallDoc is a small consumers document: alice with one key, and guest.
const smallDoc = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": "alice-key-1"}]},
  {"username": "guest", "keys": []}
]}`

// smallKey is alice's key in smallDoc.
const smallKey = "alice-key-1"

var (
	smallAlice  = identity{"alice", "alice-id", "cust-a", "alice-cred", absent}
	smallGuest  = identity{"guest", "guest", absent, absent, "true"}
	smallNobody = idNobody
)

// newSmallEnv is an env with smallDoc; no module log line may hold its key.
func newSmallEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.writeConsumers(smallDoc)
	t.Cleanup(func() {
		for _, l := range e.logLines("caddy.log") {
			if strings.Contains(l, smallKey) && isModuleLine(l) {
				t.Errorf("a log line of the module holds the key: %s", l)
			}
		}
	})
	return e
}

func isModuleLine(l string) bool {
	var le logEntry
	return json.Unmarshal([]byte(l), &le) == nil && isModuleLogger(le.str("logger"))
}

// noKeyAnywhere fails the test if the upstream got the key in any header,
// in the URI or in the body.
func noKeyAnywhere(t *testing.T, got *echo) {
	t.Helper()
	for name, v := range got.Header {
		if strings.Contains(strings.Join(v, ","), smallKey) {
			t.Errorf("upstream got the key in %s", name)
		}
	}
	if strings.Contains(got.URI, smallKey) {
		t.Errorf("upstream got the key in the URI %q", got.URI)
	}
	if strings.Contains(string(got.Body), smallKey) {
		t.Errorf("upstream got the key in the body %q", got.Body)
	}
}

const (
	cookieAliceKey = "alice-key-1"
	canaryKey      = "canary-key-planted-in-the-wiki"
	// queryMarker is a query value that must never reach a log line of the
	// module: the query may hold a key.
	queryMarker = "query-marker-7c1"
)

const cookieDoc = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": "` + cookieAliceKey + `"}]},
  {"username": "tripwire", "keys": [{"id": "wiki-canary", "key": "` + canaryKey + `", "canary": true}]},
  {"username": "guest", "keys": []}
]}`

var (
	cookieAlice  = identity{"alice", "alice-id", "cust-a", "alice-cred", absent}
	cookieGuest  = identity{"guest", "guest", absent, absent, "true"}
	cookieNobody = idNobody
)

// cookieConfig has a site per path a request can go on by, each with
// key_in_cookie and hide_credentials, one without hide_credentials, and one
// with cookie_cross_site.
const cookieConfig = `{{.Global}}
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
http://localhost:{{.Port6}} {
	import auth cookie_cross_site
}
`

// The sites of cookieConfig.
var (
	cookieSite          = site
	cookieSiteAnon      = site2
	cookieSitePreflight = site3
	cookieSiteErrors    = site4
	cookieSiteKeep      = site5
	cookieSiteCrossSite = siteURL(5)
)

// newCookieEnv is an env with cookieDoc, running cookieConfig; no module
// log line may hold its keys or queryMarker.
func newCookieEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.writeConsumers(cookieDoc)
	t.Cleanup(func() {
		for _, l := range e.moduleLogLines("caddy.log") {
			if strings.Contains(l, cookieAliceKey) || strings.Contains(l, canaryKey) || strings.Contains(l, queryMarker) {
				t.Errorf("a log line of the module holds a key or the query: %s", l)
			}
		}
	})
	e.load(cookieConfig, "caddyfile")
	return e
}

// cookies returns the Cookie header lines the upstream got.
func cookies(e *echo) []string { return e.Header["Cookie"] }

// hostileConfig has four sites: site searches every location with a
// body limit; site2 also hides the key and falls back to the anonymous
// consumer; site3 has a request_body limit before key_auth; site4 is site
// answering by itself, for the loops that measure the module rather than
// the upstream. The header limit is raised to 1MB so that 100 KB keys
// reach the module.
const hostileConfig = `{{.Global}}
{{.Site}} {
	key_auth {
		key_names apikey authorization
		key_in_body true
		max_body_size 512KiB
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	key_auth {
		key_in_body true
		max_body_size 512KiB
		hide_credentials
		anonymous guest
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site3}} {
	request_body {
		max_size 64KiB
	}
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site4}} {
	route {
		key_auth {
			key_names apikey authorization
			key_in_body true
			max_body_size 512KiB
			consumers file {{.Consumers}}
		}
		header X-Echo upstream
		respond 200
	}
}
`

var (
	hostileSite     = site
	hostileHideSite = site2
	hostileCapSite  = site3
	hostileBareSite = site4
)

// hostileServers raises the header limit (and bounds a slow body) for every
// server of a config.
const hostileServers = `	servers {
		max_header_size 1MB
		timeouts {
			read_body 5s
		}
	}
`

// newHostileEnv is an env with the consumer "odd" added, running
// hostileConfig.
func newHostileEnv(t *testing.T) *env {
	e := newEnv(t)
	writeOddConsumers(e)
	e.vars["GlobalExtra"] = hostileServers
	e.load(hostileConfig, "caddyfile")
	return e
}

// mpBoundary is the boundary of the multipart bodies rawMultipart builds.
const mpBoundary = "hard-boundary"

var multipartType = "multipart/form-data; boundary=" + mpBoundary

// rawMultipart encodes parts with mpBoundary; close=false leaves the
// closing boundary out.
func rawMultipart(close bool, parts ...part) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", mpBoundary, p.name)
		if p.file != "" {
			fmt.Fprintf(&b, "; filename=\"%s\"\r\nContent-Type: application/octet-stream", p.file)
		}
		fmt.Fprintf(&b, "\r\n\r\n%s\r\n", p.value)
	}
	if close {
		fmt.Fprintf(&b, "--%s--\r\n", mpBoundary)
	}
	return b.Bytes()
}

// manyParams is n query or form pairs p0=0&p1=1&...
func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		fmt.Fprintf(&b, "p%d=%d", i, i)
	}
	return b.String()
}

// queryIs checks that the upstream got exactly the query sent.
func queryIs(query string) func(t testing.TB, e *echo) {
	return func(t testing.TB, e *echo) {
		t.Helper()
		if want := "/?" + query; e.URI != want {
			t.Errorf("upstream got a URI of %d bytes, want the %d sent", len(e.URI), len(want))
		}
	}
}

// bodyIs checks that the upstream got exactly body.
func bodyIs(body []byte) func(t testing.TB, e *echo) {
	return func(t testing.TB, e *echo) {
		t.Helper()
		if e.BodyLen != len(body) || !bytes.Equal(e.Body, body) {
			t.Errorf("upstream got a body of %d bytes, want the %d sent", e.BodyLen, len(body))
		}
	}
}

// The keys of the consumer "odd" of the hostile requests, added to the
// standard file by writeOddConsumers: one of the bytes that need escaping in
// every location (a control byte would be refused at load), one of exactly
// consumers.MaxKeyLength bytes and one of multi-byte UTF-8.
var (
	oddCtlKey  = "ctl \"\\%00+&=;#?<>'`-key"
	oddLongKey = longKey(4096)
	oddUTF8Key = "ütf-8 ключ 🔑"

	idOddCtl  = identity{"odd", "odd-1", absent, "odd-ctl", absent}
	idOddLong = identity{"odd", "odd-1", absent, "odd-long", absent}
	idOddUTF8 = identity{"odd", "odd-1", absent, "odd-utf8", absent}
)

// longKey is a key of n bytes that is not a repetition of one byte.
func longKey(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "long-%d-", i)
	}
	return b.String()[:n]
}

// writeOddConsumers writes the standard consumers file with the consumer
// "odd" added.
func writeOddConsumers(e *env) {
	e.t.Helper()
	std, err := os.ReadFile("testdata/consumers.json")
	if err != nil {
		e.t.Fatal(err)
	}
	keys, err := json.Marshal([]map[string]string{
		{"id": "odd-ctl", "key": oddCtlKey},
		{"id": "odd-long", "key": oddLongKey},
		{"id": "odd-utf8", "key": oddUTF8Key},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	doc := strings.TrimSpace(string(std))
	if !strings.HasSuffix(doc, "]}") {
		e.t.Fatal("testdata/consumers.json does not end in ]}")
	}
	doc = doc[:len(doc)-2] + `, {"username": "odd", "id": "odd-1", "keys": ` + string(keys) + "}\n]}"
	e.writeConsumers(doc)
}

// fourWays is one site for each way a request goes on, each importing the
// (auth) snippet its test defines before it: as it came (Port), with an
// anonymous consumer (Port2), with preflights let through (Port3), and
// with failures handed to error routes that proxy on (Port4).
const fourWays = `http://localhost:{{.Port}} {
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
`
