// Package sources holds the Caddy modules that give the key_auth handler its
// consumers: the sources key_auth.sources.file and key_auth.sources.http (the
// Redis source is the redis sub-package), the live state they share across
// reloads, the key_auth app that starts it, the admin endpoints and the
// sources' metrics. The document, its parser and the Set are package
// consumers.
//
// A source module serves the handler's contract, keyauth.Source, by
// embedding a Handle that it fills at the end of its Provision with Provide.
// A source that holds its consumers whole provides a Loader, and gets a Store
// with polling, refresh, the admin view and the load metrics; a source that
// looks each key up where it lives (Redis) provides its own Live.
package sources

import (
	"context"
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
)

func init() {
	caddy.RegisterModule(App{})
}

// Live is the state of a source that every handler of every config naming
// the source the same way shares: a Store for a source that holds its
// consumers whole, or a source's own (the Redis client and its cache). The
// pool keeps it across reloads, the key_auth app starts it, the admin API
// shows and refreshes it, and handlers look keys up in it.
type Live interface {
	// Lookup, Consumer and Now are the key_auth handler's contract
	// (keyauth.Source); see there.
	View
	Now() View

	// Start begins what only a running Caddy does: polling, connecting. It
	// is called each time a config using this state starts, with that
	// config's logger, which the state logs into from then on (the
	// previous config's closes when it stops); only the first call starts
	// anything.
	Start(logger *zap.Logger)

	// Refresh reloads now (POST /key_auth/sources/refresh).
	Refresh(ctx context.Context) error

	// Info names the source in logs and metric labels, and is cheap;
	// Status is its whole state for the admin API. Neither holds a secret.
	Info() SourceInfo
	Status() Status

	// Destruct stops the state when the last config using it goes.
	caddy.Destructor
}

// View answers a request's questions to its source: keyauth.View, the
// same alias of the same interface literal, so that the sources implement
// keyauth.Source without importing the handler.
type View = interface {
	// Lookup finds the credential of a key digest; err means the source
	// cannot answer now.
	Lookup(ctx context.Context, d consumers.Digest) (consumers.Credential, bool, error)
	// Consumer finds a consumer by username, then by id, disabled ones too.
	Consumer(ctx context.Context, nameOrID string) (consumers.Consumer, bool, error)
}

// lives holds the live state of the sources keyed by their configuration
// (see Key). A source module takes a reference at provision and drops it at
// cleanup; since a reload provisions the new config before cleaning up the
// old one, the state of a source that is unchanged lives on, with its
// consumers, its poller and its connections.
var lives = caddy.NewUsagePool()

// Handle is what a source module embeds to serve the key_auth handler.
// Provide, called at the end of the module's Provision, fills it with the
// live state; Lookup, Consumer and Now are then the handler's contract
// (keyauth.Source), and Cleanup lets the state go with the module's config.
//
// A Handle only reads: a module that embeds one is read-only for the
// management API (keyauth.Writer), whatever its live state, unless the
// module itself has the writing methods, as FileSource and the Redis source
// do.
type Handle struct {
	live Live
	// store is live when it is a Store: the request path calls it without
	// a second dynamic dispatch.
	store    *Store
	key      string
	released bool
}

// Provide gives the module the live state of the source configured as key
// (see Key): the state already serving such a source, or a new one made by
// open. It registers the state with the key_auth app, which starts it in a
// running Caddy only (`caddy validate` provisions but starts nothing), and
// the sources' metrics with the config. open runs at most once per key
// while any config uses it, and should do no network I/O.
func (h *Handle) Provide(ctx caddy.Context, key string, open func() (Live, error)) error {
	return h.ProvideAt(ctx, key, "", func(Live) (Live, error) { return open() })
}

// ProvideAt is Provide for a source that lives at location: where its
// consumers come from, whatever the options and the credentials it is
// reached with (an HTTP source's URL without its user info, Redis
// addresses). When a new state is made for a source whose configuration
// changed (a rotated token, another option: another key) while a state at
// the same location lives, open gets the latest such state as prev (else
// nil): the new one should serve prev's consumers until its own first load
// or connection succeeds, so that a reload never leaves requests without
// consumers, and one whose new token the source refuses keeps serving what
// it served (see Heir).
func (h *Handle) ProvideAt(ctx caddy.Context, key, location string, open func(prev Live) (Live, error)) error {
	v, _, err := lives.LoadOrNew(key, func() (caddy.Destructor, error) {
		l, err := open(places.latest(location))
		if err == nil {
			places.add(l, location)
		}
		return l, err
	})
	if err != nil {
		return err
	}
	h.live, h.key, h.released = v.(Live), key, false
	h.store, _ = h.live.(*Store)
	app, err := ctx.App("key_auth")
	if err != nil {
		return fmt.Errorf("loading key_auth app: %w", err)
	}
	a := app.(*App)
	a.lives = append(a.lives, h.live)
	a.loggers = append(a.loggers, ctx.Logger())
	return RegisterMetrics(ctx, storeCollectors...)
}

