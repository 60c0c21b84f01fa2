// Package caddyfile registers the key_auth Caddyfile directive. The handler
// and each consumers source parse their own tokens (UnmarshalCaddyfile).
package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/keyauth"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("key_auth", parse)
	// Authentication comes before everything that serves the request, as
	// basic_auth does, so the directive needs no order option or route.
	httpcaddyfile.RegisterDirectiveOrder("key_auth", httpcaddyfile.Before, "basic_auth")
}

func parse(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(keyauth.Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}
