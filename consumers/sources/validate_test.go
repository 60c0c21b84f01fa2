package sources

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestHTTPSourceValidate(t *testing.T) {
	t.Setenv("KEYAUTH_TEST_HOST", "users.internal")
	neg := caddy.Duration(-time.Second)
	for _, tc := range []struct {
		src  HTTPSource
		want string // "" for valid
	}{
		{HTTPSource{URL: "https://users.internal/c.json"}, ""},
		{HTTPSource{URL: "http://{env.KEYAUTH_TEST_HOST}/c.json"}, ""},
		{HTTPSource{URL: "{env.KEYAUTH_TEST_UNSET}/c.json"}, `url must be an absolute http or https URL, got "%7Benv.KEYAUTH_TEST_UNSET%7D/c.json"`},
		{HTTPSource{URL: "ftp://users.internal/c.json"}, "url must be an absolute http or https URL"},
		{HTTPSource{URL: "https://user:" + keyMark + "@users.internal/c.json?t=" + keyMark}, ""},
		{HTTPSource{URL: "ftp://user:" + keyMark + "@x/?t=" + keyMark}, `got "ftp://x/?REDACTED"`},
		{HTTPSource{URL: "https://x/", Refresh: &neg}, "must not be negative"},
		{HTTPSource{URL: "https://x/", Timeout: neg}, "must not be negative"},
		{HTTPSource{URL: "https://x/", MaxSize: -1}, "must not be negative"},
	} {
		err := tc.src.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.src, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.src, err, tc.want)
		case err != nil && strings.Contains(err.Error(), keyMark):
			t.Errorf("error holds key material: %v", err)
		}
	}
}

func TestFileSourceValidate(t *testing.T) {
	neg := caddy.Duration(-time.Second)
	zero := caddy.Duration(0)
	for _, tc := range []struct {
		src  FileSource
		want string
	}{
		{FileSource{Path: "c.json"}, ""},
		{FileSource{Path: "c.json", Refresh: &zero}, ""},
		{FileSource{}, "path is required"},
		{FileSource{Path: "c.json", Refresh: &neg}, "refresh must not be negative, got -1s"},
	} {
		err := tc.src.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
