package sources

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseHTTPSource(t *testing.T) {
	var src HTTPSource
	err := src.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`http https://users.internal/c.json {
			refresh 15s
			timeout 3s
			header Authorization "Bearer {env.TOKEN}"
			header X-Team a
			header X-Team b
			max_size 2MB
			cache /var/lib/caddy/c.json
			tls {
				client_certificate /etc/c.pem /etc/c-key.pem
				root_ca /etc/ca1.pem /etc/ca2.pem
			}
		}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(caddyconfig.JSONModuleObject(src, "source", "http", nil), &got); err != nil {
		t.Fatal(err)
	}
	want := `{"cache":"/var/lib/caddy/c.json","header":{"Authorization":["Bearer {env.TOKEN}"],"X-Team":["a","b"]},"max_size":2000000,"refresh":15000000000,"source":"http","timeout":3000000000,"tls":{"client_certificate_file":"/etc/c.pem","client_certificate_key_file":"/etc/c-key.pem","root_ca_pem_files":["/etc/ca1.pem","/etc/ca2.pem"]},"url":"https://users.internal/c.json"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestParseHTTPSourceErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"no url":           {"http", "wrong argument count"},
		"two urls":         {"http http://x http://y", "wrong argument count"},
		"unknown option":   {"http http://x {\n  retries 3\n }", "unrecognized consumers http option 'retries'"},
		"bad duration":     {"http http://x {\n  timeout soon\n }", "timeout: invalid duration"},
		"negative":         {"http http://x {\n  refresh -1s\n }", "refresh must not be negative"},
		"bad size":         {"http http://x {\n  max_size lots\n }", "invalid size"},
		"header one arg":   {"http http://x {\n  header X-A\n }", "wrong argument count"},
		"header block":     {"http http://x {\n  header X-A b {\n   c\n  }\n }", "header takes no block"},
		"refresh twice":    {"http http://x {\n  refresh 1s\n  refresh 2s\n }", "refresh given twice"},
		"tls unknown":      {"http http://x {\n  tls {\n   insecure\n  }\n }", "unrecognized consumers http tls option 'insecure'"},
		"tls twice":        {"http http://x {\n  tls {\n   root_ca a\n   root_ca b\n  }\n }", "consumers http tls: root_ca given twice"},
		"tls cert one arg": {"http http://x {\n  tls {\n   client_certificate a\n  }\n }", "consumers http tls: wrong argument count"},
		"tls root none":    {"http http://x {\n  tls {\n   root_ca\n  }\n }", "consumers http tls: wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			var src HTTPSource
			err := src.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") ||
				strings.Count(err.Error(), "tls") > 1 {
				t.Errorf("error %v, want %q with file:line, the block named once", err, tc.want)
			}
		})
	}
}
