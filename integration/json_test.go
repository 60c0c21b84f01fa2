package integration

// key_auth in a JSON config (README: JSON), and mistakes refused at load.

import (
	"net/http"
	"strings"
	"testing"
)

// A JSON config posted to /load, with key_auth in a subroute of a matched
// route, at the top of a route, next to other routes, and with the JSON
// names of every option.
func TestJSONConfig(t *testing.T) {
	e := newEnv(t)
	e.load(`{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "DEBUG", "encoder": {"format": "json"},
		"writer": {"output": "file", "filename": "{{.Dir}}/caddy.log"}}}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {
		"api": {
			"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
			"expected_underscore_headers": ["x_token"],
			"routes": [
				{"match": [{"path": ["/public/*"]}], "handle": [
					{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
				], "terminal": true},
				{"match": [{"path": ["/nested/*"]}], "handle": [{"handler": "subroute", "routes": [
					{"handle": [{"handler": "headers", "response": {"set": {"X-Route": ["nested"]}}}]},
					{"handle": [{"handler": "key_auth",
						"key_names": ["x_token", "apikey"], "key_in_query": false, "realm": "nested",
						"consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "100ms"}}]},
					{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}]}
				]}], "terminal": true},
				{"handle": [
					{"handler": "key_auth", "key_in_header": false, "key_in_body": true, "max_body_size": 1000,
						"hide_credentials": true, "anonymous": "anon-1", "run_on_preflight": false,
						"consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "100ms"}},
					{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
				]}
			]
		},
		"errs": {
			"listen": ["127.0.0.1:{{.Port2}}"], "automatic_https": {"disable": true},
			"routes": [{"handle": [
				{"handler": "key_auth", "handle_errors": true, "key_names": ["authorization"], "max_body_size": 2048,
					"consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "100ms"}},
				{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
			]}],
			"errors": {"routes": [{"handle": [{"handler": "static_response",
				"body": "{http.error.status_code} {http.error.message}"}]}]}
		}
	}}}
}`, "json")

	// Not protected.
	wantIdentity(t, get(t, site+"/public/x", forged...), identity{"forged-user", "forged-id", "forged-custom", "forged-cred", "forged"})

	// In the subroute.
	wantIdentity(t, get(t, site+"/nested/x", "x_token", keyAlice), idAlice)
	wantIdentity(t, get(t, site+"/nested/x", "apikey", keyBob), idBob)
	r := get(t, site+"/nested/x?apikey="+keyAlice)
	wantFailure(t, r, http.StatusUnauthorized, msgNoKey, `Key realm="nested"`)
	if r.header.Get("X-Route") != "nested" {
		t.Errorf("the subroute's earlier handler did not run")
	}
	wantFailure(t, get(t, site+"/nested/x", "x_token", keyWrong), http.StatusUnauthorized, msgInvalid, `Key realm="nested"`)

	// At the top of the last route: no header, body up to 1KB, hidden,
	// anonymous by id, preflights go on.
	got := wantIdentity(t, get(t, site+"/top?apikey="+keyAlice+"&x=1", "apikey", keyBob), idAlice)
	if got.URI != "/top?x=1" || got.Header.Get("Apikey") != keyBob {
		t.Errorf("upstream got %s with apikey header %q", got.URI, got.Header.Get("Apikey"))
	}
	got = wantIdentity(t, post(t, site+"/top", formType, []byte("apikey="+keyBob+"&x=1")), idBob)
	wantBody(t, got, []byte("x=1"))
	wantIdentity(t, get(t, site+"/top", "apikey", keyAlice), idGuest)
	big := "apikey=" + keyBob + "&pad=" + strings.Repeat("x", 1000)
	got = wantIdentity(t, post(t, site+"/top", formType, []byte(big)), idGuest)
	wantBody(t, got, []byte(big))
	wantIdentity(t, do(t, req(http.MethodOptions, site+"/top", nil, "Origin", "http://x", "Access-Control-Request-Method", "PUT")), idNobody)

	// handle_errors on another server.
	r = get(t, site2+"/", "Authorization", "Bearer "+keyWrong)
	if r.status != http.StatusUnauthorized || string(r.body) != "401 "+msgInvalid || r.header.Get("Www-Authenticate") != "Key" {
		t.Errorf("got %s", r)
	}
	wantIdentity(t, get(t, site2+"/", "Authorization", "bearer "+keyAlice), idAlice)

	// One store for the four handlers, and a change reaches all of them.
	if n := len(storesAt(e.consumers)); n != 1 {
		t.Errorf("%d stores, want 1", n)
	}
	e.writeConsumers(doc("carol", "carol-key-1"))
	eventually(t, "the change to reach the subroute", func() bool {
		return get(t, site+"/nested/x", "apikey", "carol-key-1").status == http.StatusOK
	})
	eventually(t, "the change to reach the other server", func() bool {
		return get(t, site2+"/", "Authorization", "carol-key-1").status == http.StatusOK
	})
	wantIdentity(t, get(t, site+"/top?apikey=carol-key-1"), identity{"carol", "carol", absent, "carol-1", absent})
}

