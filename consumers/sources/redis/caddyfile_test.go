package redis

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseSource(t *testing.T) {
	var src Source
	err := src.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`redis 10.0.0.1:7000 10.0.0.2:7000 {
			username  caddy                 # ACL user
			password  {env.REDIS_PASSWORD}
			prefix    ka:
			cache     64MB
			timeout   250ms
			partition_timeout 2s
			tls {
				root_ca /etc/ca.pem
			}
		}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(caddyconfig.JSONModuleObject(src, "source", "redis", nil), &got); err != nil {
		t.Fatal(err)
	}
	want := `{"addresses":["10.0.0.1:7000","10.0.0.2:7000"],"cache":64000000,"partition_timeout":2000000000,"password":"{env.REDIS_PASSWORD}","prefix":"ka:","source":"redis","timeout":250000000,"tls":{"root_ca_pem_files":["/etc/ca.pem"]},"username":"caddy"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if err := src.Validate(); err != nil {
		t.Error(err)
	}
}

func TestParseSourceErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"no address":     {"redis", "wrong argument count"},
		"unknown option": {"redis a:1 {\n  retries 3\n }", "unrecognized consumers redis option 'retries'"},
		"bad db":         {"redis a:1 {\n  db two\n }", "db: want a database number, got 'two'"},
		"negative db":    {"redis a:1 {\n  db -1\n }", "db: want a database number"},
		"bad size":       {"redis a:1 {\n  cache lots\n }", "invalid size"},
		"bad duration":   {"redis a:1 {\n  timeout soon\n }", "timeout: invalid duration"},
		"twice":          {"redis a:1 {\n  prefix a\n  prefix b\n }", "prefix given twice"},
		"password args":  {"redis a:1 {\n  password\n }", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			var src Source
			err := src.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %v, want %q with file:line", err, tc.want)
			}
		})
	}
}
