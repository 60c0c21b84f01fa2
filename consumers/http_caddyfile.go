package consumers

import (
	"encoding/json"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// parseHTTPSource reads the block of `consumers http <url> { ... }`:
//
//	refresh <duration>
//	timeout <duration>
//	header <name> <value>
//	max_size <size>
//	cache <path>
//	tls {
//		client_certificate <cert_file> <key_file>
//		root_ca <pem_file...>
//		use_server_identity
//	}
func parseHTTPSource(d *caddyfile.Dispenser, url string, warnings *[]caddyconfig.Warning) (json.RawMessage, error) {
	src := HTTPSource{URL: url}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "header" {
			return nil, d.Errf("%s given twice", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "refresh":
			src.Refresh, err = duration(d)
		case "timeout":
			var t *caddy.Duration
			if t, err = duration(d); err == nil {
				src.Timeout = *t
			}
		case "header":
			var name, value string
			if !d.Args(&name, &value) || d.NextArg() {
				return nil, d.ArgErr()
			}
			if err := noBlock(d, opt); err != nil {
				return nil, err
			}
			if src.Headers == nil {
				src.Headers = http.Header{}
			}
			src.Headers.Add(name, value)
		case "max_size":
			var v string
			if v, err = oneArg(d); err == nil {
				src.MaxSize, err = size(d, v)
			}
		case "cache":
			src.Cache, err = oneArg(d)
		case "tls":
			src.TLS, err = parseTLS(d)
		default:
			return nil, d.Errf("unrecognized consumers http option '%s'", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return caddyconfig.JSONModuleObject(src, "source", "http", warnings), nil
}

func parseTLS(d *caddyfile.Dispenser) (*HTTPSourceTLS, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := new(HTTPSourceTLS)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("%s given twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "client_certificate":
			if !d.Args(&t.ClientCertificateFile, &t.ClientCertificateKeyFile) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "root_ca":
			t.RootCAPEMFiles = d.RemainingArgs()
			if len(t.RootCAPEMFiles) == 0 {
				return nil, d.ArgErr()
			}
		case "use_server_identity":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			t.UseServerIdentity = true
		default:
			return nil, d.Errf("unrecognized consumers http tls option '%s'", opt)
		}
		if err := noBlock(d, opt); err != nil {
			return nil, err
		}
	}
	return t, nil
}
