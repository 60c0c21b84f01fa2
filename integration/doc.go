// Package integration tests key_auth against a real Caddy.
package integration
