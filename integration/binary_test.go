package integration

// A Caddy binary built with the module: list-modules, the example config,
// and the mistakes it refuses.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real binary, built once per test run by the pinned xcaddy with the
// module from this checkout, as the README says.
var (
	buildOnce sync.Once
	binDir    string // removed by TestMain
	binPath   string
	buildErr  error
	buildOut  []byte
)

// repoRoot is the checkout this package is in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func caddyBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds Caddy: skipped with -short")
	}
	root := repoRoot(t)
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "keyauth-caddy-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "caddy")
		start := time.Now()
		cmd := exec.Command("go", "tool", "xcaddy", "build", "v2.11.9",
			"--with", "github.com/keyauth/caddy-keyauth@v0.0.0="+root,
			"--output", binPath)
		cmd.Dir = root
		buildOut, buildErr = cmd.CombinedOutput()
		t.Logf("built %s in %s", binPath, time.Since(start).Round(time.Second))
	})
	if buildErr != nil {
		t.Fatalf("building Caddy: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// caddyCmd runs the built binary in dir, with a home of its own.
func caddyCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(caddyBinary(t), args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestBinaryListModules(t *testing.T) {
	out, err := caddyCmd(t, t.TempDir(), "list-modules")
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	mods := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		mods[strings.TrimSpace(l)] = true
	}
	for _, m := range []string{"http.handlers.key_auth", "http.handlers.key_auth_api", "http.matchers.consumer", "key_auth", "key_auth.sources.file",
		"key_auth.sources.http", "key_auth.sources.redis", "admin.api.key_auth",
		"key_auth.limits.stores.local", "key_auth.limits.stores.redis"} {
		if !mods[m] {
			t.Errorf("list-modules does not list %s:\n%s", m, out)
		}
	}
}

func TestBinaryExample(t *testing.T) {
	root := repoRoot(t)
	for _, args := range [][]string{
		{"validate", "--config", "Caddyfile.example"},
		{"adapt", "--validate", "--config", "Caddyfile.example"},
	} {
		out, err := caddyCmd(t, root, args...)
		if err != nil {
			t.Errorf("caddy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := caddyCmd(t, root, "adapt", "--config", "Caddyfile.example")
	if err != nil || !strings.Contains(out, `"handler":"key_auth"`) {
		t.Errorf("caddy adapt: %v\n%s", err, out)
	}
}

// Caddyfile mistakes are refused naming file:line; a refused consumers
// file fails caddy validate.
func TestBinaryRefusesMistakes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "consumers.json")
	if err := os.WriteFile(good, []byte(doc("carol", "carol-key-1")), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "refused.json")
	if err := os.WriteFile(bad, []byte(doc("carol", "leaky-key", "leaky-key")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body, want string
		line             int
		validateOnly     bool
	}{
		{"unknown option", "\tkey_auth {\n\t\tkey_name apikey\n\t\tconsumers file " + good + "\n\t}", "key_name", 4, false},
		{"bad boolean", "\tkey_auth {\n\t\tconsumers file " + good + "\n\t\tkey_in_header maybe\n\t}", "maybe", 5, false},
		{"no consumers", "\tkey_auth {\n\t\trealm x\n\t}", "consumers", 0, false},
		{"bad refresh", "\tkey_auth {\n\t\tconsumers file " + good + " {\n\t\t\trefresh soon\n\t\t}\n\t}", "soon", 5, false},
		{"refused consumers file", "\tkey_auth {\n\t\tconsumers file " + bad + "\n\t}", bad, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Caddyfile")
			cfg := "http://localhost:9099 {\n\t# a comment\n" + tc.body + "\n\trespond ok\n}\n"
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			cmds := [][]string{{"validate", "--config", path}}
			if !tc.validateOnly {
				cmds = append(cmds, []string{"adapt", "--config", path})
			}
			for _, args := range cmds {
				out, err := caddyCmd(t, dir, args...)
				if err == nil {
					t.Errorf("caddy %s succeeded:\n%s", args[0], out)
					continue
				}
				if !strings.Contains(out, tc.want) {
					t.Errorf("caddy %s does not say %q:\n%s", args[0], tc.want, out)
				}
				if tc.line == 0 && !tc.validateOnly && !strings.Contains(out, path+":") {
					t.Errorf("caddy %s does not name %s:\n%s", args[0], path, out)
				}
				if tc.line > 0 {
					if loc := path + ":" + strconv.Itoa(tc.line); !strings.Contains(out, loc) {
						t.Errorf("caddy %s does not name %s:\n%s", args[0], loc, out)
					}
				}
				if strings.Contains(out, "leaky-key") {
					t.Errorf("caddy %s prints the key:\n%s", args[0], out)
				}
			}
		})
	}
}
