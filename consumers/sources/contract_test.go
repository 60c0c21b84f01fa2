package sources_test

import (
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// The handler's contract, kept by every source of this package and by any
// live state Provide hands out. (The guards live in a test: package keyauth
// imports nothing of the sources, and the sources need nothing of it.)
var (
	_ keyauth.Source = (*sources.FileSource)(nil)
	_ keyauth.Source = (*sources.HTTPSource)(nil)
	_ keyauth.Source = (*sources.Handle)(nil)
	_ keyauth.Source = (*sources.Store)(nil)
	_ keyauth.Source = sources.Live(nil)
	_ keyauth.View   = sources.View(nil)

	_ keyauth.LimitStore = (*sources.LocalLimits)(nil)
	_ keyauth.UsageStore = (*sources.LocalLimits)(nil)
)
