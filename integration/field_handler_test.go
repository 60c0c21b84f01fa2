package integration

// Issue 8, items 1, 2, 6, 7 and 8: the handler's fixes from the field,
// against a real Caddy and the echo upstream, with the consumers.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fieldDoc is the consumers document of issue 8.
const fieldDoc = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": "alice-key-1"}]},
  {"username": "guest", "keys": []}
]}`

const fieldKey = "alice-key-1"

var (
	fieldAlice  = identity{"alice", "alice-id", "cust-a", "alice-cred", absent}
	fieldGuest  = identity{"guest", "guest", absent, absent, "true"}
	fieldNobody = idNobody
)

func newFieldEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.writeConsumers(fieldDoc)
	t.Cleanup(func() {
		for _, l := range e.logLines("caddy.log") {
			if strings.Contains(l, fieldKey) && isModuleLine(l) {
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
		if strings.Contains(strings.Join(v, ","), fieldKey) {
			t.Errorf("upstream got the key in %s", name)
		}
	}
	if strings.Contains(got.URI, fieldKey) {
		t.Errorf("upstream got the key in the URI %q", got.URI)
	}
	if strings.Contains(string(got.Body), fieldKey) {
		t.Errorf("upstream got the key in the body %q", got.Body)
	}
}

// Item 1: with hide_credentials, no copy of the key reaches the upstream,
// whichever way the request went on; the rest of the query and body stay
// byte for byte.
func TestFieldHideEveryCopy(t *testing.T) {
	e := newFieldEnv(t)
	e.load(`{{.Global}}
(auth) {
	key_auth {
		key_names apikey authorization
		key_in_body true
		hide_credentials
		consumers file {{.Consumers}}
		{args[:]}
	}
	reverse_proxy {{.Up}}
}
http://localhost:{{.Port}} {
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
`, "caddyfile")
	for _, tc := range []struct {
		name   string
		base   string
		method string
		call   call
		uri    string // what the upstream must get
		body   string
		who    identity
	}{
		{name: "authenticated, header and query copies", base: site,
			call: call{path: "/orders?apikey=" + fieldKey + "&page=2", hdr: []string{"apikey", fieldKey}}, uri: "/orders?page=2", who: fieldAlice},
		{name: "authenticated by bearer, query copy", base: site,
			call: call{path: "/orders?apikey=" + fieldKey + "&page=2", hdr: []string{"Authorization", "Bearer " + fieldKey}}, uri: "/orders?page=2", who: fieldAlice},
		{name: "authenticated, encoded query spelling", base: site,
			call: call{path: "/orders?z=%20&%61pikey=" + fieldKey + "&api%6Bey=x&page=2", hdr: []string{"apikey", fieldKey}}, uri: "/orders?z=%20&page=2", who: fieldAlice},
		{name: "authenticated in the body, bearer copy", base: site,
			call: call{path: "/b?page=2", ctype: formType, body: "a=1&apikey=" + fieldKey + "&b=%202", hdr: []string{"Authorization", "Bearer " + fieldKey}},
			uri:  "/b?page=2", body: "a=1&b=%202", who: fieldAlice},
		{name: "authenticated in a JSON body, query absent", base: site,
			call: call{path: "/j", ctype: jsonType, body: `{"x": 1, "apikey": "` + fieldKey + `", "authorization": "` + fieldKey + `"}`},
			uri:  "/j", body: `{"x": 1}`, who: fieldAlice},
		{name: "anonymous, wrong key and a copy of the right one", base: site2,
			call: call{path: "/orders?apikey=" + fieldKey + "&page=2", hdr: []string{"apikey", "wrong", "Authorization", "Bearer " + fieldKey}}, uri: "/orders?page=2", who: fieldGuest},
		{name: "anonymous, duplicate", base: site2,
			call: call{path: "/orders?page=2&apikey=" + fieldKey + "&apikey=" + fieldKey}, uri: "/orders?page=2", who: fieldGuest},
		{name: "preflight let through", base: site3, method: http.MethodOptions,
			call: call{path: "/orders?apikey=" + fieldKey + "&page=2", hdr: []string{"apikey", fieldKey, "Origin", "https://app.example", "Access-Control-Request-Method", "GET"}},
			uri:  "/orders?page=2", who: fieldNobody},
		{name: "rejected, handed to handle_errors", base: siteURL(3),
			call: call{path: "/orders?apikey=wrong&page=2", hdr: []string{"Authorization", "Bearer " + fieldKey}}, uri: "/orders?page=2", who: fieldNobody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res *response
			if tc.method != "" {
				res = do(t, req(tc.method, tc.base+tc.call.path, nil, tc.call.hdr...))
			} else {
				res = tc.call.send(t, tc.base)
			}
			got := wantIdentity(t, res, tc.who)
			if got.URI != tc.uri {
				t.Errorf("upstream got URI %q, want %q", got.URI, tc.uri)
			}
			if tc.call.ctype != "" {
				wantBody(t, got, []byte(tc.body))
			}
			noKeyAnywhere(t, got)
			for _, h := range []string{"Apikey", "Authorization"} {
				if got.has(h) {
					t.Errorf("upstream got %s", h)
				}
			}
		})
	}
}

// forgedSpellings are identity headers in spellings a server with
// expected_underscore_headers lets through, and a Connection header naming
// the real ones in such spellings.
var forgedSpellings = []string{
	"X_Consumer_Username", "root",
	"x_consumer_custom_id", "admin",
	"X_CONSUMER_ID", "forged-id",
	"X_credential_identifier", "forged-cred",
	"X_Anonymous_Consumer", "false",
	"Connection", "X_Consumer_Username, x-anonymous_consumer, X_Credential-Identifier",
	"X_Other_Thing", "kept",
}

// Item 2: identity headers cannot be forged in any spelling, on any path.
func TestFieldIdentitySpellings(t *testing.T) {
	e := newFieldEnv(t)
	e.vars["GlobalExtra"] = "\tservers {\n\t\texpected_underscore_headers X_*\n\t}\n"
	e.load(`{{.Global}}
