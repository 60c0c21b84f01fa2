package consumers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseHTTPSource(t *testing.T) {
	h, err := Parse(caddyfile.NewTestDispenser(`key_auth {
		consumers http https://users.internal/c.json {
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
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(h.ConsumersRaw, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"cache":"/var/lib/caddy/c.json","headers":{"Authorization":["Bearer {env.TOKEN}"],"X-Team":["a","b"]},"max_size":2000000,"refresh":15000000000,"source":"http","timeout":3000000000,"tls":{"client_certificate_file":"/etc/c.pem","client_certificate_key_file":"/etc/c-key.pem","root_ca_pem_files":["/etc/ca1.pem","/etc/ca2.pem"]},"url":"https://users.internal/c.json"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestParseHTTPSourceErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"no url":           {"key_auth {\n consumers http\n}", "wrong argument count"},
		"unknown option":   {"key_auth {\n consumers http http://x {\n  retries 3\n }\n}", "unrecognized consumers http option 'retries'"},
		"bad duration":     {"key_auth {\n consumers http http://x {\n  timeout soon\n }\n}", "timeout: invalid duration"},
		"bad size":         {"key_auth {\n consumers http http://x {\n  max_size lots\n }\n}", "invalid size"},
		"header one arg":   {"key_auth {\n consumers http http://x {\n  header X-A\n }\n}", "wrong argument count"},
		"header block":     {"key_auth {\n consumers http http://x {\n  header X-A b {\n   c\n  }\n }\n}", "header takes no block"},
		"refresh twice":    {"key_auth {\n consumers http http://x {\n  refresh 1s\n  refresh 2s\n }\n}", "refresh given twice"},
		"tls unknown":      {"key_auth {\n consumers http http://x {\n  tls {\n   insecure\n  }\n }\n}", "unrecognized consumers http tls option 'insecure'"},
		"tls twice":        {"key_auth {\n consumers http http://x {\n  tls {\n   root_ca a\n   root_ca b\n  }\n }\n}", "root_ca given twice"},
		"tls cert one arg": {"key_auth {\n consumers http http://x {\n  tls {\n   client_certificate a\n  }\n }\n}", "wrong argument count"},
		"tls root none":    {"key_auth {\n consumers http http://x {\n  tls {\n   root_ca\n  }\n }\n}", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %v, want %q with file:line", err, tc.want)
			}
		})
	}
}
