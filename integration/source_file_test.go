package integration

// Consumers from a file: refused or missing at load, changed, refused or
// expiring while Caddy runs, swapped atomically, shared between handlers,
// kept across reloads.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// works reports whether key gets through, failing the test on anything but
// a pass or a 401.
func works(t *testing.T, base, key string) bool {
	t.Helper()
	r := get(t, base+"/", "apikey", key)
	switch {
	case r.status == http.StatusOK && r.fromUpstream():
		return true
	case r.status == http.StatusUnauthorized:
		return false
	}
	t.Fatalf("unexpected answer %s", r)
	return false
}

const refreshSite = `{{.Global}}
{{.Site}} {
	key_auth {
		consumers file {{.Consumers}} {
			refresh 100ms
		}
	}
	reverse_proxy {{.Up}}
}
`

// A change to the file reaches requests within refresh, whether the file
// is rewritten in place or replaced by an atomic rename (rotation).
func TestFileChange(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(doc("carol", "carol-key-1"))
	e.load(refreshSite, "caddyfile")
	if !works(t, site, "carol-key-1") {
		t.Fatal("carol-key-1 does not work")
	}

	// In place.
	if err := os.WriteFile(e.consumers, []byte(doc("carol", "carol-key-2")), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "carol-key-2 to work", func() bool { return works(t, site, "carol-key-2") })
	if works(t, site, "carol-key-1") {
		t.Error("carol-key-1 still works")
	}

	// Rotation: both keys for a while, then only the new one.
	e.writeConsumers(doc("carol", "carol-key-2", "carol-key-3"))
	eventually(t, "carol-key-3 to work", func() bool { return works(t, site, "carol-key-3") })
	if !works(t, site, "carol-key-2") {
		t.Error("carol-key-2 stopped working during the rotation")
	}
	e.writeConsumers(doc("carol", "carol-key-3"))
	eventually(t, "carol-key-2 to stop working", func() bool { return !works(t, site, "carol-key-2") })
	wantIdentity(t, get(t, site+"/", "apikey", "carol-key-3"), identity{"carol", "carol", absent, "carol-1", absent})

	// Same size, same second: a rename is still seen (the inode changes).
	e.writeConsumers(doc("carol", "carol-key-4"))
	eventually(t, "carol-key-4 to work", func() bool { return works(t, site, "carol-key-4") })
}

// A file refused while Caddy runs is logged once, and the last good set
// keeps serving until the file is fixed.
func TestRefusedFileWhileRunning(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(doc("carol", "carol-key-1"))
	e.load(refreshSite, "caddyfile")
	refusals := func() []string {
		var out []string
		for _, l := range e.moduleLogLines("caddy.log") {
			if strings.Contains(l, "not reloaded") {
				out = append(out, l)
			}
		}
		return out
	}

	broken := strings.Replace(doc("carol", "carol-key-1", "carol-key-2"), "carol-key-1", "carol-key-2", 1)
	e.writeConsumers(broken) // the same key twice
	eventually(t, "the refusal to be logged", func() bool { return len(refusals()) > 0 })
	// Each check of the refused file counts a failure: five more checks.
	checks := waitStatus(t, e.consumers, "a failed check", func(st sources.Status) bool { return st.Failures > 0 }).Failures
	waitStatus(t, e.consumers, "five more checks of the file", func(st sources.Status) bool { return st.Failures >= checks+5 })
	if r := refusals(); len(r) != 1 {
		t.Errorf("%d refusals logged, want 1:\n%s", len(r), strings.Join(r, "\n"))
	} else if !strings.Contains(r[0], e.consumers) || !strings.Contains(r[0], `"level":"error"`) {
		t.Errorf("the refusal does not name the file at ERROR: %s", r[0])
	}
	if !works(t, site, "carol-key-1") {
		t.Error("the last good set does not serve")
	}
	if works(t, site, "carol-key-2") {
		t.Error("a key of the refused file works")
	}

	// Another refusal, another error: logged again.
	e.writeConsumers(`{"consumers": [`)
	eventually(t, "the second refusal to be logged", func() bool { return len(refusals()) == 2 })
	if !works(t, site, "carol-key-1") {
		t.Error("the last good set does not serve")
	}

	// Fixed.
	e.writeConsumers(doc("carol", "carol-key-2"))
	eventually(t, "carol-key-2 to work", func() bool { return works(t, site, "carol-key-2") })
	e.waitLog("caddy.log", func(l logEntry) bool { return l.str("msg") == "consumers source recovered" })
	if works(t, site, "carol-key-1") {
		t.Error("carol-key-1 still works")
	}
}

