package docfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofrs/flock"

	"github.com/keyauth/caddy-keyauth/consumers"
)

const sample = `{"consumers": [
  {"username": "alice", "id": "a11ce", "custom_id": "cust-1", "tags": ["demo"],
   "keys": [
     {"id": "alice-key", "key": "alice-secret-0001"},
     {"id": "alice-special", "key": "sp ace+plus/slash=eq&amp%25<>"}
   ]},
  {"username": "bob",
   "keys": [
     {"id": "bob-hashed", "hash": "sha256:64708caec1a9013e7e2ea53b462e4cbca55c79f7e8cdcf61da944f2a05effebb"},
     {"key": "bob-noid-0003", "expires_at": "2020-01-01T00:00:00Z"},
     {"key": "bob-noid-0004"}
   ]},
  {"username": "guest", "id": "anon-1", "tags": null, "custom_id": null}
]}`

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// leftovers are the files beside path other than itself and its lock file.
func leftovers(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); n != filepath.Base(path) && n != filepath.Base(path)+LockSuffix {
			out = append(out, n)
		}
	}
	return out
}

// sameSet checks that two documents load to the same consumers and keys.
func sameSet(t *testing.T, a, b []byte) {
	t.Helper()
	sa, err := consumers.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := consumers.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	ca, ka := sa.Len()
	cb, kb := sb.Len()
	if ca != cb || ka != kb {
		t.Fatalf("%d consumers and %d keys became %d and %d", ca, ka, cb, kb)
	}
	for i := range ca {
		x, y := sa.ConsumerAt(i), sb.ConsumerAt(i)
		if x.Username() != y.Username() || x.ID() != y.ID() || x.CustomID() != y.CustomID() ||
			strings.Join(x.Tags(), ",") != strings.Join(y.Tags(), ",") {
			t.Errorf("consumer #%d differs", i+1)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	d, err := consumers.DecodeDocument([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, []byte(sample), out)
	for _, key := range []string{"alice-secret-0001", "sp ace+plus/slash=eq&amp%25<>", "bob-noid-0004"} {
		if !bytes.Contains(out, []byte(`"`+key+`"`)) {
			t.Errorf("a key is not written as it was")
		}
	}
	again, err := consumers.DecodeDocument(out)
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := again.Marshal()
	if !bytes.Equal(out, out2) {
		t.Errorf("writing is not stable:\n%s\n%s", out, out2)
	}
	if !bytes.HasPrefix(out, []byte("{\n  \"consumers\": [\n    {\n      \"username\": \"alice\",\n      \"id\": \"a11ce\",")) {
		t.Errorf("not indented in field order:\n%s", out[:80])
	}
}

// A document a load refuses is refused with the load's own error.
func TestRefusedAsALoad(t *testing.T) {
	for _, doc := range []string{
		`{"consumers": [{"username": "a", "keys": [{"key": "k"}, {"key": "k"}]}]}`,
		`{"consumers": [{"username": "a", "Keys": []}]}`,
		`{"consumers": null}`,
		`{"consumers": [{"username": "a"}, {"username": "a"}]}`,
		`not json`,
	} {
		_, want := consumers.Parse([]byte(doc))
		_, err := consumers.DecodeDocument([]byte(doc))
		if want == nil || err == nil || err.Error() != want.Error() {
			t.Errorf("%s: error %v, want %v", doc, err, want)
		}
		path := writeFile(t, doc, 0o600)
		_, err = Open(path)
		if err == nil || err.Error() != "consumers file "+path+": "+want.Error() {
			t.Errorf("Open: error %v, want the load's %v", err, want)
		}
	}
}

func TestMarshalRefuses(t *testing.T) {
	d := &consumers.Document{Consumers: []consumers.ConsumerEntry{
		{Username: "a", Keys: []consumers.CredentialEntry{{ID: "x", Key: "secret-one"}}},
		{Username: "b", Keys: []consumers.CredentialEntry{{ID: "y", Key: "secret-one"}}},
	}}
	_, err := d.Marshal()
	if err == nil || !strings.Contains(err.Error(), "same key") || strings.Contains(err.Error(), "secret-one") {
		t.Errorf("error %v", err)
	}
	if b, err := (&consumers.Document{}).Marshal(); err != nil || !bytes.Contains(b, []byte(`"consumers": []`)) {
		t.Errorf("an empty document: %s %v", b, err)
	}
}

func TestSaveKeepsModeAndLink(t *testing.T) {
	path := writeFile(t, sample, 0o640)
	link := filepath.Join(t.TempDir(), "link.json")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	f, err := Open(link)
	if err != nil {
		t.Fatal(err)
	}
	f.Doc.Consumers[0].Tags = append(f.Doc.Consumers[0].Tags, "added")
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link was replaced")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode())
	}
	set, err := consumers.ParseFile(path)
	if err != nil || strings.Join(set.ConsumerAt(0).Tags(), ",") != "demo,added" {
		t.Fatalf("the change is not in the file: %v", err)
	}
	if entries := leftovers(t, path); len(entries) != 0 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// A second save of the same File works: it now knows what it wrote.
	f.Doc.Consumers[1].Tags = []string{"b"}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
}

// A file changed between the read and the write is left as the other
// writer left it.
func TestSaveRefusesAConcurrentChange(t *testing.T) {
	path := writeFile(t, sample, 0o600)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	other := `{"consumers": [{"username": "someone-else"}]}`
	testHookBeforeCommit = func() {
		if err := os.WriteFile(path, []byte(other), 0o600); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookBeforeCommit = func() {} }()
	f.Doc.Consumers = f.Doc.Consumers[:1]
	err = f.Save()
	if err == nil || !strings.Contains(err.Error(), "changed while") || !errors.Is(err, consumers.ErrConflict) {
		t.Fatalf("error %v, want a refusal, consumers.ErrConflict", err)
	}
	if got, _ := os.ReadFile(path); string(got) != other {
		t.Errorf("the other writer's file was replaced: %s", got)
	}
	if entries := leftovers(t, path); len(entries) != 0 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestOpenOrNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.json")
	f, err := OpenOrNew(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Doc.Consumers = append(f.Doc.Consumers, consumers.ConsumerEntry{Username: "n"})
	testHookBeforeCommit = func() { _ = os.WriteFile(path, []byte(`{"consumers": []}`), 0o600) }
	err = f.Save()
	testHookBeforeCommit = func() {}
	if err == nil || !strings.Contains(err.Error(), "appeared") || !errors.Is(err, consumers.ErrConflict) {
		t.Fatalf("error %v, want a refusal, consumers.ErrConflict", err)
	}
	os.Remove(path)
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file: %v %v", fi, err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
}

// Removing a key leaves the ids of the others as they were.
func TestRemoveKeyKeepsIDs(t *testing.T) {
	d, err := consumers.DecodeDocument([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := d.Consumer("bob")
	before := []string{bob.CredentialID(1), bob.CredentialID(2)}
	if before[0] != "bob#2" || before[1] != "bob#3" {
		t.Fatalf("derived ids %v", before)
	}
	bob.RemoveKey(0)
	if got := []string{bob.CredentialID(0), bob.CredentialID(1)}; got[0] != before[0] || got[1] != before[1] {
		t.Errorf("ids %v, want %v", got, before)
	}
	if c, i, ok := d.Credential("bob#3"); !ok || c.Username != "bob" || i != 1 {
		t.Errorf("Credential(bob#3) = %v %d %v", c, i, ok)
	}
	if _, err := d.Marshal(); err != nil {
		t.Fatal(err)
	}
}

// An edit by root keeps the file's owner and group: a file of Caddy's user
// edited with sudo stays readable to Caddy.
func TestSaveKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to nobody (uid 65534); the refusal is tested by keyauth/command as nobody")
	}
	path := writeFile(t, sample, 0o600)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Doc.Consumers = f.Doc.Consumers[:1]
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if o := ownerOf(fi); o.uid != 65534 || o.gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Errorf("after the edit: %s, mode %v; want nobody's (65534:65534) 0600", o, fi.Mode().Perm())
	}
	set, err := consumers.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := set.Len(); n != 1 {
		t.Errorf("%d consumers: the edit is not in the file", n)
	}
}

// A second writer is refused while another process holds the lock file,
// and nothing is lost: the file is as it was, and the edit succeeds once
// the lock is released.
func TestSaveRefusedWhileLocked(t *testing.T) {
	path := writeFile(t, sample, 0o640)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	other := flock.New(path + LockSuffix) // another open file: flock(2) refuses it as another process
	if ok, err := other.TryLock(); !ok || err != nil {
		t.Fatalf("locking: %v %v", ok, err)
	}
	f.Doc.Consumers = f.Doc.Consumers[:1]
	err = f.Save()
	if err == nil || !strings.Contains(err.Error(), "is being written by another process (it holds the lock file "+path+LockSuffix+"); nothing written") || !errors.Is(err, consumers.ErrConflict) {
		t.Errorf("error %v, want a refusal naming the lock file, consumers.ErrConflict", err)
	}
	if got, _ := os.ReadFile(path); string(got) != sample {
		t.Error("the file changed while another process held the lock")
	}
	if left := leftovers(t, path); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if err := other.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(); err != nil {
		t.Fatalf("after the lock was released: %v", err)
	}
}
