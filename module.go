// Package caddykeyauth plugs key_auth into Caddy: Kong-compatible API-key
// authentication, with consumers loaded from a file or an HTTP source, and
// the `caddy key-auth` command that manages keys and consumers files.
//
// Build Caddy with it:
//
//	xcaddy build --with github.com/keyauth/caddy-keyauth
package caddykeyauth

import (
	// The handler, its Caddyfile directive and the consumer sources.
	_ "github.com/keyauth/caddy-keyauth/caddyfile"
	_ "github.com/keyauth/caddy-keyauth/consumers"
	_ "github.com/keyauth/caddy-keyauth/keyauth"

	// caddy key-auth: new, revoke, hash, check, whois, import.
	_ "github.com/keyauth/caddy-keyauth/consumers/command"
	// caddy key-auth push: a consumers file into Redis.
	_ "github.com/keyauth/caddy-keyauth/consumers/redispush"
)
