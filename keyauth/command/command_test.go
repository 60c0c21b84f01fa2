package command

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

// The keys of sample.
const (
	keyAlice = "alice-secret-0001"
	keyBob   = "bob-secret-0002"
)

const sample = `{"consumers": [
  {"username": "alice", "id": "a11ce",
   "keys": [{"id": "alice-key", "key": "alice-secret-0001"}]},
  {"username": "bob",
   "keys": [
     {"key": "bob-noid-0003"},
     {"id": "bob-hashed", "hash": "sha256:64708caec1a9013e7e2ea53b462e4cbca55c79f7e8cdcf61da944f2a05effebb"},
     {"key": "bob-noid-0005"}
   ]},
  {"username": "guest"}
]}`

var sampleKeys = []string{keyAlice, keyBob, "bob-noid-0003", "bob-noid-0005"}

// run runs `caddy key-auth args...` in process.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "key-auth"}
	Setup(root)
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lookup finds the credential of a key as the handler would.
func lookup(t *testing.T, path, key string) (username, credential string, ok bool) {
	t.Helper()
	set, err := consumers.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte(key))
	c, ok := set.Lookup(&d)
	if !ok {
		return "", "", false
	}
	return c.Consumer().Username(), c.ID(), true
}

// noSecret fails if any key is in any of texts.
func noSecret(t *testing.T, keys []string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, k := range keys {
			if k != "" && strings.Contains(s, k) {
				t.Errorf("a key is printed: %q", s)
			}
		}
	}
}

func setNow(t *testing.T, at time.Time) {
	now = func() time.Time { return at }
	t.Cleanup(func() { now = time.Now })
}

func TestNewWithFile(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	setNow(t, at)
	path := writeFile(t, sample)
	out, errOut, err := run(t, "", "new", "--consumer", "bob", "--file", path, "--id", "bob-new", "--expires", "90d", "--prefix", "acme_live")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	key := strings.TrimSuffix(out, "\n")
	if strings.Contains(key, "\n") || !strings.HasPrefix(key, "acme_live_") || !apikey.ChecksumOK(key) {
		t.Fatalf("stdout is not one generated key: %q", out)
	}
	if u, id, ok := lookup(t, path, key); !ok || u != "bob" || id != "bob-new" {
		t.Fatalf("the key is %q %q %v in the file", u, id, ok)
	}
	content := readFile(t, path)
	noSecret(t, []string{key}, content, errOut)
	if !strings.Contains(content, consumers.HashKey(key)) || !strings.Contains(content, `"expires_at": "2026-07-30T10:00:00Z"`) ||
		!strings.Contains(content, `"created_at": "2026-05-01T10:00:00Z"`) {
		t.Errorf("file:\n%s", content)
	}
	// The other keys work as before, derived ids and all.
	for _, k := range []string{keyAlice, keyBob, "bob-noid-0003", "bob-noid-0005"} {
		if _, _, ok := lookup(t, path, k); !ok {
			t.Error("a key was lost")
		}
	}
	if _, id, _ := lookup(t, path, "bob-noid-0005"); id != "bob#3" {
		t.Errorf("bob's third key is %q now", id)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}

	// Without --id, the id is the username and a random part, not the key.
	out, _, err = run(t, "", "new", "--consumer", "alice", "--file", path)
	if err != nil {
		t.Fatal(err)
	}
	key2 := strings.TrimSpace(out)
	_, id, ok := lookup(t, path, key2)
	if !ok || !strings.HasPrefix(id, "alice-") || len(id) != len("alice-")+8 || strings.Contains(key2, id[6:]) {
		t.Errorf("id %q", id)
	}
	if !strings.HasPrefix(key2, "ka_") {
		t.Errorf("default prefix: %q", key2[:3])
	}
}

func TestNewCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.json")
	out, _, err := run(t, "", "new", "--consumer", "carol", "--file", path, "--create")
	if err != nil {
		t.Fatal(err)
	}
	if u, _, ok := lookup(t, path, strings.TrimSpace(out)); !ok || u != "carol" {
		t.Fatal("the new consumer does not hold the key")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("a new file has mode %v", fi.Mode())
	}
	out, _, err = run(t, "", "new", "--consumer", "dan", "--file", path, "--create")
	if err != nil {
		t.Fatal(err)
	}
	if u, _, ok := lookup(t, path, strings.TrimSpace(out)); !ok || u != "dan" {
		t.Fatal("the second consumer does not hold the key")
	}
}

