package integration

// Rolling a key (README: Managing keys, caddy key-auth roll): the built
// binary gives a credential a new key in the file a running Caddy serves,
// or that push writes to Redis; the old and the new key both reach the
// upstream as the same credential until the grace period ends, then the old
// one gets 401.

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

// rollBob rolls bob's credential bob-hashed (key keyBob) in the env's file
// with the binary and returns the new key.
func rollBob(t *testing.T, e *env, grace string) string {
	t.Helper()
	out, errOut := mustCLI(t, e.dir, "", nil, "roll", "--file", e.consumers, "--credential", "bob-hashed", "--grace", grace)
	key := strings.TrimSuffix(out, "\n")
	if key == "" || strings.Contains(key, "\n") || !strings.Contains(errOut, `Rolled credential "bob-hashed" of consumer "bob"`) {
		t.Fatalf("roll: stdout %q, stderr %q", out, errOut)
	}
	if strings.Contains(errOut, key) || strings.Contains(errOut, keyBob) {
		t.Errorf("roll printed a key on standard error: %q", errOut)
	}
	t.Cleanup(func() {
		for _, l := range e.moduleLogLines("caddy.log") {
			if strings.Contains(l, key) {
				t.Errorf("a log line of the module holds a rolled key: %s", l)
			}
		}
	})
	return key
}

// endGrace makes every previous secret of bob-hashed in the env's file end
// in the past, as the grace period would: no waiting for the clock.
func endGrace(t *testing.T, e *env) {
	t.Helper()
	b, err := os.ReadFile(e.consumers)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := consumers.DecodeDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	c, i, ok := doc.Credential("bob-hashed")
	if !ok || len(c.Keys[i].Previous) == 0 {
		t.Fatal("bob-hashed has no previous secret")
	}
	for p := range c.Keys[i].Previous {
		c.Keys[i].Previous[p].ExpiresAt = "2020-01-01T00:00:00Z"
	}
	out, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e.writeConsumers(string(out))
}

// TestRollFile: during the grace both keys reach the upstream as
// bob-hashed, the previous one stops when its grace ends (checked per
// request, without a reload), and whois says which is which.
func TestRollFile(t *testing.T) {
	e := newEnv(t)
	e.load(cliSite, "caddyfile")
	wantIdentity(t, get(t, site+"/", "apikey", keyBob), idBob)

	key := rollBob(t, e, "1h")
	refreshSources(t)
	wantIdentity(t, get(t, site+"/", "apikey", key), idBob)
	wantIdentity(t, get(t, site+"/", "apikey", keyBob), idBob)
	out, _ := mustCLI(t, e.dir, keyBob+"\n", nil, "whois", "--file", e.consumers)
	if !strings.Contains(out, `credential "bob-hashed"`) || !strings.Contains(out, "previous secret of the credential, replaced by a roll: it works until") {
		t.Errorf("whois of the old key: %q", out)
	}

	// Rolled again with a grace of seconds: the second key stops by the
	// clock alone, the first one still has its hour, the third works.
	key3 := rollBob(t, e, "2s")
	refreshSources(t)
	wantIdentity(t, get(t, site+"/", "apikey", key3), idBob)
	eventually(t, "the second key's grace to end", func() bool {
		return get(t, site+"/", "apikey", key).status == http.StatusUnauthorized
	})
	want401(t, get(t, site+"/", "apikey", key), msgInvalid)
	wantIdentity(t, get(t, site+"/", "apikey", keyBob), idBob)

	// The first key's grace ends: 401, and the current key goes on.
	endGrace(t, e)
	refreshSources(t)
	want401(t, get(t, site+"/", "apikey", keyBob), msgInvalid)
	wantIdentity(t, get(t, site+"/", "apikey", key3), idBob)
}

const rollRedisSite = `{{.Global}}
{{.Site}} {
	key_auth {
		consumers redis {{.Redis}} {
			prefix roll:
		}
	}
	reverse_proxy {{.Up}}
}
`

// TestRollRedis: push writes a rolled credential's previous secret into
// Redis, and the Redis source lets it in as the same credential until its
// expiry; pushed again once the grace has ended, it gets 401.
func TestRollRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t)
	e.vars["Redis"] = srv.Addr()
	push := func() {
		t.Helper()
		mustCLI(t, e.dir, "", nil, "push", "--redis", srv.Addr(), "--file", e.consumers, "--prefix", "roll:")
	}
	key := rollBob(t, e, "1h")
	push()
	e.load(rollRedisSite, "caddyfile")
	waitRedisConnected(t)
	wantIdentity(t, get(t, site+"/", "apikey", key), idBob)
	wantIdentity(t, get(t, site+"/", "apikey", keyBob), idBob)

	endGrace(t, e)
	push()
	eventually(t, "the old key to be refused", func() bool {
		return get(t, site+"/", "apikey", keyBob).status == http.StatusUnauthorized
	})
	wantIdentity(t, get(t, site+"/", "apikey", key), idBob)
}

// TestReadmeRoll runs the README's roll example (Managing keys) as written,
// in an empty directory, with the built binary as caddy: each command's
// output is what the README shows, its times aside.
func TestReadmeRoll(t *testing.T) {
	bin := caddyBinary(t)
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, m := range regexp.MustCompile("(?s)```console\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "key-auth roll") {
			block = m[1]
		}
	}
	if block == "" {
		t.Fatal("README.md has no console example of key-auth roll")
	}
	times := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	dir := t.TempDir()
	steps := strings.Split(strings.TrimPrefix(block, "$ "), "\n$ ")
	for _, step := range steps {
		cmdLine, want, _ := strings.Cut(step, "\n")
		cmd := exec.Command("sh", "-c", cmdLine)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "HOME="+dir, "XDG_DATA_HOME="+dir)
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmdLine, err, got)
		}
		norm := func(s string) string { return times.ReplaceAllString(strings.TrimRight(s, "\n"), "<time>") }
		if norm(string(got)) != norm(want) {
			t.Errorf("%s printed\n%s\nthe README shows\n%s", cmdLine, got, want)
		}
	}
	if len(steps) < 4 {
		t.Errorf("the example has %d commands", len(steps))
	}
	for _, f := range []string{"key.txt", "new-key.txt"} {
		key, _ := os.ReadFile(filepath.Join(dir, f))
		if doc, _ := os.ReadFile(filepath.Join(dir, "consumers.json")); len(key) < 10 || strings.Contains(string(doc), strings.TrimSpace(string(key))) {
			t.Errorf("%s holds no key, or consumers.json holds it", f)
		}
	}
}
