package sources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
)

func init() {
	caddy.RegisterModule(FileSource{})
}

// DefaultFileRefresh is how often a consumers file is checked for changes.
const DefaultFileRefresh = 5 * time.Second

// FileSource loads consumers from a JSON file and picks up its changes.
//
// The file is read when the config loads, and a file that is refused fails
// the config. While Caddy runs, the file is checked every `refresh`; a
// changed file is swapped in atomically, and a refused one is logged once
// (then every FailureReminderEvery while it stays) while the last good set
// keeps serving. Write the file atomically (write a
// temporary file, then rename it over the old one).
type FileSource struct {
	// Path is the consumers file. It may use {env.*} placeholders.
	Path string `json:"path,omitempty"`

	// Refresh is how often the file is checked for changes (its size,
	// modification time and inode). Default: 5s. 0 turns checking off.
	Refresh *caddy.Duration `json:"refresh,omitempty"`

	Handle
}

// CaddyModule returns the Caddy module information.
func (FileSource) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth.sources.file",
		New: func() caddy.Module { return new(FileSource) },
	}
}

// ResolvedPath is the file that Path names: its {env.*} placeholders
// replaced and, if relative, joined to the working directory.
func (f *FileSource) ResolvedPath() (string, error) {
	path, err := filepath.Abs(caddy.NewReplacer().ReplaceKnown(f.Path, ""))
	if err != nil {
		return "", fmt.Errorf("consumers file %s: %w", f.Path, err)
	}
	return path, nil
}

// Provision loads the file, or joins the store of a source configured the
// same way, which then is not read again. It validates first, so that a bad
// configuration never reads a file.
func (f *FileSource) Provision(ctx caddy.Context) error {
	if err := f.Validate(); err != nil {
		return err
	}
	path, err := f.ResolvedPath()
	if err != nil {
		return err
	}
	refresh := DefaultFileRefresh
	if f.Refresh != nil {
		refresh = time.Duration(*f.Refresh)
	}
	// Sources that differ only in how they are written (a relative path,
	// a placeholder, an explicit default) share one store.
	key, err := Key("file", &FileSource{Path: path, Refresh: durationPtr(refresh)})
	if err != nil {
		return err
	}
	return f.Provide(ctx, key, func() (Live, error) {
		l := &fileLoader{path: path}
		set, err := l.Load(ctx, true)
		if err != nil {
			return nil, err
		}
		return newStore(l, filePolling(refresh), set, true), nil
	})
}

// Validate checks the configuration.
func (f *FileSource) Validate() error {
	if f.Path == "" {
		return errors.New("path is required")
	}
	if f.Refresh != nil && *f.Refresh < 0 {
		return fmt.Errorf("refresh must not be negative, got %s", time.Duration(*f.Refresh))
	}
	return nil
}

type fileSig struct {
	mtime, size int64
	ino         uint64
}

// fileLoader loads a consumers file when it has changed. Each refused
// version is read once: each new error is someone's edit.
type fileLoader struct {
	path string
	// loaded is the version serving; refused the last version refused, so
	// an unchanged broken file is neither re-read nor logged again.
	loaded, refused fileSig
	// refusedErr is why refused was refused. It is returned again while
	// that version stays, so the store goes on reporting the failure (the
	// store logs a repeated error once) rather than a recovery.
	refusedErr error
}

func (f *fileLoader) Load(_ context.Context, force bool) (*consumers.Set, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, fmt.Errorf("consumers file: %w", err)
	}
	sig := fileSig{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.ino = st.Ino
	}
	if !force && sig == f.loaded {
		return nil, nil
	}
	if !force && sig == f.refused {
		return nil, f.refusedErr
	}
	set, err := consumers.ParseFile(f.path)
	if err != nil {
		err = fmt.Errorf("consumers file %s: %w", f.path, err)
		if !errors.As(err, new(consumers.ReadError)) {
			// This version is refused; it is not read again until it
			// changes.
			f.refused, f.refusedErr = sig, err
		}
		return nil, err
	}
	f.loaded, f.refused, f.refusedErr = sig, fileSig{}, nil
	return set, nil
}

// filePolling checks a file every refresh, failed or not, and logs each
// refused version: each new error is someone's edit.
func filePolling(refresh time.Duration) Polling {
	return Polling{Every: refresh, EachError: true}
}

func (f *fileLoader) Info() SourceInfo { return SourceInfo{Kind: "file", Location: f.path} }

var (
	_ caddy.Provisioner  = (*FileSource)(nil)
	_ caddy.Validator    = (*FileSource)(nil)
	_ caddy.CleanerUpper = (*FileSource)(nil)
	_ Loader             = (*fileLoader)(nil)
)
