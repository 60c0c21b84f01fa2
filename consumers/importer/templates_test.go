package importer

import (
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// decK's ${{ env "DECK_X" }} is rendered from the import's environment,
// DECK_ variables only; an unset one fails, naming it and no value.
func TestDeckTemplates(t *testing.T) {
	doc := `_format_version: "3.0"
consumers:
- username: demo
  keyauth_credentials:
  - key: ${{ env "DECK_DEMO_KEY" }}
  - key: "prefix-${{ env "DECK_SUFFIX" }}"
`
	vars := map[string]string{"DECK_DEMO_KEY": "demo-from-env-key", "DECK_SUFFIX": "tail-secret", "HOME_KEY": "home-secret"}
	r, err := Kong([]byte(doc), Options{LookupEnv: env(vars)})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Doc.Consumers[0].Keys; len(got) != 2 || got[0].Hash != h("demo-from-env-key").Hash || got[1].Hash != h("prefix-tail-secret").Hash {
		t.Errorf("keys: %+v", got)
	}
	for _, tc := range []struct{ doc, want string }{
		{strings.Replace(doc, "DECK_DEMO_KEY", "DECK_UNSET", 1), "environment variable DECK_UNSET, which is not set"},
		{strings.Replace(doc, "DECK_DEMO_KEY", "HOME_KEY", 1), "environment variable HOME_KEY: decK reads only variables prefixed DECK_"},
		{strings.Replace(doc, `env "DECK_DEMO_KEY"`, `nope "x"`, 1), "rendering the decK template"},
	} {
		_, err := Kong([]byte(tc.doc), Options{LookupEnv: env(vars)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error holds a value: %v", err)
		}
	}
}

// APISIX's ${{VAR}} and ${{VAR:=default}}: in the text of apisix.yaml, in
// the strings of apisix.json; a missing variable without a default fails.
func TestAPISIXTemplates(t *testing.T) {
	vars := map[string]string{"JACK_KEY": "jack-from-env-key", "EMPTY": ""}
	yaml := "consumers:\n  - username: jack\n    plugins:\n      key-auth:\n        key: ${{JACK_KEY}}\n" +
		"  - username: ann\n    labels:\n      plan: \"${{ PLAN:=free }}${{EMPTY}}\"\n    plugins:\n      key-auth:\n        key: ${{ ANN_KEY:= ann-default-key }}\n#END\n"
	json := `{"consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "${{JACK_KEY}}"}}},
  {"username": "ann", "labels": {"plan": "${{PLAN:=free}}"}, "plugins": {"key-auth": {"key": "${{ANN_KEY:=ann-default-key}}"}}}]}`
	for _, doc := range []string{yaml, json} {
		r, err := APISIX([]byte(doc), Options{LookupEnv: env(vars)})
		if err != nil {
			t.Fatal(err)
		}
		c := r.Doc.Consumers
		if len(c) != 2 || c[0].Keys[0].Hash != h("jack-from-env-key").Hash || c[1].Keys[0].Hash != h("ann-default-key").Hash || c[1].Labels["plan"] != "free" {
			t.Errorf("consumers: %+v", c)
		}
		_, err = APISIX([]byte(strings.Replace(doc, "JACK_KEY", "MISSING_KEY", 1)), Options{LookupEnv: env(vars)})
		if err == nil || !strings.Contains(err.Error(), "environment variable MISSING_KEY is not set") {
			t.Errorf("error %v", err)
		}
	}
	// The Admin API's answer holds what APISIX stored: nothing to render.
	r, err := APISIX([]byte(`{"list": [{"key": "/apisix/consumers/a", "value": {"username": "a", "plugins": {"key-auth": {"key": "${{NOT_RENDERED}}"}}}}]}`), Options{LookupEnv: env(vars), Plain: true})
	if err != nil || r.Doc.Consumers[0].Keys[0].Key != "${{NOT_RENDERED}}" {
		t.Errorf("%v %+v", err, r)
	}
}

// A key that looks like a variable nobody rendered gets a warning naming
// its consumer, never the key.
func TestUnrenderedKeys(t *testing.T) {
	r, err := Kong([]byte(`_format_version: "2.1"
consumers:
- username: anon
  keyauth_credentials: [{key: $SUPABASE_ANON_KEY}]
- username: service_role
  keyauth_credentials: [{key: "${SUPABASE_SERVICE_KEY}"}, {key: "x-${SHELL_VAR:-fallback}"}]
- username: fine
  keyauth_credentials: [{key: "pa$$word-1"}, {key: "$5-not-a-name"}]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, `consumer "anon", keyauth credential #1: the key looks like an unrendered`,
		`consumer "service_role", keyauth credential #1: the key looks`, `consumer "service_role", keyauth credential #2: the key looks`)
	if len(r.Notes) != 3 {
		t.Errorf("notes:\n%s", strings.Join(r.Notes, "\n"))
	}
	noKeys(t, r.Notes, "SUPABASE", "SHELL_VAR")
	r, err = APISIX([]byte(`{"list": [{"key": "/apisix/consumers/a", "value": {"username": "a", "plugins": {"key-auth": {"key": "${{NOT_RENDERED}}"}}}}]}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, `consumer "a": the key looks like an unrendered template variable`)
	noKeys(t, r.Notes, "NOT_RENDERED")
}

// A key stored as "Bearer <token>" for a key-auth reading Authorization is
// imported without the scheme, and the note says so.
func TestKeyWithScheme(t *testing.T) {
	kong := `_format_version: "3.0"
plugins:
- name: key-auth
  config: {key_names: [Authorization]}
consumers:
- username: llm
  keyauth_credentials: [{key: "Bearer sk-llm-token-1"}, {key: "bearer  sk-llm-token-2"}, {key: "plain-llm-token-3"}]
`
	apisix := "routes:\n  - id: 1\n    uri: /v1/*\n    plugins:\n      key-auth:\n        header: authorization\nconsumers:\n  - username: llm\n    plugins:\n      key-auth:\n        key: Bearer sk-llm-token-1\n#END\n"
	for _, run := range []func() (*Result, error){
		func() (*Result, error) { return Kong([]byte(kong), Options{Plain: true}) },
		func() (*Result, error) { return APISIX([]byte(apisix), Options{Plain: true}) },
	} {
		r, err := run()
		if err != nil {
			t.Fatal(err)
		}
		keys := r.Doc.Consumers[0].Keys
		if keys[0].Key != "sk-llm-token-1" || len(keys) == 3 && (keys[1].Key != "sk-llm-token-2" || keys[2].Key != "plain-llm-token-3") {
			t.Errorf("keys: %+v", keys)
		}
		wantLines(t, r.Notes, `consumer "llm"`+map[bool]string{true: ", keyauth credential #1", false: ""}[len(keys) == 3]+`: the key is stored with its scheme (Bearer)`)
		noKeys(t, r.Notes, "sk-llm")
	}
	// No key-auth reads Authorization: kept, with a note.
	r, err := Kong([]byte(strings.Replace(kong, "Authorization", "apikey", 1)), Options{Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Doc.Consumers[0].Keys[0].Key != "Bearer sk-llm-token-1" {
		t.Errorf("keys: %+v", r.Doc.Consumers[0].Keys)
	}
	wantLines(t, r.Notes, `consumer "llm", keyauth credential #1: the key starts with a Bearer scheme, and no key-auth`)
}

// A key that is only the Bearer scheme is what the handler reads in
// Authorization as no key (consumers.StripBearer): kept as written, with a
// note when a key-auth reads Authorization, and without one otherwise.
func TestKeyOnlyScheme(t *testing.T) {
	if consumers.StripBearer("Bearer") != "" {
		t.Fatal(`the handler reads "Bearer" as a key`)
	}
	kong := `_format_version: "3.0"
plugins:
- name: key-auth
  config: {key_names: [Authorization]}
consumers:
- username: llm
  keyauth_credentials: [{key: "Bearer"}]
`
	r, err := Kong([]byte(kong), Options{Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Doc.Consumers[0].Keys[0].Key; k != "Bearer" {
		t.Errorf("key: %q", k)
	}
	wantLines(t, r.Notes, `consumer "llm", keyauth credential #1: the key is only a Bearer scheme, which key_auth reads in Authorization as no key`)
	r, err = Kong([]byte(strings.Replace(kong, "Authorization", "apikey", 1)), Options{Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Doc.Consumers[0].Keys[0].Key; k != "Bearer" {
		t.Errorf("key: %q", k)
	}
	for _, n := range r.Notes {
		if strings.Contains(n, "Bearer") {
			t.Errorf("a note on a key another header sends as it is: %s", n)
		}
	}
}

// A decK file without _format_version is read as 1.1, as decK reads it.
func TestDeckDefaultVersion(t *testing.T) {
	r, err := Kong([]byte("consumers:\n- username: a\n  keyauth_credentials: [{key: deck-default-key-1}]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, "the file has no _format_version: read as decK reads it, as 1.1")
	if len(r.Doc.Consumers) != 1 || len(r.Doc.Consumers[0].Keys) != 1 {
		t.Errorf("%+v", r.Doc.Consumers)
	}
}

// Kong's ttl: above DAO_MAX_TTL (1e8) it is the instant of expiry, as
// db_export and DB-less files hold it; at most 1e8, seconds left from
// --as-of, as the Admin API (and decK, which reads it) gives it.
func TestKongTTL(t *testing.T) {
	doc := `{"_format_version": "3.0", "_transform": false,
  "consumers": [{"username": "a", "id": "c1"}],
  "keyauth_credentials": [
    {"consumer": {"id": "c1"}, "id": "k1", "key": "ttl-instant-key-1", "ttl": 1772373600},
    {"consumer": {"id": "c1"}, "id": "k2", "key": "ttl-past-key-2", "ttl": 1772370000},
    {"consumer": {"id": "c1"}, "id": "k3", "key": "ttl-small-key-3", "ttl": 600}]}`
	// An instant needs no time to count from.
	r, err := Kong([]byte(strings.Replace(doc, `"ttl": 600`, `"ttl": 0`, 1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Doc.Consumers[0].Keys; k[0].ExpiresAt != "2026-03-01T14:00:00Z" || k[1].ExpiresAt != "2026-03-01T13:00:00Z" || k[2].ExpiresAt != "" {
		t.Errorf("keys: %+v", k)
	}
	r, err = Kong([]byte(doc), Options{AsOf: asOf.Add(90 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Doc.Consumers[0].Keys; k[0].ExpiresAt != "2026-03-01T14:00:00Z" || k[2].ExpiresAt != "2026-03-01T13:40:00Z" {
		t.Errorf("keys: %+v", k)
	}
	wantLines(t, r.Notes, `consumer "a", keyauth_credentials #2: expired at 2026-03-01T13:00:00Z`,
		`consumer "a", keyauth_credentials #3: a ttl of 600 seconds in a declarative file`)
	// Above the end of RFC 3339: refused.
	if _, err := Kong([]byte(strings.Replace(doc, "1772373600", "1e13", 1)), Options{AsOf: asOf}); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("error %v", err)
	}
}