func TestNewWithoutFile(t *testing.T) {
	setNow(t, time.Date(2026, 5, 1, 10, 0, 0, 0, time.FixedZone("x", 3600)))
	out, errOut, err := run(t, "", "new", "--consumer", "erin", "--id", "erin-1", "--expires", "2099-01-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSuffix(out, "\n")
	if !apikey.ChecksumOK(key) {
		t.Fatalf("stdout %q", out)
	}
	noSecret(t, []string{key}, errOut)
	for _, want := range []string{`"id": "erin-1"`, `"hash": "` + consumers.HashKey(key) + `"`, `"expires_at": "2099-01-01T00:00:00Z"`, `"created_at": "2026-05-01T09:00:00Z"`, `consumer "erin"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %s:\n%s", want, errOut)
		}
	}
}

// Every refusal leaves the file as it was and prints no key.
func TestNewRefusals(t *testing.T) {
	refused := `{"consumers": [{"username": "a", "keys": [{"key": "dup-key-1"}, {"key": "dup-key-1"}]}]}`
	_, loadErr := consumers.Parse([]byte(refused))
	for _, tc := range []struct {
		name, doc string
		args      []string
		want      string
	}{
		{"no consumer flag", sample, []string{"new"}, "--consumer is required"},
		{"bad prefix", sample, []string{"new", "--consumer", "bob", "--prefix", "no-dash"}, "--prefix"},
		{"prefix ending in _", sample, []string{"new", "--consumer", "bob", "--prefix", "ka_"}, "must not end with '_'"},
		{"bad expiry", sample, []string{"new", "--consumer", "bob", "--expires", "soon"}, `--expires "soon"`},
		{"past expiry", sample, []string{"new", "--consumer", "bob", "--expires", "2001-01-01T00:00:00Z"}, "not in the future"},
		{"negative expiry", sample, []string{"new", "--consumer", "bob", "--expires", "-5m"}, "--expires"},
		{"create without file", sample, []string{"new", "--consumer", "bob", "--create"}, "--create needs --file"},
		{"unknown consumer", sample, []string{"new", "--consumer", "zed"}, `no consumer "zed" (--create adds it)`},
		{"taken id", sample, []string{"new", "--consumer", "bob", "--id", "alice-key"}, `credential id "alice-key" is already used`},
		{"empty id", sample, []string{"new", "--consumer", "bob", "--id", ""}, "--id must not be empty"},
		{"unknown flag", sample, []string{"new", "--consumer", "bob", "--key", "x"}, "unknown flag: --key"},
		{"argument", sample, []string{"new", "--consumer", "bob", "stray"}, "new takes no arguments: name the consumers file with --file"},
		{"refused document", refused, []string{"new", "--consumer", "a"}, loadErr.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.doc)
			args := tc.args
			if tc.name != "create without file" && tc.name != "no consumer flag" {
				args = append(args, "--file", path)
			}
			out, errOut, err := run(t, "", args...)
			if err == nil {
				t.Fatalf("succeeded: %s", out)
			}
			if !strings.Contains(err.Error()+errOut, tc.want) {
				t.Errorf("error %q, want %q", err.Error()+errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			if readFile(t, path) != tc.doc {
				t.Error("the file changed")
			}
			noSecret(t, []string{"dup-key-1", keyAlice}, err.Error(), errOut)
		})
	}
}

// A file changed by someone else between the read and the write stays as
// they left it, and no key is printed.
func TestConcurrentChange(t *testing.T) {
	for _, args := range [][]string{
		{"new", "--consumer", "bob"},
		{"roll", "--credential", "alice-key"},
		{"revoke", "--credential", "alice-key"},
		{"revoke", "--consumer", "bob"},
		{"hash"},
	} {
		path := writeFile(t, sample)
		other := `{"consumers": [{"username": "written-meanwhile"}]}`
		testHookBeforeSave = func(string) {
			if err := os.WriteFile(path, []byte(other), 0o640); err != nil {
				t.Error(err)
			}
		}
		out, errOut, err := run(t, "", append(args, "--file", path)...)
		testHookBeforeSave = func(string) {}
		if err == nil || !strings.Contains(err.Error(), "changed while it was being edited") {
			t.Errorf("%v: error %v %s", args, err, errOut)
		}
		if out != "" {
			t.Errorf("%v: stdout %q", args, out)
		}
		if readFile(t, path) != other {
			t.Errorf("%v: the other writer's file was replaced", args)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		var left []string
		for _, e := range entries {
			if e.Name() != "consumers.json" && e.Name() != "consumers.json"+docfile.LockSuffix {
				left = append(left, e.Name())
			}
		}
		if len(left) != 0 {
			t.Errorf("%v: files left: %v", args, left)
		}
	}
}

func TestRevokeCredential(t *testing.T) {
	path := writeFile(t, sample)
	_, errOut, err := run(t, "", "revoke", "--file", path, "--credential", "bob#1")
	if err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	if _, _, ok := lookup(t, path, "bob-noid-0003"); ok {
		t.Error("the revoked key still works")
	}
	// The keys after it keep their ids.
	if _, id, ok := lookup(t, path, "bob-noid-0005"); !ok || id != "bob#3" {
		t.Errorf("bob's last key is %q %v", id, ok)
	}
	if _, id, ok := lookup(t, path, keyBob); !ok || id != "bob-hashed" {
		t.Errorf("bob's hashed key is %q %v", id, ok)
	}
	if !strings.Contains(errOut, `credential "bob#1" of consumer "bob"`) {
		t.Errorf("stderr %q", errOut)
	}
	noSecret(t, sampleKeys, errOut)
}

func TestRevokeRefusals(t *testing.T) {
	path := writeFile(t, sample)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"revoke", "--credential", "x"}, "--file is required"},
		{[]string{"revoke", "--file", path}, "one of --credential and --consumer"},
		{[]string{"revoke", "--file", path, "--credential", "alice-key", "--consumer", "bob"}, "one of --credential and --consumer"},
		{[]string{"revoke", "--file", path, "--credential", "nope"}, `no credential "nope"`},
		{[]string{"revoke", "--file", path, "--consumer", "nope"}, `no consumer "nope"`},
		{[]string{"revoke", "--file", path + ".missing", "--consumer", "bob"}, "no such file"},
		// new on a file that is not there says how to make it.
		{[]string{"new", "--file", path + ".missing", "--consumer", "bob"}, "no such file or directory (--create makes it)"},
	} {
		_, _, err := run(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	if readFile(t, path) != sample {
		t.Error("the file changed")
	}
}

func TestHash(t *testing.T) {
	path := writeFile(t, sample)
	_, errOut, err := run(t, "", "hash", "--file", path)
	if err != nil {
		t.Fatal(err)
	}
	content := readFile(t, path)
	noSecret(t, sampleKeys, content, errOut)
	if strings.Contains(content, `"key"`) {
		t.Errorf("a plain key is left:\n%s", content)
	}
	for _, tc := range []struct{ key, user, id string }{
		{keyAlice, "alice", "alice-key"}, {keyBob, "bob", "bob-hashed"},
		{"bob-noid-0003", "bob", "bob#1"}, {"bob-noid-0005", "bob", "bob#3"},
	} {
		if u, id, ok := lookup(t, path, tc.key); !ok || u != tc.user || id != tc.id {
			t.Errorf("after hash: %q %q %v, want %s %s", u, id, ok, tc.user, tc.id)
		}
	}
	if !strings.Contains(errOut, "Hashed 3 keys") {
		t.Errorf("stderr %q", errOut)
	}
	fi1, _ := os.Stat(path)
	_, errOut, err = run(t, "", "hash", "--file", path)
	fi2, _ := os.Stat(path)
	if err != nil || !strings.Contains(errOut, "no plain key") || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("a second hash: %v %q", err, errOut)
	}
	if _, _, err := run(t, "", "hash"); err == nil {
		t.Error("hash without --file succeeded")
	}
}

func TestWhois(t *testing.T) {
	setNow(t, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	path := writeFile(t, `{"consumers": [
  {"username": "alice", "id": "a11ce", "custom_id": "c-1",
   "keys": [{"id": "alice-key", "key": "alice-secret-0001", "expires_at": "2026-01-01T00:00:00Z"}]},
  {"username": "bob", "keys": [{"id": "bob-hashed", "hash": "sha256:64708caec1a9013e7e2ea53b462e4cbca55c79f7e8cdcf61da944f2a05effebb"}]}
]}`)
	out, errOut, err := run(t, keyBob+"\n", "whois", "--file", path)
	if err != nil || out != "consumer \"bob\" (id \"bob\"), credential \"bob-hashed\"\n" {
		t.Errorf("whois: %v %q %q", err, out, errOut)
	}
	out, _, err = run(t, keyAlice+"\r\n", "whois", "--file", path)
	if err != nil || !strings.Contains(out, `consumer "alice" (id "a11ce", custom id "c-1"), credential "alice-key"`) ||
		!strings.Contains(out, "expired at 2026-01-01T00:00:00Z") {
		t.Errorf("whois: %v %q", err, out)
	}
	noSecret(t, []string{keyAlice, keyBob}, out, errOut)

	out, _, err = run(t, "nobody-0000", "whois", "--file", path)
	if err == nil || !strings.Contains(out, "No credential") || strings.Contains(out, "checksum") {
		t.Errorf("unknown key: %v %q", err, out)
	}
	typo, _ := apikey.Generate("ka")
	if typo[10] == 'a' {
		typo = typo[:10] + "b" + typo[11:]
	} else {
		typo = typo[:10] + "a" + typo[11:]
	}
	out, _, err = run(t, typo, "whois", "--file", path)
	if err == nil || !strings.Contains(out, "checksum is wrong") {
		t.Errorf("typo: %v %q", err, out)
	}
	noSecret(t, []string{typo}, out)

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{keyBob, []string{"whois", "--file", path, keyBob}, "whois takes no arguments"},
		{"", []string{"whois", "--file", path}, "no key on standard input"},
		{"\n", []string{"whois", "--file", path}, "no key on standard input"},
		{"a\nb\n", []string{"whois", "--file", path}, "several lines"},
		{strings.Repeat("k", consumers.MaxKeyLength+1), []string{"whois", "--file", path}, "longer than"},
		{keyBob, []string{"whois"}, "--file is required"},
		{keyBob, []string{"whois", "--file", writeFile(t, `{"consumers": [{"username": "x", "keys": [{"key": ""}]}]}`)}, "has an empty key"},
	} {
		out, errOut, err := run(t, tc.stdin, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
		noSecret(t, []string{keyBob}, out, errOut, err.Error())
	}
}

func TestCheckFiles(t *testing.T) {
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	setNow(t, at)
	good, _ := apikey.Generate("ka")
	typo := good[:len(good)-1] + "A"
	if typo == good {
		typo = good[:len(good)-1] + "B"
	}
	path := writeFile(t, `{"consumers": [
  {"username": "alice", "keys": [
    {"id": "a-plain", "key": "alice-secret-0001"},
    {"id": "a-soon", "hash": "`+consumers.HashKey("x1")+`", "expires_at": "2026-05-10T00:00:00Z"},
    {"id": "a-late", "hash": "`+consumers.HashKey("x2")+`", "expires_at": "2026-08-10T00:00:00Z"},
    {"id": "a-old", "hash": "`+consumers.HashKey("x3")+`", "expires_at": "2026-01-01T00:00:00Z"}
  ]},
  {"username": "bob", "keys": [{"id": "b-typo", "key": "`+typo+`"}, {"id": "b-good", "key": "`+good+`"}]},
  {"username": "keyless"}
]}`)
	out, errOut, err := run(t, "", "check", path)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		"consumers file " + path + ": 3 consumers, 6 keys (3 hashed, 3 plain); 1 expired\n",
		`consumer "alice", credential "a-plain": plain key at rest`,
		`consumer "alice", credential "a-soon": expires at 2026-05-10T00:00:00Z, in 9 days`,
		`consumer "alice", credential "a-old": expired at 2026-01-01T00:00:00Z`,
		`consumer "bob", credential "b-typo": the key looks generated but its checksum is wrong`,
		`consumer "keyless" has no keys`,
		"0 errors, 7 warnings\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "a-late") || strings.Contains(out, `"b-good": the key looks`) {
		t.Errorf("check warns of too much:\n%s", out)
	}
	noSecret(t, []string{"alice-secret-0001", good, typo}, out, errOut)

	// --warn widens the window; --strict fails on warnings.
	out, _, _ = run(t, "", "check", "--warn", "120d", path)
	if !strings.Contains(out, `"a-late": expires`) {
		t.Errorf("--warn 120d:\n%s", out)
	}
	if _, _, err := run(t, "", "check", "--strict", path); err == nil {
		t.Error("--strict with warnings succeeded")
	}
	clean := writeFile(t, `{"consumers": [{"username": "c", "keys": [{"hash": "`+consumers.HashKey("k")+`"}]}]}`)
	if out, _, err := run(t, "", "check", "--strict", clean); err != nil || !strings.Contains(out, "0 errors, 0 warnings") {
		t.Errorf("a clean file: %v\n%s", err, out)
	}

	// A refused file is an error, with the load's message.
	refused := writeFile(t, `{"consumers": [{"username": "a", "keys": [{"key": "dup-key-1"}, {"key": "dup-key-1"}]}]}`)
	_, loadErr := consumers.ParseFile(refused)
	out, _, err = run(t, "", "check", clean, refused)
	if err == nil || !strings.Contains(out, "error: consumers file "+refused+": "+loadErr.Error()) || !strings.Contains(out, "1 error, 0 warnings") {
		t.Errorf("refused file: %v\n%s", err, out)
	}
	noSecret(t, []string{"dup-key-1"}, out)

	for _, args := range [][]string{{"check"}, {"check", "--warn", "soon", clean}, {"check", "--config", "x", clean}} {
		if _, _, err := run(t, "", args...); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
	if _, _, err := run(t, "", "check", clean+".missing"); err == nil {
		t.Error("a missing file passes")
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "consumers.json"), []byte(`{"consumers": [
  {"username": "guest"}, {"username": "alice", "keys": [{"hash": "`+consumers.HashKey("k")+`"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYAUTH_TEST_DIR", dir)
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(`
:8080 {
	key_auth {
		anonymous guest
		consumers file {env.KEYAUTH_TEST_DIR}/consumers.json
	}
	respond ok
}
:8081 {
	route /api/* {
		key_auth {
			anonymous nobody
			consumers file `+dir+`/consumers.json
		}
	}
	key_auth /other/* {
		consumers http https://user:secret@keys.example.com/consumers.json?token=secret-token
	}
	respond ok
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "", "check", "--config", caddyfile)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		"consumers file " + dir + "/consumers.json: 2 consumers, 1 key (1 hashed, 0 plain)\n",
		`anonymous consumer "nobody" is not in the file`,
		"consumers http https://keys.example.com/consumers.json?REDACTED: not fetched", // as the HTTP source shows it
		"0 errors, 1 warning",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check --config does not say %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "consumers file ") != 1 || strings.Contains(out, "guest") || strings.Contains(out, "secret") {
		t.Errorf("check --config:\n%s", out)
	}

	// A JSON config, relative paths resolved from the working directory.
	t.Chdir(dir)
	jsonCfg := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(jsonCfg, []byte(`{"apps": {"http": {"servers": {"s": {"listen": [":8080"], "routes": [
  {"handle": [{"handler": "subroute", "routes": [{"handle": [
    {"handler": "key_auth", "consumers": {"source": "file", "path": "consumers.json"}}]}]}]}]}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "", "check", "--config", jsonCfg)
	if err != nil || !strings.Contains(out, "consumers file "+dir+"/consumers.json: 2 consumers") || !strings.Contains(out, `consumer "guest" has no keys`) {
		t.Errorf("JSON config: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "Caddyfile.bad")
	os.WriteFile(bad, []byte(":8080 {\n\tkey_auth {\n\t\tkey_name x\n\t}\n}\n"), 0o600)
	if _, _, err := run(t, "", "check", "--config", bad); err == nil || !strings.Contains(err.Error(), "Caddyfile.bad:3") {
		t.Errorf("a bad Caddyfile: %v", err)
	}
	none := filepath.Join(dir, "Caddyfile.none")
	os.WriteFile(none, []byte(":8080 {\n\trespond ok\n}\n"), 0o600)
	if _, _, err := run(t, "", "check", "--config", none); err == nil || !strings.Contains(err.Error(), "no key_auth handler") {
		t.Errorf("a config without key_auth: %v", err)
	}
}

// TestCheckConfigDecodesAsCaddy: check --config reads a handler and its
// source as Caddy decodes them, and shows an HTTP source's URL as that source
// does, after its placeholders.
func TestCheckConfigDecodesAsCaddy(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KEYAUTH_TEST_TOKEN", "secret-token")
	cfg := func(handler string) string {
		path := filepath.Join(dir, "caddy.json")
		if err := os.WriteFile(path, []byte(`{"apps": {"http": {"servers": {"s": {"listen": [":8080"], "routes": [
  {"handle": [`+handler+`]}]}}}}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, _, err := run(t, "", "check", "--config", cfg(`{"handler": "key_auth",
	  "consumers": {"source": "http", "url": "https://u:p@keys.example.com/c.json?token={env.KEYAUTH_TEST_TOKEN}"}}`))
	if err != nil || !strings.Contains(out, "consumers http https://keys.example.com/c.json?REDACTED: not fetched") {
		t.Errorf("an http source: %v\n%s", err, out)
	}
	noSecret(t, []string{"secret-token", "u:p"}, out)

	for _, tt := range []struct{ handler, want string }{
		{`{"handler": "key_auth", "anonymus": "guest", "consumers": {"source": "file", "path": "c.json"}}`, `unknown field "anonymus"`},
		{`{"handler": "key_auth", "consumers": {"source": "file", "pth": "c.json"}}`, `unknown field "pth"`},
		{`{"handler": "key_auth", "consumers": {"source": "nosuch"}}`, "key_auth.sources.nosuch"},
		{`{"handler": "key_auth"}`, "no consumers source"},
	} {
		_, _, err := run(t, "", "check", "--config", cfg(tt.handler))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.handler, err, tt.want)
		}
	}
}

func TestImport(t *testing.T) {
	kong := filepath.Join("..", "..", "consumers", "importer", "testdata", "kong-deck.yaml")
	out, errOut, err := run(t, "", "import", "--from", "kong", "--as-of", "2026-03-01T12:00:00Z", kong)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	set, err := consumers.Parse([]byte(out))
	if err != nil {
		t.Fatalf("stdout is not a consumers document: %v\n%s", err, out)
	}
	if c, k := set.Len(); c != 3 || k != 4 {
		t.Errorf("%d consumers, %d keys", c, k)
	}
	d := sha256.Sum256([]byte("alice-kong-key-0002"))
	if c, ok := set.Lookup(&d); !ok || c.ID() != "0b7f4d7a-3c1e-4f55-8d3e-51c1d2f6a002" || c.Consumer().Username() != "alice" {
		t.Error("alice's second key is not there")
	}
	for _, want := range []string{"import: consumer \"bob\": consumer-scoped plugin rate-limiting not migrated\n",
		"key_auth {\n\thide_credentials\n", "Imported 3 consumers and 4 keys (hashed)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	noSecret(t, []string{"alice-kong-key", "bob-kong-key", "batch key"}, out, errOut)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", kong}, "--from is required"},
		{[]string{"import", "--from", "tyk", kong}, `--from "tyk"`},
		{[]string{"import", "--from", "kong"}, "accepts 1 arg"},
		{[]string{"import", "--from", "kong", "--as-of", "yesterday", kong}, "--as-of"},
		{[]string{"import", "--from", "kong", kong + ".missing"}, "no such file"},
		{[]string{"import", "--from", "apisix", kong}, "reading YAML"},
	} {
		out, _, err := run(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || out != "" {
			t.Errorf("%v: error %v, want %q; stdout %q", tc.args, err, tc.want, out)
		}
	}
	// Two consumers with one key: refused as a load would, naming both.
	_, _, err = run(t, `{"_format_version": "3.0", "consumers": [
  {"username": "a", "keyauth_credentials": [{"key": "same-key-1"}]},
  {"username": "b", "keyauth_credentials": [{"key": "same-key-1"}]}]}`, "import", "--from", "kong", "-")
	if err == nil || !strings.Contains(err.Error(), `consumer "b", key #1 has the same key as consumer "a"`) || strings.Contains(err.Error(), "same-key-1") {
		t.Errorf("duplicate keys: %v", err)
	}
}

// Without --as-of, Kong's ttl counts from the file's modification time.
func TestImportAsOfMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kong.json")
	if err := os.WriteFile(path, []byte(`{"_format_version": "3.0", "consumers": [
  {"username": "a", "keyauth_credentials": [{"id": "k1", "key": "ttl-key-1", "ttl": 7200}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "", "import", "--from", "kong", path)
	if err != nil || !strings.Contains(out, `"expires_at": "2026-02-03T06:05:06Z"`) {
		t.Errorf("%v\n%s", err, out)
	}
	out, _, err = run(t, "", "import", "--from", "kong", "--plain", "--as-of", "2026-01-01T00:00:00+01:00", path)
	if err != nil || !strings.Contains(out, `"expires_at": "2026-01-01T01:00:00Z"`) || !strings.Contains(out, `"key": "ttl-key-1"`) {
		t.Errorf("%v\n%s", err, out)
	}
}

func TestParseExpires(t *testing.T) {
	setNow(t, time.Date(2026, 5, 1, 10, 30, 15, 500, time.UTC))
	for in, want := range map[string]string{
		"2h":                        "2026-05-01T12:30:15Z",
		"90d":                       "2026-07-30T10:30:15Z",
		"1d12h":                     "2026-05-02T22:30:15Z",
		"2027-01-01T00:00:00+02:00": "2026-12-31T22:00:00Z",
	} {
		if got, err := parseExpires(in); err != nil || got != want {
			t.Errorf("%s: %s %v, want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0s", "-1h", "tomorrow", "2026-05-01T10:30:15Z", "2026-05-01"} {
		if got, err := parseExpires(in); err == nil {
			t.Errorf("%q: %s", in, got)
		}
	}
}

func TestRevokeConsumerAndCanary(t *testing.T) {
	path := writeFile(t, sample)
	out, errOut, err := run(t, "", "new", "--consumer", "guest", "--file", path, "--id", "planted", "--canary")
	if err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	canary := strings.TrimSpace(out)
	if !strings.Contains(errOut, `canary key "planted"`) {
		t.Errorf("stderr %q", errOut)
	}
	f, err := docfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, i, ok := f.Doc.Credential("planted"); !ok || !c.Keys[i].Canary || c.Keys[i].Hash != consumers.HashKey(canary) {
		t.Fatalf("the canary is not in the file: %+v", c)
	}

	_, errOut, err = run(t, "", "revoke", "--file", path, "--consumer", "bob")
	if err != nil || !strings.Contains(errOut, `Disabled consumer "bob" (3 keys)`) {
		t.Fatalf("revoke --consumer: %v %q", err, errOut)
	}
	set, err := consumers.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := set.Len(); c != 3 {
		t.Errorf("%d consumers: revoke --consumer deleted something", c)
	}
	f, _ = docfile.Open(path)
	if bob, _ := f.Doc.Consumer("bob"); !bob.Disabled || len(bob.Keys) != 3 {
		t.Errorf("bob: %+v", bob)
	}
	before := readFile(t, path)
	_, errOut, err = run(t, "", "revoke", "--file", path, "--consumer", "bob")
	if err != nil || !strings.Contains(errOut, "disabled already") || readFile(t, path) != before {
		t.Errorf("a second revoke: %v %q", err, errOut)
	}

	out, _, err = run(t, canary, "whois", "--file", path)
	if err != nil || !strings.Contains(out, `credential "planted"`) || !strings.Contains(out, "canary") {
		t.Errorf("whois of the canary: %v %q", err, out)
	}
	out, _, err = run(t, keyBob, "whois", "--file", path)
	if err != nil || !strings.Contains(out, "The consumer is disabled") {
		t.Errorf("whois of a disabled consumer's key: %v %q", err, out)
	}
	out, _, _ = run(t, "", "check", path)
	if !strings.Contains(out, "1 canary, 1 consumer disabled") {
		t.Errorf("check:\n%s", out)
	}
	noSecret(t, []string{canary}, out, readFile(t, path))
}

// A disabled consumer gets no new key: it could never work. Nothing is
// written, no key printed, and the error says how to enable it.
func TestNewDisabledConsumer(t *testing.T) {
	doc := `{"consumers": [{"username": "carol", "disabled": true, "keys": [{"id": "c1", "hash": "` + consumers.HashKey("k") + `"}]}]}`
	for _, extra := range [][]string{nil, {"--create"}} {
		path := writeFile(t, doc)
		out, errOut, err := run(t, "", append([]string{"new", "--consumer", "carol", "--file", path}, extra...)...)
		if err == nil || !strings.Contains(err.Error(), `consumer "carol" is disabled`) || !strings.Contains(err.Error(), `remove its "disabled": true`) {
			t.Errorf("%v: error %v", extra, err)
		}
		if out != "" || readFile(t, path) != doc {
			t.Errorf("%v: stdout %q; file changed: %v", extra, out, readFile(t, path) != doc)
		}
		noSecret(t, []string{strings.TrimSpace(out)}, errOut)
	}
}

// A consumers file given as an argument, where --file is meant, is told so.
func TestFileAsArgument(t *testing.T) {
	path := writeFile(t, sample)
	for _, args := range [][]string{
		{"hash", path},
		{"revoke", path, "--consumer", "bob"},
		{"new", "--consumer", "bob", path},
	} {
		out, _, err := run(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), args[0]+" takes no arguments: name the consumers file with --file") {
			t.Errorf("%v: error %v", args, err)
		}
		if out != "" {
			t.Errorf("%v: stdout %q", args, out)
		}
	}
	_, _, err := run(t, keyBob, "whois", path)
	if err == nil || !strings.Contains(err.Error(), "name the consumers file with --file and send the key on standard input") ||
		!strings.Contains(err.Error(), "shell history") {
		t.Errorf("whois with a file argument: %v", err)
	}
	if readFile(t, path) != sample {
		t.Error("the file changed")
	}
}

// check takes its files with --file as well as as arguments, not both.
func TestCheckFileFlag(t *testing.T) {
	path := writeFile(t, sample)
	other := writeFile(t, `{"consumers": [{"username": "x", "keys": [{"hash": "`+consumers.HashKey("k")+`"}]}]}`)
	byArg, _, errArg := run(t, "", "check", path)
	byFlag, _, errFlag := run(t, "", "check", "--file", path)
	if errArg != nil || errFlag != nil || byArg != byFlag || !strings.Contains(byFlag, "consumers file "+path+": 3 consumers") {
		t.Errorf("--file: %v %v\n%s\n%s", errArg, errFlag, byArg, byFlag)
	}
	out, _, err := run(t, "", "check", "--file", path, "--file", other)
	if err != nil || !strings.Contains(out, "consumers file "+other+": 1 consumer, 1 key (1 hashed, 0 plain)\n") {
		t.Errorf("two --file: %v\n%s", err, out)
	}
	if _, _, err := run(t, "", "check", "--file", path, other); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("--file and an argument: %v", err)
	}
	if _, _, err := run(t, "", "check", "--file", path, "--config", "Caddyfile"); err == nil || !strings.Contains(err.Error(), "one of the two") {
		t.Errorf("--file and --config: %v", err)
	}
}

// Counts of one are singular; expiry is told in days from two days on.
func TestCheckWording(t *testing.T) {
	setNow(t, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	path := writeFile(t, `{"consumers": [
  {"username": "a", "disabled": true, "keys": [{"id": "far", "hash": "`+consumers.HashKey("k1")+`", "expires_at": "2026-10-29T04:22:00Z"}]},
  {"username": "b", "keys": [{"id": "near", "hash": "`+consumers.HashKey("k2")+`", "expires_at": "2026-05-02T23:59:00Z"},
    {"id": "soon", "hash": "`+consumers.HashKey("k3")+`", "expires_at": "2026-05-01T00:25:30Z", "disabled": true}]}
]}`)
	out, _, err := run(t, "", "check", "--warn", "200d", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"; 1 key disabled, 1 consumer disabled\n",
		`credential "far": expires at 2026-10-29T04:22:00Z, in 181 days` + "\n",
		`credential "near": expires at 2026-05-02T23:59:00Z, in 47 hours` + "\n",
		`credential "soon": expires at 2026-05-01T00:25:30Z, in 25 minutes` + "\n",
		"0 errors, 3 warnings\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check does not say %q:\n%s", want, out)
		}
	}
	one := writeFile(t, `{"consumers": [{"username": "x", "keys": [{"key": "plain-1"}]}]}`)
	out, _, _ = run(t, "", "check", one)
	if !strings.Contains(out, ": 1 consumer, 1 key (0 hashed, 1 plain)\n") || !strings.Contains(out, "0 errors, 1 warning\n") {
		t.Errorf("singular:\n%s", out)
	}

	_, errOut, err := run(t, "", "revoke", "--file", one, "--consumer", "x")
	if err != nil || !strings.Contains(errOut, `Disabled consumer "x" (1 key) in`) {
		t.Errorf("revoke: %v %q", err, errOut)
	}
	two := writeFile(t, `{"consumers": [{"username": "x", "keys": [{"key": "plain-1"}]}]}`)
	_, errOut, err = run(t, "", "hash", "--file", two)
	if err != nil || !strings.Contains(errOut, "Hashed 1 key in") {
		t.Errorf("hash: %v %q", err, errOut)
	}
	_, errOut, err = run(t, `{"_format_version": "3.0", "consumers": [{"username": "a", "keyauth_credentials": [{"key": "one-key-1"}]}]}`,
		"import", "--from", "kong", "-")
	if err != nil || !strings.Contains(errOut, "Imported 1 consumer and 1 key (hashed)") {
		t.Errorf("import: %v %q", err, errOut)
	}
}

// A generated document refused by the load checks is reported without the
// line, which would be one of the generated JSON, not of the user's file.
func TestImportRefusedWithoutLine(t *testing.T) {
	for _, tc := range []struct{ from, in string }{
		{"kong", `{"_format_version": "3.0", "consumers": [
  {"username": "a", "keyauth_credentials": [{"key": "same-key-1"}]},
  {"username": "b", "keyauth_credentials": [{"key": "same-key-1"}]}]}`},
		{"apisix", `{"consumers": [
  {"username": "a", "plugins": {"key-auth": {"key": "same-key-1"}}},
  {"username": "b", "plugins": {"key-auth": {"key": "same-key-1"}}}]}`},
	} {
		out, errOut, err := run(t, tc.in, "import", "--from", tc.from, "-")
		if err == nil || !strings.Contains(err.Error(), `consumer "b"`) || !strings.Contains(err.Error(), `consumer "a"`) ||
			strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: error %v", tc.from, err)
		}
		if out != "" {
			t.Errorf("%s: stdout %q", tc.from, out)
		}
		noSecret(t, []string{"same-key-1"}, out, errOut, err.Error())
	}
}

// A template the import cannot render fails the import: exit non-zero,
// nothing on standard output, the variable named and no value.
func TestImportTemplateUnset(t *testing.T) {
	t.Setenv("DECK_SET_KEY", "set-secret-value")
	for _, tc := range []struct{ from, in, want string }{
		{"kong", "_format_version: \"3.0\"\nconsumers:\n- username: a\n  keyauth_credentials:\n  - key: ${{ env \"DECK_SET_KEY\" }}\n  - key: ${{ env \"DECK_UNSET_KEY_16\" }}\n", "DECK_UNSET_KEY_16"},
		{"apisix", "consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: ${{APISIX_UNSET_KEY_16}}\n#END\n", "APISIX_UNSET_KEY_16"},
	} {
		out, errOut, err := run(t, tc.in, "import", "--from", tc.from, "-")
		if err == nil || !strings.Contains(err.Error(), tc.want+", which is not set") && !strings.Contains(err.Error(), tc.want+" is not set") {
			t.Errorf("%s: error %v", tc.from, err)
		}
		if out != "" {
			t.Errorf("%s: stdout %q", tc.from, out)
		}
		if err != nil {
			noSecret(t, []string{"set-secret-value"}, out, errOut, err.Error())
		}
	}
}

// check sums up a file's limits and refuses invalid ones; with --config it
// warns when no handler that uses the file enforces them.
func TestCheckLimits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "consumers.json")
	if err := os.WriteFile(path, []byte(`{"groups": {
    "free": {"member_limits": {"requests": {"max": 1000, "per": "day"}, "in_flight": 2}},
    "acme-team": {"limits": {"requests": {"max": 100000, "per": "month", "timezone": "Europe/Berlin"}}},
    "acl-only": {}},
  "consumers": [
    {"username": "alice", "groups": ["free", "acme-team"], "limits": {"tokens": {"max": 2000000, "per": "month"}},
     "keys": [{"id": "alice-ci", "hash": "`+consumers.HashKey("k1")+`", "limits": {"requests": {"max": 100, "per": "hour"}}}]},
    {"username": "bob", "groups": ["free"], "keys": [{"hash": "`+consumers.HashKey("k2")+`"}]},
    {"username": "carol", "groups": ["acl-only"], "keys": [{"hash": "`+consumers.HashKey("k3")+`"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "", "check", path)
	want := "  limits on 1 key, 1 consumer, 2 groups (acme-team, free); meters: in_flight, requests, tokens; 2 consumers in groups with limits\n0 errors, 0 warnings\n"
	if err != nil || !strings.HasSuffix(out, want) {
		t.Errorf("check of a file with limits: %v\n%s\nwant it to end with\n%s", err, out, want)
	}

	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(":8080 {\n\tkey_auth {\n\t\tconsumers file "+path+"\n\t}\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "", "check", "--config", caddyfile)
	if err != nil || !strings.Contains(out, "warning: the file holds limits, but no key_auth handler that uses it has a limits block: they are not enforced") {
		t.Errorf("check --config with limits no handler enforces: %v\n%s", err, out)
	}
	for raw, want := range map[string]bool{
		`{"handler": "key_auth", "limits": {}}`:      true,
		`{"handler": "key_auth", "limits": null}`:    false,
		`{"handler": "key_auth"}`:                    false,
		`{"handler": "key_auth", "limits": {"x":1}}`: true,
	} {
		if got := hasLimitsBlock([]byte(raw)); got != want {
			t.Errorf("hasLimitsBlock(%s) = %v", raw, got)
		}
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"consumers": [{"username": "alice", "limits": {"requests": {"max": 1, "per": "fortnight"}}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "", "check", bad)
	if err == nil || !strings.Contains(out, `error: consumers file `+bad+`: line 1: consumer "alice": limits: meter "requests" has per "fortnight"`) {
		t.Errorf("check of invalid limits: %v\n%s", err, out)
	}
}

// Editing a file (new, revoke) keeps its groups and limits as they were.
func TestKeysKeepLimits(t *testing.T) {
	path := writeFile(t, `{"groups": {"free": {"member_limits": {"requests": {"max": 1000, "per": "day"}, "in_flight": 2}}},
  "consumers": [{"username": "alice", "groups": ["free"], "limits": {"tokens": {"max": 5, "per": "90m"}},
    "keys": [{"id": "a1", "hash": "`+consumers.HashKey("k1")+`", "limits": {"requests": {"max": 1, "per": "day", "timezone": "Europe/Berlin"}}}]}]}`)
	read := func() *consumers.Document {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := consumers.DecodeDocument(data)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := read()
	if _, _, err := run(t, "", "new", "--consumer", "alice", "--file", path, "--id", "a2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "", "revoke", "--file", path, "--credential", "a2"); err != nil {
		t.Fatal(err)
	}
	after := read()
	if !reflect.DeepEqual(before.Groups, after.Groups) || !reflect.DeepEqual(before.Consumers[0].Limits, after.Consumers[0].Limits) ||
		!reflect.DeepEqual(before.Consumers[0].Keys[0].Limits, after.Consumers[0].Keys[0].Limits) {
		t.Errorf("limits changed by an edit:\n%+v\n%+v", before, after)
	}
}
