package consumers

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCaddy keeps the consumers document and the libraries of the tools
// free of Caddy, so that programs can use them without building a web
// server in: no import of it, direct or indirect.
func TestNoCaddy(t *testing.T) {
	for _, pkg := range []string{".", "./apikey", "./docfile", "./importer"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 2 {
			t.Fatalf("go list listed %d packages, want the dependencies of %s: %q", len(deps), pkg, out)
		}
		for _, p := range deps {
			if strings.HasPrefix(p, "github.com/caddyserver/") || strings.HasPrefix(p, "go.uber.org/") || strings.HasPrefix(p, "github.com/prometheus/") {
				t.Errorf("%s depends on %s", pkg, p)
			}
		}
	}
}
