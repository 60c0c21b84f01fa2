package integration

import (
	_ "github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/keyauth/caddy-keyauth"
)
