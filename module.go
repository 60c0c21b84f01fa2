// Package caddykeyauth plugs key_auth into Caddy: Kong-compatible API-key
// authentication, with consumers loaded from a file, an HTTP source or
// Redis, the consumer matcher, and the `caddy key-auth` command that
// manages keys and consumers files.
//
// Build Caddy with it:
//
//	xcaddy build --with github.com/keyauth/caddy-keyauth
package caddykeyauth

import (
	// The handler and matcher, and their Caddyfile directive.
	_ "github.com/keyauth/caddy-keyauth/caddyfile"
	_ "github.com/keyauth/caddy-keyauth/keyauth"

	// The management API, key_auth_api.
	_ "github.com/keyauth/caddy-keyauth/keyauth/manage"

	// The consumers sources: file and http, the key_auth app and the
	// admin endpoints; and redis.
	_ "github.com/keyauth/caddy-keyauth/consumers/sources"
	_ "github.com/keyauth/caddy-keyauth/consumers/sources/redis"

	// caddy key-auth: new, revoke, hash, check, whois, import, push.
	_ "github.com/keyauth/caddy-keyauth/keyauth/command"
)
