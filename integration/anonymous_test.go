package integration

// Requests that go on without a key of their own: the anonymous consumer
// (README: Request handling, rule 8) and a CORS preflight let through
// (rule 1).

import (
	"context"
	"net/http"
	"testing"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth/command"
)

// Request handling, rule 8: with anonymous set, every failure goes on as the
// anonymous consumer, found by username and then by id; if there is none,
// 500.
func TestAnonymous(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
(anon) {
	key_auth {
		anonymous {args[0]}
		consumers file {{.Consumers}} {
			refresh 100ms
		}
	}
	reverse_proxy {{.Up}}
}
{{.Site}} {
	import anon guest
}
{{.Site2}} {
	import anon anon-1
}
{{.Site3}} {
	import anon nobody
}
`, "caddyfile")
	for _, f := range failing {
		t.Run(f.name, func(t *testing.T) {
			// By username: guest, not impostor whose id is "guest".
			wantIdentity(t, get(t, site+f.path, append(f.hdr, forged...)...), idGuest)
			// By id.
			wantIdentity(t, get(t, site2+f.path, f.hdr...), idGuest)
			// Nobody.
			wantFailure(t, get(t, site3+f.path, f.hdr...), http.StatusInternalServerError,
				"anonymous consumer nobody is configured but doesn't exist", "")
		})
	}
	// A right key is not anonymous.
	wantIdentity(t, get(t, site+"/", "apikey", keyAlice), idAlice)
	wantIdentity(t, get(t, site3+"/", "apikey", keyBob), idBob)

	// The anonymous consumer follows the file: add nobody, then remove guest.
	doc := `{"consumers": [
		{"username": "alice", "id": "a11ce", "custom_id": "cust-1", "keys": [{"id": "alice-key", "key": "` + keyAlice + `"}]},
		{"username": "nobody", "id": "n0", "custom_id": "c-n"}
	]}`
	e.writeConsumers(doc)
	eventually(t, "nobody to exist", func() bool {
		return get(t, site3+"/").status == http.StatusOK
	})
	wantIdentity(t, get(t, site3+"/", "apikey", keyWrong), identity{"nobody", "n0", "c-n", absent, "true"})
	wantFailure(t, get(t, site+"/"), http.StatusInternalServerError,
		"anonymous consumer guest is configured but doesn't exist", "")
	wantIdentity(t, get(t, site+"/", "apikey", keyAlice), idAlice)
}

// Request handling, rule 1: with run_on_preflight false a CORS preflight
// goes on without a key, and still loses forged identity headers; anything
// short of a preflight still needs a key.
func TestPreflight(t *testing.T) {
	e := newEnv(t)
	e.sites(
		keyAuthSite("{{.Site}}", "run_on_preflight false"),
		keyAuthSite("{{.Site2}}"),
	)
	preflight := []string{"Origin", "http://example.com", "Access-Control-Request-Method", "POST"}
	options := func(base string, hdr ...string) *response {
		return do(t, req(http.MethodOptions, base+"/cors", nil, hdr...))
	}

	// run_on_preflight false.
	r := options(site, append(preflight, forged...)...)
	got := wantIdentity(t, r, idNobody)
	if got.Method != http.MethodOptions || got.Header.Get("Origin") != "http://example.com" {
		t.Errorf("upstream got %s with Origin %q", got.Method, got.Header.Get("Origin"))
	}
	// A key is not looked at on a preflight.
	wantIdentity(t, options(site, append(preflight, "apikey", keyAlice)...), idNobody)
	wantIdentity(t, options(site, append(preflight, "apikey", keyWrong)...), idNobody)
	// Not a preflight: OPTIONS without one of the two headers, or another method.
	want401(t, options(site, "Origin", "http://example.com"), msgNoKey)
	want401(t, options(site, "Access-Control-Request-Method", "POST"), msgNoKey)
	want401(t, get(t, site+"/cors", preflight...), msgNoKey)
	wantIdentity(t, options(site, "Origin", "http://example.com", "apikey", keyAlice), idAlice)

	// run_on_preflight true, the default.
	want401(t, options(site2, preflight...), msgNoKey)
	wantIdentity(t, options(site2, append(preflight, "apikey", keyAlice)...), idAlice)
}

// anonymousDoc has an anonymous consumer whose id is not its username, a
// disabled one, and a consumer with a key.
const anonymousDoc = `{"consumers": [
	{"username": "guest", "id": "anon-id", "groups": ["free"]},
	{"username": "off-guest", "disabled": true},
	{"username": "alice", "id": "a11ce", "keys": [{"id": "alice-key", "key": "anon-test-alice-secret"}]}
]}`

// The anonymous consumer is the same with every source: found by username,
// then by id, and a disabled or missing one answers the same 500. With
// Redis it was found by username only, and a disabled one was "doesn't
// exist".
func TestAnonymousSameForEverySource(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup makes the source hold anonymousDoc and returns its
		// consumers directive's arguments and block.
		setup func(t *testing.T, e *env) string
	}{
		{"file", func(t *testing.T, e *env) string {
			e.writeConsumers(anonymousDoc)
			return "file {{.Consumers}}"
		}},
		{"redis", func(t *testing.T, e *env) string {
			srv := redistest.Start(t)
			c := redistest.Client(t, srv.Addr())
			// Written as `caddy key-auth push` writes it.
			if _, err := command.Push(context.Background(), c, []byte(anonymousDoc), "anon:"); err != nil {
				t.Fatal(err)
			}
			e.vars["Redis"] = srv.Addr()
			return "redis {{.Redis}} {\n\t\t\t\tprefix anon:\n\t\t\t}"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			src := tc.setup(t, e)
			route := func(path, anonymous string) string {
				return "\troute " + path + "/* {\n\t\tkey_auth {\n\t\t\tanonymous " + anonymous +
					"\n\t\t\tconsumers " + src + "\n\t\t}\n\t\treverse_proxy {{.Up}}\n\t}\n"
			}
			e.load("{{.Global}}\n{{.Site}} {\n"+
				route("/by-name", "guest")+
				route("/by-id", "anon-id")+
				route("/off", "off-guest")+
				route("/missing", "nobody")+
				"}\n", "caddyfile")
			if tc.name == "redis" {
				waitRedisConnected(t)
			}

			for _, path := range []string{"/by-name/x", "/by-id/x"} {
				for _, key := range []string{"", "not-a-key"} {
					var hdr []string
					if key != "" {
						hdr = []string{"apikey", key}
					}
					wantIdentity(t, get(t, site+path, hdr...), identity{"guest", "anon-id", absent, absent, "true"})
				}
			}
			wantIdentity(t, get(t, site+"/by-id/x", "apikey", "anon-test-alice-secret"), identity{"alice", "a11ce", absent, "alice-key", absent})
			for _, key := range []string{"", "not-a-key"} {
				var hdr []string
				if key != "" {
					hdr = []string{"apikey", key}
				}
				wantFailure(t, get(t, site+"/off/x", hdr...), http.StatusInternalServerError,
					"anonymous consumer off-guest is configured but disabled", "")
				wantFailure(t, get(t, site+"/missing/x", hdr...), http.StatusInternalServerError,
					"anonymous consumer nobody is configured but doesn't exist", "")
			}
		})
	}
}