// A key expires at its expires_at, with no reload: the file is never
// checked again (refresh 0).
func TestExpiryWithoutReload(t *testing.T) {
	e := newEnv(t)
	expiry := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	e.writeConsumers(fmt.Sprintf(`{"consumers": [{"username": "dave", "keys": [
		{"id": "soon", "key": "dave-key-soon", "expires_at": %q},
		{"id": "later", "key": "dave-key-later", "expires_at": %q}]}]}`,
		expiry.UTC().Format(time.RFC3339), expiry.Add(time.Hour).Format(time.RFC3339)))
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		consumers file {{.Consumers}} {
			refresh 0
		}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	stores := storesAt(e.consumers)
	if len(stores) != 1 {
		t.Fatalf("%d stores for the file", len(stores))
	}
	loaded := *stores[0].Status().LastLoad

	if !works(t, site, "dave-key-soon") {
		t.Fatal("dave-key-soon does not work before it expires")
	}
	time.Sleep(time.Until(expiry)) // the clock reaching expires_at is what is tested
	want401(t, get(t, site+"/", "apikey", "dave-key-soon"), msgInvalid)
	wantIdentity(t, get(t, site+"/", "apikey", "dave-key-later"), identity{"dave", "dave", absent, "later", absent})
	if st := stores[0].Status(); !st.LastLoad.Equal(loaded) {
		t.Errorf("the store loaded again at %s", st.LastLoad)
	}
}

// A request sees the old set or the new one, never a mix: one key belongs
// to erin as erin-cred in one version of the file and to frank as
// frank-cred in the other, and the two versions alternate while requests
// run.
func TestSwapIsAtomic(t *testing.T) {
	e := newEnv(t)
	v1 := `{"consumers": [{"username": "erin", "id": "erin-id", "custom_id": "erin-custom", "keys": [{"id": "erin-cred", "key": "shared-key"}]}]}`
	v2 := `{"consumers": [{"username": "frank", "id": "frank-id", "custom_id": "frank-custom", "keys": [{"id": "frank-cred", "key": "shared-key"}]},
		{"username": "pad", "keys": [{"key": "pad-key"}]}]}`
	e.writeConsumers(v1)
	e.load(strings.Replace(refreshSite, "100ms", "10ms", 1), "caddyfile")
	erin := identity{"erin", "erin-id", "erin-custom", "erin-cred", absent}
	frank := identity{"frank", "frank-id", "frank-custom", "frank-cred", absent}

	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			v := v1
			if i%2 == 0 {
				v = v2
			}
			if err := writeFileAtomic(e.consumers, v); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// The readers go on until both versions were seen and at least 240
	// requests were made, so a test that saw one version cannot pass; a
	// bound on the count, not on time, ends a run that never sees both.
	const enough, most = 240, 20000
	seen := map[identity]int{}
	var mu sync.Mutex
	var sent atomic.Int64
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[erin] > 0 && seen[frank] > 0 && sent.Load() >= enough
	}
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for !done() && sent.Add(1) <= most {
				res, err := client.Do(req(http.MethodGet, site+"/", nil, "apikey", "shared-key"))
				if err != nil {
					t.Error(err)
					return
				}
				var got echo
				err = json.NewDecoder(res.Body).Decode(&got)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || err != nil {
					t.Errorf("answer %s (%v)", res.Status, err)
					return
				}
				mu.Lock()
				seen[identityOf(&got)]++
				mu.Unlock()
			}
		})
	}
	readers.Wait()
	close(stop)
	<-writerDone
	for who, n := range seen {
		if who != erin && who != frank {
			t.Errorf("%d requests saw a mix: %+v", n, who)
		}
	}
	if seen[erin] == 0 || seen[frank] == 0 {
		t.Errorf("after %d requests only one version was seen (erin %d, frank %d): the swap was not tested", min(sent.Load(), most), seen[erin], seen[frank])
	}
}

