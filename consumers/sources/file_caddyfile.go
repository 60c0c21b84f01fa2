package sources

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
)

// UnmarshalCaddyfile reads the source's part of a key_auth block:
//
//	consumers file <path> {
//		refresh <duration>
//	}
func (f *FileSource) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the source's name
	if !d.Args(&f.Path) || d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "refresh":
			if f.Refresh != nil {
				return d.Err("refresh given twice")
			}
			var err error
			if f.Refresh, err = caddyfilearg.Duration(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized consumers file option '%s'", d.Val())
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*FileSource)(nil)
