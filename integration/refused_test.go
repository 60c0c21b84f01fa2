package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// Each refused consumers file fails the config at /load, with an error that
// names the file and the consumer or credential, and never the key.
func TestRefusedFileAtLoad(t *testing.T) {
	hashOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	for _, tc := range []struct {
		name   string
		doc    string
		want   []string // substrings of the error
		secret []string // never in the error
	}{
		{"invalid JSON",
			"{\"consumers\": [\n  {\"username\": \"alice\", \"keys\": [{\"key\": \"leak-1\"}]\n]}",
			[]string{"line 3, column 1"}, []string{"leak-1"}},
		{"invalid JSON inside a key",
			"{\"consumers\": [\n {\"username\": \"alice\",\n  \"keys\": [{\"key\": \"leak-2\x01\"}]}]}",
			[]string{"line 3, column", "control character"}, []string{"leak-2"}},
		{"unterminated key",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-3`,
			[]string{"line 1, column", "end of document"}, []string{"leak-3"}},
		{"trailing data",
			`{"consumers": []} {"leak-4": 1}`,
			[]string{"line 1, column 19"}, []string{"leak-4"}},
		{"not an object",
			`["leak-5"]`,
			[]string{"line 1, column 1"}, []string{"leak-5"}},
		{"missing username",
			`{"consumers": [{"username": "ok"}, {"id": "c-2", "keys": [{"id": "k", "key": "leak-6"}]}]}`,
			[]string{"consumer #2", "no username"}, []string{"leak-6"}},
		{"empty username",
			`{"consumers": [{"username": "", "keys": [{"key": "leak-7"}]}]}`,
			[]string{"consumer #1", "no username"}, []string{"leak-7"}},
		{"duplicate username",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-8"}]}, {"username": "alice", "id": "other"}]}`,
			[]string{`consumer "alice"`, "twice"}, []string{"leak-8"}},
		{"duplicate id",
			`{"consumers": [{"username": "alice", "id": "same"}, {"username": "bob", "id": "same", "keys": [{"key": "leak-9"}]}]}`,
			[]string{`consumer "bob"`, `"same"`, `consumer "alice"`}, []string{"leak-9"}},
		{"id that is another's username",
			`{"consumers": [{"username": "alice"}, {"username": "bob", "id": "alice"}]}`,
			[]string{`consumer "bob"`, `"alice"`}, nil},
		{"empty key",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "key": ""}]}]}`,
			[]string{`consumer "alice"`, `credential "cred-1"`, "empty key"}, nil},
		{"empty key, no credential id",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-10"}, {"key": ""}]}]}`,
			[]string{`consumer "alice"`, "key #2", "empty key"}, []string{"leak-10"}},
		{"both key and hash",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "key": "leak-11", "hash": "sha256:` + hashOf("leak-11") + `"}]}]}`,
			[]string{`credential "cred-1"`, "both key and hash"}, []string{"leak-11", hashOf("leak-11")}},
		{"malformed hash, short",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "hash": "sha256:abc123"}]}]}`,
			[]string{`credential "cred-1"`, "malformed hash"}, []string{"abc123"}},
		{"malformed hash, not hex",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "hash": "sha256:` + strings.Repeat("z", 64) + `"}]}]}`,
			[]string{`credential "cred-1"`, "malformed hash"}, []string{strings.Repeat("z", 64)}},
		{"malformed hash, other algorithm",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "hash": "md5:` + hashOf("leak-12") + `"}]}]}`,
			[]string{`credential "cred-1"`, "malformed hash"}, []string{hashOf("leak-12")}},
		{"same key twice across consumers",
			`{"consumers": [{"username": "alice", "keys": [{"id": "a-1", "key": "leak-13"}]}, {"username": "bob", "keys": [{"id": "b-1", "key": "leak-13"}]}]}`,
			[]string{`credential "b-1"`, `credential "a-1"`, "same key"}, []string{"leak-13"}},
		{"same key twice in one consumer",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-14"}, {"id": "a-2", "key": "leak-14"}]}]}`,
			[]string{`credential "a-2"`, `credential "alice#1"`, "same key"}, []string{"leak-14"}},
		{"same key plain and hashed",
			`{"consumers": [{"username": "alice", "keys": [{"id": "a-1", "key": "leak-15"}]}, {"username": "bob", "keys": [{"id": "b-1", "hash": "sha256:` + hashOf("leak-15") + `"}]}]}`,
			[]string{`credential "b-1"`, `credential "a-1"`, "same key"}, []string{"leak-15", hashOf("leak-15")}},
		{"same key hashed twice, upper and lower case hex",
			`{"consumers": [{"username": "alice", "keys": [{"id": "a-1", "hash": "sha256:` + hashOf("leak-16") + `"}, {"id": "a-2", "hash": "sha256:` + strings.ToUpper(hashOf("leak-16")) + `"}]}]}`,
			[]string{`credential "a-2"`, "same key"}, []string{"leak-16", hashOf("leak-16")}},
		{"duplicate credential id",
			`{"consumers": [{"username": "alice", "keys": [{"id": "c", "key": "leak-17"}]}, {"username": "bob", "keys": [{"id": "c", "key": "leak-18"}]}]}`,
			[]string{`consumer "bob"`, `"c"`}, []string{"leak-17", "leak-18"}},
		{"bad expires_at",
			`{"consumers": [{"username": "alice", "keys": [{"id": "c", "key": "leak-19", "expires_at": "tomorrow"}]}]}`,
			[]string{`credential "c"`, "expires_at"}, []string{"leak-19"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConsumers(tc.doc)
			for _, adapter := range []string{"caddyfile", "json"} {
				cfg := refreshSite
				if adapter == "json" {
					cfg = jsonSite
				}
				msg := e.loadError(cfg, adapter)
				if !strings.Contains(msg, e.consumers) {
					t.Errorf("%s: the error does not name the file: %s", adapter, msg)
				}
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: the error does not say %q: %s", adapter, w, msg)
					}
				}
				for _, s := range tc.secret {
					if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
						t.Errorf("%s: the error holds %q: %s", adapter, s, msg)
					}
				}
			}
			// Caddy still runs the config it had.
			e.writeConsumers(doc("carol", "carol-key-1"))
			e.load(refreshSite, "caddyfile")
			if !works(t, site, "carol-key-1") {
				t.Error("a good file is not served after the refusal")
			}
		})
	}
}

// A missing file fails the config too.
func TestMissingFileAtLoad(t *testing.T) {
	e := newEnv(t)
	e.consumers += ".missing"
	msg := e.loadError(refreshSite, "caddyfile")
	if !strings.Contains(msg, e.consumers) || !strings.Contains(msg, "no such file") {
		t.Errorf("error: %s", msg)
	}
}

// jsonSite is refreshSite in JSON, with the handler inside a subroute.
const jsonSite = `{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "DEBUG", "encoder": {"format": "json"},
		"writer": {"output": "file", "filename": "{{.Dir}}/caddy.log"}}}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {"s": {
		"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
		"routes": [{"handle": [{"handler": "subroute", "routes": [{"handle": [
			{"handler": "key_auth", "consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "100ms"}},
			{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
		]}]}]}]
	}}}}
}`
