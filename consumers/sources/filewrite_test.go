package sources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

// provisionedFile is a file source of path, provisioned as a config
// provisions it (its store in the pool, shared with any other source of
// the same file), and cleaned up with the test.
func provisionedFile(t *testing.T, path string) *FileSource {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // the record of use
	ctx, err := caddy.ProvisionContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	zero := caddy.Duration(0) // no polling: what the store serves changes only by a write
	f := &FileSource{Path: path, Refresh: &zero}
	if err := f.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Cleanup() })
	return f
}

func writeConsumersFile(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, []byte(doc), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

// lookupKey finds key in what the source serves now, as a request does.
func lookupKey(t *testing.T, f *FileSource, key string) (consumers.Credential, bool) {
	t.Helper()
	v := f.Now()
	if v == nil {
		t.Fatal("the source serves nothing")
	}
	c, ok, err := v.Lookup(context.Background(), *digestOf(key))
	if err != nil {
		t.Fatal(err)
	}
	return c, ok
}

func setEntry(e *consumers.ConsumerEntry) func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
	return func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { return e, nil }
}

func TestFileEdit(t *testing.T) {
	path := writeConsumersFile(t, `{"consumers": [
  {"username": "bob", "keys": [{"key": "`+keyMark+`-bob"}]},
  {"username": "alice", "id": "a11ce", "labels": {"plan": "pro"}, "keys": [{"id": "alice-1", "key": "`+keyMark+`-alice"}]}
]}`)
	f := provisionedFile(t, path)
	ctx := context.Background()

	// Create: served at once, no refresh.
	err := f.Edit(ctx, "carol", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		if cur != nil {
			t.Errorf("carol exists before she is created: %+v", cur)
		}
		return &consumers.ConsumerEntry{Username: "carol", Groups: []string{"gold"},
			Keys: []consumers.CredentialEntry{{ID: "carol-1", Key: keyMark + "-carol", CreatedAt: "2026-01-02T03:04:05Z"}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := lookupKey(t, f, keyMark+"-carol"); !ok || c.ID() != "carol-1" || !c.Consumer().InGroup("gold") {
		t.Fatalf("carol's key after the write: %v %v", c, ok)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode after the write: %v %v", fi.Mode(), err)
	}

	// Change: the change gets the entry as the file has it, plain keys
	// and derived ids as they are.
	err = f.Edit(ctx, "bob", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		if cur == nil || len(cur.Keys) != 1 || cur.Keys[0].Key != keyMark+"-bob" || cur.Keys[0].ID != "" {
			t.Errorf("bob as the change gets him: %+v", cur)
		}
		cur.Disabled = true
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := lookupKey(t, f, keyMark+"-bob"); !ok || !c.Consumer().Disabled() {
		t.Errorf("bob is not disabled after the write: %v %v", c, ok)
	}

	// Reads: in username order, from the set served, keys as hashes.
	var names []string
	err = f.Consumers(ctx, "", func(e *consumers.ConsumerEntry) bool {
		names = append(names, e.Username)
		for _, k := range e.Keys {
			if k.Key != "" || !strings.HasPrefix(k.Hash, consumers.HashPrefix) {
				t.Errorf("%s's key %s is read with its key, or without its hash", e.Username, k.ID)
			}
		}
		return true
	})
	if err != nil || !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Errorf("Consumers: %v %v", names, err)
	}
	names = nil
	_ = f.Consumers(ctx, "alice", func(e *consumers.ConsumerEntry) bool {
		names = append(names, e.Username)
		return len(names) < 1
	})
	if !slices.Equal(names, []string{"bob"}) {
		t.Errorf("Consumers after alice, one: %v", names)
	}
	alice, err := f.ReadConsumer(ctx, "alice")
	if err != nil || alice == nil || alice.ID != "a11ce" || alice.Labels["plan"] != "pro" || alice.Keys[0].ID != "alice-1" ||
		alice.Keys[0].Hash != consumers.HashKey(keyMark+"-alice") {
		t.Errorf("ReadConsumer(alice) = %+v, %v", alice, err)
	}
	if e, err := f.ReadConsumer(ctx, "nobody"); e != nil || err != nil {
		t.Errorf("ReadConsumer(nobody) = %+v, %v", e, err)
	}

	// Last use: the store's record, by credential id.
	c, _ := lookupKey(t, f, keyMark+"-alice")
	f.Now().(interface{ Use(consumers.Credential) }).Use(c)
	used, err := f.LastUsed(ctx, []string{"alice-1", "carol-1", "nobody"})
	if err != nil || len(used) != 3 || used[0].IsZero() || !used[1].IsZero() || !used[2].IsZero() {
		t.Errorf("LastUsed = %v, %v", used, err)
	}
	if time.Since(used[0]) > 2*time.Minute {
		t.Errorf("alice-1 last used %v", used[0])
	}

	// Delete: the key stops working at once; deleting nobody writes
	// nothing.
	if err := f.Edit(ctx, "carol", setEntry(nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookupKey(t, f, keyMark+"-carol"); ok {
		t.Error("carol's key works after her deletion")
	}
	before, _ := os.Stat(path)
	if err := f.Edit(ctx, "nobody", setEntry(nil)); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) {
		t.Error("deleting a consumer that is not there wrote the file")
	}
	// The last use of alice-1 survives the writes (carried by id).
	if used, _ := f.LastUsed(ctx, []string{"alice-1"}); used[0].IsZero() {
		t.Error("alice-1's last use is lost after writes")
	}
}

// A write that the document refuses, or that takes another consumer's
// credential id, key or id, writes nothing and says why without naming the
// other consumer; the change's own error comes back as it is.
func TestFileEditRefused(t *testing.T) {
	doc := `{"consumers": [
  {"username": "alice", "id": "a11ce", "keys": [{"id": "first-cred", "key": "` + keyMark + `-alice"}]},
  {"username": "bob"}
]}`
	path := writeConsumersFile(t, doc)
	f := provisionedFile(t, path)
	ctx := context.Background()
	mine := errors.New("my own error")
	tests := []struct {
		name   string
		change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)
		is     error
		want   string
	}{
		{"bad label", setEntry(&consumers.ConsumerEntry{Username: "bob", Labels: map[string]string{"bad name": "x"}}),
			consumers.ErrRefused, `consumer "bob": label name "bad name" is not`},
		{"blank key", setEntry(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "b", Key: "   "}}}),
			consumers.ErrRefused, `consumer "bob", credential "b"`},
		{"another username", setEntry(&consumers.ConsumerEntry{Username: "robert"}),
			consumers.ErrRefused, `username: the entry's username "robert" is not the consumer's, "bob"`},
		{"credential id taken", setEntry(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "first-cred", Key: keyMark + "-bob"}}}),
			consumers.ErrCredentialTaken, `consumer "bob": credential id "first-cred" is already in use`},
		{"key taken", setEntry(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "bob-1", Key: keyMark + "-alice"}}}),
			consumers.ErrCredentialTaken, `consumer "bob", credential "bob-1": its key is already another credential's`},
		{"hashed key taken", setEntry(&consumers.ConsumerEntry{Username: "bob", Keys: []consumers.CredentialEntry{{ID: "bob-1", Hash: consumers.HashKey(keyMark + "-alice")}}}),
			consumers.ErrCredentialTaken, `its key is already another credential's`},
		{"consumer id taken", setEntry(&consumers.ConsumerEntry{Username: "bob", ID: "a11ce"}),
			consumers.ErrRefused, `consumer "bob": id "a11ce" is already another consumer's`},
		{"change's error", func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { return nil, mine }, mine, "my own error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.Edit(ctx, "bob", tt.change)
			if !errors.Is(err, tt.is) || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("error %v, want %v saying %q", err, tt.is, tt.want)
			}
			if strings.Contains(fmt.Sprint(err), "alice") && tt.is != consumers.ErrRefused {
				t.Errorf("the error names the other consumer: %v", err)
			}
			if strings.Contains(fmt.Sprint(err), keyMark) {
				t.Errorf("the error holds key material: %v", err)
			}
			if got, _ := os.ReadFile(path); string(got) != doc {
				t.Errorf("the file was written:\n%s", got)
			}
		})
	}

	// The file gone: a plain error (the store unreachable), nothing
	// served changes.
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	err := f.Edit(ctx, "bob", setEntry(&consumers.ConsumerEntry{Username: "bob", Disabled: true}))
	if err == nil || errors.Is(err, consumers.ErrRefused) || errors.Is(err, consumers.ErrConflict) {
		t.Errorf("writing a file that is gone: %v", err)
	}
	if c, _ := f.ReadConsumer(ctx, "bob"); c == nil || c.Disabled {
		t.Errorf("bob after a failed write: %+v", c)
	}
}

