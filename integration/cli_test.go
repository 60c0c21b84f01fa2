package integration

// The caddy key-auth command (README: Managing keys), run from the built
// binary: importing from Kong and APISIX, and minting, checking and revoking
// keys in a file a running Caddy serves.

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/apikey"
)

// cli runs `caddy key-auth args...` of the built binary in dir, with stdin
// and extra environment, and returns its standard output and error apart.
func cli(t *testing.T, dir, stdin string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(caddyBinary(t), append([]string{"key-auth"}, args...)...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// mustCLI is cli that fails the test on a non-zero exit.
func mustCLI(t *testing.T, dir, stdin string, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errOut, err := cli(t, dir, stdin, env, args...)
	if err != nil {
		t.Fatalf("caddy key-auth %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out, errOut
}

// cliSite serves the consumers file of the env through key_auth, with the
// key names of every fixture.
const cliSite = `{{.Global}}
{{.Site}} {
	key_auth {
		key_names apikey x-api-key
		consumers file {{.Consumers}} {
			refresh 0
		}
	}
	reverse_proxy {{.Up}}
}
`

// refreshSources has Caddy reload its consumers files now.
func refreshSources(t *testing.T) {
	t.Helper()
	res, err := adminClient.Post(adminURL+"/key_auth/sources/refresh", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d", res.StatusCode)
	}
}

// wantAs checks that key authenticates as the consumer and credential.
func wantAs(t *testing.T, key, username, credential string) {
	t.Helper()
	e := get(t, site, "apikey", key).echo(t)
	if got := identityOf(e); got.username != username || got.credential != credential {
		t.Errorf("a key of %s/%s authenticated as %s/%s", username, credential, got.username, got.credential)
	}
}

type importedKey struct{ key, username, credential string }

// Every key of every fixture, imported by the built binary, authenticates
// in a real Caddy as the consumer and credential it had in Kong or APISIX.
func TestCLIImportServes(t *testing.T) {
	fixtures := filepath.Join(repoRoot(t), "consumers", "importer", "testdata")
	asOf := time.Now().UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, from, file string
		env              []string
		keys             []importedKey
	}{
		{"kong decK", "kong", "kong-deck.yaml", nil, []importedKey{
			{"alice-kong-key-0001", "alice", "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a001"},
			{"alice-kong-key-0002", "alice", "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a002"},
			{"bob-kong-key-0003", "bob", "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a003"},
			{"batch key 0004 with spaces & symbols", "batch-job", "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a004"},
		}},
		{"kong DB-less", "kong", "kong-dbless.json", nil, []importedKey{
			{"carol-dbless-key-01", "carol", "5c0a3e4e-2b8f-4d5e-b2a1-9e7c6d5b4a01"},
			{"dave-dbless-key-02", "dave", "5c0a3e4e-2b8f-4d5e-b2a1-9e7c6d5b4a02"},
			{"carol-dbless-key-03", "carol", "7d1e0c55-0c4b-4f0e-8c8f-3f5f8f1a0b01#2"},
		}},
		{"apisix standalone", "apisix", "apisix.yaml", []string{"ROSE_API_KEY=rose-from-env-key"}, []importedKey{
			{"jack-apisix-key-01", "jack", "jack#1"},
			{"rose-from-env-key", "rose", "rose#1"},
			{"tom-apisix-laptop-key", "tom", "tom-laptop"},
			{"tom-apisix-ci-key", "tom", "tom-ci"},
		}},
		{"kong decK without _format_version", "kong", "kong-deck-noversion.yaml", nil, []importedKey{
			{"erin-noversion-key-01", "erin", "erin#1"},
			{"frank-noversion-key-02", "frank", "frank#1"},
		}},
		{"kong db_export", "kong", "kong-db-export.yaml", nil, []importedKey{
			{"grace-export-key-01", "grace", "2b3c4d5e-6f70-4a81-92a3-b4c5d6e7f801"},
			{"heidi-export-key-02", "heidi", "2b3c4d5e-6f70-4a81-92a3-b4c5d6e7f802"},
		}},
		{"kong admin api", "kong", "kong-admin.json", nil, []importedKey{
			{"ivan-admin-api-key-01", "ivan", "e5c1f2b3-4d5e-4f60-9b7c-8d9e0f1a2b01"},
			{"judy-admin-api-key-02", "judy", "e5c1f2b3-4d5e-4f60-9b7c-8d9e0f1a2b02"},
		}},
		{"apisix json", "apisix", "apisix.json", []string{"KATE_API_KEY=kate-json-env-key"}, []importedKey{
			{"kate-json-env-key", "kate", "kate#1"},
			{"leo-json-default-key", "leo", "leo#1"},
		}},
		{"apisix admin list", "apisix", "apisix-admin.json", nil, []importedKey{
			{"jack-admin-key-01", "jack", "jack#1"},
			{"ann-admin-web-key", "ann", "ann-web"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			out, errOut := mustCLI(t, e.dir, "", tc.env, "import", "--from", tc.from, "--as-of", asOf, filepath.Join(fixtures, tc.file))
			for _, k := range tc.keys {
				if strings.Contains(out, k.key) || strings.Contains(errOut, k.key) {
					t.Errorf("the import printed a key")
				}
			}
			if !strings.Contains(errOut, "Imported ") {
				t.Errorf("stderr:\n%s", errOut)
			}
			e.writeConsumers(out)
			e.load(cliSite, "caddyfile")
			for _, k := range tc.keys {
				wantAs(t, k.key, k.username, k.credential)
			}
			want401(t, get(t, site, "apikey", "not-an-imported-key"), msgInvalid)
		})
	}
}

// The lifecycle on a served file: a minted key works once Caddy reloads the
// file, whois names it, check passes, and a revoked key stops working.
func TestCLILifecycle(t *testing.T) {
	e := newEnv(t)
	e.load(cliSite, "caddyfile")

	out, errOut := mustCLI(t, e.dir, "", nil, "new", "--consumer", "carol", "--create", "--file", e.consumers,
		"--id", "carol-cli", "--prefix", "acme_live", "--expires", "90d")
	key := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(key, "acme_live_") || !apikey.ChecksumOK(key) || strings.Contains(errOut, key) {
		t.Fatalf("new printed %q, %q", out, errOut)
	}
	if b, _ := os.ReadFile(e.consumers); bytes.Contains(b, []byte(key)) {
		t.Fatal("the consumers file holds the key")
	}
	refreshSources(t)
	wantAs(t, key, "carol", "carol-cli")
	wantAs(t, keyAlice, "alice", "alice-key") // the rest of the file as it was
	wantAs(t, keyNoID, "bob", "bob#3")

	out, _ = mustCLI(t, e.dir, key+"\n", nil, "whois", "--file", e.consumers)
	if !strings.HasPrefix(out, `consumer "carol" (id "carol"), credential "carol-cli"`) || strings.Contains(out, key) {
		t.Errorf("whois: %q", out)
	}
	if _, _, err := cli(t, e.dir, "", nil, "whois", "--file", e.consumers, key); err == nil {
		t.Error("whois took the key from an argument")
	}

	// The standard file holds plain keys: a warning, an error only with
	// --strict. hash makes it clean, and every key still works.
	cfg := filepath.Join(e.dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(e.render(cliSite)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = mustCLI(t, e.dir, "", nil, "check", "--config", cfg)
	if !strings.Contains(out, "consumers file "+e.consumers+": ") || !strings.Contains(out, "plain key at rest") {
		t.Errorf("check:\n%s", out)
	}
	if _, _, err := cli(t, e.dir, "", nil, "check", "--strict", "--config", cfg); err == nil {
		t.Error("check --strict passed plain keys")
	}
	mustCLI(t, e.dir, "", nil, "hash", "--file", e.consumers)
	// Its other warnings (an expired key, consumers without keys) stay.
	out, _ = mustCLI(t, e.dir, "", nil, "check", e.consumers)
	if strings.Contains(out, "plain key") || !strings.Contains(out, `"bob-expired": expired`) {
		t.Errorf("check after hash:\n%s", out)
	}
	for _, s := range append(secrets, key) {
		if strings.Contains(out, s) {
			t.Error("check printed a key")
		}
	}
	refreshSources(t)
	wantAs(t, keyAlice, "alice", "alice-key")
	wantAs(t, keySpecial, "alice", "alice-special")
	wantAs(t, keyNoID, "bob", "bob#3")
	wantAs(t, key, "carol", "carol-cli")

	// Revoking bob's second key leaves his third with its derived id.
	mustCLI(t, e.dir, "", nil, "revoke", "--file", e.consumers, "--credential", "bob-expired")
	mustCLI(t, e.dir, "", nil, "revoke", "--file", e.consumers, "--credential", "carol-cli")
	refreshSources(t)
	want401(t, get(t, site, "apikey", key), msgInvalid)
	wantAs(t, keyNoID, "bob", "bob#3")
	wantAs(t, keyBob, "bob", "bob-hashed")

	// A refused document is refused by the command as by a load.
	if err := os.WriteFile(e.consumers, []byte(`{"consumers": [{"username": "x"}, {"username": "x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := cli(t, e.dir, "", nil, "new", "--consumer", "x", "--file", e.consumers)
	if err == nil || !strings.Contains(errOut, `consumer "x" is listed twice`) {
		t.Errorf("new on a refused file: %v %s", err, errOut)
	}
}
