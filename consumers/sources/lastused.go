package sources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// Last use (last_used): when each credential last let a request in, to the
// minute. A request records it with two atomic operations on a side array
// of its snapshot, one of them a store only when the minute changed: no
// lock, no I/O, no allocation. A store carries the minutes over when it
// swaps sets (by credential id), and a store of a file or an HTTP source
// keeps them across restarts in a small file in Caddy's data directory,
// written at most once a minute and when the store goes. Each instance
// records its own requests.

// Minute is a time to the minute, as minutes since the Unix epoch; 0 is
// never.
type Minute = uint32

// MinuteOf is t's minute.
func MinuteOf(t time.Time) Minute {
	m := t.Unix() / 60
	if m < 1 {
		return 1 // the epoch's first minute: 0 says never
	}
	return Minute(min(m, 1<<32-1))
}

// MinuteTime is the start of minute m.
func MinuteTime(m Minute) time.Time { return time.Unix(int64(m)*60, 0).UTC() }

// usage is a store's record of use: the current minute, which a ticker
// moves on, and whether a minute was recorded since the last write.
type usage struct {
	minute atomic.Uint32
	dirty  atomic.Bool
	// path is the file that keeps the record across restarts, or "".
	path string
	now  func() time.Time
}

// tick moves the current minute on.
func (u *usage) tick() { u.minute.Store(MinuteOf(u.now())) }

// Use records that cred, of the snapshot's set, let a request in now
// (keyauth's usage view).
func (v *snapshot) Use(cred consumers.Credential) {
	i := cred.Index()
	if i >= len(v.used) {
		return
	}
	if m := v.usage.minute.Load(); m > v.used[i].Load() {
		v.used[i].Store(m)
		v.usage.dirty.Store(true)
	}
}

// LastUsed is the minute cred, of the snapshot's set, last let a request
// in, 0 for never as far as this instance knows.
func (v *snapshot) LastUsed(cred consumers.Credential) Minute {
	if i := cred.Index(); i < len(v.used) {
		return v.used[i].Load()
	}
	return 0
}

// newSnapshot is the snapshot of set, with the minutes of use of from
// (a previous snapshot, or nil) carried over by credential id.
func newSnapshot(set *consumers.Set, u *usage, from map[string]Minute) *snapshot {
	_, keys := set.Len()
	v := &snapshot{set: set, usage: u, used: make([]atomic.Uint32, keys),
		index: sync.OnceValue(func() *consumers.Index { return consumers.NewIndex(set) })}
	if len(from) > 0 {
		for i := range v.used {
			if m, ok := from[set.CredentialAt(i).ID()]; ok {
				v.used[i].Store(m)
			}
		}
	}
	return v
}

// minutes is the snapshot's record of use by credential id: the credentials
// used at least once.
func (v *snapshot) minutes() map[string]Minute {
	out := map[string]Minute{}
	if v == nil {
		return out
	}
	for i := range v.used {
		if m := v.used[i].Load(); m != 0 {
			out[v.set.CredentialAt(i).ID()] = m
		}
	}
	return out
}

// LastUsed is when each credential of the current set last let a request
// in, by credential id: those used at least once.
func (s *Store) LastUsed() map[string]time.Time {
	out := map[string]time.Time{}
	for id, m := range s.now.Load().minutes() {
		out[id] = MinuteTime(m)
	}
	return out
}

// UseFile is the file in dir that keeps the record of use of the source
// info describes: one per source, named by its kind and a digest of its
// location.
func UseFile(dir string, info SourceInfo) string {
	sum := sha256.Sum256([]byte(info.Kind + " " + info.Location))
	return filepath.Join(dir, info.Kind+"-"+hex.EncodeToString(sum[:8])+".json")
}

// UseDir is where the stores of file and HTTP sources keep their records
// of use: in Caddy's data directory.
func UseDir() string { return UseDirIn(caddy.AppDataDir()) }

// UseDirIn is UseDir for the Caddy data directory dataDir.
func UseDirIn(dataDir string) string { return filepath.Join(dataDir, "key_auth", "last_used") }

// UseRecord is the content of a record-of-use file.
type UseRecord struct {
	// Source names the source, as its admin view does.
	Source string `json:"source"`
	// LastUsed is when each credential last let a request in, to the
	// minute, by credential id.
	LastUsed map[string]time.Time `json:"last_used"`
}

// ReadUseFile reads a record-of-use file; a missing one is an empty record.
func ReadUseFile(path string) (map[string]Minute, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the record of last use: %w", err)
	}
	var r UseRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading the record of last use %s: %w", path, err)
	}
	out := make(map[string]Minute, len(r.LastUsed))
	for id, t := range r.LastUsed {
		out[id] = MinuteOf(t)
	}
	return out, nil
}

// writeUse writes the store's record of use, atomically, when a minute was
// recorded since the last write.
func (s *Store) writeUse() error {
	u := &s.usage
	if u.path == "" || !u.dirty.Swap(false) {
		return nil
	}
	// Another store of the same source may have written meanwhile (a
	// reload that changed the source's configuration runs two for a
	// moment): for the credentials of this set, the later minute wins.
	v := s.now.Load()
	used := v.minutes()
	if prev, err := ReadUseFile(u.path); err == nil && v != nil {
		_, keys := v.set.Len()
		for i := range keys {
			id := v.set.CredentialAt(i).ID()
			if m, ok := prev[id]; ok && m > used[id] {
				used[id] = m
			}
		}
	}
	r := UseRecord{Source: s.Name(), LastUsed: make(map[string]time.Time, len(used))}
	for id, m := range used {
		r.LastUsed[id] = MinuteTime(m)
	}
	b, err := json.Marshal(&r)
	if err == nil {
		err = writeAtomic(u.path, b)
	}
	if err != nil {
		u.dirty.Store(true) // the next write tries again
		return fmt.Errorf("writing the record of last use: %w", err)
	}
	return nil
}

// writeAtomic writes b to path through a temporary file renamed over it, so
// that a reader (or a crash) never sees half of it; the file is on disk
// before it replaces the last one, so a power cut leaves one or the other.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// UseWriteEvery is how often a store writes its record of use, when it
// changed.
const UseWriteEvery = time.Minute

// keepUse moves the current minute on every few seconds and writes the
// record of use every UseWriteEvery until ctx ends, then once more.
func (s *Store) keepUse(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	lastWrite := time.Now()
	for {
		select {
		case <-ctx.Done():
			if err := s.writeUse(); err != nil {
				s.log().Error("keeping the last use of keys", zap.String("source", s.Name()), zap.Error(err))
			}
			return
		case <-tick.C:
		}
		s.usage.tick()
		if time.Since(lastWrite) >= UseWriteEvery {
			lastWrite = time.Now()
			if err := s.writeUse(); err != nil {
				s.log().Error("keeping the last use of keys", zap.String("source", s.Name()), zap.Error(err))
			}
		}
	}
}
