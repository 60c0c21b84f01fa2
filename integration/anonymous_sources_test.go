package integration

import (
	"context"
	"net/http"
	"testing"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth/command"
)

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
