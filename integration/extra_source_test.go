package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// A consumers source from another module, as a plugin would write one: it
// lives in the key_auth.sources namespace, parses its own Caddyfile block
// and provides a store. Its consumers are written inline:
//
//	consumers static_test {
//		consumer <username> <key>
//	}
type staticTestSource struct {
	// Consumers are username and key pairs.
	Consumers [][2]string `json:"consumers,omitempty"`

	store *sources.Store
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

func (s *staticTestSource) Provision(caddy.Context) error {
	var doc consumers.Document
	for _, c := range s.Consumers {
		doc.Consumers = append(doc.Consumers, consumers.ConsumerEntry{Username: c[0], Keys: []consumers.CredentialEntry{{Key: c[1]}}})
	}
	set, err := consumers.Build(&doc)
	if err != nil {
		return fmt.Errorf("static_test consumers: %w", err)
	}
	s.store = sources.StaticStore(set)
	return nil
}

func (s *staticTestSource) Store() *sources.Store { return s.store }

func (notASourceTest) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "key_auth.sources.not_a_source_test", New: func() caddy.Module { return new(notASourceTest) }}
}

func (notASourceTest) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

var (
	_ sources.Source        = (*staticTestSource)(nil)
	_ caddyfile.Unmarshaler = (*staticTestSource)(nil)
	_ caddy.Provisioner     = (*staticTestSource)(nil)
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
	wantIdentity(t, get(t, site+"/", "X-Api-Key", "dora-key-1"), identity{"dora", "dora", absent, "dora#1", absent})
	wantIdentity(t, get(t, site+"/", "X-Api-Key", "eve-key-2"), identity{"eve", "eve", absent, "eve#1", absent})
	want401(t, get(t, site+"/", "X-Api-Key", keyAlice), msgInvalid)
	if n := e.up.hits.Load(); n != 2 {
		t.Errorf("the upstream got %d requests, want 2", n)
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