(auth) {
	key_auth {
		consumers file {{.Consumers}}
		{args[:]}
	}
	reverse_proxy {{.Up}}
}
http://localhost:{{.Port}} {
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
`, "caddyfile")
	for _, tc := range []struct {
		name   string
		base   string
		method string
		hdr    []string
		who    identity
	}{
		{"authenticated", site, http.MethodGet, []string{"apikey", fieldKey}, fieldAlice},
		{"anonymous", site2, http.MethodGet, nil, fieldGuest},
		{"preflight let through", site3, http.MethodOptions, []string{"Origin", "https://app.example", "Access-Control-Request-Method", "GET"}, fieldNobody},
		{"rejected, handed to handle_errors", siteURL(3), http.MethodGet, []string{"apikey", "wrong"}, fieldNobody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wantIdentity(t, do(t, req(tc.method, tc.base+"/", nil, append(tc.hdr, forgedSpellings...)...)), tc.who)
			for name, v := range got.Header {
				folded := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
				switch folded {
				case "x-consumer-username", "x-consumer-id", "x-consumer-custom-id", "x-credential-identifier", "x-anonymous-consumer":
					if strings.ContainsAny(name, "_.") {
						t.Errorf("upstream got the forged %s: %q", name, v)
					}
				}
			}
			// The underscore spelling reaches the upstream when it is not an
			// identity header: the server option is in effect.
			if got.Header.Get("X_other_thing") != "kept" && got.Header.Get("X_Other_Thing") != "kept" {
				t.Errorf("X_Other_Thing did not reach the upstream; the test does not see what it tests: %v", got.Header)
			}
		})
	}
}

// Item 7: two key_auth handlers on one route, in both orders, with and
// without anonymous, and key_auth with basic_auth: headers, placeholders and
// the access log's user_id name one identity, the one given last.
func TestFieldStackedIdentity(t *testing.T) {
	e := newFieldEnv(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("bob-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e.vars["Hash"] = string(hash)
	e.load(`{{.Global}}
