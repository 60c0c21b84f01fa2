package redis

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/rueidis"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
)

// Options say how to reach Redis: what the consumers source
// (key_auth.sources.redis) and the limits store (key_auth.limits.stores.redis)
// share, in JSON, in the Caddyfile and in the connection they make.
type Options struct {
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

	// Prefix starts every key read or written. Default: "keyauth:".
	Prefix string `json:"prefix,omitempty"`

	// Timeout bounds a request to Redis, a duration (nanoseconds in JSON).
	// Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// PartitionTimeout bounds how long a Redis server may stop answering
	// without closing its connection (a silent partition, a frozen
	// process) before the connection is probed and dropped. For the source,
	// it also bounds how long cached answers are served then. Default: 3s.
	PartitionTimeout caddy.Duration `json:"partition_timeout,omitempty"`

	// TLS configures a TLS connection to Redis, as the HTTP source's.
	TLS *sources.HTTPSourceTLS `json:"tls,omitempty"`
}

// validate checks the options; its errors about one of them are
// sources.OptionErrors. more are further options that must not be
// negative, checked with the options': name and whether it is.
func (o *Options) validate(more ...negativeOption) error {
	if len(o.Addresses) == 0 {
		return errors.New("addresses: at least one Redis address is required")
	}
	repl := caddy.NewReplacer()
	for _, a := range o.Addresses {
		host, port, err := net.SplitHostPort(repl.ReplaceKnown(a, ""))
		if err != nil || host == "" || port == "" {
			return &sources.OptionError{Option: "addresses", Rest: fmt.Sprintf(": %q is not host:port", a)}
		}
	}
	opts := append([]negativeOption{{"db", o.DB < 0}}, more...)
	opts = append(opts, negativeOption{"timeout", o.Timeout < 0}, negativeOption{"partition_timeout", o.PartitionTimeout < 0})
	for _, n := range opts {
		if n.negative {
			return &sources.OptionError{Option: n.name, Rest: " must not be negative"}
		}
	}
	if o.DB != 0 && len(o.Addresses) > 1 {
		return &sources.OptionError{Option: "db", Rest: ": a Redis Cluster has only database 0"}
	}
	if o.PartitionTimeout != 0 && time.Duration(o.PartitionTimeout) < 30*time.Millisecond {
		return errors.New("partition_timeout must be at least 30ms")
	}
	return nil
}

type negativeOption struct {
	name     string
	negative bool
}

// resolved is the options with their placeholders filled in and their
// defaults set, without the password, which it returns apart.
func (o *Options) resolved() (canon Options, password string) {
	repl := caddy.NewReplacer()
	canon = *o
	canon.Addresses = make([]string, len(o.Addresses))
	for i, a := range o.Addresses {
		canon.Addresses[i] = repl.ReplaceKnown(a, "")
	}
	canon.Username = repl.ReplaceKnown(o.Username, "")
	password = repl.ReplaceKnown(o.Password, "")
	canon.Password = ""
	if canon.Prefix == "" {
		canon.Prefix = DefaultPrefix
	}
	if canon.Timeout == 0 {
		canon.Timeout = caddy.Duration(DefaultTimeout)
	}
	if canon.PartitionTimeout == 0 {
		canon.PartitionTimeout = caddy.Duration(DefaultPartitionTimeout)
	}
	return canon, password
}

// passwordDigest stands for a password in the key of a shared state: a
// rotated password makes a new client, and the key holds no secret.
func passwordDigest(password string) string {
	pw := sha256.Sum256([]byte(password))
	return hex.EncodeToString(pw[:])
}

// location is where the options lead: the sorted addresses.
func (o *Options) location() string {
	addrs := slices.Clone(o.Addresses)
	slices.Sort(addrs)
	return strings.Join(addrs, ",")
}

// tlsConfig is the TLS configuration of resolved options, or nil.
func (o *Options) tlsConfig(ctx caddy.Context) (*tls.Config, error) {
	if o.TLS == nil {
		return nil, nil
	}
	return o.TLS.Config(ctx)
}

// clientOption is the connection resolved options make.
func (o *Options) clientOption(password string, t *tls.Config) rueidis.ClientOption {
	pt := time.Duration(o.PartitionTimeout)
	return rueidis.ClientOption{
		InitAddress: o.Addresses,
		Username:    o.Username,
		Password:    password,
		SelectDB:    o.DB,
		ClientName:  "caddy-keyauth",
		TLSConfig:   t,
		// rueidis sends a PING when nothing was read for a period, which
		// must answer within a timeout. A server frozen just after an
		// answer is pinged at most two periods later: with a quarter of
		// the bound for each, it is given up (and the source's cache with
		// it, its invalidations being lost) within three quarters of the
		// bound.
		Dialer:           net.Dialer{KeepAlive: pt / 4, Timeout: max(pt/4, time.Second)},
		ConnWriteTimeout: pt / 4,
		// A refused connection answers at once, not after retries that
		// would outlast the request's deadline.
		DisableRetry: true,
	}
}

// unmarshalOption reads one option of the block of `<what> redis
// <address...> { ... }` (what: "consumers", "limits store"); known is false
// for an option that is not one of Options'.
func (o *Options) unmarshalOption(d *caddyfile.Dispenser, what string) (known bool, err error) {
	opt := d.Val()
	switch opt {
	case "username":
		o.Username, err = caddyfilearg.One(d)
	case "password":
		o.Password, err = caddyfilearg.One(d)
	case "db":
		var v string
		if v, err = caddyfilearg.One(d); err == nil {
			if o.DB, err = strconv.Atoi(v); err != nil || o.DB < 0 {
				return true, d.Errf("db: want a database number, got '%s'", v)
			}
		}
	case "prefix":
		o.Prefix, err = caddyfilearg.One(d)
	case "timeout", "partition_timeout":
		var t *caddy.Duration
		if t, err = caddyfilearg.Duration(d); err == nil {
			if opt == "timeout" {
				o.Timeout = *t
			} else {
				o.PartitionTimeout = *t
			}
		}
	case "tls":
		o.TLS, err = sources.UnmarshalTLS(d, what+" redis")
	default:
		return false, nil
	}
	return true, err
}

// unmarshalBlock reads `<what> redis <address...> { ... }`: the addresses and
// the block, whose options are Options' and, through extra, the module's own
// (extra reports whether it knew the option at the dispenser).
func (o *Options) unmarshalBlock(d *caddyfile.Dispenser, what string, extra func(opt string) (bool, error)) error {
	d.Next() // the module's name
	o.Addresses = d.RemainingArgs()
	if len(o.Addresses) == 0 {
		return d.ArgErr()
	}
	seen := caddyfilearg.Seen{}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := seen.Once(d); err != nil {
			return err
		}
		known, err := o.unmarshalOption(d, what)
		if !known {
			known, err = extra(opt)
		}
		if !known {
			return d.Errf("unrecognized %s redis option '%s'", what, opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
