// Package caddykeyauth plugs key_auth into Caddy: Kong-compatible API-key
// authentication, with consumers loaded from a file or an HTTP source.
//
// Build Caddy with it:
//
//	xcaddy build --with github.com/keyauth/caddy-keyauth
package caddykeyauth

import (
	// The handler, its Caddyfile directive and the consumer sources.
	_ "github.com/keyauth/caddy-keyauth/caddyfile"
	_ "github.com/keyauth/caddy-keyauth/consumers"
	// caddy key-auth-push: a consumers file into Redis.
	_ "github.com/keyauth/caddy-keyauth/consumers/redispush"
	_ "github.com/keyauth/caddy-keyauth/keyauth"
)
