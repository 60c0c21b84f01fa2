package sources

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
)

// UnmarshalCaddyfile reads the source's part of a key_auth block:
//
//	consumers http <url> {
//		refresh <duration>
//		timeout <duration>
//		header <name> <value>
//		max_size <size>
//		cache <path>
//		tls {
//			client_certificate <cert_file> <key_file>
//			root_ca <pem_file...>
//			use_server_identity
//		}
//	}
func (s *HTTPSource) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the source's name
	if !d.Args(&s.URL) || d.NextArg() {
		return d.ArgErr()
	}
	seen := caddyfilearg.Seen{}
	for d.NextBlock(0) {
		opt := d.Val()
		if opt != "header" { // header may repeat, one per name
			if err := seen.Once(d); err != nil {
				return err
			}
		}
		var err error
		switch opt {
		case "refresh":
			s.Refresh, err = caddyfilearg.Duration(d)
		case "timeout":
			var t *caddy.Duration
			if t, err = caddyfilearg.Duration(d); err == nil {
				s.Timeout = *t
			}
		case "header":
			var name, value string
			if !d.Args(&name, &value) || d.NextArg() {
				return d.ArgErr()
			}
			if err := caddyfilearg.NoBlock(d, opt); err != nil {
				return err
			}
			if s.Header == nil {
				s.Header = http.Header{}
			}
			s.Header.Add(name, value)
		case "max_size":
			s.MaxSize, err = caddyfilearg.Size(d)
		case "cache":
			s.Cache, err = caddyfilearg.One(d)
		case "tls":
			s.TLS, err = UnmarshalTLS(d, "consumers http")
		default:
			return d.Errf("unrecognized consumers http option '%s'", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalTLS reads a source's tls block, as the HTTP source has it:
//
//	tls {
//		client_certificate <cert_file> <key_file>
//		root_ca <pem_file...>
//		use_server_identity
//	}
//
// block names the block the tls block is in, in errors: every one of them
// names it ("consumers redis tls: ..."), since the HTTP and Redis sources
// and the Redis limits store share these options and their messages.
func UnmarshalTLS(d *caddyfile.Dispenser, block string) (*HTTPSourceTLS, error) {
	// in puts the block's name before a message of the shared Caddyfile
	// helpers, which end with the file and line.
	in := func(err error) error { return fmt.Errorf("%s tls: %w", block, err) }
	if d.NextArg() {
		return nil, in(d.ArgErr())
	}
	t := new(HTTPSourceTLS)
	seen := caddyfilearg.Seen{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := seen.Once(d); err != nil {
			return nil, in(err)
		}
		switch opt {
		case "client_certificate":
			if !d.Args(&t.ClientCertificateFile, &t.ClientCertificateKeyFile) || d.NextArg() {
				return nil, in(d.ArgErr())
			}
		case "root_ca":
			t.RootCAPEMFiles = d.RemainingArgs()
			if len(t.RootCAPEMFiles) == 0 {
				return nil, in(d.ArgErr())
			}
		case "use_server_identity":
			if d.NextArg() {
				return nil, in(d.ArgErr())
			}
			t.UseServerIdentity = true
		default:
			return nil, d.Errf("unrecognized %s tls option '%s'", block, opt)
		}
		if err := caddyfilearg.NoBlock(d, opt); err != nil {
			return nil, in(err)
		}
	}
	return t, nil
}

var _ caddyfile.Unmarshaler = (*HTTPSource)(nil)
