package keyauth

import (
	"encoding/json"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
)

// sourcesNamespace is where the consumers sources live, as modules.
const sourcesNamespace = "key_auth.sources"

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	key_auth [<matcher>] {
//		key_names <name...>
//		key_in_header <bool>
//		key_in_cookie [<bool>]
//		cookie_cross_site [<bool>]
//		key_in_query <bool>
//		key_in_body <bool>
//		max_body_size <size>
//		hide_credentials [<bool>]
//		anonymous <username or id>
//		realm <realm>
//		run_on_preflight <bool>
//		handle_errors [<bool>]
//		allow <group...>
//		deny <group...>
//		hide_groups_header [<bool>]
//		max_idle <duration>
//		consumers <source> ...
//		limits {
//			cost <meter> <amount|placeholder>
//			cost <meter> usage <reserve|placeholder>
//			store <store> ...
//			on_error deny|allow
//		}
//	}
//
// `consumers <source> ...` is parsed by the module key_auth.sources.<source>
// (consumers file, consumers http, or a plugin's), as reverse_proxy hands
// `transport <name>` to its transport. The matcher token, if any, has been
// consumed by the directive's helper.
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
		case "key_names":
			h.KeyNames = d.RemainingArgs()
			if len(h.KeyNames) == 0 {
				return d.ArgErr()
			}
			if err := checkKeyNames(h.KeyNames); err != nil {
				return d.Err(err.Error())
			}
			err = caddyfilearg.NoBlock(d, opt)
		case "run_on_preflight":
			h.RunOnPreflight, err = boolPtr(d)
		case "cookie_cross_site":
			h.CookieCrossSite, err = caddyfilearg.Bool(d, true)
		case "hide_credentials":
			h.HideCredentials, err = caddyfilearg.Bool(d, true)
		case "handle_errors":
			h.HandleErrors, err = caddyfilearg.Bool(d, true)
		case "max_body_size":
			h.MaxBodySize, err = caddyfilearg.Size(d)
		case "anonymous":
			h.Anonymous, err = caddyfilearg.One(d)
		case "realm":
			h.Realm, err = caddyfilearg.One(d)
		case "allow":
			err = h.groupList(d, opt, &h.Allow)
		case "deny":
			err = h.groupList(d, opt, &h.Deny)
		case "hide_groups_header":
			h.HideGroupsHeader, err = caddyfilearg.Bool(d, true)
		case "max_idle":
			var m *caddy.Duration
			if m, err = caddyfilearg.Duration(d); err == nil {
				h.MaxIdle = *m
			}
		case "consumers":
			h.ConsumersRaw, err = UnmarshalSource(d)
		case "limits":
			err = h.unmarshalLimits(d)
		default:
			l := locatorOf(opt)
			if l == nil {
				return d.Errf("unrecognized key_auth option '%s'", opt)
			}
			var on bool
			on, err = caddyfilearg.Bool(d, l.bare)
			l.set(h, on)
		}
		if err != nil {
			return err
		}
	}
	if h.ConsumersRaw == nil {
		return d.Err("key_auth needs a consumers source, such as: consumers file <path>")
	}
	return nil
}

// UnmarshalSource hands `consumers <source> ...`, at which d stands, to
// the source module, which parses its own arguments and block, and returns
// the source's JSON: the value of a "consumers" field of the namespace
// key_auth.sources (key_auth's, and the management API's, key_auth_api).
func UnmarshalSource(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	id := sourcesNamespace + "." + name
	if _, err := caddy.GetModule(id); err != nil {
		return nil, d.Errf("unknown consumers source '%s' (want %s)", name, sourceNames())
	}
	src, err := caddyfile.UnmarshalModule(d, id)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(src, "source", name, nil), nil
}

// sourceNames lists the registered sources: "file or http".
func sourceNames() string { return moduleNames(sourcesNamespace) }

