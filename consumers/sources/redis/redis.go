// Package redis is the consumers source key_auth.sources.redis: consumers
// looked up in Redis (or Valkey) one key at a time, with a local cache that
// Redis keeps correct, and the layout of the consumers in Redis (Layout),
// which the source reads and `caddy key-auth push` writes.
package redis

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
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
	// Addresses are the Redis servers, host:port. Several addresses are the
	// seeds of a Redis Cluster; one address may also be a cluster node, which
	// is detected. They may use {env.*} placeholders. Required.
	Addresses []string `json:"addresses,omitempty"`

	// Username is the ACL user. It may use {env.*} and {file.*}.
	Username string `json:"username,omitempty"`

	// Password is the ACL user's password (or requirepass). It may use
	// {env.*} and {file.*}, filled in when the config loads; it never
	// appears in logs or in the admin API.
	Password string `json:"password,omitempty"`

	// DB is the database number (standalone Redis only). Default: 0.
	DB int `json:"db,omitempty"`

	// Prefix starts every key this source reads. Default: "keyauth:".
	Prefix string `json:"prefix,omitempty"`

	// Cache is the memory this instance gives its local cache, in bytes
	// (the Caddyfile also takes a size such as 64MB), one budget however
	// many masters: an eighth of it holds the answers for unknown keys, so
	// a flood of random keys never evicts the good ones. Default: 64 MiB.
	Cache int64 `json:"cache,omitempty"`

	// Timeout bounds a lookup that must ask Redis (a cached answer has no
	// deadline), a duration (nanoseconds in JSON). Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// PartitionTimeout bounds how long cached answers are served after a
	// Redis server stops answering without closing its connection (a
	// silent partition, a frozen process): the connection is probed and
	// dropped, and the cache with it, within this time. Default: 3s.
	PartitionTimeout caddy.Duration `json:"partition_timeout,omitempty"`

	// TLS configures a TLS connection to Redis, as the HTTP source's.
	TLS *sources.HTTPSourceTLS `json:"tls,omitempty"`

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
	if len(s.Addresses) == 0 {
		return errors.New("addresses: at least one Redis address is required")
	}
	repl := caddy.NewReplacer()
	for _, a := range s.Addresses {
		host, port, err := net.SplitHostPort(repl.ReplaceKnown(a, ""))
		if err != nil || host == "" || port == "" {
			return &sources.OptionError{Option: "addresses", Rest: fmt.Sprintf(": %q is not host:port", a)}
		}
	}
	for _, o := range []struct {
		name     string
		negative bool
	}{{"db", s.DB < 0}, {"cache", s.Cache < 0}, {"timeout", s.Timeout < 0}, {"partition_timeout", s.PartitionTimeout < 0}} {
		if o.negative {
			return &sources.OptionError{Option: o.name, Rest: " must not be negative"}
		}
	}
	if s.DB != 0 && len(s.Addresses) > 1 {
		return &sources.OptionError{Option: "db", Rest: ": a Redis Cluster has only database 0"}
	}
	if s.PartitionTimeout != 0 && time.Duration(s.PartitionTimeout) < 30*time.Millisecond {
		return errors.New("partition_timeout must be at least 30ms")
	}
	return nil
}

// Provision joins the store of a source configured the same way, or makes
// one. It connects to nothing: the key_auth app does in a running Caddy.
func (s *Source) Provision(ctx caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	canon := *s
	canon.Addresses = make([]string, len(s.Addresses))
	for i, a := range s.Addresses {
		canon.Addresses[i] = repl.ReplaceKnown(a, "")
	}
	canon.Username = repl.ReplaceKnown(s.Username, "")
	password := repl.ReplaceKnown(s.Password, "")
	canon.Password = ""
	if canon.Prefix == "" {
		canon.Prefix = DefaultPrefix
	}
	if canon.Cache == 0 {
		canon.Cache = DefaultCache
	}
	if canon.Timeout == 0 {
		canon.Timeout = caddy.Duration(DefaultTimeout)
	}
	if canon.PartitionTimeout == 0 {
		canon.PartitionTimeout = caddy.Duration(DefaultPartitionTimeout)
	}
	// The password takes part in the key as a digest: a rotated password
	// makes a new client, and the key holds no secret.
	pw := sha256.Sum256([]byte(password))
	key, err := sources.Key("redis", &canon, hex.EncodeToString(pw[:]))
	if err != nil {
		return err
	}
	// The addresses are where the consumers live: a reload that changes
	// another option or the password makes a new client, and the previous
	// one serves until it has connected (sources.ProvideAt).
	addrs := slices.Clone(canon.Addresses)
	slices.Sort(addrs)
	err = s.ProvideAt(ctx, key, "redis "+strings.Join(addrs, ","), func(prev sources.Live) (sources.Live, error) {
		var tlsCfg *tls.Config
		if canon.TLS != nil {
			var err error
			if tlsCfg, err = canon.TLS.Config(ctx); err != nil {
				return nil, err
			}
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
