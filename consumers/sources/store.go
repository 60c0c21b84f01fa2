package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// Loader is what a source that holds its consumers whole provides to get a
// Store, and with it polling, POST /key_auth/sources/refresh, the admin
// view, the load metrics and sharing across reloads. A Loader that is an
// io.Closer is closed when its store goes.
type Loader interface {
	// Load returns the source's consumers when they have changed since the
	// last successful Load, or nil, nil when they have not; force loads
	// them even so (a refresh). An error keeps the current set serving. The
	// store never calls Load twice at once.
	Load(ctx context.Context, force bool) (*consumers.Set, error)
	// Info describes the source for logs, metric labels and the admin API,
	// without secrets. It may change (an HTTP source's ETag) and is called
	// while Load runs.
	Info() SourceInfo
}

// Polling is when a Store calls its Loader. The zero value loads once, when
// a running Caddy starts, and then only on a refresh.
type Polling struct {
	// Every is the time between two loads, plus up to a tenth of it at
	// random, so that a fleet of instances does not load in step. 0 does
	// not poll.
	Every time.Duration
	// Backoff retries failed loads sooner, then less and less often: from
	// Every (at most a second), doubling, up to Every or a minute,
	// whichever is longer; it retries even when Every is 0. Without it a
	// failed load waits Every, as a good one does.
	Backoff bool
	// EachError logs every new error of a failure streak at once, not
	// only the first and then a reminder every FailureReminderEvery: for a
	// source whose errors change only when someone edits it (a file), and
	// who wants to see what is wrong with each version. A polled server's
	// errors may change on every poll.
	EachError bool
}

// wait is how long to wait before the next load after failures failed ones
// in a row; 0 stops polling.
func (p Polling) wait(failures int) time.Duration {
	if failures == 0 || !p.Backoff {
		return p.Every
	}
	base := p.Every
	if base == 0 || base > time.Second {
		base = time.Second
	}
	return min(base<<min(failures-1, 20), max(p.Every, time.Minute))
}

// SourceInfo is what operators see of a source. It never holds a key or a
// header value.
type SourceInfo struct {
	// Kind is the source's module: "file", "http", "redis" or "static".
	Kind string `json:"kind"`
	// Location is where it reads: a file path, a URL without credentials
	// or query values, or Redis addresses joined with commas.
	Location string `json:"location"`
	// ETag is the entity tag of the last document an HTTP source served.
	ETag string `json:"etag,omitempty"`
}

// Status is a source's state for the admin API.
type Status struct {
	SourceInfo
	// Consumers is the number of consumers of the set served.
	Consumers int `json:"consumers"`
	// Keys is the number of keys of the set served.
	Keys int `json:"keys"`
	// Loaded is whether the source has consumers to serve: a set has
	// loaded or, for a source that looks keys up one at a time, it is
	// connected (see Lookups).
	Loaded bool `json:"loaded"`
	// LastLoad is when the set served was loaded.
	LastLoad *time.Time `json:"last_load,omitempty"`
	// LastCheck is the last poll that succeeded, 304s included: a source
	// whose document never changes shows an old last_load but a recent
	// last_check.
	LastCheck *time.Time `json:"last_check,omitempty"`
	// LastError is why the last load failed, or empty once one succeeds.
	LastError string `json:"last_error,omitempty"`
	// LastErrorTime is when LastError happened.
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
	// Failures counts the loads that failed since the last that succeeded.
	Failures int `json:"consecutive_failures"`
	// ServingPrevious is a source whose configuration changed in a reload
	// (a rotated token, another option) and that has not loaded (or
	// connected) with its new configuration yet: it serves the consumers
	// of the configuration it replaced, at the same location, until it
	// does. LastError says why it has not.
	ServingPrevious bool `json:"serving_previous,omitempty"`
	// Lookups is the state of a source that looks keys up one at a time,
	// such as Redis: connection, local cache, counts.
	Lookups *LookupStatus `json:"lookups,omitempty"`
}

