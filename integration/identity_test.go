package integration

import (
	"net/http"
	"strings"
	"testing"
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

// Rule 6: a client that names identity headers in Connection cannot have
// the proxy drop them as hop-by-hop; other names there still go.
func TestConnectionCannotDropIdentity(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		anonymous guest
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
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
