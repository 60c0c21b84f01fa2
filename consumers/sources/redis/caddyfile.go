package redis

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
)

// UnmarshalCaddyfile reads the source's part of a key_auth block:
//
//	consumers redis <address...> {
//		username <name>
//		password <secret>
//		db <n>
//		prefix <key prefix>
//		cache <size>
//		timeout <duration>
//		partition_timeout <duration>
//		tls {
//			client_certificate <cert_file> <key_file>
//			root_ca <pem_file...>
//			use_server_identity
//		}
//	}
func (s *Source) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the source's name
	s.Addresses = d.RemainingArgs()
	if len(s.Addresses) == 0 {
		return d.ArgErr()
	}
	seen := caddyfilearg.Seen{}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := seen.Once(d); err != nil {
			return err
		}
		var err error
		switch opt {
		case "username":
			s.Username, err = caddyfilearg.One(d)
		case "password":
			s.Password, err = caddyfilearg.One(d)
		case "db":
			var v string
			if v, err = caddyfilearg.One(d); err == nil {
				if s.DB, err = strconv.Atoi(v); err != nil || s.DB < 0 {
					return d.Errf("db: want a database number, got '%s'", v)
				}
			}
		case "prefix":
			s.Prefix, err = caddyfilearg.One(d)
		case "cache":
			s.Cache, err = caddyfilearg.Size(d)
		case "timeout", "partition_timeout":
			var t *caddy.Duration
			if t, err = caddyfilearg.Duration(d); err == nil {
				if opt == "timeout" {
					s.Timeout = *t
				} else {
					s.PartitionTimeout = *t
				}
			}
		case "tls":
			s.TLS, err = sources.UnmarshalTLS(d, "redis")
		default:
			return d.Errf("unrecognized consumers redis option '%s'", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Source)(nil)