// Writers in goroutines and another process (`caddy key-auth`, through
// docfile) writing between a write's read and its save: nothing is lost.
func TestFileEditConcurrent(t *testing.T) {
	path := writeConsumersFile(t, `{"consumers": [{"username": "shared"}]}`)
	f := provisionedFile(t, path)
	// A second source of the same file in another config shares the store
	// and the lock.
	g := provisionedFile(t, path)
	if f.store != g.store {
		t.Fatal("two sources of one file do not share a store")
	}
	ctx := context.Background()

	var outside sync.Once
	var outsideWrote bool
	testHookBeforeSave = func(p string) {
		outside.Do(func() {
			df, err := docfile.Open(p)
			if err != nil {
				t.Error(err)
				return
			}
			df.Doc.Consumers = append(df.Doc.Consumers, consumers.ConsumerEntry{Username: "cli"})
			if err := df.Save(); err != nil {
				t.Error(err)
				return
			}
			outsideWrote = true
		})
	}
	defer func() { testHookBeforeSave = func(string) {} }()

	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		src := f
		if i%2 == 1 {
			src = g
		}
		wg.Go(func() {
			// A consumer of its own, and a key on the shared one.
			errs <- src.Edit(ctx, fmt.Sprint("u", i), setEntry(&consumers.ConsumerEntry{Username: fmt.Sprint("u", i)}))
			errs <- src.Edit(ctx, "shared", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
				cur.Keys = append(cur.Keys, consumers.CredentialEntry{ID: fmt.Sprint("s", i), Key: fmt.Sprint(keyMark, "-s", i)})
				return cur, nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if !outsideWrote {
		t.Fatal("the other process did not write")
	}
	df, err := docfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(df.Doc.Consumers) != n+2 {
		t.Errorf("%d consumers in the file, want %d", len(df.Doc.Consumers), n+2)
	}
	if _, ok := df.Doc.Consumer("cli"); !ok {
		t.Error("the other process's consumer is lost")
	}
	shared, _ := df.Doc.Consumer("shared")
	if len(shared.Keys) != n {
		t.Errorf("the shared consumer has %d keys, want %d", len(shared.Keys), n)
	}
	// Both sources serve the last write.
	for i := range n {
		if _, ok := lookupKey(t, g, fmt.Sprint(keyMark, "-s", i)); !ok {
			t.Errorf("key s%d is not served", i)
		}
	}
	if c, _ := f.ReadConsumer(ctx, "cli"); c == nil {
		t.Error("the other process's consumer is not served")
	}
}

// Another process that changes the file between every read and save: Edit
// gives up with ErrConflict after EditTries, having written nothing of its
// own.
func TestFileEditConflict(t *testing.T) {
	path := writeConsumersFile(t, `{"consumers": []}`)
	f := provisionedFile(t, path)
	tries := 0
	testHookBeforeSave = func(p string) {
		tries++
		df, err := docfile.Open(p)
		if err != nil {
			t.Error(err)
			return
		}
		df.Doc.Consumers = append(df.Doc.Consumers, consumers.ConsumerEntry{Username: fmt.Sprint("other", tries)})
		if err := df.Save(); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookBeforeSave = func(string) {} }()
	err := f.Edit(context.Background(), "mine", setEntry(&consumers.ConsumerEntry{Username: "mine"}))
	if !errors.Is(err, consumers.ErrConflict) {
		t.Fatalf("error %v, want ErrConflict", err)
	}
	if tries != EditTries {
		t.Errorf("%d tries, want %d", tries, EditTries)
	}
	df, err := docfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := df.Doc.Consumer("mine"); ok || len(df.Doc.Consumers) != EditTries {
		t.Errorf("the file holds %+v", df.Doc.Consumers)
	}
}

// BenchmarkFileEdit is what one write through the file source costs with
// a file of n consumers (one hashed key each, as `caddy key-auth hash`
// leaves them): the whole document read and checked, rewritten, renamed,
// and loaded again by the store. 1,000,000 consumers with
// KEYAUTH_BENCH_MILLION=1.
func BenchmarkFileEdit(b *testing.B) {
	sizes := []int{100_000}
	if os.Getenv("KEYAUTH_BENCH_MILLION") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("consumers=%d", n), func(b *testing.B) {
			var doc strings.Builder
			doc.WriteString(`{"consumers": [`)
			for i := range n {
				if i > 0 {
					doc.WriteString(",\n")
				}
				fmt.Fprintf(&doc, `{"username": "user-%07d", "groups": ["free"], "keys": [{"id": "key-%07d", "hash": "%s", "created_at": "2026-01-01T00:00:00Z"}]}`,
					i, i, consumers.HashKey(fmt.Sprint(keyMark, i)))
			}
			doc.WriteString("]}")
			path := filepath.Join(b.TempDir(), "consumers.json")
			if err := os.WriteFile(path, []byte(doc.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			b.Setenv("XDG_DATA_HOME", b.TempDir())
			ctx, err := caddy.ProvisionContext(nil)
			if err != nil {
				b.Fatal(err)
			}
			zero := caddy.Duration(0)
			f := &FileSource{Path: path, Refresh: &zero}
			if err := f.Provision(ctx); err != nil {
				b.Fatal(err)
			}
			defer f.Cleanup()
			fi, _ := os.Stat(path)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				err := f.Edit(context.Background(), "user-0000007", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
					cur.Disabled = i%2 == 0
					return cur, nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
			start := time.Now()
			var count int
			_ = f.Consumers(context.Background(), "user-0500000", func(*consumers.ConsumerEntry) bool { count++; return count < 100 })
			b.ReportMetric(float64(time.Since(start).Microseconds()), "first-page-after-write-µs")
			start = time.Now()
			count = 0
			_ = f.Consumers(context.Background(), "user-0600000", func(*consumers.ConsumerEntry) bool { count++; return count < 100 })
			b.ReportMetric(float64(time.Since(start).Microseconds()), "next-page-µs")
		})
	}
}

// A roll through the writer: both keys work as the same credential at once,
// and the reads show the previous secret.
func TestFileEditRoll(t *testing.T) {
	path := writeConsumersFile(t, `{"consumers": [{"username": "tom", "keys": [{"id": "tom-1", "key": "`+keyMark+`-old"}]}]}`)
	f := provisionedFile(t, path)
	ctx := context.Background()
	if err := f.Edit(ctx, "tom", func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		_, err := cur.Roll(0, consumers.HashKey(keyMark+"-new"), time.Hour, time.Now())
		return cur, err
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"-old", "-new"} {
		if c, ok := lookupKey(t, f, keyMark+k); !ok || c.ID() != "tom-1" {
			t.Errorf("the %s key after the roll: %v %v", k, c, ok)
		}
	}
	e, err := f.ReadConsumer(ctx, "tom")
	if err != nil || len(e.Keys) != 1 || len(e.Keys[0].Previous) != 1 || e.Keys[0].Previous[0].Hash != consumers.HashKey(keyMark+"-old") {
		t.Errorf("tom read back: %+v %v", e, err)
	}
}
