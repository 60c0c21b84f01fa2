package sources

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
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

// FileConfig builds a TLS configuration outside a running Caddy: it refuses
// the server identity, and a CA file without a certificate names its option.
func TestHTTPSourceTLSFileConfig(t *testing.T) {
	if _, err := (&HTTPSourceTLS{UseServerIdentity: true}).FileConfig(); err == nil || !strings.Contains(err.Error(), "use_server_identity needs a running Caddy") {
		t.Errorf("server identity: %v", err)
	}
	cfg, err := (&HTTPSourceTLS{}).FileConfig()
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.RootCAs != nil || len(cfg.Certificates) != 0 {
		t.Errorf("no files: %+v, %v", cfg, err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = (&HTTPSourceTLS{RootCAPEMFiles: []string{notPEM}}).FileConfig()
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "root_ca_pem_files" || err.Error() != "root_ca_pem_files: no certificate found in "+notPEM {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}