// Sites and routes naming one consumers file share one store, which a
// change of the file reaches for all of them, and which lives on across a
// reload of the config.
func TestSharedStore(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(doc("carol", "carol-key-1"))
	// The same file, also spelled with "/./" and "//".
	e.vars["Other"] = filepath.Dir(e.consumers) + "/./" + "/" + filepath.Base(e.consumers)
	tmpl := `{{.Global}}
{{.Site}} {
	key_auth {
		consumers file {{.Consumers}} {
			refresh 100ms
		}
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	handle /a/* {
		key_auth {
			consumers file {{.Other}} {
				refresh 100ms
			}
		}
		reverse_proxy {{.Up}}
	}
	handle {
		key_auth {
			key_names token
			anonymous carol
			consumers file {{.Consumers}} {
				refresh 100ms
			}
		}
		reverse_proxy {{.Up}}
	}
}
`
	e.load(tmpl, "caddyfile")
	stores := storesAt(e.consumers)
	if len(stores) != 1 {
		t.Fatalf("%d stores for one file, want 1", len(stores))
	}
	store := stores[0]
	for _, base := range []string{site, site2 + "/a"} {
		if !works(t, base, "carol-key-1") {
			t.Errorf("%s: carol-key-1 does not work", base)
		}
	}

	e.writeConsumers(doc("carol", "carol-key-2"))
	for _, base := range []string{site, site2 + "/a"} {
		eventually(t, base+" to see the change", func() bool { return works(t, base, "carol-key-2") })
		if works(t, base, "carol-key-1") {
			t.Errorf("%s: carol-key-1 still works", base)
		}
	}
	wantIdentity(t, get(t, site2+"/b/", "token", "carol-key-2"), identity{"carol", "carol", absent, "carol-1", absent})

	// A reload with a change elsewhere keeps the store.
	e.load(strings.Replace(tmpl, "key_names token", "key_names token2", 1), "caddyfile")
	if s := storesAt(e.consumers); len(s) != 1 || s[0] != store {
		t.Errorf("after a reload: %d stores, the same one: %v", len(s), len(s) == 1 && s[0] == store)
	}
	if !works(t, site, "carol-key-2") {
		t.Error("carol-key-2 does not work after the reload")
	}
	e.writeConsumers(doc("carol", "carol-key-3"))
	eventually(t, "the change after the reload", func() bool { return works(t, site2+"/a", "carol-key-3") })

	// Once no config names the file, its store is gone.
	unload(t)
	if s := storesAt(e.consumers); len(s) != 0 {
		t.Errorf("%d stores left after the config went", len(s))
	}
}

// TestReloadKeepsFileStore: a reload that keeps the consumers source keeps
// its store and does not read the file again (a refused file no longer
// fails a reload of an unchanged source), so a file that
// is refused on disk neither fails the reload nor replaces the set. The
// admin refresh reads it at once, refusing a broken file and taking a good
// one, which is how a `refresh 0` source picks up a change.
func TestReloadKeepsFileStore(t *testing.T) {
	e := newEnv(t)
	e.writeConsumers(doc("carol", "carol-key-1"))
	tmpl := `{{.Global}}
{{.Site}} {
	key_auth {
		realm {{.Realm}}
		consumers file {{.Consumers}} {
			refresh 0
		}
	}
	reverse_proxy {{.Up}}
}
`
	e.vars["Realm"] = "one"
	e.load(tmpl, "caddyfile")

	e.writeConsumers(doc("carol", "carol-key-2", "carol-key-2"))
	e.vars["Realm"] = "two"
	e.load(tmpl, "caddyfile")
	if !works(t, site, "carol-key-1") {
		t.Error("the reload lost the loaded consumers")
	}
	if status, body := adminRefresh(t); status != http.StatusOK || !strings.Contains(body, "same key") {
		t.Errorf("admin refresh of a refused file: %d %s", status, body)
	}
	if !works(t, site, "carol-key-1") {
		t.Error("a refused file replaced the set")
	}

	e.writeConsumers(doc("carol", "carol-key-3"))
	if status, body := adminRefresh(t); status != http.StatusOK || strings.Contains(body, "refresh_error") {
		t.Errorf("admin refresh of a good file: %d %s", status, body)
	}
	if !works(t, site, "carol-key-3") || works(t, site, "carol-key-1") {
		t.Error("the admin refresh did not swap in the changed file")
	}
}