// LookupStatus is the state of a source that looks keys up one at a time,
// for the admin API: never a key or a password.
type LookupStatus struct {
	// Addresses are the servers the source connects to.
	Addresses []string `json:"addresses"`
	// Connected is whether the source has a connection to look keys up.
	Connected bool `json:"connected"`
	// CacheEntries and UnknownEntries count the cached answers for known
	// and unknown keys; CacheBytes is their estimated memory.
	CacheEntries   int   `json:"cache_entries"`
	UnknownEntries int   `json:"unknown_entries"`
	CacheBytes     int64 `json:"cache_bytes"`
	// Hits are lookups answered from the cache; Misses asked the source.
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	// Errors are lookups that got no answer (not connected, a failure or
	// a timeout): each one a 503.
	Errors uint64 `json:"errors"`
}

// ErrUnavailable is a source that cannot answer a lookup now: it is down
// or too slow. Handlers answer 503, never 401: the key may be good.
var ErrUnavailable = errors.New("consumers source unavailable")

// Store is the live consumer set of a source that holds its consumers
// whole, shared by every handler that names that source. Its set is swapped
// atomically: a request sees the old set or the new one, never a mix.
type Store struct {
	now atomic.Pointer[snapshot]

	loader  Loader
	polling Polling
	// logger is that of the latest config started with this store: a store
	// outlives the config that made it, whose logs close with it.
	logger atomic.Pointer[zap.Logger]

	refreshMu sync.Mutex // one load at a time; guards the streak fields
	statusMu  sync.Mutex
	status    Status
	from      Live // while status.ServingPrevious: the store whose set it serves
	// The failure streak, for its log lines: when it began, when a line
	// about it was last logged, and the error then logged.
	streakStart, streakLogged time.Time
	lastErr                   string

	clock clock
	// jitter is a random duration in [0, n): rand.Int64N but in tests.
	jitter func(n int64) int64

	// The poller runs from Start until Destruct cancels ctx.
	ctx       context.Context
	cancel    context.CancelFunc
	startOnce sync.Once
	started   atomic.Bool
	done      chan struct{}

	usage   usage
	useDone chan struct{} // closed when keepUse has written for the last time
}

// snapshot is a Store's consumers between two swaps: what one request
// sees (keyauth.Source's Now).
type snapshot struct {
	set *consumers.Set
	// found holds the consumers found by name in set (the anonymous ones,
	// a few), copied on write. Finding one scans the set, so each is found
	// once per set; the cache goes with the set.
	found atomic.Pointer[map[string]foundConsumer]
	// used is the minute each credential of set last let a request in
	// (lastused.go), indexed as the set's credentials.
	used  []atomic.Uint32
	usage *usage
	// index finds the set's consumers by username and its credentials by
	// id, for the management API's reads: made at the first, once per
	// set, so a store that is never managed never makes one.
	index func() *consumers.Index
}

type foundConsumer struct {
	c  consumers.Consumer
	ok bool
}

// Lookup finds the credential whose key has the digest d. It never fails:
// the set is in memory.
func (v *snapshot) Lookup(_ context.Context, d consumers.Digest) (consumers.Credential, bool, error) {
	cred, ok := v.set.Lookup(&d)
	return cred, ok, nil
}

// Consumer finds a consumer by username, then by id, disabled ones too.
func (v *snapshot) Consumer(_ context.Context, nameOrID string) (consumers.Consumer, bool, error) {
	old := v.found.Load()
	if old != nil {
		if f, ok := (*old)[nameOrID]; ok {
			return f.c, f.ok, nil
		}
	}
	c, ok := v.set.FindConsumer(nameOrID)
	m := map[string]foundConsumer{nameOrID: {c, ok}}
	if old != nil {
		for n, f := range *old {
			m[n] = f
		}
	}
	v.found.CompareAndSwap(old, &m) // lost to another writer: found again next time
	return c, ok, nil
}

