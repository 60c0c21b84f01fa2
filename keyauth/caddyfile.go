// Package caddyfile is the key_auth Caddyfile directive.
package keyauth

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("key_auth", parse)
	// Authentication comes before everything that serves the request, as
	// basic_auth does, so the directive needs no order option or route.
	httpcaddyfile.RegisterDirectiveOrder("key_auth", httpcaddyfile.Before, "basic_auth")
}

func parse(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	return Parse(h.Dispenser)
}

// Parse sets up a key_auth handler from Caddyfile tokens. Syntax:
//
//	key_auth [<matcher>] {
//		key_names <name...>
//		key_in_header <bool>
//		key_in_query <bool>
//		key_in_body <bool>
//		max_body_size <size>
//		hide_credentials [<bool>]
//		anonymous <username or id>
//		realm <realm>
//		run_on_preflight <bool>
//		handle_errors [<bool>]
//		consumers file <path> {
//			refresh <duration>
//		}
//		consumers http <url> {
//			refresh <duration>
//			timeout <duration>
//			header <name> <value>
//			max_size <size>
//			cache <path>
//			tls { ... }
//		}
//	}
//
// The matcher token, if any, has been consumed by the helper.
func Parse(d *caddyfile.Dispenser) (*Handler, error) {
	h := new(Handler)
	d.Next() // the directive's name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("%s given twice", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "key_names":
			h.KeyNames = d.RemainingArgs()
			if len(h.KeyNames) == 0 {
				return nil, d.ArgErr()
			}
			for i, n := range h.KeyNames {
				if n == "" {
					return nil, d.Err("key_names: a key name must not be empty")
				}
				if slices.Contains(h.KeyNames[:i], n) {
					return nil, d.Errf("key_names: '%s' is listed twice", n)
				}
			}
			err = noBlock(d, opt)
		case "key_in_header":
			h.KeyInHeader, err = boolPtr(d)
		case "key_in_query":
			h.KeyInQuery, err = boolPtr(d)
		case "run_on_preflight":
			h.RunOnPreflight, err = boolPtr(d)
		case "key_in_body":
			h.KeyInBody, err = boolArg(d, false)
		case "hide_credentials":
			h.HideCredentials, err = boolArg(d, true)
		case "handle_errors":
			h.HandleErrors, err = boolArg(d, true)
		case "max_body_size":
			var v string
			if v, err = oneArg(d); err == nil {
				h.MaxBodySize, err = size(d, v)
			}
		case "anonymous":
			h.Anonymous, err = oneArg(d)
		case "realm":
			h.Realm, err = oneArg(d)
		case "consumers":
			h.ConsumersRaw, err = parseSource(d)
		default:
			return nil, d.Errf("unrecognized key_auth option '%s'", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if h.ConsumersRaw == nil {
		return nil, d.Err("key_auth needs a consumers source, such as: consumers file <path>")
	}
	return h, nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return "", d.ArgErr()
	}
	return v, noBlock(d, opt)
}

// noBlock refuses a block after an option that takes none.
func noBlock(d *caddyfile.Dispenser, opt string) error {
	if d.NextBlock(d.Nesting()) {
		return d.Errf("%s takes no block", opt)
	}
	return nil
}

// boolArg reads an optional true/false; bare is what the option alone means.
func boolArg(d *caddyfile.Dispenser, bare bool) (bool, error) {
	opt := d.Val()
	if !d.NextArg() {
		if !bare {
			return false, d.Errf("%s needs true or false", opt)
		}
		return true, noBlock(d, opt)
	}
	v, err := strconv.ParseBool(d.Val())
	if err != nil || (d.Val() != "true" && d.Val() != "false") {
		return false, d.Errf("%s: want true or false, got '%s'", opt, d.Val())
	}
	if d.NextArg() {
		return false, d.ArgErr()
	}
	return v, noBlock(d, opt)
}

func boolPtr(d *caddyfile.Dispenser) (*bool, error) {
	v, err := boolArg(d, false)
	return &v, err
}

func size(d *caddyfile.Dispenser, v string) (consumers.ByteSize, error) {
	n, err := consumers.ParseByteSize(v)
	if err != nil {
		return 0, d.Err(err.Error())
	}
	return n, nil
}

func duration(d *caddyfile.Dispenser) (*caddy.Duration, error) {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return nil, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return nil, d.Errf("%s: invalid duration '%s': %v", opt, v, err)
	}
	if dur < 0 {
		return nil, d.Errf("%s must not be negative", opt)
	}
	cd := caddy.Duration(dur)
	return &cd, nil
}

// parseSource reads `consumers <kind> <location> { ... }`.
func parseSource(d *caddyfile.Dispenser) (json.RawMessage, error) {
	var kind, location string
	if !d.Args(&kind, &location) || d.NextArg() {
		return nil, d.ArgErr()
	}
	var warnings []caddyconfig.Warning
	switch kind {
	case "file":
		src := consumers.FileSource{Path: location}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "refresh":
				if src.Refresh != nil {
					return nil, d.Err("refresh given twice")
				}
				var err error
				if src.Refresh, err = duration(d); err != nil {
					return nil, err
				}
			default:
				return nil, d.Errf("unrecognized consumers file option '%s'", d.Val())
			}
		}
		return caddyconfig.JSONModuleObject(src, "source", "file", &warnings), nil
	case "http":
		return parseHTTPSource(d, location, &warnings)
	default:
		return nil, d.Errf("unknown consumers source '%s' (want %s)", kind, strings.Join(sourceKinds, " or "))
	}
}

var sourceKinds = []string{"file", "http"}