// A consumers file with such a key is refused at /load, and refused again
// when it appears while Caddy runs; no spelling of it ever logs in.
func TestFileBadKeyRefused(t *testing.T) {
	e := newEnv(t)
	for _, bk := range badKeys {
		e.writeConsumers(docWithAliceKey(bk.key))
		for _, adapter := range []string{"caddyfile", "json"} {
			cfg := refreshSite
			if adapter == "json" {
				cfg = jsonSite
			}
			msg := e.loadError(cfg, adapter)
			for _, w := range []string{e.consumers, `consumer "alice", credential "alice-cred"`, bk.fault} {
				if !strings.Contains(msg, w) {
					t.Errorf("%s, %s: the error does not say %q: %s", bk.name, adapter, w, msg)
				}
			}
			noKeyIn(t, bk.name+": the error", msg)
		}
	}

	// A good file loads; each bad one written while it runs is refused and
	// the good set keeps serving.
	e.writeConsumers(docWithAliceKey("alice-key-1"))
	e.load(refreshSite, "caddyfile")
	wantIdentity(t, get(t, site+"/", "apikey", "alice-key-1"), identity{"alice", "alice-id", "cust-a", "alice-cred", absent})
	for i, bk := range badKeys {
		e.writeConsumers(docWithAliceKey(bk.key))
		e.waitLog("caddy.log", func(l logEntry) bool {
			return strings.Contains(l.str("msg"), "not reloaded") && strings.Contains(l.str("error"), bk.fault) &&
				strings.Contains(l.str("error"), `credential "alice-cred"`)
		})
		for _, q := range badKeySentAs {
			if r := get(t, site+q); r.status != http.StatusUnauthorized {
				t.Errorf("%s: GET %s: %s, want 401", bk.name, q, r)
			}
		}
		if !works(t, site, "alice-key-1") {
			t.Errorf("%s: the last good set does not serve", bk.name)
		}
		if i%2 == 1 {
			// Back to good between some of them, so both a streak's first
			// and a later refusal are seen.
			e.writeConsumers(docWithAliceKey("alice-key-1"))
			e.waitLog("caddy.log", func(l logEntry) bool { return l.str("msg") == "consumers source recovered" })
		}
	}
	for _, l := range e.moduleLogLines("caddy.log") {
		noKeyIn(t, "a log line", l)
	}
}

