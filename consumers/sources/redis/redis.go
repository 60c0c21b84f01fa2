// Package redis is the consumers source key_auth.sources.redis: consumers
// looked up in Redis (or Valkey) one key at a time, with a local cache that
// Redis keeps correct, and the layout of the consumers in Redis (Layout),
// which the source reads and `caddy key-auth push` writes.
package redis

import (
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

func init() {
	caddy.RegisterModule(Source{})
}

// Defaults of the Redis source.
const (
	DefaultPrefix           = "keyauth:"
	DefaultCache            = 64 << 20
	DefaultTimeout          = 500 * time.Millisecond
	DefaultPartitionTimeout = 3 * time.Second
)

// Source looks consumers up in Redis (or Valkey) one key at a time,
// for key sets larger than one instance should hold and for revocation
// everywhere within milliseconds. Answers are kept in a local cache that
// Redis itself keeps correct: RESP3 server-assisted client-side caching
// (CLIENT TRACKING), so a DEL or HSET of a key cached here drops it at once.
//
// The layout, which any service may write, is Layout's.
//
// When Redis cannot answer, requests get 503 {"message":"consumers source
// unavailable"}, never 401 and never a cached answer older than
// PartitionTimeout. `caddy validate` and `caddy adapt` connect to nothing:
// the key_auth app connects in a running Caddy.
type Source struct {
	// Options say how to reach Redis, and the prefix of the keys read.
	Options

	// Cache is the memory this instance gives its local cache, in bytes
	// (the Caddyfile also takes a size such as 64MB), one budget however
	// many masters: an eighth of it holds the answers for unknown keys, so
	// a flood of random keys never evicts the good ones. Default: 64 MiB.
	Cache int64 `json:"cache,omitempty"`

	sources.Handle
}

// CaddyModule returns the Caddy module information.
func (Source) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth.sources.redis",
		New: func() caddy.Module { return new(Source) },
	}
}

// Validate checks the configuration. Its errors about an option are
// sources.OptionErrors.
func (s *Source) Validate() error {
	return s.validate(negativeOption{"cache", s.Cache < 0})
}

// Provision joins the store of a source configured the same way, or makes
// one. It connects to nothing: the key_auth app does in a running Caddy.
func (s *Source) Provision(ctx caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	canon := *s
	var password string
	canon.Options, password = s.resolved()
	if canon.Cache == 0 {
		canon.Cache = DefaultCache
	}
	// The password takes part in the key as a digest: a rotated password
	// makes a new client, and the key holds no secret.
	key, err := sources.Key("redis", &canon, passwordDigest(password))
	if err != nil {
		return err
	}
	// The addresses are where the consumers live: a reload that changes
	// another option or the password makes a new client, and the previous
	// one serves until it has connected (sources.ProvideAt).
	err = s.ProvideAt(ctx, key, "redis "+canon.location(), func(prev sources.Live) (sources.Live, error) {
		tlsCfg, err := canon.tlsConfig(ctx)
		if err != nil {
			return nil, err
		}
		l := newLooker(&canon, password, tlsCfg)
		if p, ok := prev.(*looker); ok && p.hold() {
			l.fallback = p
		}
		return l, nil
	})
	if err != nil {
		return err
	}
	return sources.RegisterMetrics(ctx, lookupsTotal, lookupSeconds)
}

var (
	_ caddy.Provisioner  = (*Source)(nil)
	_ caddy.Validator    = (*Source)(nil)
	_ caddy.CleanerUpper = (*Source)(nil)
)
