package keyauth

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	// Registers key_auth.sources.redis, which the unknown-source error lists.
	_ "github.com/keyauth/caddy-keyauth/consumers/sources/redis"
)

// parseJSON parses a key_auth segment and returns the handler as JSON, the
// way it goes into the config.
func parseJSON(t *testing.T, input string) (any, error) {
	t.Helper()
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		return nil, err
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return v, nil
}

func TestUnmarshalCaddyfile(t *testing.T) {
	const file = "\n\tconsumers file /etc/caddy/consumers.json\n"
	const fileJSON = `"consumers": {"source": "file", "path": "/etc/caddy/consumers.json"}`
	tests := []struct {
		name  string
		input string
		want  string // the handler's JSON
	}{
		{"consumers only", "key_auth {" + file + "}", `{` + fileJSON + `}`},
		{"consumers placeholder path", "key_auth {\n\tconsumers file {env.CONSUMERS}/c.json\n}",
			`{"consumers": {"source": "file", "path": "{env.CONSUMERS}/c.json"}}`},
		{"consumers quoted path", "key_auth {\n\tconsumers file \"/my dir/c.json\"\n}",
			`{"consumers": {"source": "file", "path": "/my dir/c.json"}}`},
		{"consumers empty block", "key_auth {\n\tconsumers file c.json {\n\t}\n}",
			`{"consumers": {"source": "file", "path": "c.json"}}`},
		{"refresh", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 10s\n\t}\n}",
			`{"consumers": {"source": "file", "path": "c.json", "refresh": 10000000000}}`},
		{"refresh 0 turns checking off", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 0\n\t}\n}",
			`{"consumers": {"source": "file", "path": "c.json", "refresh": 0}}`},
		{"refresh in days", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 1d\n\t}\n}",
			`{"consumers": {"source": "file", "path": "c.json", "refresh": 86400000000000}}`},
		{"refresh compound", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 1m30s\n\t}\n}",
			`{"consumers": {"source": "file", "path": "c.json", "refresh": 90000000000}}`},
		{"consumers first", "key_auth {\n\tconsumers file /etc/caddy/consumers.json\n\trealm r\n}", `{"realm": "r", ` + fileJSON + `}`},

		{"key_names one", "key_auth {\n\tkey_names x-api-key" + file + "}", `{"key_names": ["x-api-key"], ` + fileJSON + `}`},
		{"key_names several", "key_auth {\n\tkey_names apikey api_key Authorization" + file + "}", `{"key_names": ["apikey", "api_key", "Authorization"], ` + fileJSON + `}`},

		{"key_in_header false", "key_auth {\n\tkey_in_header false" + file + "}", `{"key_in_header": false, ` + fileJSON + `}`},

		{"allow one", "key_auth {\n\tallow gold" + file + "}", `{"allow": ["gold"], ` + fileJSON + `}`},
		{"allow several", "key_auth {\n\tallow gold partner staff.eu" + file + "}", `{"allow": ["gold", "partner", "staff.eu"], ` + fileJSON + `}`},
		{"deny", "key_auth {\n\tdeny blocked" + file + "}", `{"deny": ["blocked"], ` + fileJSON + `}`},
		{"deny unicode", "key_auth {\n\tdeny équipe" + file + "}", `{"deny": ["équipe"], ` + fileJSON + `}`},
		{"hide_groups_header bare", "key_auth {\n\thide_groups_header" + file + "}", `{"hide_groups_header": true, ` + fileJSON + `}`},
		{"hide_groups_header true", "key_auth {\n\thide_groups_header true" + file + "}", `{"hide_groups_header": true, ` + fileJSON + `}`},
		{"hide_groups_header false", "key_auth {\n\thide_groups_header false" + file + "}", `{` + fileJSON + `}`},
		{"max_idle", "key_auth {\n\tmax_idle 90d" + file + "}", `{"max_idle": 7776000000000000, ` + fileJSON + `}`},
		{"allow with hide_groups_header", "key_auth {\n\tallow gold\n\thide_groups_header" + file + "}", `{"allow": ["gold"], "hide_groups_header": true, ` + fileJSON + `}`},
		{"key_in_header true", "key_auth {\n\tkey_in_header true" + file + "}", `{"key_in_header": true, ` + fileJSON + `}`},
		{"key_in_query false", "key_auth {\n\tkey_in_query false" + file + "}", `{"key_in_query": false, ` + fileJSON + `}`},
		{"key_in_query true", "key_auth {\n\tkey_in_query true" + file + "}", `{"key_in_query": true, ` + fileJSON + `}`},
		{"key_in_body true", "key_auth {\n\tkey_in_body true" + file + "}", `{"key_in_body": true, ` + fileJSON + `}`},
		{"key_in_cookie bare", "key_auth {\n\tkey_in_cookie" + file + "}", `{"key_in_cookie": true, ` + fileJSON + `}`},
		{"key_in_cookie true", "key_auth {\n\tkey_in_cookie true" + file + "}", `{"key_in_cookie": true, ` + fileJSON + `}`},
		{"cookie_cross_site bare", "key_auth {\n\tkey_in_cookie\n\tcookie_cross_site" + file + "}", `{"key_in_cookie": true, "cookie_cross_site": true, ` + fileJSON + `}`},
		{"cookie_cross_site false", "key_auth {\n\tkey_in_cookie\n\tcookie_cross_site false" + file + "}", `{"key_in_cookie": true, ` + fileJSON + `}`},
		{"key_in_cookie false", "key_auth {\n\tkey_in_cookie false" + file + "}", `{` + fileJSON + `}`},
		{"key_in_body false", "key_auth {\n\tkey_in_body false" + file + "}", `{` + fileJSON + `}`},
		{"run_on_preflight false", "key_auth {\n\trun_on_preflight false" + file + "}", `{"run_on_preflight": false, ` + fileJSON + `}`},
		{"run_on_preflight true", "key_auth {\n\trun_on_preflight true" + file + "}", `{"run_on_preflight": true, ` + fileJSON + `}`},

		{"hide_credentials bare", "key_auth {\n\thide_credentials" + file + "}", `{"hide_credentials": true, ` + fileJSON + `}`},
		{"hide_credentials true", "key_auth {\n\thide_credentials true" + file + "}", `{"hide_credentials": true, ` + fileJSON + `}`},
		{"hide_credentials false", "key_auth {\n\thide_credentials false" + file + "}", `{` + fileJSON + `}`},
		{"handle_errors bare", "key_auth {\n\thandle_errors" + file + "}", `{"handle_errors": true, ` + fileJSON + `}`},
		{"handle_errors true", "key_auth {\n\thandle_errors true" + file + "}", `{"handle_errors": true, ` + fileJSON + `}`},
		{"handle_errors false", "key_auth {\n\thandle_errors false" + file + "}", `{` + fileJSON + `}`},

		{"max_body_size humanized", "key_auth {\n\tmax_body_size 2MB" + file + "}", `{"max_body_size": 2000000, ` + fileJSON + `}`},
		{"max_body_size binary", "key_auth {\n\tmax_body_size 64KiB" + file + "}", `{"max_body_size": 65536, ` + fileJSON + `}`},
		{"max_body_size bytes", "key_auth {\n\tmax_body_size 4096" + file + "}", `{"max_body_size": 4096, ` + fileJSON + `}`},
		{"max_body_size 0 is the default", "key_auth {\n\tmax_body_size 0" + file + "}", `{` + fileJSON + `}`},

		{"anonymous", "key_auth {\n\tanonymous guest" + file + "}", `{"anonymous": "guest", ` + fileJSON + `}`},
		{"anonymous quoted", "key_auth {\n\tanonymous \"guest user\"" + file + "}", `{"anonymous": "guest user", ` + fileJSON + `}`},
		{"realm", "key_auth {\n\trealm api" + file + "}", `{"realm": "api", ` + fileJSON + `}`},
		{"realm quoted", "key_auth {\n\trealm \"My \\\"API\\\"\"" + file + "}", `{"realm": "My \"API\"", ` + fileJSON + `}`},

		{"all options", `key_auth {
	key_names apikey api_key
	key_in_header false
	key_in_query true
	key_in_body true
	max_body_size 512KB
	hide_credentials
	anonymous guest
	realm "example api"
	run_on_preflight false
	handle_errors
	consumers file /etc/caddy/consumers.json {
		refresh 30s
	}
}`, `{
	"key_names": ["apikey", "api_key"],
	"key_in_header": false,
	"key_in_query": true,
	"key_in_body": true,
	"max_body_size": 512000,
	"hide_credentials": true,
	"anonymous": "guest",
	"realm": "example api",
	"run_on_preflight": false,
	"handle_errors": true,
	"consumers": {"source": "file", "path": "/etc/caddy/consumers.json", "refresh": 30000000000}
}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseJSON(t, tt.input)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.input, err)
			}
			var want any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Errorf("Parse(%q)\n got  %s\n want %s", tt.input, gb, wb)
			}
		})
	}
}

// The helper hands UnmarshalCaddyfile the directive's segment; the tokens after it are
// not its business.
func TestUnmarshalCaddyfileStopsAtSegmentEnd(t *testing.T) {
	d := caddyfile.NewTestDispenser("key_auth {\n\tconsumers file c.json\n}\nrealm other\n")
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Realm != "" {
		t.Errorf("realm %q read from beyond the block", h.Realm)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	const file = "\tconsumers file c.json\n"
	tests := []struct {
		name  string
		input string
		want  string // in the error message
		line  int
	}{
		// The directive itself.
		{"argument", "key_auth extra {\n" + file + "}", "wrong argument count", 1},
		{"missing consumers", "key_auth {\n\trealm r\n}", "key_auth needs a consumers source", 3},
		{"missing consumers, no block", "key_auth", "key_auth needs a consumers source", 1},
		{"empty block on one line", "key_auth {}", "wrong argument count", 1},
		{"unknown option", "key_auth {\n" + file + "\tkey_location header\n}", "unrecognized key_auth option 'key_location'", 3},
		{"unknown option without args", "key_auth {\n\thide\n" + file + "}", "unrecognized key_auth option 'hide'", 2},
		{"kong spelling", "key_auth {\n\tkey_names apikey\n\tkey_in_headers true\n" + file + "}", "unrecognized key_auth option 'key_in_headers'", 3},

		// Options given twice.
		{"key_names twice", "key_auth {\n\tkey_names a\n\tkey_names b\n" + file + "}", "key_names given twice", 3},
		{"realm twice", "key_auth {\n" + file + "\trealm a\n\trealm a\n}", "realm given twice", 4},
		{"hide_credentials twice", "key_auth {\n\thide_credentials\n\thide_credentials false\n" + file + "}", "hide_credentials given twice", 3},
		{"consumers twice", "key_auth {\n" + file + file + "}", "consumers given twice", 3},
		{"refresh twice", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 1s\n\t\trefresh 2s\n\t}\n}", "refresh given twice", 4},

		// key_names.
		{"key_names without names", "key_auth {\n\tkey_names\n" + file + "}", "wrong argument count or unexpected line ending after 'key_names'", 2},
		{"key_names empty name", "key_auth {\n\tkey_names a \"\"\n" + file + "}", "key_names: a key name must not be empty", 2},
		{"key_names repeated", "key_auth {\n\tkey_names apikey token apikey\n" + file + "}", `key_names: "apikey" is listed twice`, 2},
		{"key_names with a block", "key_auth {\n\tkey_names a {\n\t\tb\n\t}\n" + file + "}", "key_names takes no block", 3},

		// Booleans.
		{"key_in_header missing", "key_auth {\n\tkey_in_header\n" + file + "}", "key_in_header needs true or false", 2},
		{"key_in_header bad", "key_auth {\n\tkey_in_header yes\n" + file + "}", "key_in_header: want true or false, got 'yes'", 2},
		{"key_in_header TRUE", "key_auth {\n\tkey_in_header TRUE\n" + file + "}", "want true or false, got 'TRUE'", 2},
		{"key_in_header 1", "key_auth {\n\tkey_in_header 1\n" + file + "}", "want true or false, got '1'", 2},
		{"key_in_header extra", "key_auth {\n\tkey_in_header true false\n" + file + "}", "wrong argument count", 2},
		{"key_in_header block", "key_auth {\n\tkey_in_header true {\n\t\tx\n\t}\n" + file + "}", "key_in_header takes no block", 3},
		{"key_in_query missing", "key_auth {\n\tkey_in_query\n" + file + "}", "key_in_query needs true or false", 2},
		{"key_in_query bad", "key_auth {\n\tkey_in_query off\n" + file + "}", "key_in_query: want true or false, got 'off'", 2},
		{"key_in_body missing", "key_auth {\n\tkey_in_body\n" + file + "}", "key_in_body needs true or false", 2},
		{"key_in_body bad", "key_auth {\n\tkey_in_body on\n" + file + "}", "key_in_body: want true or false, got 'on'", 2},
		{"key_in_cookie bad", "key_auth {\n\tkey_in_cookie yes\n" + file + "}", "key_in_cookie: want true or false, got 'yes'", 2},
		{"key_in_cookie extra", "key_auth {\n\tkey_in_cookie true false\n" + file + "}", "wrong argument count", 2},
		{"key_in_cookie block", "key_auth {\n\tkey_in_cookie {\n\t\tx\n\t}\n" + file + "}", "key_in_cookie takes no block", 3},
		{"key_in_cookie twice", "key_auth {\n\tkey_in_cookie\n\tkey_in_cookie false\n" + file + "}", "key_in_cookie given twice", 3},
		{"run_on_preflight missing", "key_auth {\n\trun_on_preflight\n" + file + "}", "run_on_preflight needs true or false", 2},
		{"run_on_preflight bad", "key_auth {\n\trun_on_preflight no\n" + file + "}", "run_on_preflight: want true or false, got 'no'", 2},
		{"hide_credentials bad", "key_auth {\n\thide_credentials maybe\n" + file + "}", "hide_credentials: want true or false, got 'maybe'", 2},
		{"hide_credentials extra", "key_auth {\n\thide_credentials true true\n" + file + "}", "wrong argument count", 2},
		{"hide_credentials block", "key_auth {\n\thide_credentials {\n\t\tx\n\t}\n" + file + "}", "hide_credentials takes no block", 3},
		{"handle_errors bad", "key_auth {\n\thandle_errors 0\n" + file + "}", "handle_errors: want true or false, got '0'", 2},
		{"handle_errors extra", "key_auth {\n\thandle_errors false x\n" + file + "}", "wrong argument count", 2},

		// Sizes.
		{"max_body_size missing", "key_auth {\n\tmax_body_size\n" + file + "}", "wrong argument count or unexpected line ending after 'max_body_size'", 2},
		{"max_body_size bad", "key_auth {\n\tmax_body_size lots\n" + file + "}", `invalid size "lots"`, 2},
		{"max_body_size negative", "key_auth {\n\tmax_body_size -1MB\n" + file + "}", `invalid size "-1MB"`, 2},
		{"max_body_size bad unit", "key_auth {\n\tmax_body_size 1XB\n" + file + "}", `invalid size "1XB"`, 2},
		{"max_body_size huge", "key_auth {\n\tmax_body_size 100EB\n" + file + "}", `invalid size "100EB"`, 2},
		{"max_body_size extra", "key_auth {\n\tmax_body_size 1MB 2MB\n" + file + "}", "wrong argument count", 2},

		// Strings.
		{"anonymous missing", "key_auth {\n\tanonymous\n" + file + "}", "wrong argument count or unexpected line ending after 'anonymous'", 2},
		{"anonymous extra", "key_auth {\n\tanonymous a b\n" + file + "}", "wrong argument count", 2},
		{"anonymous block", "key_auth {\n\tanonymous a {\n\t\tb\n\t}\n" + file + "}", "anonymous takes no block", 3},
		{"realm missing", "key_auth {\n\trealm\n" + file + "}", "wrong argument count or unexpected line ending after 'realm'", 2},
		{"realm extra", "key_auth {\n\trealm a b\n" + file + "}", "wrong argument count", 2},

		// allow, deny, hide_groups_header.
		{"allow without groups", "key_auth {\n\tallow\n" + file + "}", "wrong argument count or unexpected line ending after 'allow'", 2},
		{"deny without groups", "key_auth {\n" + file + "\tdeny\n}", "wrong argument count or unexpected line ending after 'deny'", 3},
		{"allow twice", "key_auth {\n\tallow a\n\tallow b\n" + file + "}", "allow given twice", 3},
		{"deny twice", "key_auth {\n\tdeny a\n\tdeny b\n" + file + "}", "deny given twice", 3},
		{"allow then deny", "key_auth {\n\tallow gold\n" + file + "\tdeny blocked\n}", "allow and deny cannot be used together", 4},
		{"deny then allow", "key_auth {\n\tdeny blocked\n\tallow gold\n" + file + "}", "allow and deny cannot be used together", 3},
		{"allow repeated group", "key_auth {\n\tallow gold partner gold\n" + file + "}", `allow: group "gold" is listed twice`, 2},
		{"allow empty group", "key_auth {\n\tallow gold \"\"\n" + file + "}", "allow: group name is empty", 2},
		{"allow group with comma", "key_auth {\n\tallow gold,partner\n" + file + "}", `allow: group name "gold,partner" holds white space, a comma or a control character`, 2},
		{"deny group with space", "key_auth {\n\tdeny \"no one\"\n" + file + "}", `deny: group name "no one" holds white space`, 2},
		{"deny group too long", "key_auth {\n\tdeny " + strings.Repeat("g", 129) + "\n" + file + "}", "deny: group name is longer than 128 characters", 2},
		{"allow with a block", "key_auth {\n\tallow gold {\n\t\tx\n\t}\n" + file + "}", "allow takes no block", 3},
		{"hide_groups_header bad", "key_auth {\n\thide_groups_header yes\n" + file + "}", "hide_groups_header: want true or false, got 'yes'", 2},
		{"hide_groups_header extra", "key_auth {\n\thide_groups_header true false\n" + file + "}", "wrong argument count", 2},
		{"hide_groups_header twice", "key_auth {\n\thide_groups_header\n\thide_groups_header\n" + file + "}", "hide_groups_header given twice", 3},
		{"max_idle bad", "key_auth {\n\tmax_idle soon\n" + file + "}", "max_idle: invalid duration 'soon'", 2},
		{"max_idle negative", "key_auth {\n\tmax_idle -1h\n" + file + "}", "max_idle must not be negative", 2},
		{"max_idle missing", "key_auth {\n\tmax_idle\n" + file + "}", "wrong argument count", 2},
		{"cookie_cross_site bad", "key_auth {\n\tcookie_cross_site on\n" + file + "}", "cookie_cross_site: want true or false, got 'on'", 2},
		{"cookie_cross_site twice", "key_auth {\n\tcookie_cross_site\n\tcookie_cross_site false\n" + file + "}", "cookie_cross_site given twice", 3},

		// consumers.
		{"consumers missing", "key_auth {\n\tconsumers\n}", "wrong argument count or unexpected line ending after 'consumers'", 2},
		{"consumers missing path", "key_auth {\n\tconsumers file\n}", "wrong argument count or unexpected line ending after 'file'", 2},
		{"consumers missing path before block", "key_auth {\n\tconsumers file {\n\t\trefresh 1s\n\t}\n}", "wrong argument count or unexpected line ending after 'file'", 2},
		{"consumers extra", "key_auth {\n\tconsumers file a.json b.json\n}", "wrong argument count", 2},
		{"consumers unknown kind", "key_auth {\n\tconsumers ldap ldap://x\n}", "unknown consumers source 'ldap' (want file, http or redis)", 2},
		{"consumers kind case", "key_auth {\n\tconsumers File c.json\n}", "unknown consumers source 'File'", 2},
		{"consumers file unknown option", "key_auth {\n\tconsumers file c.json {\n\t\ttimeout 5s\n\t}\n}", "unrecognized consumers file option 'timeout'", 3},
		{"refresh missing", "key_auth {\n\tconsumers file c.json {\n\t\trefresh\n\t}\n}", "wrong argument count or unexpected line ending after 'refresh'", 3},
		{"refresh extra", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 1s 2s\n\t}\n}", "wrong argument count", 3},
		{"refresh bad", "key_auth {\n\tconsumers file c.json {\n\t\trefresh soon\n\t}\n}", "refresh: invalid duration 'soon'", 3},
		{"refresh without unit", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 10\n\t}\n}", "refresh: invalid duration '10'", 3},
		{"refresh negative", "key_auth {\n\tconsumers file c.json {\n\t\trefresh -5s\n\t}\n}", "refresh must not be negative", 3},
		{"refresh block", "key_auth {\n\tconsumers file c.json {\n\t\trefresh 5s {\n\t\t\tx\n\t\t}\n\t}\n}", "refresh takes no block", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseJSON(t, tt.input)
			if err == nil {
				t.Fatalf("Parse(%q): no error, want %q", tt.input, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Parse(%q) = %q, want it to contain %q", tt.input, msg, tt.want)
			}
			if at := ", at Testfile:" + strconv.Itoa(tt.line); !strings.HasSuffix(msg, at) {
				t.Errorf("Parse(%q) = %q, want it to end in %q", tt.input, msg, at)
			}
		})
	}
}
