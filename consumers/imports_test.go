package consumers

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCaddy keeps the model free of Caddy, so that tools can use it
// without building a web server in: no import of it, direct or indirect.
func TestNoCaddy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 2 {
		t.Fatalf("go list listed %d packages, want the model's dependencies: %q", len(deps), out)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "github.com/caddyserver/") || strings.HasPrefix(p, "go.uber.org/") || strings.HasPrefix(p, "github.com/prometheus/") {
			t.Errorf("the model depends on %s", p)
		}
	}
}
