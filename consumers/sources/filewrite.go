package sources

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

// The file source is writable: FileSource implements keyauth.Writer, the
// management API's view of a source it can change. A write takes the path
// `caddy key-auth` takes (docfile): the whole document checked, written to a
// temporary file renamed over the file, its mode, owner and group kept,
// under the lock file, refused when another writer changed the file since it
// was read. Then every store of the file reloads it at once.
//
// Writing is a method of the module, not of the Handle it embeds: a source
// that embeds a Handle (the HTTP source, one of another package) is
// read-only for the management API unless it writes itself.

// EditTries is how many times Edit reads the file and applies the change
// when another process (`caddy key-auth`, a script) changes the file
// between the read and the write, before it gives up with ErrConflict.
const EditTries = 5

// fileWriteLocks serializes this process's writes to each consumers file, by
// path: writers that share a store (and stores of the same file) never
// refuse each other.
var fileWriteLocks sync.Map // path → *sync.Mutex

func fileWriteLock(path string) *sync.Mutex {
	mu, _ := fileWriteLocks.LoadOrStore(path, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

// fileStore is the source's store and the file it reads, once provisioned.
func (f *FileSource) fileStore() (*Store, string, error) {
	if f.store == nil {
		return nil, "", errors.New("the file source is not provisioned")
	}
	l, ok := f.store.loader.(*fileLoader)
	if !ok {
		return nil, "", errors.New("the file source's store reads no file")
	}
	return f.store, l.path, nil
}

// Consumers calls yield with the consumers of the set the store serves, in
// bytewise username order after after (keyauth.Writer).
func (f *FileSource) Consumers(ctx context.Context, after string, yield func(*consumers.ConsumerEntry) bool) error {
	s, _, err := f.fileStore()
	if err != nil {
		return err
	}
	return s.readConsumers(ctx, after, yield)
}

// ReadConsumer is the consumer named username in the set the store serves,
// or nil (keyauth.Writer).
func (f *FileSource) ReadConsumer(ctx context.Context, username string) (*consumers.ConsumerEntry, error) {
	s, _, err := f.fileStore()
	if err != nil {
		return nil, err
	}
	return s.readConsumer(ctx, username)
}

// LastUsed is when each credential of ids last let a request in through
// this instance, to the minute (keyauth.Writer).
func (f *FileSource) LastUsed(ctx context.Context, ids []string) ([]time.Time, error) {
	s, _, err := f.fileStore()
	if err != nil {
		return nil, err
	}
	return s.lastUsedOf(ctx, ids)
}

// Edit changes the consumer named username in the file, then reloads every
// store of the file, so the handlers sharing them answer the change at once
// (keyauth.Writer).
func (f *FileSource) Edit(ctx context.Context, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) error {
	s, path, err := f.fileStore()
	if err != nil {
		return err
	}
	mu := fileWriteLock(path)
	mu.Lock()
	defer mu.Unlock()
	for try := 1; ; try++ {
		wrote, err := editFile(path, username, change)
		var ce ChangeError
		switch {
		case errors.As(err, &ce):
			return ce.Err
		case errors.Is(err, consumers.ErrConflict) && try < EditTries:
			// Another process wrote (or is writing) the file: read it
			// again, after a moment for a writer holding the lock.
			t := time.NewTimer(time.Duration(try) * 5 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
			continue
		case err != nil:
			return err
		}
		if wrote {
			reloadFile(ctx, s, path)
		}
		return nil
	}
}

// testHookBeforeSave runs between the change and the file's save, so a
// test can write the file as another process would.
var testHookBeforeSave = func(path string) {}

// ChangeError carries the error of an edit's change through the edit, so
// that Edit returns it as it is, unwrapped and unjudged: the file and Redis
// writers share it.
type ChangeError struct{ Err error }

func (e ChangeError) Error() string { return e.Err.Error() }

// editFile reads the file, applies change to the consumer and writes the
// file; wrote is false when there was nothing to write (a consumer that
// is not there deleted).
func editFile(path, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) (wrote bool, err error) {
	df, err := docfile.Open(path)
	if err != nil {
		return false, err
	}
	doc := df.Doc
	at := -1
	var cur *consumers.ConsumerEntry
	for i := range doc.Consumers {
		if doc.Consumers[i].Username == username {
			at, cur = i, doc.Consumers[i].Clone()
			break
		}
	}
	next, err := change(cur)
	if err != nil {
		return false, ChangeError{Err: err}
	}
	switch {
	case next == nil && at < 0:
		return false, nil
	case next == nil:
		doc.Consumers = append(doc.Consumers[:at], doc.Consumers[at+1:]...)
	default:
		if _, err := CheckEntry(username, next); err != nil {
			return false, err
		}
		if at < 0 {
			doc.Consumers = append(doc.Consumers, *next)
			at = len(doc.Consumers) - 1
		} else {
			doc.Consumers[at] = *next
		}
		if _, err := consumers.Build(doc); err != nil {
			// The entry alone passed: it collides with another
			// consumer.
			return false, collision(doc, at, err)
		}
	}
	testHookBeforeSave(path)
	if err := df.Save(); err != nil {
		return false, err
	}
	return true, nil
}

// CheckEntry checks the entry a change returned for the consumer named
// username on its own, as a load would: consumers.ErrRefused, naming the
// field. The set it returns holds that one consumer, built, for a writer
// that needs its built form.
func CheckEntry(username string, e *consumers.ConsumerEntry) (*consumers.Set, error) {
	if e.Username != username {
		return nil, consumers.Refused(fmt.Errorf("username: the entry's username %q is not the consumer's, %q", e.Username, username))
	}
	set, err := consumers.Build(&consumers.Document{Consumers: []consumers.ConsumerEntry{*e}})
	if err != nil {
		return nil, consumers.Refused(err)
	}
	return set, nil
}

// collision tells what of the consumer at, which passes the checks on its
// own, another consumer of doc already has (err is the document's
// refusal), without naming that other consumer: a manager may see only
// some consumers.
func collision(doc *consumers.Document, at int, err error) error {
	e := &doc.Consumers[at]
	ids := map[string]int{}
	digests := map[consumers.Digest]int{}
	for k := range e.Keys {
		ids[e.CredentialID(k)] = k
		if d, ok := e.Keys[k].Digest(); ok {
			digests[d] = k
		}
		for _, p := range e.Keys[k].Previous {
			if d, ok := (&consumers.CredentialEntry{Hash: p.Hash}).Digest(); ok {
				digests[d] = k
			}
		}
	}
	for i := range doc.Consumers {
		if i == at {
			continue
		}
		o := &doc.Consumers[i]
		if o.ConsumerID() == e.ConsumerID() {
			return consumers.Refused(fmt.Errorf("consumer %q: id %q is already another consumer's", e.Username, e.ConsumerID()))
		}
		for k := range o.Keys {
			if n, ok := ids[o.CredentialID(k)]; ok {
				return consumers.Taken(fmt.Sprintf("consumer %q: credential id %q is already in use", e.Username, e.CredentialID(n)))
			}
			ds := []consumers.CredentialEntry{o.Keys[k]}
			for _, p := range o.Keys[k].Previous {
				ds = append(ds, consumers.CredentialEntry{Hash: p.Hash})
			}
			for _, c := range ds {
				if d, ok := c.Digest(); ok {
					if n, ok := digests[d]; ok {
						return consumers.Taken(fmt.Sprintf("consumer %q, credential %q: its key is already another credential's", e.Username, e.CredentialID(n)))
					}
				}
			}
		}
	}
	return consumers.Refused(err)
}

// reloadFile reloads every store of the consumers file path, s first. The
// file is written: a store that fails to load it (the file unreadable a
// moment later) logs why, and picks the change up at its next check.
func reloadFile(ctx context.Context, s *Store, path string) {
	stores := []*Store{s}
	for _, o := range Stores() {
		if o != s && o.Info() == s.Info() {
			stores = append(stores, o)
		}
	}
	for _, st := range stores {
		if err := st.Refresh(context.WithoutCancel(ctx)); err != nil {
			st.log().Error("reloading the consumers file after a write", zap.String("source", st.Name()), zap.Error(err))
		}
	}
}

// readConsumers calls yield with the consumers of the set served, in
// username order after after.
func (s *Store) readConsumers(ctx context.Context, after string, yield func(*consumers.ConsumerEntry) bool) error {
	v := s.now.Load()
	if v == nil {
		return ErrUnavailable
	}
	x := v.index()
	for c := range x.After(after) {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := x.Entry(c)
		if !yield(&e) {
			break
		}
	}
	return nil
}

// readConsumer is the consumer named username in the set served, or nil.
func (s *Store) readConsumer(_ context.Context, username string) (*consumers.ConsumerEntry, error) {
	v := s.now.Load()
	if v == nil {
		return nil, ErrUnavailable
	}
	x := v.index()
	c, ok := x.Consumer(username)
	if !ok {
		return nil, nil
	}
	e := x.Entry(c)
	return &e, nil
}

// lastUsedOf is when each credential of ids last let a request in, from
// the record of the set served.
func (s *Store) lastUsedOf(_ context.Context, ids []string) ([]time.Time, error) {
	v := s.now.Load()
	if v == nil {
		return nil, ErrUnavailable
	}
	x := v.index()
	out := make([]time.Time, len(ids))
	for i, id := range ids {
		if c, ok := x.Credential(id); ok {
			if m := v.LastUsed(c); m != 0 {
				out[i] = MinuteTime(m)
			}
		}
	}
	return out, nil
}