(apikey) {
	key_auth {
		key_names apikey
		consumers file {{.Consumers}}
		{args[:]}
	}
}
(token) {
	key_auth {
		key_names token
		consumers file {{.Consumers}}
		{args[:]}
	}
}
(basic) {
	basic_auth {
		bob {{.Hash}}
	}
}
(out) {
	reverse_proxy {{.Up}} {
		header_up X-Seen "id={http.auth.user.id} consumer={http.auth.user.consumer_id} custom={http.auth.user.custom_id} cred={http.auth.user.credential_id} anon={http.auth.user.anonymous}"
	}
}
(logged) {
	log {
		output file {{.Dir}}/access-{args[0]}.log
		format json
	}
}
http://localhost:{{.Port}} {
	import logged {{.Port}}
	route {
		import apikey anonymous guest
		import token
		import out
	}
}
http://localhost:{{.Port2}} {
	import logged {{.Port2}}
	route {
		import token
		import apikey anonymous guest
		import out
	}
}
http://localhost:{{.Port3}} {
	import logged {{.Port3}}
	route {
		import token anonymous guest
		import apikey anonymous guest
		import out
	}
}
http://localhost:{{.Port6}} {
	import logged {{.Port6}}
	route {
		import token anonymous guest
		import apikey anonymous guest
		@guest expression {http.auth.user.anonymous} == "true"
		respond @guest "key required" 401
		import out
	}
}
http://localhost:{{.Port4}} {
	import logged {{.Port4}}
	route {
		import basic
		import token anonymous guest
		import out
	}
}
http://localhost:{{.Port5}} {
	import logged {{.Port5}}
	route {
		import token anonymous guest
		import basic
		import out
	}
}
`, "caddyfile")
	basicBob := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:bob-pass"))
	const (
		seenAlice = "id=alice consumer=alice-id custom=cust-a cred=alice-cred anon=false"
		seenGuest = "id=guest consumer=guest custom= cred= anon=true"
		seenBob   = "id=bob consumer= custom= cred= anon=false"
	)
	for i, tc := range []struct {
		name   string
		port   int
		hdr    []string
		who    identity
		seen   string
		userID string
	}{
		{"anonymous apikey, then token: the key in token", 0, []string{"token", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"anonymous apikey, then token: no key is a 401", 0, nil, identity{}, "", ""},
		{"token, then anonymous apikey: the key in token stays", 1, []string{"token", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"token, then anonymous apikey: the key in apikey is refused by token", 1, []string{"apikey", fieldKey}, identity{}, "", ""},
		{"both anonymous: no key is the guest", 2, nil, fieldGuest, seenGuest, "guest"},
		{"both anonymous: the key in apikey, last", 2, []string{"apikey", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"both anonymous: the key in token, first", 2, []string{"token", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"both anonymous: wrong token, key in apikey", 2, []string{"token", "wrong", "apikey", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"either key required: apikey", 5, []string{"apikey", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"either key required: token", 5, []string{"token", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"either key required: none", 5, []string{"token", "wrong"}, identity{}, "", ""},
		{"basic_auth, then key_auth: the consumer", 3, []string{"Authorization", basicBob, "token", fieldKey}, fieldAlice, seenAlice, "alice"},
		{"basic_auth, then anonymous key_auth: bob stays, no forged headers", 3,
			[]string{"Authorization", basicBob, "X-Consumer-Username", "forged"}, fieldNobody, seenBob, "bob"},
		{"anonymous key_auth, then basic_auth: bob in placeholders and log", 4,
			[]string{"Authorization", basicBob}, fieldGuest, seenBob, "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := fmt.Sprintf("/stacked/%d", i)
			res := get(t, siteURL(tc.port)+path, tc.hdr...)
			if tc.seen == "" && tc.port == 5 {
				if res.status != http.StatusUnauthorized || string(res.body) != "key required" || res.fromUpstream() {
					t.Errorf("want the route's 401, got %s", res)
				}
				return
			}
			if tc.seen == "" {
				want401(t, res, msgNoKey)
				return
			}
			got := wantIdentity(t, res, tc.who)
			if s := got.Header.Get("X-Seen"); s != tc.seen {
				t.Errorf("placeholders at the upstream:\n got %s\nwant %s", s, tc.seen)
			}
			le := e.waitLog(fmt.Sprintf("access-%d.log", sitePort[tc.port]), func(le logEntry) bool {
				r, _ := le["request"].(map[string]any)
				return r != nil && r["uri"] == path
			})
			if u := le.str("user_id"); u != tc.userID {
				t.Errorf("access log user_id %q, want %q", u, tc.userID)
			}
		})
	}
}

// fieldRaw sends head then body over a raw connection, pausing between
// pieces of n bytes until the body is sent or the server answers; with
// hangUp it closes the connection halfway instead.
func fieldRaw(t *testing.T, head, body string, n int, pause time.Duration, hangUp bool) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", "localhost:"+strconv.Itoa(sitePort[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails, never blocks the suite
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	go func() {
		for rest := body; rest != ""; {
			select {
			case <-answered:
				return
			case <-time.After(pause):
			}
			k := min(n, len(rest))
			if _, err := io.WriteString(conn, rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
			if hangUp && len(rest) < len(body)/2 {
				conn.(*net.TCPConn).CloseWrite()
				return
			}
		}
	}()
	b, _ := io.ReadAll(conn)
	close(answered)
	if hangUp {
		return 0, string(b)
	}
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("reading the answer %q: %v", b, err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(rb)
}

// Item 6: a body that does not arrive within read_body gets 408 with a JSON
// message; a malformed body keeps its 400; a client that hangs up halfway
// is no error log line.
func TestFieldBodyTimeout(t *testing.T) {
	e := newFieldEnv(t)
	e.vars["GlobalExtra"] = "\tservers {\n\t\ttimeouts {\n\t\t\tread_body 1s\n\t\t}\n\t}\n"
	e.load(`{{.Global}}