// JSON configs that are refused, with the reason.
func TestJSONConfigRefused(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		handler string
		want    string
	}{
		{`{"handler": "key_auth"}`, "consumers is required"},
		{`{"handler": "key_auth", "key_name": ["x"], "consumers": {"source": "file", "path": "{{.Consumers}}"}}`, "key_name"},
		{`{"handler": "key_auth", "consumers": {"source": "nope", "path": "{{.Consumers}}"}}`, "nope"},
		{`{"handler": "key_auth", "consumers": {"source": "file"}}`, "path is required"},
		{`{"handler": "key_auth", "consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "-1s"}}`, "refresh"},
		{`{"handler": "key_auth", "max_body_size": "1MB", "consumers": {"source": "file", "path": "{{.Consumers}}"}}`, "max_body_size"},
		{`{"handler": "key_auth", "max_body_size": -1, "consumers": {"source": "file", "path": "{{.Consumers}}"}}`, "max_body_size must not be negative"},
		{`{"handler": "key_auth", "key_in_header": "yes", "consumers": {"source": "file", "path": "{{.Consumers}}"}}`, "key_in_header"},
		{`{"handler": "key_auth", "key_names": ["apikey", "apikey"], "consumers": {"source": "file", "path": "{{.Consumers}}"}}`, "twice"},
		{`{"handler": "key_auth", "key_names": [""], "consumers": {"source": "file", "path": "{{.Consumers}}"}}`, "empty"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			msg := e.loadError(`{"admin": {"listen": "{{.Admin}}", "config": {"persist": false}}, "apps": {"http": {"servers": {"s": {
				"listen": ["127.0.0.1:{{.Port}}"], "routes": [{"handle": [`+tc.handler+`]}]}}}}}`, "json")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
		})
	}
}

// The file's path may use {env.*} placeholders; refresh may be a number of
// nanoseconds, and 0 turns checking off.
func TestJSONConfigEnvPath(t *testing.T) {
	e := newEnv(t)
	t.Setenv("KEYAUTH_IT_DIR", e.dir)
	e.load(`{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"apps": {"http": {"servers": {"s": {
		"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "key_auth", "consumers": {"source": "file", "path": "{env.KEYAUTH_IT_DIR}/consumers.json", "refresh": 0}},
			{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
		]}]
	}}}}
}`, "json")
	wantIdentity(t, get(t, site+"/", "apikey", keyAlice), idAlice)
	if n := len(storesAt(e.consumers)); n != 1 {
		t.Errorf("%d stores for %s", n, e.consumers)
	}
	e.writeConsumers(doc("carol", "carol-key-1"))
	// Nothing will read it: with refresh 0 no poller waits for a next check.
	if n := pollersOnTimer(); n != 0 {
		t.Errorf("%d pollers wait for a next check with refresh 0", n)
	}
	if !works(t, site, keyAlice) || works(t, site, "carol-key-1") {
		t.Error("the file was read again with refresh 0")
	}
}
