package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// A consumers source from another module, as a plugin would write one: it
// lives in the key_auth.sources namespace, parses its own Caddyfile block,
// and provides a loader of a consumers document; package sources does the
// rest (the handler's contract, sharing across reloads, the key_auth app,
// refresh, the admin view and the metrics). Its consumers are written
// inline:
//
//	consumers static_test {
//		consumer <username> <key>
//	}
type staticTestSource struct {
	// Consumers are username and key pairs.
	Consumers [][2]string `json:"consumers,omitempty"`

	sources.Handle
}

// A module of the namespace that is not a source: it has no store.
type notASourceTest struct{}

func init() {
	caddy.RegisterModule(staticTestSource{})
	caddy.RegisterModule(notASourceTest{})
}

func (staticTestSource) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "key_auth.sources.static_test", New: func() caddy.Module { return new(staticTestSource) }}
}

func (s *staticTestSource) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the source's name
	for d.NextBlock(0) {
		if d.Val() != "consumer" {
			return d.Errf("unrecognized consumers static_test option '%s'", d.Val())
		}
		var c [2]string
		if !d.Args(&c[0], &c[1]) {
			return d.ArgErr()
		}
		s.Consumers = append(s.Consumers, c)
	}
	return nil
}

// Provision shares one store among the sources configured alike: the
// loader is made once, and loads when a running Caddy starts, every minute
// after that, and on POST /key_auth/sources/refresh.
func (s *staticTestSource) Provision(ctx caddy.Context) error {
	key, err := sources.Key("static_test", s)
	if err != nil {
		return err
	}
	return s.Provide(ctx, key, func() (sources.Live, error) {
		l := &staticTestLoader{pairs: s.Consumers}
		staticTestLoaders.Store(l.Info().Location, l)
		return sources.NewStore(l, sources.Polling{Every: time.Minute}, nil), nil
	})
}

// staticTestLoaders holds the latest loader made for each location, for
// tests to count its loads.
var staticTestLoaders sync.Map // location → *staticTestLoader

// staticTestLoader builds its set from the pairs, once (and again on a
// refresh).
type staticTestLoader struct {
	pairs  [][2]string
	loaded bool
	loads  atomic.Int32
}

func (l *staticTestLoader) Load(_ context.Context, force bool) (*consumers.Set, error) {
	if l.loaded && !force {
		return nil, nil // unchanged
	}
	var doc consumers.Document
	for _, c := range l.pairs {
		doc.Consumers = append(doc.Consumers, consumers.ConsumerEntry{Username: c[0], Keys: []consumers.CredentialEntry{{Key: c[1]}}})
	}
	set, err := consumers.Build(&doc)
	if err != nil {
		return nil, fmt.Errorf("static_test consumers: %w", err)
	}
	l.loaded = true
	l.loads.Add(1)
	return set, nil
}

func (l *staticTestLoader) Info() sources.SourceInfo {
	return sources.SourceInfo{Kind: "static_test", Location: fmt.Sprintf("%d consumers inline", len(l.pairs))}
}

func (notASourceTest) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "key_auth.sources.not_a_source_test", New: func() caddy.Module { return new(notASourceTest) }}
}

func (notASourceTest) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

var (
	_ keyauth.Source        = (*staticTestSource)(nil)
	_ caddyfile.Unmarshaler = (*staticTestSource)(nil)
	_ caddy.Provisioner     = (*staticTestSource)(nil)
	_ caddy.CleanerUpper    = (*staticTestSource)(nil)
	_ sources.Loader        = (*staticTestLoader)(nil)
)

// A source module registered by another package is written in a Caddyfile
// like the built-in ones, parses its own block, and serves the handler.
func TestExtraSourceFromCaddyfile(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
http://localhost:{{.Port}} {
	key_auth {
		key_names x-api-key
		consumers static_test {
			consumer dora dora-key-1
			consumer eve eve-key-2
		}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	// The first load comes when Caddy starts the key_auth app; until then
	// requests get 503.
	eventually(t, "the first load", func() bool {
		return len(storesAt("2 consumers inline")) == 1 && storesAt("2 consumers inline")[0].Now() != nil
	})
	wantIdentity(t, get(t, site+"/", "X-Api-Key", "dora-key-1"), identity{"dora", "dora", absent, "dora#1", absent})
	wantIdentity(t, get(t, site+"/", "X-Api-Key", "eve-key-2"), identity{"eve", "eve", absent, "eve#1", absent})
	want401(t, get(t, site+"/", "X-Api-Key", keyAlice), msgInvalid)
	if n := e.up.hits.Load(); n != 2 {
		t.Errorf("the upstream got %d requests, want 2", n)
	}

	// The admin view lists it, and a refresh reloads it.
	code, body := adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	var all []sources.SourceStatus
	if err := json.Unmarshal(body, &all); code != http.StatusOK || err != nil {
		t.Fatalf("POST /key_auth/sources/refresh: %d %s", code, body)
	}
	var st *sources.SourceStatus
	for i := range all {
		if all[i].Kind == "static_test" {
			st = &all[i]
		}
	}
	if st == nil || st.Consumers != 2 || st.Keys != 2 || !st.Loaded || st.Handlers != 1 || st.RefreshError != "" {
		t.Errorf("admin view of the static_test source: %s", body)
	}
	v, _ := staticTestLoaders.Load("2 consumers inline")
	loader := v.(*staticTestLoader)
	if n := loader.loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2 (at start, and the refresh)", n)
	}
}

// A module of the sources' namespace that has no store is refused at load,
// by its name, whether written in a Caddyfile or in JSON.
func TestNotASourceRefused(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ cfg, adapter string }{
		{`{{.Global}}
http://localhost:{{.Port}} {
	key_auth {
		consumers not_a_source_test
	}
}
`, "caddyfile"},
		{`{"admin": {"listen": "{{.Admin}}", "config": {"persist": false}}, "apps": {"http": {"servers": {"s": {
	"listen": ["127.0.0.1:{{.Port}}"], "routes": [{"handle": [{"handler": "key_auth", "consumers": {"source": "not_a_source_test"}}]}]}}}}}`, "json"},
	} {
		msg := e.loadError(tc.cfg, tc.adapter)
		if want := "module key_auth.sources.not_a_source_test is not a consumers source"; !strings.Contains(msg, want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.adapter, msg, want)
		}
	}
}
