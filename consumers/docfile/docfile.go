// Package docfile is a consumers file as tools edit it: a consumers.Document
// read from a file and written back atomically. Every document it reads or
// writes has passed consumers.Parse, the checks a load applies, so a tool
// never writes a file that Caddy would refuse. It imports nothing of Caddy.
package docfile

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// File is a consumers file being edited.
type File struct {
	// Path is the file's path as given; the file written is the one it
	// resolves to, so a symbolic link stays one.
	Path string
	Doc  *consumers.Document

	target string
	exists bool
	mode   fs.FileMode
	owner  owner    // of the file read; ok false for a new file
	digest [32]byte // of the content read
}

// LockSuffix names the lock file that Save holds while it compares and
// replaces a consumers file: the resolved file's path and this suffix, in the
// same directory (consumers.json.lock). It is an flock(2) lock (LockFileEx
// on Windows) that other scripts can share, e.g. with flock(1); the file is
// left in place, as lock files are, since removing it would let two
// processes lock different files.
const LockSuffix = ".lock"

// Open reads and checks a consumers file, as a load does.
func Open(path string) (*File, error) {
	return open(path, false)
}

// OpenOrNew is Open, but a file that does not exist is an empty document,
// written as a new file with mode 0644: it holds only what Caddy must read
// (hashes, once `hash` ran), and Caddy often runs as another user.
func OpenOrNew(path string) (*File, error) {
	return open(path, true)
}

func open(path string, orNew bool) (*File, error) {
	f := &File{Path: path, target: path, mode: 0o644}
	if t, err := filepath.EvalSymlinks(path); err == nil {
		f.target = t
	}
	data, err := os.ReadFile(f.target)
	switch {
	case orNew && errors.Is(err, fs.ErrNotExist):
		f.Doc = &consumers.Document{Consumers: []consumers.ConsumerEntry{}}
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("consumers file %s: %w", path, err)
	}
	fi, err := os.Stat(f.target)
	if err != nil {
		return nil, fmt.Errorf("consumers file %s: %w", path, err)
	}
	f.exists, f.mode, f.owner, f.digest = true, fi.Mode().Perm(), ownerOf(fi), sha256.Sum256(data)
	if f.Doc, err = consumers.DecodeDocument(data); err != nil {
		return nil, fmt.Errorf("consumers file %s: %w", path, err)
	}
	return f, nil
}

// testHookBeforeCommit runs after the new content is written to the
// temporary file and before the original is compared and replaced, so a
// test can change the file in between.
var testHookBeforeCommit = func() {}

// Save writes the document back: to a temporary file in the same directory,
// with the file's mode, owner and group, then renamed over the file. It
// refuses, and then writes nothing, a document that a load would refuse, a
// file whose owner or group this process cannot give the new copy (a file
// of Caddy's user edited with sudo would otherwise become root's, which
// Caddy could no longer read), a file another process is writing (it holds
// the lock file, LockSuffix), and a file that changed (or appeared) since
// it was read. The last two are consumers.ErrConflict (errors.Is): read
// the file again and redo the change.
func (f *File) Save() error {
	data, err := f.Doc.Marshal()
	if err != nil {
		return fmt.Errorf("consumers file %s: %w", f.Path, err)
	}
	dir := filepath.Dir(f.target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("consumers file %s: %w", f.Path, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if f.owner.ok {
		if err := chownLike(tmp, f.owner); err != nil {
			return fmt.Errorf("consumers file %s belongs to %s, and this process, running as %s, cannot give the new copy that owner and group (%w); "+
				"a copy of its own could be unreadable to Caddy, so nothing is written (run the command as the file's owner, or as root)",
				f.Path, f.owner, processOwner(), err)
		}
	}
	if err := writeSync(tmp, data, f.mode); err != nil {
		return fmt.Errorf("consumers file %s: writing %s: %w", f.Path, tmp.Name(), err)
	}
	testHookBeforeCommit()
	unlock, err := f.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := f.unchanged(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.target); err != nil {
		return fmt.Errorf("consumers file %s: %w", f.Path, err)
	}
	committed = true
	f.exists, f.digest = true, sha256.Sum256(data)
	if d, err := os.Open(dir); err == nil { // the rename itself, to disk
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// lock takes the lock file without waiting: a second writer is refused, and
// the one that holds it finds the file changed if the first replaced it.
func (f *File) lock() (unlock func(), err error) {
	path := f.target + LockSuffix
	l := flock.New(path, flock.SetPermissions(0o644))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("consumers file %s: locking %s: %w", f.Path, path, err)
	}
	if !ok {
		return nil, consumers.Conflict(fmt.Errorf("consumers file %s is being written by another process (it holds the lock file %s); nothing written (run the command again)", f.Path, path))
	}
	if f.owner.ok { // so that the file's owner can lock it too, later
		if fi, err := os.Stat(path); err == nil && ownerOf(fi) != f.owner {
			_ = os.Chown(path, f.owner.uid, f.owner.gid)
		}
	}
	return func() { _ = l.Unlock() }, nil
}

func writeSync(tmp *os.File, data []byte, mode fs.FileMode) error {
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	return tmp.Close()
}

// unchanged checks that the file still holds what was read.
func (f *File) unchanged() error {
	data, err := os.ReadFile(f.target)
	switch {
	case !f.exists && errors.Is(err, fs.ErrNotExist):
		return nil
	case !f.exists && err == nil:
		return consumers.Conflict(fmt.Errorf("consumers file %s appeared while it was being written; nothing written (run the command again)", f.Path))
	case err != nil:
		return fmt.Errorf("consumers file %s: %w", f.Path, err)
	case sha256.Sum256(data) != f.digest:
		return consumers.Conflict(fmt.Errorf("consumers file %s changed while it was being edited; nothing written (run the command again)", f.Path))
	}
	return nil
}
