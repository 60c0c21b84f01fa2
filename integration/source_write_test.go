package integration

// Writing through to a source (keyauth.Writer, what key_auth_api uses): a
// handler of the config that loads its own key_auth.sources module, as
// key_auth does, shares the store of the key_auth handlers that name the
// same source, and its writes are answered by them at once.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// writeThroughTest is a handler that writes a consumer through its source,
// as the management API does: POST {"username": ..., "entry": ...} sets
// the consumer's entry (null deletes it), answering 204, or 400, 409 and
// 503 as the management API maps the Writer's errors.
type writeThroughTest struct {
	SourceRaw json.RawMessage `json:"source,omitempty" caddy:"namespace=key_auth.sources inline_key=source"`

	w keyauth.Writer
}

func init() { caddy.RegisterModule(writeThroughTest{}) }

func (writeThroughTest) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.write_through_test", New: func() caddy.Module { return new(writeThroughTest) }}
}

func (h *writeThroughTest) Provision(ctx caddy.Context) error {
	mod, err := ctx.LoadModule(h, "SourceRaw")
	if err != nil {
		return err
	}
	w, ok := mod.(keyauth.Writer)
	if !ok {
		return fmt.Errorf("the source %T is read-only", mod)
	}
	h.w = w
	return nil
}

func (h *writeThroughTest) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	var req struct {
		Username string                   `json:"username"`
		Entry    *consumers.ConsumerEntry `json:"entry"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	err := h.w.Edit(r.Context(), req.Username, func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) { return req.Entry, nil })
	status := http.StatusNoContent
	switch {
	case err == nil:
	case errors.Is(err, keyauth.ErrRefused):
		status = http.StatusBadRequest
	case errors.Is(err, keyauth.ErrCredentialTaken), errors.Is(err, keyauth.ErrConflict):
		status = http.StatusConflict
	default:
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	if err != nil {
		_, _ = fmt.Fprint(w, err)
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*writeThroughTest)(nil)
	_ caddyhttp.MiddlewareHandler = (*writeThroughTest)(nil)
)

// writeThroughConfig serves /manage with the writer and everything else
// behind key_auth, both on the env's consumers file, checked only hourly:
// a change is answered because the store is shared, not because it polled.
const writeThroughConfig = `{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "DEBUG", "encoder": {"format": "json"},
		"writer": {"output": "file", "filename": "{{.Dir}}/caddy.log"}}}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {"s": {
		"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
		"routes": [
			{"match": [{"path": ["/manage"]}], "handle": [{"handler": "write_through_test",
				"source": {"source": "file", "path": "{{.Consumers}}", "refresh": "1h"}}], "terminal": true},
			{"handle": [
				{"handler": "key_auth", "consumers": {"source": "file", "path": "{{.Consumers}}", "refresh": "1h"}},
				{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
			]}
		]
	}}}}
}`

// manage sets the consumer's entry through the writer; it returns the
// status and the body.
func manage(t testing.TB, username string, entry *consumers.ConsumerEntry) (int, string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"username": username, "entry": entry})
	if err != nil {
		t.Fatal(err)
	}
	r := post(t, site+"/manage", "application/json", b)
	return r.status, string(r.body)
}

// The APISIX tutorial's walkthrough, through the file source: tom is
// created with his key, which works at once; disabled, it stops; deleted,
// it stays stopped. A refused entry writes nothing.
func TestWriteThroughFile(t *testing.T) {
	e := newEnv(t)
	e.load(writeThroughConfig, "json")
	if len(storesAt(e.consumers)) != 1 {
		t.Fatalf("%d stores of the file, want one shared", len(storesAt(e.consumers)))
	}
	const tomKey = "secret-key-of-tom"
	tom := &consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-key", Key: tomKey}}}
	if works(t, site, tomKey) {
		t.Fatal("tom's key works before tom exists")
	}
	if status, body := manage(t, "tom", tom); status != http.StatusNoContent {
		t.Fatalf("creating tom: %d %s", status, body)
	}
	// At once: the next request, without waiting.
	if !works(t, site, tomKey) {
		t.Fatal("tom's key does not work right after the write")
	}
	wantIdentity(t, get(t, site+"/", "apikey", tomKey), identity{"tom", "tom", absent, "tom-key", absent})
	if !works(t, site, keyAlice) {
		t.Error("alice's key stopped working")
	}

	tom.Disabled = true
	if status, body := manage(t, "tom", tom); status != http.StatusNoContent {
		t.Fatalf("disabling tom: %d %s", status, body)
	}
	if works(t, site, tomKey) {
		t.Error("tom's key works right after tom is disabled")
	}

	before, err := os.ReadFile(e.consumers)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		entry  *consumers.ConsumerEntry
		status int
		want   string
	}{
		{&consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-key", Key: "  "}}}, http.StatusBadRequest, `consumer "tom", credential "tom-key"`},
		{&consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "alice-key", Key: "tom-2"}}}, http.StatusConflict, `credential id "alice-key" is already in use`},
		{&consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-2", Key: keyAlice}}}, http.StatusConflict, `its key is already another credential's`},
	} {
		status, body := manage(t, "tom", tc.entry)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%+v: %d %s, want %d %q", tc.entry, status, body, tc.status, tc.want)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("the answer holds a key: %s", body)
			}
		}
	}
	if after, _ := os.ReadFile(e.consumers); string(after) != string(before) {
		t.Error("a refused write changed the file")
	}

	if status, body := manage(t, "tom", nil); status != http.StatusNoContent {
		t.Fatalf("deleting tom: %d %s", status, body)
	}
	tom.Disabled = false
	if works(t, site, tomKey) {
		t.Error("tom's key works after tom is deleted")
	}
	if len(storesAt(e.consumers)) != 1 {
		t.Errorf("%d stores of the file after the writes", len(storesAt(e.consumers)))
	}
}

