//go:build unix

package command

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

// cliArgsEnv makes the test binary run `caddy key-auth` with these
// arguments (one a line) instead of the tests: a second process.
const cliArgsEnv = "KEYAUTH_TEST_CLI_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(cliArgsEnv); ok {
		root := &cobra.Command{Use: "key-auth"}
		Setup(root)
		root.SetArgs(strings.Split(args, "\n"))
		if root.Execute() != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runProcess runs `caddy key-auth args...` in another process: this test
// binary, as the given user when cred is not nil.
func runProcess(t *testing.T, binary string, cred *syscall.Credential, args ...string) (stderr string, err error) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), cliArgsEnv+"="+strings.Join(args, "\n"))
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errOut
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err = cmd.Run()
	return errOut.String(), err
}

// `sudo caddy key-auth revoke` keeps a file of Caddy's user (nobody:nogroup
// 0600) Caddy's, so Caddy can still read it and the revocation takes.
func TestEditKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to nobody (uid 65534)")
	}
	path := writeFile(t, sample)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"revoke", "--credential", "alice-key"},
		{"revoke", "--consumer", "bob"},
		{"new", "--consumer", "alice"},
		{"hash"},
	} {
		if _, errOut, err := run(t, "", append(args, "--file", path)...); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%v: the file is %d:%d %v, want 65534:65534 0600", args, st.Uid, st.Gid, fi.Mode().Perm())
		}
	}
	if strings.Contains(readFile(t, path), "alice-key") {
		t.Error("the revoked credential is still in the file")
	}
}

// A user who may write the file and its directory, but cannot give a new
// copy the file's owner, is refused before anything is written.
func TestEditAsAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the command as nobody (uid 65534)")
	}
	// A directory nobody may write and traverse, holding root's file that
	// nobody may write, and a copy of this binary nobody may run.
	dir, err := os.MkdirTemp("", "keyauth-owner-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "consumers.json")
	if err := os.WriteFile(path, []byte(sample), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "cli.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(binary, self, 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	errOut, err := runProcess(t, binary, nobody, "revoke", "--credential", "alice-key", "--file", path)
	if err == nil {
		t.Fatal("nobody replaced root's file with its own")
	}
	for _, want := range []string{
		"consumers file " + path + " belongs to root:root (uid 0, gid 0)",
		"this process, running as nobody:",
		"cannot give the new copy that owner and group",
		"nothing is written (run the command as the file's owner, or as root)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not say %q", errOut, want)
		}
	}
	if readFile(t, path) != sample {
		t.Error("the file changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files left: %v", entries)
	}
}

// Two processes editing one file: the second is refused while the first
// holds the lock, and nothing the first wrote is lost.
func TestEditWhileLockedRefused(t *testing.T) {
	path := writeFile(t, sample)
	l := flock.New(path + docfile.LockSuffix)
	if ok, err := l.TryLock(); !ok || err != nil {
		t.Fatalf("locking: %v %v", ok, err)
	}
	defer l.Unlock()
	errOut, err := runProcess(t, os.Args[0], nil, "revoke", "--credential", "alice-key", "--file", path)
	if err == nil {
		t.Fatal("the second process wrote while the first held the lock")
	}
	if want := "consumers file " + path + " is being written by another process (it holds the lock file " +
		path + docfile.LockSuffix + "); nothing written (run the command again)"; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
	if readFile(t, path) != sample {
		t.Error("the file changed while the lock was held")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if errOut, err := runProcess(t, os.Args[0], nil, "revoke", "--credential", "alice-key", "--file", path); err != nil {
		t.Fatalf("after the lock was released: %v %s", err, errOut)
	}
	if strings.Contains(readFile(t, path), `"alice-key"`) {
		t.Error("the revocation is not in the file")
	}
}
