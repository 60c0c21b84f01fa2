package integration

import (
	"os"
	"testing"

	_ "github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/keyauth/caddy-keyauth"
)

func TestMain(m *testing.M) {
	// Caddy's data directory (where file and HTTP sources keep the last
	// use of keys) is the run's own, not the user's.
	data, err := os.MkdirTemp("", "keyauth-it-data-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", data)
	code := m.Run()
	_ = os.RemoveAll(data)
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}