// Each refused consumers file fails the config at /load, with an error that
// names the file and the consumer or credential, and never the key.
func TestRefusedFileAtLoad(t *testing.T) {
	hashOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	for _, tc := range []struct {
		name   string
		doc    string
		want   []string // substrings of the error
		secret []string // never in the error
	}{
		{"invalid JSON",
			"{\"consumers\": [\n  {\"username\": \"alice\", \"keys\": [{\"key\": \"leak-1\"}]\n]}",
			[]string{"line 3, column 1"}, []string{"leak-1"}},
		{"invalid JSON inside a key",
			"{\"consumers\": [\n {\"username\": \"alice\",\n  \"keys\": [{\"key\": \"leak-2\x01\"}]}]}",
			[]string{"line 3, column", "control character"}, []string{"leak-2"}},
		{"unterminated key",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-3`,
			[]string{"line 1, column", "end of document"}, []string{"leak-3"}},
		{"trailing data",
			`{"consumers": []} {"leak-4": 1}`,
			[]string{"line 1, column 19"}, []string{"leak-4"}},
		{"not an object",
			`["leak-5"]`,
			[]string{"line 1, column 1"}, []string{"leak-5"}},
		{"missing username",
			`{"consumers": [{"username": "ok"}, {"id": "c-2", "keys": [{"id": "k", "key": "leak-6"}]}]}`,
			[]string{"consumer #2", "no username"}, []string{"leak-6"}},
		{"empty username",
			`{"consumers": [{"username": "", "keys": [{"key": "leak-7"}]}]}`,
			[]string{"consumer #1", "no username"}, []string{"leak-7"}},
		{"duplicate username",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-8"}]}, {"username": "alice", "id": "other"}]}`,
			[]string{`consumer "alice"`, "twice"}, []string{"leak-8"}},
		{"duplicate id",
			`{"consumers": [{"username": "alice", "id": "same"}, {"username": "bob", "id": "same", "keys": [{"key": "leak-9"}]}]}`,
			[]string{`consumer "bob"`, `"same"`, `consumer "alice"`}, []string{"leak-9"}},
		{"id that is another's username",
			`{"consumers": [{"username": "alice"}, {"username": "bob", "id": "alice"}]}`,
			[]string{`consumer "bob"`, `"alice"`}, nil},
		{"empty key",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "key": ""}]}]}`,
			[]string{`consumer "alice"`, `credential "cred-1"`, "empty key"}, nil},
		{"empty key, no credential id",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-10"}, {"key": ""}]}]}`,
			[]string{`consumer "alice"`, "key #2", "empty key"}, []string{"leak-10"}},
		{"both key and hash",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "key": "leak-11", "hash": "sha256:` + hashOf("leak-11") + `"}]}]}`,
			[]string{`credential "cred-1"`, "both key and hash"}, []string{"leak-11", hashOf("leak-11")}},
		{"malformed hash, short",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "hash": "sha256:abc123"}]}]}`,
			[]string{`credential "cred-1"`, "malformed hash"}, []string{"abc123"}},
		{"malformed hash, not hex",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "hash": "sha256:` + strings.Repeat("z", 64) + `"}]}]}`,
			[]string{`credential "cred-1"`, "malformed hash"}, []string{strings.Repeat("z", 64)}},
		{"malformed hash, other algorithm",
			`{"consumers": [{"username": "alice", "keys": [{"id": "cred-1", "hash": "md5:` + hashOf("leak-12") + `"}]}]}`,
			[]string{`credential "cred-1"`, "malformed hash"}, []string{hashOf("leak-12")}},
		{"same key twice across consumers",
			`{"consumers": [{"username": "alice", "keys": [{"id": "a-1", "key": "leak-13"}]}, {"username": "bob", "keys": [{"id": "b-1", "key": "leak-13"}]}]}`,
			[]string{`credential "b-1"`, `credential "a-1"`, "same key"}, []string{"leak-13"}},
		{"same key twice in one consumer",
			`{"consumers": [{"username": "alice", "keys": [{"key": "leak-14"}, {"id": "a-2", "key": "leak-14"}]}]}`,
			[]string{`credential "a-2"`, `credential "alice#1"`, "same key"}, []string{"leak-14"}},
		{"same key plain and hashed",
			`{"consumers": [{"username": "alice", "keys": [{"id": "a-1", "key": "leak-15"}]}, {"username": "bob", "keys": [{"id": "b-1", "hash": "sha256:` + hashOf("leak-15") + `"}]}]}`,
			[]string{`credential "b-1"`, `credential "a-1"`, "same key"}, []string{"leak-15", hashOf("leak-15")}},
		{"same key hashed twice, upper and lower case hex",
			`{"consumers": [{"username": "alice", "keys": [{"id": "a-1", "hash": "sha256:` + hashOf("leak-16") + `"}, {"id": "a-2", "hash": "sha256:` + strings.ToUpper(hashOf("leak-16")) + `"}]}]}`,
			[]string{`credential "a-2"`, "same key"}, []string{"leak-16", hashOf("leak-16")}},
		{"duplicate credential id",
			`{"consumers": [{"username": "alice", "keys": [{"id": "c", "key": "leak-17"}]}, {"username": "bob", "keys": [{"id": "c", "key": "leak-18"}]}]}`,
			[]string{`consumer "bob"`, `"c"`}, []string{"leak-17", "leak-18"}},
		{"bad expires_at",
			`{"consumers": [{"username": "alice", "keys": [{"id": "c", "key": "leak-19", "expires_at": "tomorrow"}]}]}`,
			[]string{`credential "c"`, "expires_at"}, []string{"leak-19"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConsumers(tc.doc)
			for _, adapter := range []string{"caddyfile", "json"} {
				cfg := refreshSite
				if adapter == "json" {
					cfg = jsonSite
				}
				msg := e.loadError(cfg, adapter)
				if !strings.Contains(msg, e.consumers) {
					t.Errorf("%s: the error does not name the file: %s", adapter, msg)
				}
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: the error does not say %q: %s", adapter, w, msg)
					}
				}
				for _, s := range tc.secret {
					if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
						t.Errorf("%s: the error holds %q: %s", adapter, s, msg)
					}
				}
			}
			// Caddy still runs the config it had.
			e.writeConsumers(doc("carol", "carol-key-1"))
			e.load(refreshSite, "caddyfile")
			if !works(t, site, "carol-key-1") {
				t.Error("a good file is not served after the refusal")
			}
		})
	}
}

// A missing file fails the config too.
func TestMissingFileAtLoad(t *testing.T) {
	e := newEnv(t)
	e.consumers += ".missing"
	msg := e.loadError(refreshSite, "caddyfile")
	if !strings.Contains(msg, e.consumers) || !strings.Contains(msg, "no such file") {
		t.Errorf("error: %s", msg)
	}
}

// jsonSite is refreshSite in JSON, with the handler inside a subroute.
const jsonSite = `{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "DEBUG", "encoder": {"format": "json"},
		"writer": {"output": "file", "filename": "{{.Dir}}/caddy.log"}}}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {"s": {
		"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
		"routes": [{"handle": [{"handler": "subroute", "routes": [{"handle": [
			{"handler": "key_auth", "consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "100ms"}},
			{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
		]}]}]}]
	}}}}
}`