// Requests writing at once, and `caddy key-auth` (docfile) writing the file
// meanwhile: every write is in the file and answered.
func TestWriteThroughFileConcurrent(t *testing.T) {
	e := newEnv(t)
	e.load(writeThroughConfig, "json")
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprint("w", i)
			entry := &consumers.ConsumerEntry{Username: name, Keys: []consumers.CredentialEntry{{ID: name, Key: "key-of-" + name}}}
			if status, body := manage(t, name, entry); status != http.StatusNoContent {
				t.Errorf("writing %s: %d %s", name, status, body)
			}
		})
	}
	// The CLI's way, between the requests' writes.
	wg.Go(func() {
		for i := range 3 {
			for {
				df, err := docfile.Open(e.consumers)
				if err != nil {
					t.Error(err)
					return
				}
				name := fmt.Sprint("cli", i)
				df.Doc.Consumers = append(df.Doc.Consumers, consumers.ConsumerEntry{Username: name, Keys: []consumers.CredentialEntry{{ID: name, Key: "key-of-" + name}}})
				err = df.Save()
				if errors.Is(err, consumers.ErrConflict) {
					continue // as its user would: run the command again
				}
				if err != nil {
					t.Error(err)
				}
				break
			}
		}
	})
	wg.Wait()
	df, err := docfile.Open(e.consumers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, ok := df.Doc.Consumer(fmt.Sprint("w", i)); !ok {
			t.Errorf("w%d is lost", i)
		}
	}
	for i := range 3 {
		if _, ok := df.Doc.Consumer(fmt.Sprint("cli", i)); !ok {
			t.Errorf("cli%d is lost", i)
		}
	}
	// The writers' own keys work at once; the CLI's once the store reads
	// the file (the next write through it does, or a refresh).
	for i := range n {
		if !works(t, site, fmt.Sprint("key-of-w", i)) {
			t.Errorf("w%d's key does not work", i)
		}
	}
	if status, body := adminRefresh(t); status != http.StatusOK {
		t.Fatalf("refresh: %d %s", status, body)
	}
	for i := range 3 {
		if !works(t, site, fmt.Sprint("key-of-cli", i)) {
			t.Errorf("cli%d's key does not work", i)
		}
	}
}

