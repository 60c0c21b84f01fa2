package importer

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

var asOf = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func h(key string) consumers.CredentialEntry {
	return consumers.CredentialEntry{Hash: consumers.HashKey(key)}
}

func withID(c consumers.CredentialEntry, id string) consumers.CredentialEntry { c.ID = id; return c }

func wantDoc(t *testing.T, got *Result, want []consumers.ConsumerEntry) {
	t.Helper()
	if !reflect.DeepEqual(got.Doc.Consumers, want) {
		t.Errorf("consumers:\n got %+v\nwant %+v", got.Doc.Consumers, want)
	}
	if _, err := got.Doc.Marshal(); err != nil {
		t.Errorf("the imported document is refused: %v", err)
	}
}

// wantLines checks that each wanted fragment is in a line of its own.
func wantLines(t *testing.T, lines []string, want ...string) {
	t.Helper()
	for _, w := range want {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines say %q:\n%s", n, w, strings.Join(lines, "\n"))
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "\n") {
			t.Errorf("a note of several lines: %q", l)
		}
	}
}

// noKeys checks that none of the fixture's keys is in any text.
func noKeys(t *testing.T, texts []string, keys ...string) {
	t.Helper()
	for _, s := range texts {
		for _, k := range keys {
			if strings.Contains(s, k) {
				t.Errorf("a key is in %q", s)
			}
		}
	}
}

func TestKongDeck(t *testing.T) {
	r, err := Kong(read(t, "kong-deck.yaml"), Options{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	exp := consumers.CredentialEntry{ID: "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a002", Hash: consumers.HashKey("alice-kong-key-0002"),
		ExpiresAt: "2026-03-02T12:00:00Z"}
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "alice", ID: "6f1c2b1e-7a55-4c1e-9a5e-2f2e8a1c0a01", CustomID: "cust-1", Tags: []string{"partner"},
			Groups: []string{"gold", "partners"},
			Keys:   []consumers.CredentialEntry{withID(h("alice-kong-key-0001"), "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a001"), exp}},
		{Username: "bob", ID: "6f1c2b1e-7a55-4c1e-9a5e-2f2e8a1c0a02", Groups: []string{"free"},
			Keys: []consumers.CredentialEntry{withID(h("bob-kong-key-0003"), "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a003")}},
		{Username: "batch-job", ID: "6f1c2b1e-7a55-4c1e-9a5e-2f2e8a1c0a03", CustomID: "batch-job",
			Keys: []consumers.CredentialEntry{withID(h("batch key 0004 with spaces & symbols"), "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a004")}},
	})
	wantLines(t, r.Notes,
		`consumer "alice": basic-auth credential 9d6c41a8-3b6e-4a0a-9d7e-7d2bd0e6b001 not migrated`,
		`consumer "bob": consumer-scoped plugin rate-limiting not migrated`,
		`custom_id "batch-job" has no username`,
		`tags rotated not migrated`)
	if len(r.Notes) != 4 {
		t.Errorf("notes:\n%s", strings.Join(r.Notes, "\n"))
	}
	if len(r.Blocks) != 1 || r.Blocks[0] != "# key-auth on route \"orders\" of service \"orders-api\", as key_auth:\nkey_auth {\n"+
		"\thide_credentials\n\tkey_names apikey x-api-key\n\tconsumers file consumers.json # the file this import wrote\n}\n" {
		t.Errorf("blocks: %q", r.Blocks)
	}
	noKeys(t, append(r.Notes, r.Blocks...), "alice-kong-key", "bob-kong-key", "batch key", "0f3c4d7e2b5a")

	// --plain keeps the keys.
	r, err = Kong(read(t, "kong-deck.yaml"), Options{AsOf: asOf, Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Doc.Consumers[2].Keys[0]; k.Key != "batch key 0004 with spaces & symbols" || k.Hash != "" {
		t.Errorf("plain: %+v", k)
	}
}

func TestKongDBLess(t *testing.T) {
	r, err := Kong(read(t, "kong-dbless.json"), Options{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	dave := withID(h("dave-dbless-key-02"), "5c0a3e4e-2b8f-4d5e-b2a1-9e7c6d5b4a02")
	dave.ExpiresAt = "2026-03-01T13:00:00Z"
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "carol", ID: "7d1e0c55-0c4b-4f0e-8c8f-3f5f8f1a0b01", Tags: []string{"internal"}, Groups: []string{"billing-admins"},
			Keys: []consumers.CredentialEntry{withID(h("carol-dbless-key-01"), "5c0a3e4e-2b8f-4d5e-b2a1-9e7c6d5b4a01"), h("carol-dbless-key-03")}},
		{Username: "dave", ID: "7d1e0c55-0c4b-4f0e-8c8f-3f5f8f1a0b02", CustomID: "emp-42", Groups: []string{"billing-readers"},
			Keys: []consumers.CredentialEntry{dave}},
		{Username: "anonymous-billing", ID: "7d1e0c55-0c4b-4f0e-8c8f-3f5f8f1a0b03"},
	})
	wantLines(t, r.Notes, `plugin rate-limiting scoped to consumer "carol" not migrated`, `consumer "dave": jwt secret #1 not migrated`)
	// The anonymous consumer's id becomes its username.
	want := "# key-auth on service \"billing\", as key_auth:\nkey_auth {\n\tanonymous anonymous-billing\n\trealm billing\n\trun_on_preflight false\n"
	if len(r.Blocks) != 1 || !strings.HasPrefix(r.Blocks[0], want) {
		t.Errorf("blocks: %q", r.Blocks)
	}
	noKeys(t, r.Notes, "dbless-key", "not-migrated")
}