// NewStore makes the store of a Loader, polled as p says once a running
// Caddy starts it. initial, when not nil, serves until the first load: a
// file read at provision, a cached copy; without it requests get 503 until
// a load succeeds.
func NewStore(l Loader, p Polling, initial *consumers.Set) *Store {
	return newStore(l, p, initial, false)
}

// newStore is NewStore; keepUse keeps the record of last use across
// restarts, in Caddy's data directory.
func newStore(l Loader, p Polling, initial *consumers.Set, keepUse bool) *Store {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{loader: l, polling: p, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		clock: wallClock{}, jitter: rand.Int64N, useDone: make(chan struct{})}
	s.logger.Store(caddy.Log())
	s.status.SourceInfo = l.Info()
	s.usage.now = func() time.Time { return s.clock.Now() }
	s.usage.tick()
	if keepUse {
		s.usage.path = UseFile(UseDir(), s.status.SourceInfo)
	}
	if initial != nil {
		s.swap(initial)
	}
	return s
}

// StaticStore is a store that serves set and never changes: for tests and
// for programs that build their sets themselves.
func StaticStore(set *consumers.Set) *Store {
	return NewStore(staticLoader{}, Polling{}, set)
}

type staticLoader struct{}

func (staticLoader) Load(context.Context, bool) (*consumers.Set, error) { return nil, nil }
func (staticLoader) Info() SourceInfo                                   { return SourceInfo{Kind: "static"} }

// returnMemoryAbove is the size of a set whose loading or replacement
// gives memory back to the OS at once.
const returnMemoryAbove = 32 << 20

// Set is the current consumer set, or nil when none has loaded yet.
func (s *Store) Set() *consumers.Set {
	if v := s.now.Load(); v != nil {
		return v.set
	}
	return nil
}

// Now is the current set as one request sees it, or nil when none has
// loaded yet (keyauth.Source).
func (s *Store) Now() View {
	if v := s.now.Load(); v != nil {
		return v
	}
	return nil // not a nil *snapshot: that would be a View that is not nil
}

// Lookup finds the credential whose key has the digest d in the current
// set (keyauth.Source).
func (s *Store) Lookup(ctx context.Context, d consumers.Digest) (consumers.Credential, bool, error) {
	if v := s.now.Load(); v != nil {
		return v.Lookup(ctx, d)
	}
	return consumers.Credential{}, false, nil
}

// Consumer finds a consumer of the current set by username, then by id
// (keyauth.Source), disabled ones too.
func (s *Store) Consumer(ctx context.Context, nameOrID string) (consumers.Consumer, bool, error) {
	if v := s.now.Load(); v != nil {
		return v.Consumer(ctx, nameOrID)
	}
	return consumers.Consumer{}, false, nil
}

// Logger is the logger of the latest config started with the store, for a
// Loader's own lines.
func (s *Store) Logger() *zap.Logger { return s.logger.Load() }

func (s *Store) log() *zap.Logger { return s.logger.Load() }

// Info describes the store's source.
func (s *Store) Info() SourceInfo { return s.loader.Info() }

// Name describes the store's source in logs and metric labels.
func (s *Store) Name() string { return Name(s) }

// Inherit serves prev's current set until the store's own first load
// succeeds: for the open function of ProvideAt, with the prev it was given.
// A prev that is not a Store, or has no set, leaves the store as it is.
func (s *Store) Inherit(prev Live) {
	p, ok := prev.(*Store)
	if !ok {
		return
	}
	v := p.now.Load()
	if v == nil {
		return
	}
	s.now.Store(newSnapshot(v.set, &s.usage, v.minutes()))
	pst := p.Status()
	c, k := v.set.Len()
	s.statusMu.Lock()
	s.status.Consumers, s.status.Keys, s.status.Loaded = c, k, true
	s.status.LastLoad, s.status.ServingPrevious = pst.LastLoad, true
	s.from = p
	s.statusMu.Unlock()
}

