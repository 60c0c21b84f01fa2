package integration

import (
	"os"
	"testing"

	_ "github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/keyauth/caddy-keyauth"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}
