package manage

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	// key_auth.sources.file, which the consumers line names.
	_ "github.com/keyauth/caddy-keyauth/consumers/sources"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	const src = "\n\tconsumers file /etc/caddy/consumers.json\n"
	const srcJSON = `"consumers": {"source": "file", "path": "/etc/caddy/consumers.json"}`
	for _, tc := range []struct {
		name, input, want string
	}{
		{"required only", "key_auth_api {\n\tmanage_group key-admins" + src + "}",
			`{"manage_group": "key-admins", ` + srcJSON + `}`},
		{"every option", "key_auth_api {\n\tconsumers file c.json {\n\t\trefresh 10s\n\t}\n\tmanage_group admins\n\tscope label tenant\n\tkey_prefix sk\n}",
			`{"consumers": {"source": "file", "path": "c.json", "refresh": 10000000000}, "manage_group": "admins", "scope": {"label": "tenant"}, "key_prefix": "sk"}`},
		{"limits_store local", "key_auth_api {\n\tmanage_group a\n\tlimits_store local t1" + src + "}",
			`{"manage_group": "a", "limits_store": {"store": "local", "table": "t1"}, ` + srcJSON + `}`},
		{"unicode group", "key_auth_api {\n\tmanage_group équipe" + src + "}",
			`{"manage_group": "équipe", ` + srcJSON + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := new(Handler)
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatal(err)
			}
			if err := h.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			b, _ := json.Marshal(h)
			var got, want any
			_ = json.Unmarshal(b, &got)
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %s\nwant %s", b, tc.want)
			}
		})
	}
}

// Every refusal carries the file and line of what is refused.
func TestUnmarshalCaddyfileErrors(t *testing.T) {
	const src = "\n\tconsumers file c.json\n"
	for _, tc := range []struct {
		name, input, want string
	}{
		{"no manage_group", "key_auth_api {" + src + "}", "key_auth_api needs manage_group <group>"},
		{"no source", "key_auth_api {\n\tmanage_group a\n}", "key_auth_api needs the consumers source it manages"},
		{"argument", "key_auth_api foo {\n\tmanage_group a" + src + "}", "wrong argument count"},
		{"unknown option", "key_auth_api {\n\tmanage_group a\n\tmanage_groups b" + src + "}", "unrecognized key_auth_api option 'manage_groups', at Testfile:3"},
		{"manage_group twice", "key_auth_api {\n\tmanage_group a\n\tmanage_group b" + src + "}", "manage_group given twice, at Testfile:3"},
		{"manage_group two groups", "key_auth_api {\n\tmanage_group a b" + src + "}", "wrong argument count"},
		{"manage_group bare", "key_auth_api {\n\tmanage_group" + src + "}", "wrong argument count"},
		{"manage_group comma", "key_auth_api {\n\tmanage_group a,b" + src + "}", `manage_group: group name "a,b" holds white space, a comma or a control character, at Testfile:2`},
		{"scope no name", "key_auth_api {\n\tmanage_group a\n\tscope label" + src + "}", "wrong argument count"},
		{"scope extra", "key_auth_api {\n\tmanage_group a\n\tscope label t u" + src + "}", "wrong argument count"},
		{"scope kind", "key_auth_api {\n\tmanage_group a\n\tscope group t" + src + "}", "unrecognized scope 'group'"},
		{"scope bad label", "key_auth_api {\n\tmanage_group a\n\tscope label t/u" + src + "}", `scope: label name "t/u" is not`},
		{"scope block", "key_auth_api {\n\tmanage_group a\n\tscope label t {\n\t\tx\n\t}" + src + "}", "scope takes no block"},
		{"key_prefix bad", "key_auth_api {\n\tmanage_group a\n\tkey_prefix 9x" + src + "}", `key_prefix: the key prefix "9x" must start with a letter`},
		{"key_prefix bare", "key_auth_api {\n\tmanage_group a\n\tkey_prefix" + src + "}", "wrong argument count"},
		{"unknown source", "key_auth_api {\n\tmanage_group a\n\tconsumers nowhere x\n}", "unknown consumers source 'nowhere'"},
		{"limits_store unknown", "key_auth_api {\n\tmanage_group a\n\tlimits_store memcached" + src + "}", "unknown limits store 'memcached'"},
		{"limits_store bare", "key_auth_api {\n\tmanage_group a\n\tlimits_store" + src + "}", "wrong argument count"},
		{"consumers twice", "key_auth_api {\n\tmanage_group a" + src + "\tconsumers file d.json\n}", "consumers given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %v has no file:line", err)
			}
		})
	}
}

// The JSON config is refused by the same rules, at load.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
		want string // "" for none
	}{
		{"minimal", Handler{ManageGroup: "admins"}, ""},
		{"no manage_group", Handler{}, "manage_group is required"},
		{"bad manage_group", Handler{ManageGroup: " admins"}, "manage_group: group name"},
		{"empty scope", Handler{ManageGroup: "a", Scope: &Scope{}}, "scope: a label name is required"},
		{"bad scope", Handler{ManageGroup: "a", Scope: &Scope{Label: "a b"}}, "scope: label name"},
		{"bad prefix", Handler{ManageGroup: "a", KeyPrefix: "a-b"}, "key_prefix: the key prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}