// Predecessor is the store whose set this one serves until its first
// load, or nil (Heir).
func (s *Store) Predecessor() Live {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return s.from
}

// Disinherit stops serving the predecessor's set (Heir).
func (s *Store) Disinherit() {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if !s.status.ServingPrevious {
		return
	}
	s.now.Store(nil)
	s.status.Consumers, s.status.Keys, s.status.Loaded = 0, 0, false
	s.status.LastLoad, s.status.ServingPrevious, s.from = nil, false, nil
}

func (s *Store) swap(set *consumers.Set) {
	var old *consumers.Set
	prev := s.now.Load()
	var used map[string]Minute
	if prev != nil {
		// A request that records on prev from here on is lost: a minute
		// of one key, which its next request records again.
		used = prev.minutes()
	} else if s.usage.path != "" {
		var err error
		if used, err = ReadUseFile(s.usage.path); err != nil {
			s.log().Error("reading the last use of keys; counting from now", zap.String("source", s.Name()), zap.Error(err))
		}
	}
	if prev := s.now.Swap(newSnapshot(set, &s.usage, used)); prev != nil {
		old = prev.set
	}
	if set.Bytes() >= returnMemoryAbove || old.Bytes() >= returnMemoryAbove {
		// The replaced set (and the loading's scratch) would wait for the
		// heap to double before the garbage collector took it, and longer
		// still to go back to the OS. A set holds almost no pointers, so
		// collecting now is cheap.
		debug.FreeOSMemory()
	}
	now := s.clock.Now()
	c, k := set.Len()
	s.statusMu.Lock()
	s.status.Consumers, s.status.Keys, s.status.Loaded = c, k, true
	s.status.LastLoad, s.status.LastCheck = &now, &now
	s.status.ServingPrevious, s.from = false, nil
	s.statusMu.Unlock()
	storeMetrics.loaded(s, set, now)
}

// Status reports the store's state.
func (s *Store) Status() Status {
	s.statusMu.Lock()
	st := s.status
	s.statusMu.Unlock()
	st.SourceInfo = s.loader.Info()
	return st
}

func (s *Store) failures() int {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return s.status.Failures
}

// Refresh loads the source now and swaps in what it brings. A refused
// document leaves the current set serving.
func (s *Store) Refresh(ctx context.Context) error {
	return s.refresh(ctx, true)
}

func (s *Store) refresh(ctx context.Context, force bool) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	set, err := s.loader.Load(ctx, force)
	now := s.clock.Now()
	s.statusMu.Lock()
	failures := s.status.Failures
	if err != nil {
		s.status.Failures++
		s.status.LastError, s.status.LastErrorTime = err.Error(), &now
	} else {
		s.status.Failures = 0
		s.status.LastError, s.status.LastErrorTime = "", nil
		s.status.LastCheck = &now
	}
	s.statusMu.Unlock()

	if err != nil {
		storeMetrics.failed(s)
		s.logFailure(err, failures+1, now)
		return err
	}
	if failures > 0 {
		s.log().Info("consumers source recovered", zap.String("source", s.Name()),
			zap.Int("failed_attempts", failures), zap.Duration("failing_for", now.Sub(s.streakStart)))
		s.lastErr = ""
	}
	if set != nil {
		s.swap(set)
		c, k := set.Len()
		s.log().Info("consumers loaded", zap.String("source", s.Name()),
			zap.Int("consumers", c), zap.Int("keys", k))
	}
	return nil
}

// FailureReminderEvery is how often a failure streak is logged again while
// it lasts.
const FailureReminderEvery = 5 * time.Minute