func TestKongRefuses(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"_transform": true, "consumers": []}`, "no _format_version"},
		{`{"consumers": [{"username": "a"}], "acls": [{"consumer": "a", "group": "g"}]}`, "no _format_version, and has top-level acls"},
		{`{"_format_version": "4.0", "consumers": []}`, `"4.0"`},
		{`_format_version: "3.0"
consumers:
- id: x
`, "neither username nor custom_id"},
		{`{"_format_version": "3.0", "consumers": [{"username": "a"}], "keyauth_credentials": [{"consumer": "b", "key": "k-secret"}]}`, `consumer "b", which the file does not hold`},
		{`{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"key": 12345}]}]}`, "not a string"},
		{`{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"key": "k-secret", "ttl": -5}]}]}`, "ttl"},
		{`{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"key": "k-secret", "ttl": 60}]}]}`, "no time it counts from"},
		{"_format_version: '3.0'\nconsumers: [\n", "YAML"},
		{`{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"key": "k-secret "}]}]}`, "ends with whitespace"},
	} {
		opt := Options{AsOf: asOf}
		if strings.Contains(tc.want, "counts from") {
			opt.AsOf = time.Time{}
		}
		_, err := Kong([]byte(tc.doc), opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "k-secret") {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
	// A credential without a key (Kong made one up) is listed, not fatal.
	r, err := Kong([]byte(`{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"id": "c1"}]}]}`), Options{})
	if err != nil || len(r.Notes) != 1 || len(r.Doc.Consumers[0].Keys) != 0 {
		t.Errorf("%v %v", r, err)
	}
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestAPISIXStandalone(t *testing.T) {
	r, err := APISIX(read(t, "apisix.yaml"), Options{LookupEnv: env(map[string]string{"ROSE_API_KEY": "rose-from-env-key"})})
	if err != nil {
		t.Fatal(err)
	}
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "jack", CustomID: "cust-7", Labels: map[string]string{"plan": "gold"}, Groups: []string{"gold"},
			Keys: []consumers.CredentialEntry{h("jack-apisix-key-01")}},
		{Username: "rose", Keys: []consumers.CredentialEntry{h("rose-from-env-key")}},
		{Username: "tom", Labels: map[string]string{"team": "mobile"},
			Keys: []consumers.CredentialEntry{withID(h("tom-apisix-laptop-key"), "tom-laptop"), withID(h("tom-apisix-ci-key"), "tom-ci")}},
	})
	wantLines(t, r.Notes,
		`consumer "jack": plugin limit-count not migrated`,
		`consumer "tom", credential "tom-ci": labels not migrated`,
		`consumer "tom", credential "tom-basic": plugin basic-auth not migrated`,
		`consumer group "gold": plugin limit-count not migrated`,
		`APISIX takes header X-API-Key and query parameter api_key`)
	if len(r.Notes) != 5 {
		t.Errorf("notes:\n%s", strings.Join(r.Notes, "\n"))
	}
	want := "# key-auth on route \"1\" (uri /orders/*), as key_auth:\nkey_auth {\n\tkey_names X-API-Key api_key\n\thide_credentials\n"
	if len(r.Blocks) != 1 || !strings.HasPrefix(r.Blocks[0], want) {
		t.Errorf("blocks: %q", r.Blocks)
	}
	noKeys(t, append(r.Notes, r.Blocks...), "apisix-key", "rose-from-env", "apisix-laptop", "apisix-ci", "tom-basic-password")
}

func TestAPISIXAdminList(t *testing.T) {
	r, err := APISIX(read(t, "apisix-admin.json"), Options{Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "jack", CustomID: "cust-7", Keys: []consumers.CredentialEntry{{Key: "jack-admin-key-01"}}},
		{Username: "ann", Keys: []consumers.CredentialEntry{{ID: "ann-web", Key: "ann-admin-web-key"}}},
	})
	wantLines(t, r.Notes, `consumer "ann", credential "ann-jwt": plugin jwt-auth not migrated`)
	if len(r.Notes) != 1 || len(r.Blocks) != 0 {
		t.Errorf("notes %q, blocks %q", r.Notes, r.Blocks)
	}
}

func TestAPISIXRefuses(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"routes: []\n", "neither consumers"},
		{"consumers:\n  - plugins: {}\n", "no username"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: $secret://vault/1/a/key\n", "$secret://"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: $ENV://UNSET_VAR\n", "UNSET_VAR is not set"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: $env://EMPTY\n", "EMPTY is not set"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: $env://JSON/field\n", "not a plain variable name"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: 0123\n", "not a string"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth: {}\n", "has no key"},
		{"consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: $env://TAB_KEY\n", "control character"},
		{"consumers:\n  - id: b/credentials/c\n    plugins:\n      key-auth:\n        key: k-secret\n", `no consumer "b"`},
	} {
		_, err := APISIX([]byte(tc.doc), Options{LookupEnv: env(map[string]string{"EMPTY": "", "TAB_KEY": "k-secret\tx"})})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "k-secret") {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
}