// Lookup finds the credential of a key digest (keyauth.Source).
func (h *Handle) Lookup(ctx context.Context, d consumers.Digest) (consumers.Credential, bool, error) {
	if h.store != nil {
		return h.store.Lookup(ctx, d)
	}
	return h.live.Lookup(ctx, d)
}

// Consumer finds a consumer by username, then by id (keyauth.Source).
func (h *Handle) Consumer(ctx context.Context, nameOrID string) (consumers.Consumer, bool, error) {
	if h.store != nil {
		return h.store.Consumer(ctx, nameOrID)
	}
	return h.live.Consumer(ctx, nameOrID)
}

// Now is the source as one request sees it, or nil before it has
// consumers (keyauth.Source).
func (h *Handle) Now() View {
	if h.store != nil {
		return h.store.Now()
	}
	return h.live.Now()
}

// Live is the live state Provide gave the module, or nil before: for a
// module's own methods beyond the handler's contract (a Redis source's
// writing methods reach its client through it).
func (h *Handle) Live() Live { return h.live }

// Cleanup drops the module's reference to its live state. The state itself
// stays with the handler that holds the module, so a request still in
// flight in a config being replaced is answered.
func (h *Handle) Cleanup() error {
	if h.live == nil || h.released {
		return nil
	}
	h.released = true
	deleted, err := lives.Delete(h.key)
	if err != nil {
		caddy.Log().Error("releasing a consumers source", zap.String("source", Name(h.live)), zap.Error(err))
	}
	if deleted {
		places.remove(h.live)
	}
	return nil
}

// An Heir is a live state that serves, until its own first load or
// connection succeeds, the consumers of the state at the same location that
// it replaces (see ProvideAt): the previous configuration's set, or its
// connection.
type Heir interface {
	// Predecessor is the state whose consumers it serves now, or nil.
	Predecessor() Live
	// Disinherit stops serving them: until its own first load, requests
	// get 503.
	Disinherit()
}

// places are the locations of the live states provided with one, for
// ProvideAt to find a state's predecessor.
var places = &placeRegistry{m: map[Live]place{}}

type placeRegistry struct {
	mu  sync.Mutex
	seq uint64
	m   map[Live]place
}

type place struct {
	location string
	seq      uint64
}

func (r *placeRegistry) add(l Live, location string) {
	if location == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	r.m[l] = place{location, r.seq}
}

func (r *placeRegistry) remove(l Live) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, l)
}

// latest is the state made last at location, or nil.
func (r *placeRegistry) latest(location string) Live {
	if location == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out Live
	var seq uint64
	for l, p := range r.m {
		if p.location == location && p.seq > seq {
			out, seq = l, p.seq
		}
	}
	return out
}

// Name describes a source in logs and metric labels: its kind and location.
func Name(l Live) string {
	i := l.Info()
	return i.Kind + " " + i.Location
}

// Lives lists the live state of every source in use.
func Lives() []Live {
	var out []Live
	lives.Range(func(_, v any) bool {
		out = append(out, v.(Live))
		return true
	})
	return out
}

// Stores lists the live stores: the state of the sources that hold their
// consumers whole.
func Stores() []*Store {
	var out []*Store
	for _, l := range Lives() {
		if s, ok := l.(*Store); ok {
			out = append(out, s)
		}
	}
	return out
}

// App starts the live state of the consumer sources in a running Caddy.
// Handlers load it implicitly; it needs no configuration. It exists because
// handlers have no start hook: `caddy validate` provisions handlers but
// starts no app, so it reads consumers files but never polls a source or
// connects to one.
type App struct {
	lives   []Live
	loggers []*zap.Logger // of the sources that use each
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth",
		New: func() caddy.Module { return new(App) },
	}
}

// Start starts every source this config uses. A source kept across a reload
// is running already, and goes on, logging from now on into this config's
// logs.
func (a *App) Start() error {
	// A state that inherited from another that this very config uses too
	// (two sites naming one URL with two tokens) is not the next
	// configuration of that source but a sibling, which must not serve the
	// other's consumers: it waits for its own.
	used := make(map[Live]bool, len(a.lives))
	for _, l := range a.lives {
		used[l] = true
	}
	for _, l := range a.lives {
		if h, ok := l.(Heir); ok {
			if p := h.Predecessor(); p != nil && used[p] {
				h.Disinherit()
			}
		}
	}
	for i, l := range a.lives {
		l.Start(a.loggers[i])
	}
	return nil
}

// Stop does nothing: a source runs until the last config using it is
// cleaned up, so a reload never interrupts it.
func (a *App) Stop() error { return nil }

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Module       = (*App)(nil)
	_ caddy.CleanerUpper = (*Handle)(nil)
)