// The HTTP source is read-only: a config whose writer names one is
// refused, as the management API refuses it.
func TestWriteThroughHTTPReadOnly(t *testing.T) {
	e := newEnv(t)
	msg := e.loadError(`{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {"s": {
		"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
		"routes": [{"handle": [{"handler": "write_through_test",
			"source": {"source": "http", "url": "http://127.0.0.1:1/consumers.json"}}]}]
	}}}}
}`, "json")
	if !strings.Contains(msg, "is read-only") {
		t.Errorf("error %q", msg)
	}
}

// The walkthrough through the Redis source, with two key_auth sites: one
// that shares the writer's source (its client and cache: the change is
// answered at once), and one configured otherwise (another client and
// cache, as another instance has), which answers within its revocation
// latency, as Redis tells it of the change.
func TestWriteThroughRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t)
	e.vars["Redis"] = srv.Addr()
	e.load(`{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "DEBUG", "encoder": {"format": "json"},
		"writer": {"output": "file", "filename": "{{.Dir}}/caddy.log"}}}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {
		"s": {
			"listen": ["127.0.0.1:{{.Port}}"], "automatic_https": {"disable": true},
			"routes": [
				{"match": [{"path": ["/manage"]}], "handle": [{"handler": "write_through_test",
					"source": {"source": "redis", "addresses": ["{{.Redis}}"], "prefix": "w:"}}], "terminal": true},
				{"handle": [
					{"handler": "key_auth", "consumers": {"source": "redis", "addresses": ["{{.Redis}}"], "prefix": "w:"}},
					{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
				]}
			]
		},
		"other": {
			"listen": ["127.0.0.1:{{.Port2}}"], "automatic_https": {"disable": true},
			"routes": [{"handle": [
				{"handler": "key_auth", "consumers": {"source": "redis", "addresses": ["{{.Redis}}"], "prefix": "w:", "cache": 1048576}},
				{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}
			]}]
		}
	}}}
}`, "json")
	// Connected: a key that no one has is refused, not 503.
	eventually(t, "both sites to answer 401", func() bool {
		return get(t, site+"/", "apikey", "nobody").status == http.StatusUnauthorized &&
			get(t, site2+"/", "apikey", "nobody").status == http.StatusUnauthorized
	})
	const tomKey = "secret-key-of-tom-in-redis"
	tom := &consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-key", Key: tomKey}}}
	// Both caches hold the unknown answer.
	if works(t, site, tomKey) || works(t, site2, tomKey) {
		t.Fatal("tom's key works before tom exists")
	}
	if status, body := manage(t, "tom", tom); status != http.StatusNoContent {
		t.Fatalf("creating tom: %d %s", status, body)
	}
	if !works(t, site, tomKey) {
		t.Fatal("tom's key does not work right after the write on the writer's site")
	}
	eventually(t, "tom's key to work on the other site", func() bool { return works(t, site2, tomKey) })
	wantIdentity(t, get(t, site2+"/", "apikey", tomKey), identity{"tom", "tom", absent, "tom-key", absent})

	tom.Disabled = true
	if status, body := manage(t, "tom", tom); status != http.StatusNoContent {
		t.Fatalf("disabling tom: %d %s", status, body)
	}
	if works(t, site, tomKey) {
		t.Error("tom's key works right after tom is disabled")
	}
	eventually(t, "tom's key to stop on the other site", func() bool { return !works(t, site2, tomKey) })

	status, body := manage(t, "tom", &consumers.ConsumerEntry{Username: "tom", Keys: []consumers.CredentialEntry{{ID: "tom-key", Key: " "}}})
	if status != http.StatusBadRequest || !strings.Contains(body, `consumer "tom", credential "tom-key"`) {
		t.Errorf("a refused entry: %d %s", status, body)
	}
	if status, body := manage(t, "tom", nil); status != http.StatusNoContent {
		t.Fatalf("deleting tom: %d %s", status, body)
	}
	if works(t, site, tomKey) || works(t, site2, tomKey) {
		t.Error("tom's key works after tom is deleted")
	}
}