// logFailure logs a failure streak when it starts, then at most once every
// FailureReminderEvery, with the count of failed fetches and the latest
// error, however often the error changes; the recovery is logged by
// refresh. A source that logs each error logs also every new one at once.
// Called with refreshMu held.
func (s *Store) logFailure(err error, failures int, now time.Time) {
	// Before a first load there is no last good set to speak of.
	what, serving := "consumers not reloaded", "the last good set keeps serving"
	if s.Set() == nil {
		what, serving = "consumers not loaded", "requests get 503 until a load succeeds"
	} else if s.Status().ServingPrevious {
		what, serving = "consumers not loaded with the source's new configuration",
			"the previous configuration's set keeps serving until a load succeeds"
	}
	switch {
	case failures == 1:
		s.streakStart = now
	case s.polling.EachError && err.Error() != s.lastErr:
	case now.Sub(s.streakLogged) >= FailureReminderEvery:
		what = "consumers source still failing"
	default:
		return
	}
	s.streakLogged, s.lastErr = now, err.Error()
	s.log().Error(what+"; "+serving, zap.String("source", s.Name()), zap.Error(err),
		zap.Int("failed_attempts", failures), zap.Duration("failing_for", now.Sub(s.streakStart)))
}

// Start begins polling, once, and logs into logger from now on; only a
// running Caddy starts a store (see App).
func (s *Store) Start(logger *zap.Logger) {
	s.logger.Store(logger)
	s.start()
}

func (s *Store) start() {
	s.startOnce.Do(func() {
		if s.ctx.Err() != nil {
			return
		}
		s.started.Store(true)
		go s.poll()
		go s.keepUse(s.ctx, s.useDone)
	})
}

func (s *Store) poll() {
	defer close(s.done)
	// A running Caddy loads at once: an HTTP source even with a cached
	// copy serving; a file read at provision is checked again, which costs
	// a stat.
	_ = s.refresh(s.ctx, false)
	for {
		// The failures in a row, admin refreshes included, set the wait.
		wait := s.polling.wait(s.failures())
		if wait <= 0 {
			<-s.ctx.Done()
			return
		}
		// Jitter keeps a fleet of instances from polling in step.
		wait += time.Duration(s.jitter(int64(wait)/10 + 1))
		c, stop := s.clock.Timer(wait)
		select {
		case <-s.ctx.Done():
			stop()
			return
		case <-c:
		}
		_ = s.refresh(s.ctx, false)
	}
}

// Destruct stops the poller and closes the loader when the last handler
// using the store goes away.
func (s *Store) Destruct() error {
	s.cancel()
	s.startOnce.Do(func() {}) // a store not started by now never starts
	if s.started.Load() {
		<-s.done
		<-s.useDone // it has written the record of use
	} else if err := s.writeUse(); err != nil {
		s.log().Error("keeping the last use of keys", zap.String("source", s.Name()), zap.Error(err))
	}
	var err error
	if c, ok := s.loader.(io.Closer); ok {
		err = c.Close()
	}
	storeMetrics.forget(s)
	return err
}

// Key names the live state of a source in the pool: its kind and its
// configuration as JSON, with placeholders and defaults filled in by the
// caller, so that every source that would load the same consumers shares
// one. JSON is canonical here: struct fields come in declaration order, map
// keys sorted, and a pointer is written as what it points to, so a field
// added tomorrow takes part in the key without anyone remembering to.
// Anything the key must follow but must not hold, such as a secret header
// value or a password, the caller passes as a digest in extra.
func Key(kind string, cfg any, extra ...string) (string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding the %s source's configuration: %w", kind, err)
	}
	key := kind + " " + string(b)
	for _, e := range extra {
		key += " " + e
	}
	return key, nil
}

var (
	_ caddy.Destructor = (*Store)(nil)
	_ Live             = (*Store)(nil)
	_ Heir             = (*Store)(nil)
)

// clock is the store's time: the wall clock, or a fake one in tests, which
// so drive the poll schedule and the log lines without waiting.
type clock interface {
	Now() time.Time
	// Timer sends on c once d has passed; stop gives it up.
	Timer(d time.Duration) (c <-chan time.Time, stop func() bool)
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
