package integration

// Identity headers and placeholders (README: Request handling, rules 6 and
// 7): what the upstream and other directives are told, and that a client
// can never forge or drop it, in any spelling, with key_auth stacked on
// itself or on basic_auth.

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Rules 6 and 7: the identity headers are set or removed on every path, so
// a client cannot forge them; the placeholders reach other handlers, and
// {http.auth.user.id} becomes the access log's user_id.
func TestIdentityAndPlaceholders(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
(site) {
	log {
		output file {{.Dir}}/{args[0]}.log
		format json
	}
	header >X-Auth-User "{http.auth.user.id}"
	reverse_proxy {{.Up}} {
		header_up X-Placeholders "id={http.auth.user.id};consumer={http.auth.user.consumer_id};custom={http.auth.user.custom_id};credential={http.auth.user.credential_id};anonymous={http.auth.user.anonymous}"
	}
}
{{.Site}} {
	import site access1
	key_auth {
		consumers file {{.Consumers}}
	}
}
{{.Site2}} {
	import site access2
	key_auth {
		anonymous guest
		consumers file {{.Consumers}}
	}
}
{{.Site3}} {
	import site access3
	key_auth {
		run_on_preflight false
		consumers file {{.Consumers}}
	}
}
`, "caddyfile")
	for _, tc := range []struct {
		name         string
		method, url  string
		hdr          []string
		who          identity
		placeholders string
		log          string // the access log the request goes to
	}{
		{"alice", "GET", site + "/who/alice", []string{"apikey", keyAlice}, idAlice,
			"id=alice;consumer=a11ce;custom=cust-1;credential=alice-key;anonymous=false", "access1.log"},
		{"bob, hashed key, no custom id", "GET", site + "/who/bob", []string{"apikey", keyBob}, idBob,
			"id=bob;consumer=bob;custom=;credential=bob-hashed;anonymous=false", "access1.log"},
		{"bob, credential without id", "GET", site + "/who/bob3", []string{"apikey", keyNoID}, idBobNoID,
			"id=bob;consumer=bob;custom=;credential=bob#3;anonymous=false", "access1.log"},
		{"anonymous, no key", "GET", site2 + "/who/guest", nil, idGuest,
			"id=guest;consumer=anon-1;custom=;credential=;anonymous=true", "access2.log"},
		{"anonymous, wrong key", "GET", site2 + "/who/guest2", []string{"apikey", keyWrong}, idGuest,
			"id=guest;consumer=anon-1;custom=;credential=;anonymous=true", "access2.log"},
		{"alice where anonymous is configured", "GET", site2 + "/who/alice2", []string{"apikey", keyAlice}, idAlice,
			"id=alice;consumer=a11ce;custom=cust-1;credential=alice-key;anonymous=false", "access2.log"},
		// A preflight sets no placeholders: they are not checked.
		{"preflight", "OPTIONS", site3 + "/who/preflight", []string{"Origin", "http://x", "Access-Control-Request-Method", "GET"}, idNobody,
			"", "access3.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := append(append([]string{}, tc.hdr...), forged...)
			hdr = append(hdr, "X-Consumer-Username", "forged-again") // a second value
			r := do(t, req(tc.method, tc.url, nil, hdr...))
			got := wantIdentity(t, r, tc.who)
			if tc.placeholders != "" {
				if ph := got.Header.Get("X-Placeholders"); ph != tc.placeholders {
					t.Errorf("placeholders %q, want %q", ph, tc.placeholders)
				}
				if u := r.header.Get("X-Auth-User"); u != tc.who.username {
					t.Errorf("response header X-Auth-User %q, want %q", u, tc.who.username)
				}
			}
			uri := tc.url[len(site):]
			entry := e.waitLog(tc.log, func(l logEntry) bool {
				rq, _ := l["request"].(map[string]any)
				return rq != nil && rq["uri"] == uri
			})
			wantUser := tc.who.username
			if wantUser == absent {
				wantUser = ""
			}
			if u := entry.str("user_id"); u != wantUser {
				t.Errorf("access log user_id %q, want %q", u, wantUser)
			}
		})
	}

	// A rejected request has no user in the access log.
	want401(t, get(t, site+"/who/nobody", forged...), msgNoKey)
	entry := e.waitLog("access1.log", func(l logEntry) bool {
		rq, _ := l["request"].(map[string]any)
		return rq != nil && rq["uri"] == "/who/nobody"
	})
	if u := entry.str("user_id"); u != "" {
		t.Errorf("access log user_id %q for a rejected request", u)
	}
	if s, _ := entry["status"].(float64); s != http.StatusUnauthorized {
		t.Errorf("access log status %v, want 401", entry["status"])
	}
}

// Request handling, rule 6: a client that names identity headers in
// Connection cannot have the proxy drop them as hop-by-hop; other names
// there still go.
func TestConnectionCannotDropIdentity(t *testing.T) {
	e := newEnv(t)
	e.site("anonymous guest")
	for _, conn := range [][]string{
		{"X-Anonymous-Consumer"},
		{"x-anonymous-consumer, X-Credential-Identifier"},
		{"keep-alive, X-Consumer-Username,X-Consumer-ID , x-consumer-custom-id, X-Foo"},
		{"X-Foo", "X-Anonymous-Consumer", "X-Consumer-Username"},
	} {
		t.Run(strings.Join(conn, "|"), func(t *testing.T) {
			var hdr []string
			for _, c := range conn {
				hdr = append(hdr, "Connection", c)
			}
			hdr = append(hdr, "X-Foo", "dropped", "X-Bar", "kept")
			got := wantIdentity(t, get(t, site+"/", hdr...), idGuest)
			got2 := wantIdentity(t, get(t, site+"/", append(hdr, "apikey", keyAlice)...), idAlice)
			for _, g := range []*echo{got, got2} {
				if g.has("X-Foo") && strings.Contains(strings.Join(conn, ","), "X-Foo") {
					t.Errorf("X-Foo, named in Connection, reached the upstream")
				}
				if g.Header.Get("X-Bar") != "kept" {
					t.Errorf("X-Bar did not reach the upstream")
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

// Identity headers cannot be forged in any spelling, on any path.
func TestIdentityForgedSpellings(t *testing.T) {
	e := newSmallEnv(t)
	e.vars["GlobalExtra"] = "\tservers {\n\t\texpected_underscore_headers X_*\n\t}\n"
	e.load(`{{.Global}}
(auth) {
	key_auth {
		consumers file {{.Consumers}}
		{args[:]}
	}
	reverse_proxy {{.Up}}
}
`+fourWays, "caddyfile")
	for _, tc := range []struct {
		name   string
		base   string
		method string
		hdr    []string
		who    identity
	}{
		{"authenticated", site, http.MethodGet, []string{"apikey", smallKey}, smallAlice},
		{"anonymous", site2, http.MethodGet, nil, smallGuest},
		{"preflight let through", site3, http.MethodOptions, []string{"Origin", "https://app.example", "Access-Control-Request-Method", "GET"}, smallNobody},
		{"rejected, handed to handle_errors", siteURL(3), http.MethodGet, []string{"apikey", "wrong"}, smallNobody},
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

// Two key_auth handlers on one route, in both orders, with and
// without anonymous, and key_auth with basic_auth: headers, placeholders and
// the access log's user_id name one identity, the one given last.
func TestIdentityStackedHandlers(t *testing.T) {
	e := newSmallEnv(t)
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
		{"anonymous apikey, then token: the key in token", 0, []string{"token", smallKey}, smallAlice, seenAlice, "alice"},
		{"anonymous apikey, then token: no key is a 401", 0, nil, identity{}, "", ""},
		{"token, then anonymous apikey: the key in token stays", 1, []string{"token", smallKey}, smallAlice, seenAlice, "alice"},
		{"token, then anonymous apikey: the key in apikey is refused by token", 1, []string{"apikey", smallKey}, identity{}, "", ""},
		{"both anonymous: no key is the guest", 2, nil, smallGuest, seenGuest, "guest"},
		{"both anonymous: the key in apikey, last", 2, []string{"apikey", smallKey}, smallAlice, seenAlice, "alice"},
		{"both anonymous: the key in token, first", 2, []string{"token", smallKey}, smallAlice, seenAlice, "alice"},
		{"both anonymous: wrong token, key in apikey", 2, []string{"token", "wrong", "apikey", smallKey}, smallAlice, seenAlice, "alice"},
		{"either key required: apikey", 5, []string{"apikey", smallKey}, smallAlice, seenAlice, "alice"},
		{"either key required: token", 5, []string{"token", smallKey}, smallAlice, seenAlice, "alice"},
		{"either key required: none", 5, []string{"token", "wrong"}, identity{}, "", ""},
		{"basic_auth, then key_auth: the consumer", 3, []string{"Authorization", basicBob, "token", smallKey}, smallAlice, seenAlice, "alice"},
		{"basic_auth, then anonymous key_auth: bob stays, no forged headers", 3,
			[]string{"Authorization", basicBob, "X-Consumer-Username", "forged"}, smallNobody, seenBob, "bob"},
		{"anonymous key_auth, then basic_auth: bob in placeholders and log", 4,
			[]string{"Authorization", basicBob}, smallGuest, seenBob, "bob"},
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
