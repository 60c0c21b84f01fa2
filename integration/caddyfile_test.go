package integration

// The key_auth directive in a Caddyfile: matchers, the order of
// directives, and mistakes refused at load with file and line.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// The directive with a path matcher and a named matcher, in a site block
// with no order option and no route: it runs before the handlers that
// answer, and only on the requests it matches.
func TestCaddyfileMatchersAndOrder(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	@writes method POST PUT DELETE
	key_auth @writes {
		key_in_body true
		consumers file {{.Consumers}}
	}
	key_auth /admin/* {
		key_names token
		consumers file {{.Consumers}}
	}
	respond /hello "hello {http.auth.user.id}"
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	wantIdentity(t, get(t, site+"/open"), idNobody)
	want401(t, post(t, site+"/open", formType, []byte("x=1")), msgNoKey)
	wantIdentity(t, post(t, site+"/open", formType, []byte("apikey="+keyAlice)), idAlice)
	want401(t, get(t, site+"/admin/x", "apikey", keyAlice), msgNoKey)
	wantIdentity(t, get(t, site+"/admin/x", "token", keyBob), idBob)
	// respond comes after key_auth, and sees its placeholders.
	want401(t, do(t, req(http.MethodPut, site+"/hello", nil)), msgNoKey)
	r := do(t, req(http.MethodPut, site+"/hello?apikey="+keyBob, nil))
	if r.status != http.StatusOK || string(r.body) != "hello bob" {
		t.Errorf("got %s, want hello bob", r)
	}
}

// Caddyfile mistakes are refused at /load, naming the line.
func TestCaddyfileRefused(t *testing.T) {
	e := newEnv(t)
	global := e.render("{{.Global}}")
	for _, tc := range []struct {
		opts string // lines inside key_auth, which starts on line 2 after the global options
		line int
		want string
	}{
		{"key_name apikey", 3, "key_name"},
		{"key_in_query yes", 3, "yes"},
		{"hide_credentials maybe", 3, "maybe"},
		{"realm", 3, ""},
		{"anonymous a b", 3, ""},
		{"max_body_size huge", 3, "huge"},
		{"realm x\nrealm y", 4, "twice"},
		{"consumers file", 3, ""},
		{"consumers ftp x", 3, "ftp"},
		{"consumers file x {\nrefresh never\n}", 4, "never"},
		{"consumers file x {\nrefresh -1s\n}", 4, "negative"},
		{"consumers file x {\nevery 1s\n}", 4, "every"},
	} {
		t.Run(strings.ReplaceAll(tc.opts, "\n", " "), func(t *testing.T) {
			consumersLine := "consumers file {{.Consumers}}\n"
			if strings.HasPrefix(tc.opts, "consumers") {
				consumersLine = ""
			}
			cfg := global + "{{.Site}} {\n\tkey_auth {\n" + tc.opts + "\n" + consumersLine + "\t}\n\treverse_proxy {{.Up}}\n}\n"
			msg := e.loadError(cfg, "caddyfile")
			if loc := fmt.Sprintf("Caddyfile:%d", strings.Count(global, "\n")+tc.line); !strings.Contains(msg, loc) {
				t.Errorf("the error does not name %s: %s", loc, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("the error does not say %q: %s", tc.want, msg)
			}
		})
	}
}
