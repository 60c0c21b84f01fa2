package command

import (
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

// TestRoll: the new key and the old one find the same credential, the old
// one until the grace ends; the file holds no key and the key is printed
// once, on standard output.
func TestRoll(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	setNow(t, at)
	path := writeFile(t, sample)
	out, errOut, err := run(t, "", "roll", "--file", path, "--credential", "bob-hashed", "--prefix", "acme_live")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	key := strings.TrimSuffix(out, "\n")
	if strings.Contains(key, "\n") || !strings.HasPrefix(key, "acme_live_") || !apikey.ChecksumOK(key) {
		t.Fatalf("stdout is not one generated key: %q", out)
	}
	for _, k := range []string{key, keyBob} {
		if u, id, ok := lookup(t, path, k); !ok || u != "bob" || id != "bob-hashed" {
			t.Errorf("after the roll a key finds %q %q %v, want bob's bob-hashed", u, id, ok)
		}
	}
	file, err := docfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c, i, _ := file.Doc.Credential("bob-hashed")
	want := []consumers.PreviousSecret{{Hash: consumers.HashKey(keyBob), ExpiresAt: "2026-05-02T10:00:00Z"}}
	if k := c.Keys[i]; k.Hash != consumers.HashKey(key) || len(k.Previous) != 1 || k.Previous[0] != want[0] {
		t.Errorf("credential %+v", k)
	}
	content := readFile(t, path)
	noSecret(t, append([]string{key}, sampleKeys...), errOut)
	noSecret(t, []string{key}, content)
	if want := `Rolled credential "bob-hashed" of consumer "bob" in ` + path + `: its previous key works until 2026-05-02T10:00:00Z`; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
	// The other keys, derived ids and all, are as they were.
	if _, id, ok := lookup(t, path, "bob-noid-0005"); !ok || id != "bob#3" {
		t.Errorf("bob's third key is %q %v", id, ok)
	}

	// A plain key with a derived id: the id is written out, and the old key
	// is kept as its hash only.
	out, errOut, err = run(t, "", "roll", "--file", path, "--credential", "bob#1", "--grace", "2h", "--expires", "30d")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	key2 := strings.TrimSuffix(out, "\n")
	for _, k := range []string{key2, "bob-noid-0003"} {
		if _, id, ok := lookup(t, path, k); !ok || id != "bob#1" {
			t.Errorf("after rolling bob#1 a key finds %q %v", id, ok)
		}
	}
	content = readFile(t, path)
	noSecret(t, []string{key2, "bob-noid-0003"}, content, errOut)
	if !strings.Contains(content, `"id": "bob#1"`) || !strings.Contains(content, `"expires_at": "2026-05-31T10:00:00Z"`) ||
		!strings.Contains(content, `"expires_at": "2026-05-01T12:00:00Z"`) {
		t.Errorf("file:\n%s", content)
	}

	// --grace 0: the old key stops at once.
	out, errOut, err = run(t, "", "roll", "--file", path, "--credential", "alice-key", "--grace", "0")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if _, _, ok := lookup(t, path, keyAlice); ok {
		t.Error("with --grace 0 the old key still works")
	}
	if _, id, ok := lookup(t, path, strings.TrimSuffix(out, "\n")); !ok || id != "alice-key" {
		t.Errorf("alice's new key finds %q %v", id, ok)
	}
	if !strings.Contains(errOut, "its previous key no longer works") {
		t.Errorf("stderr %q", errOut)
	}
}

// TestRollWhoisStale: whois tells a previous secret from the current key
// and says until when it works, or that it stopped; stale says until when a
// rolled credential's previous key works.
func TestRollWhoisStale(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	setNow(t, at)
	path := writeFile(t, `{"consumers": [{"username": "bob", "keys": [{"id": "bob-hashed", "hash": "`+consumers.HashKey(keyBob)+`", "created_at": "2025-01-01T00:00:00Z"}]}]}`)
	out, _, err := run(t, "", "roll", "--file", path, "--credential", "bob-hashed", "--grace", "36h")
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSuffix(out, "\n")
	out, errOut, err := run(t, keyBob+"\n", "whois", "--file", path)
	want := "consumer \"bob\" (id \"bob\"), credential \"bob-hashed\"\nThe key is a previous secret of the credential, replaced by a roll: it works until 2026-05-02T22:00:00Z.\n"
	if err != nil || out != want {
		t.Errorf("whois of the old key: %v\n%s\nwant:\n%s", err, out, want)
	}
	noSecret(t, []string{keyBob, key}, out, errOut)
	if out, _, err := run(t, key+"\n", "whois", "--file", path); err != nil || out != "consumer \"bob\" (id \"bob\"), credential \"bob-hashed\"\n" {
		t.Errorf("whois of the new key: %v %q", err, out)
	}
	out, _, err = run(t, "", "stale", "--file", path, "--unused", "90d", "--data-dir", t.TempDir())
	if want := `consumer "bob", credential "bob-hashed": never used, created 2025-01-01T00:00:00Z, 485 days ago; rolled, its previous key works until 2026-05-02T22:00:00Z` + "\n"; err != nil || out != want {
		t.Errorf("stale: %v\n%s\nwant:\n%s", err, out, want)
	}

	setNow(t, at.Add(48*time.Hour))
	if out, _, err := run(t, keyBob+"\n", "whois", "--file", path); err != nil || !strings.Contains(out, "it stopped working at 2026-05-02T22:00:00Z.") {
		t.Errorf("whois of the old key after its grace: %v %q", err, out)
	}
	out, _, err = run(t, "", "stale", "--file", path, "--unused", "90d", "--data-dir", t.TempDir())
	if err != nil || strings.Contains(out, "rolled") {
		t.Errorf("stale after the grace: %v %q", err, out)
	}
}

// TestRollRefusals: a refused roll prints no key and leaves the file as it
// was.
func TestRollRefusals(t *testing.T) {
	setNow(t, time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))
	path := writeFile(t, `{"consumers": [{"username": "bob", "keys": [
		{"id": "ok", "hash": "`+consumers.HashKey(keyBob)+`"},
		{"id": "trap", "hash": "`+consumers.HashKey("trap-0001")+`", "canary": true},
		{"id": "old", "hash": "`+consumers.HashKey("old-0001")+`", "expires_at": "2026-01-01T00:00:00Z"}]}]}`)
	before := readFile(t, path)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"roll", "--credential", "ok"}, "--file is required"},
		{[]string{"roll", "--file", path}, "--credential is required"},
		{[]string{"roll", "--file", path, "--credential", "nope"}, `no credential "nope"`},
		{[]string{"roll", "--file", path, "--credential", "ok", "--grace", "soon"}, `--grace "soon": want a duration`},
		{[]string{"roll", "--file", path, "--credential", "ok", "--grace", "-1h"}, `--grace "-1h": want a duration`},
		{[]string{"roll", "--file", path, "--credential", "ok", "--prefix", "9x"}, "--prefix"},
		{[]string{"roll", "--file", path, "--credential", "ok", "--expires", "yesterday"}, "--expires"},
		{[]string{"roll", "--file", path, "--credential", "trap"}, `credential "trap": a canary cannot be rolled`},
		{[]string{"roll", "--file", path, "--credential", "old"}, `credential "old": the credential has expired (at 2026-01-01T00:00:00Z): give it a later expires_at first`},
		{[]string{"roll", path, "--credential", "ok"}, "takes no arguments"},
		{[]string{"roll", "--file", path + ".missing", "--credential", "ok"}, "no such file"},
	} {
		out, errOut, err := run(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
		if out != "" {
			t.Errorf("%v: stdout %q", tc.args, out)
		}
		noSecret(t, []string{keyBob, "trap-0001", "old-0001"}, errOut)
	}
	if readFile(t, path) != before {
		t.Error("a refused roll changed the file")
	}
}
