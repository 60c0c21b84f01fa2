// Package caddyfile registers the key_auth and key_auth_api Caddyfile
// directives. The handlers and each consumers source parse their own tokens
// (UnmarshalCaddyfile).
package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/keyauth"
	"github.com/keyauth/caddy-keyauth/keyauth/manage"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("key_auth", parse)
	// Authentication comes before everything that serves the request, as
	// basic_auth does, so the directive needs no order option or route.
	httpcaddyfile.RegisterDirectiveOrder("key_auth", httpcaddyfile.Before, "basic_auth")

	httpcaddyfile.RegisterHandlerDirective("key_auth_api", parseAPI)
	// The management API answers the requests it gets, after key_auth
	// (which authenticates its callers) and the other middleware, and
	// before the proxy, as Caddy's own metrics endpoint: a site block with
	// key_auth, key_auth_api /keys/* and reverse_proxy needs no order
	// option or route.
	httpcaddyfile.RegisterDirectiveOrder("key_auth_api", httpcaddyfile.Before, "reverse_proxy")
}

func parse(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(keyauth.Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

func parseAPI(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(manage.Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}