http://localhost:{{.Port}} {
	log {
		output file {{.Dir}}/access.log
		format json
	}
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	form := "apikey=" + fieldKey + "&pad=" + strings.Repeat("x", 200)
	head := func(path string, length int) string {
		h := "POST " + path + " HTTP/1.1\r\nHost: localhost:" + strconv.Itoa(sitePort[0]) + "\r\nContent-Type: " + formType + "\r\n"
		if length < 0 {
			return h + "Transfer-Encoding: chunked\r\n\r\n"
		}
		return h + fmt.Sprintf("Content-Length: %d\r\n\r\n", length)
	}

	// Trickled past read_body: 408, declared length or chunked.
	status, body := fieldRaw(t, head("/slow", len(form)), form, 4, 100*time.Millisecond, false)
	if status != http.StatusRequestTimeout || body != `{"message":"Request timeout"}` {
		t.Errorf("trickled body: %d %s, want 408 {\"message\":\"Request timeout\"}", status, body)
	}
	var chunks strings.Builder
	for _, c := range form {
		fmt.Fprintf(&chunks, "1\r\n%c\r\n", c)
	}
	status, body = fieldRaw(t, head("/slow-chunked", -1), chunks.String(), 12, 100*time.Millisecond, false)
	if status != http.StatusRequestTimeout || body != `{"message":"Request timeout"}` {
		t.Errorf("trickled chunked body: %d %s, want 408", status, body)
	}

	// A malformed chunked body is unreadable: 400.
	status, body = fieldRaw(t, head("/malformed", -1), "zz\r\nnot a chunk\r\n0\r\n\r\n", 1000, 0, false)
	if status != http.StatusBadRequest || body != `{"message":"Could not read request body"}` {
		t.Errorf("malformed chunked body: %d %s, want 400", status, body)
	}

	// A client that hangs up halfway.
	fieldRaw(t, head("/gone", len(form)), form, 50, 10*time.Millisecond, true)
	le := e.waitLog("access.log", func(le logEntry) bool {
		r, _ := le["request"].(map[string]any)
		return r != nil && r["uri"] == "/gone"
	})
	if st, _ := le["status"].(float64); st != 499 {
		t.Errorf("access log status %v for a client that hung up, want 499", le["status"])
	}
	for _, l := range e.logLines("caddy.log") {
		var le logEntry
		if json.Unmarshal([]byte(l), &le) == nil && (le.str("level") == "error" || le.str("level") == "warn" && isModuleLogger(le.str("logger"))) {
			t.Errorf("a log line at %s: %s", le.str("level"), l)
		}
	}

	// In time, the key in the body still works, and the upstream got it all.
	got := wantIdentity(t, post(t, site+"/ok", formType, []byte(form)), fieldAlice)
	wantBody(t, got, []byte(form))
	if hits := e.up.hits.Load(); hits != 1 {
		t.Errorf("the upstream got %d requests, want 1", hits)
	}
}

// Item 8: an unknown key is Kong 3.7+'s 401 Unauthorized; the other
// messages are unchanged.
func TestFieldUnauthorizedMessage(t *testing.T) {
	e := newFieldEnv(t)
	e.load(`{{.Global}}
http://localhost:{{.Port}} {
	key_auth {
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	want401(t, get(t, site+"/", "apikey", "nobody-s-key"), "Unauthorized")
	want401(t, get(t, site+"/"), "No API key found in request")
	want401(t, get(t, site+"/?apikey=a&apikey=b"), "Duplicate API key found")
	wantIdentity(t, get(t, site+"/", "apikey", fieldKey), fieldAlice)
}
