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
	digest [32]byte // of the content read
}

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
	f.exists, f.mode, f.digest = true, fi.Mode().Perm(), sha256.Sum256(data)
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
// with the file's mode, then renamed over the file. It refuses a document
// that a load would refuse, and a file that changed (or appeared) since it
// was read; then nothing is written.
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
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := writeSync(tmp, data, f.mode); err != nil {
		return fmt.Errorf("consumers file %s: writing %s: %w", f.Path, tmp.Name(), err)
	}
	testHookBeforeCommit()
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

func writeSync(tmp *os.File, data []byte, mode fs.FileMode) error {
	defer tmp.Close()
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
		return fmt.Errorf("consumers file %s appeared while it was being written; nothing written (run the command again)", f.Path)
	case err != nil:
		return fmt.Errorf("consumers file %s: %w", f.Path, err)
	case sha256.Sum256(data) != f.digest:
		return fmt.Errorf("consumers file %s changed while it was being edited; nothing written (run the command again)", f.Path)
	}
	return nil
}
