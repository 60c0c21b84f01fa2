package sources

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseFileSource(t *testing.T) {
	for input, want := range map[string]string{
		"file /etc/caddy/consumers.json":     `{"path":"/etc/caddy/consumers.json","source":"file"}`,
		"file {env.DIR}/c.json":              `{"path":"{env.DIR}/c.json","source":"file"}`,
		`file "/my dir/c.json"`:              `{"path":"/my dir/c.json","source":"file"}`,
		"file c.json {\n}":                   `{"path":"c.json","source":"file"}`,
		"file c.json {\n\trefresh 1m30s\n}":  `{"path":"c.json","refresh":90000000000,"source":"file"}`,
		"file c.json {\n\trefresh 0\n}":      `{"path":"c.json","refresh":0,"source":"file"}`,
		"file c.json {\n\trefresh 1d\n}":     `{"path":"c.json","refresh":86400000000000,"source":"file"}`,
		"file c.json {\n\trefresh 10s\n}\nx": `{"path":"c.json","refresh":10000000000,"source":"file"}`,
	} {
		var src FileSource
		if err := src.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		var v any
		if err := json.Unmarshal(caddyconfig.JSONModuleObject(src, "source", "file", nil), &v); err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(v); string(got) != want {
			t.Errorf("%q:\n got  %s\n want %s", input, got, want)
		}
	}
}

func TestParseFileSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		input, want string
		line        int
	}{
		{"file", "wrong argument count or unexpected line ending after 'file'", 1},
		{"file {\n\trefresh 1s\n}", "wrong argument count or unexpected line ending after 'file'", 1},
		{"file a.json b.json", "wrong argument count", 1},
		{"file c.json {\n\ttimeout 5s\n}", "unrecognized consumers file option 'timeout'", 2},
		{"file c.json {\n\trefresh 1s\n\trefresh 2s\n}", "refresh given twice", 3},
		{"file c.json {\n\trefresh\n}", "wrong argument count or unexpected line ending after 'refresh'", 2},
		{"file c.json {\n\trefresh soon\n}", "refresh: invalid duration 'soon'", 2},
		{"file c.json {\n\trefresh -5s\n}", "refresh must not be negative", 2},
		{"file c.json {\n\trefresh 5s {\n\t\tx\n\t}\n}", "refresh takes no block", 3},
	} {
		var src FileSource
		err := src.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.input, tc.want)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.HasSuffix(msg, ", at Testfile:"+strconv.Itoa(tc.line)) {
			t.Errorf("%q: error %q, want %q at Testfile:%d", tc.input, msg, tc.want, tc.line)
		}
	}
}
