// Package consumers holds the Caddy modules that give the key_auth handler
// its consumers: the sources (key_auth.sources.file, key_auth.sources.http),
// the live stores they share across reloads, the key_auth app that starts
// their pollers, the admin endpoints and the store metrics. The document
// format and the Set are in the model sub-package.
package sources

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// Source is a guest module in the key_auth.sources namespace: where a
// handler's consumers come from. Provisioning a source acquires the live
// store shared by every source of the same configuration.
type Source interface {
	Store() *Store
}

// App starts the pollers of the consumer stores in a running Caddy. Handlers
// load it implicitly; it needs no configuration. It exists because handlers
// have no start hook: `caddy validate` provisions handlers but starts no app,
// so it reads consumers files but never polls a source.
type App struct {
	stores  []*Store
	loggers []*zap.Logger // of the sources that use each store
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth",
		New: func() caddy.Module { return new(App) },
	}
}

// Start starts polling every store this config uses. A store kept across a
// reload is polling already, and goes on, logging from now on into this
// config's logs (the previous config's close when it stops).
func (a *App) Start() error {
	for i, s := range a.stores {
		s.logger.Store(a.loggers[i])
		s.start()
	}
	return nil
}

// Stop does nothing: a store polls until the last config using it is
// cleaned up, so a reload never interrupts it.
func (a *App) Stop() error { return nil }

// use registers a store the config uses with its key_auth app.
func use(ctx caddy.Context, s *Store) error {
	app, err := ctx.App("key_auth")
	if err != nil {
		return fmt.Errorf("loading key_auth app: %w", err)
	}
	a := app.(*App)
	a.stores = append(a.stores, s)
	a.loggers = append(a.loggers, ctx.Logger())
	return registerMetrics(ctx)
}

var (
	_ caddy.App    = (*App)(nil)
	_ caddy.Module = (*App)(nil)
)
