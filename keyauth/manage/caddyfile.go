package manage

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	key_auth_api [<matcher>] {
//		consumers <source> ...
//		manage_group <group>
//		scope label <name>
//		key_prefix <prefix>
//		limits_store <store> ...
//	}
//
// `consumers <source> ...` is key_auth's: the source module parses it;
// `limits_store <store> ...` is the `store` of key_auth's limits block.
// manage_group and consumers are required. The matcher token, if any, has
// been consumed by the directive's helper.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
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
		case "consumers":
			h.ConsumersRaw, err = keyauth.UnmarshalSource(d)
		case "manage_group":
			if h.ManageGroup, err = caddyfilearg.One(d); err == nil {
				if cerr := consumers.CheckGroupName(h.ManageGroup); cerr != nil {
					err = d.Errf("manage_group: %v", cerr)
				}
			}
		case "scope":
			var kind, name string
			if !d.Args(&kind, &name) || d.NextArg() {
				return d.ArgErr()
			}
			if kind != "label" {
				return d.Errf("unrecognized scope '%s' (want: scope label <name>)", kind)
			}
			if cerr := consumers.CheckLabelName(name); cerr != nil {
				return d.Errf("scope: %v", cerr)
			}
			h.Scope = &Scope{Label: name}
			err = caddyfilearg.NoBlock(d, opt)
		case "key_prefix":
			if h.KeyPrefix, err = caddyfilearg.One(d); err == nil {
				if perr := apikey.ValidatePrefix(h.KeyPrefix); perr != nil {
					err = d.Errf("key_prefix: %v", perr)
				}
			}
		case "limits_store":
			h.LimitsStoreRaw, err = keyauth.UnmarshalLimitStore(d)
		default:
			return d.Errf("unrecognized key_auth_api option '%s'", opt)
		}
		if err != nil {
			return err
		}
	}
	var missing string
	switch {
	case h.ManageGroup == "":
		missing = "key_auth_api needs manage_group <group>: the group whose consumers may manage (management is never open by accident)"
	case h.ConsumersRaw == nil:
		missing = "key_auth_api needs the consumers source it manages, such as: consumers file <path>"
	default:
		return nil
	}
	// At the directive's line: the block may be long.
	d.Reset()
	d.Next()
	return d.Err(missing)
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