// moduleNames lists the modules of a namespace: "a, b or c".
func moduleNames(namespace string) string {
	var names []string
	for _, m := range caddy.GetModules(namespace) {
		names = append(names, m.ID.Name())
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// groupList reads `allow <group...>` or `deny <group...>` into list, and
// applies Validate's rules for the two lists at its line.
func (h *Handler) groupList(d *caddyfile.Dispenser, opt string, list *[]string) error {
	groups := d.RemainingArgs()
	if len(groups) == 0 {
		return d.ArgErr()
	}
	*list = groups
	if err := checkACL(h.Allow, h.Deny); err != nil {
		return d.Err(err.Error())
	}
	return caddyfilearg.NoBlock(d, opt)
}

// unmarshalLimits reads the limits block:
//
//	limits {
//		cost <meter> <amount|placeholder>
//		cost <meter> usage <reserve|placeholder>
//		store <store> ...
//		on_error deny|allow
//	}
//
// A bare `limits` (or an empty block) charges requests 1 in store local.
func (h *Handler) unmarshalLimits(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	l := new(Limits)
	seen := caddyfilearg.Seen{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "cost":
			c, err := unmarshalCost(d)
			if err != nil {
				return err
			}
			for _, other := range l.Costs {
				if other.Meter == c.Meter {
					return d.Errf("limits: meter %s is charged twice", c.Meter)
				}
			}
			l.Costs = append(l.Costs, c)
		case "store":
			if err := seen.Once(d); err != nil {
				return err
			}
			raw, err := UnmarshalLimitStore(d)
			if err != nil {
				return err
			}
			l.StoreRaw = raw
		case "on_error":
			if err := seen.Once(d); err != nil {
				return err
			}
			v, err := caddyfilearg.One(d)
			if err != nil {
				return err
			}
			if v != onErrorDeny && v != onErrorAllow {
				return d.Errf("limits: on_error must be deny or allow, got '%s'", v)
			}
			l.OnError = v
		default:
			return d.Errf("unrecognized limits option '%s'", opt)
		}
	}
	h.Limits = l
	return nil
}

// UnmarshalLimitStore reads `<store> ...` after the option's name (the
// limits block's store, key_auth_api's limits_store): the store module's
// name and what its own UnmarshalCaddyfile reads, as a module object of
// the key_auth.limits.stores namespace keyed by "store".
func UnmarshalLimitStore(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	id := limitStoresNamespace + "." + name
	if _, err := caddy.GetModule(id); err != nil {
		return nil, d.Errf("unknown limits store '%s' (want %s)", name, moduleNames(limitStoresNamespace))
	}
	store, err := caddyfile.UnmarshalModule(d, id)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(store, "store", name, nil), nil
}

// unmarshalCost reads `cost <meter> <amount>` or `cost <meter> usage
// <reserve>`.
func unmarshalCost(d *caddyfile.Dispenser) (Cost, error) {
	args := d.RemainingArgs()
	var c Cost
	switch {
	case len(args) == 2 && args[1] == "usage":
		return c, d.Errf("cost %s usage needs a reserve: cost %s usage <reserve>", args[0], args[0])
	case len(args) == 2:
		c = Cost{Meter: args[0], Amount: caddyhttp.WeakString(args[1])}
	case len(args) == 3 && args[1] == "usage":
		c = Cost{Meter: args[0], Amount: caddyhttp.WeakString(args[2]), Usage: true}
	default:
		return c, d.Errf("cost wants <meter> <amount> or <meter> usage <reserve>, got %d argument(s)", len(args))
	}
	if err := checkMeter(c.Meter); err != nil {
		return c, d.Errf("limits: %v", err)
	}
	if err := checkAmount(c.Meter, string(c.Amount)); err != nil {
		return c, d.Errf("limits: %v", err)
	}
	return c, caddyfilearg.NoBlock(d, "cost")
}

func boolPtr(d *caddyfile.Dispenser) (*bool, error) {
	v, err := caddyfilearg.Bool(d, false)
	return &v, err
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
