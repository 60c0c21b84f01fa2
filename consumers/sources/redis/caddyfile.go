package redis

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

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
	return s.unmarshalBlock(d, "consumers", func(opt string) (bool, error) {
		if opt != "cache" {
			return false, nil
		}
		var err error
		s.Cache, err = caddyfilearg.Size(d)
		return true, err
	})
}

var _ caddyfile.Unmarshaler = (*Source)(nil)
