package sources

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// stores holds the live stores keyed by their source's configuration. A
// handler's source takes a reference at provision and drops it at cleanup;
// since a reload provisions the new config before cleaning up the old one,
// a store whose source is unchanged lives on with its consumers and its
// poller.
var stores = caddy.NewUsagePool()

// fetcher is what a kind of source does: load its document when it has
// changed.
type fetcher interface {
	// fetch returns the new set, or nil when the document has not changed
	// since the last successful fetch. force loads even an unchanged one.
	fetch(ctx context.Context, force bool) (*consumers.Set, error)
	// retryAfter is how long to wait after failures failed fetches in a row;
	// 0 failures is the normal polling interval, and 0 turns polling off.
	retryAfter(failures int) time.Duration
	// fetchAtStart reports whether polling begins with a fetch.
	fetchAtStart() bool
	// logsEachError reports whether every new error of a failure streak is
	// logged, not only its first: so for a file, whose errors change only
	// when someone writes it, and who wants to see what is wrong with each
	// version. A polled server's errors may change on every poll.
	logsEachError() bool
	// info describes the source for operators, without secrets.
	info() SourceInfo
	close()
}

// SourceInfo is what operators see of a source. It never holds a key or a
// header value.
type SourceInfo struct {
	Kind     string `json:"kind"`
	Location string `json:"location"`
	// ETag is the entity tag of the last document an HTTP source served.
	ETag string `json:"etag,omitempty"`
}

// Status is a store's state for the admin API.
type Status struct {
	SourceInfo
	Consumers int        `json:"consumers"`
	Keys      int        `json:"keys"`
	Loaded    bool       `json:"loaded"`
	LastLoad  *time.Time `json:"last_load,omitempty"`
	// LastCheck is the last poll that succeeded, 304s included: a source
	// whose document never changes shows an old last_load but a recent
	// last_check.
	LastCheck     *time.Time `json:"last_check,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
	Failures      int        `json:"consecutive_failures"`
	// Lookups is the state of a source that looks keys up one at a time
	// (see Looker), such as Redis: connection, local cache, counts.
	Lookups *LookupStatus `json:"lookups,omitempty"`
}

// Looker is the second shape of a store: a source too large to hold whole,
// which looks each key up where it lives (with a local cache of its own).
// A store whose fetcher is a Looker has no Set; its handlers ask it instead.
type Looker interface {
	// Lookup finds the credential whose key has the digest d. An error
	// means the source could not answer (ErrUnavailable): not that the key
	// is unknown. d is a value, so the caller's digest stays on its stack.
	Lookup(ctx context.Context, d consumers.Digest) (consumers.Credential, bool, error)
	// Consumer finds a consumer by username, for the anonymous consumer.
	Consumer(ctx context.Context, username string) (consumers.Consumer, bool, error)
}

// ErrUnavailable is a Looker that cannot answer now: its source is down or
// too slow. Handlers answer 503, never 401: the key may be good.
var ErrUnavailable = errors.New("consumers source unavailable")

// starter is a fetcher with work to do when a running Caddy starts it,
// such as connecting.
type starter interface{ start(ctx context.Context) }

// lookupStatuser is a fetcher that reports a Looker's state.
type lookupStatuser interface{ lookupStatus() *LookupStatus }

// Store is the live consumer set of one source, shared by every handler that
// names that source. Its set is swapped atomically: a request sees the old
// set or the new one, never a mix.
type Store struct {
	set atomic.Pointer[consumers.Set]

	key     string
	fetcher fetcher
	// logger is that of the latest config started with this store: a store
	// outlives the config that made it, whose logs close with it.
	logger atomic.Pointer[zap.Logger]

	refreshMu sync.Mutex // one fetch at a time; guards the streak fields
	statusMu  sync.Mutex
	status    Status
	// The failure streak, for its log lines: when it began, when a line
	// about it was last logged, and the error then logged.
	streakStart, streakLogged time.Time
	lastErr                   string

	clock clock
	// jitter is a random duration in [0, n): rand.Int64N but in tests.
	jitter func(n int64) int64

	// The poller runs from start until Destruct cancels ctx.
	ctx       context.Context
	cancel    context.CancelFunc
	startOnce sync.Once
	started   atomic.Bool
	done      chan struct{}
}

func newStore(key string, f fetcher, logger *zap.Logger) *Store {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{key: key, fetcher: f, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		clock: wallClock{}, jitter: rand.Int64N}
	s.logger.Store(logger)
	s.status.SourceInfo = f.info()
	return s
}

// StaticStore is a store that serves set and never changes: for tests and
// for programs that build their sets themselves.
func StaticStore(set *consumers.Set) *Store {
	s := newStore("static", staticFetcher{}, zap.NewNop())
	s.swap(set)
	return s
}

type staticFetcher struct{}

func (staticFetcher) fetch(context.Context, bool) (*consumers.Set, error) { return nil, nil }
func (staticFetcher) retryAfter(int) time.Duration                        { return 0 }
func (staticFetcher) fetchAtStart() bool                                  { return false }
func (staticFetcher) logsEachError() bool                                 { return false }
func (staticFetcher) info() SourceInfo                                    { return SourceInfo{Kind: "static"} }
func (staticFetcher) close()                                              {}

// returnMemoryAbove is the size of a set whose loading or replacement
// gives memory back to the OS at once.
const returnMemoryAbove = 32 << 20

// Set is the current consumer set, or nil when none has loaded yet (and
// always for a Looker's store).
func (s *Store) Set() *consumers.Set { return s.set.Load() }

// Looker is the store's source when it looks keys up one at a time, or nil
// when the store holds a whole Set.
func (s *Store) Looker() Looker {
	l, _ := s.fetcher.(Looker)
	return l
}

func (s *Store) log() *zap.Logger { return s.logger.Load() }

// Name describes the store's source in logs and metric labels.
func (s *Store) Name() string {
	i := s.fetcher.info()
	return i.Kind + " " + i.Location
}

func (s *Store) swap(set *consumers.Set) {
	old := s.set.Swap(set)
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
	s.statusMu.Unlock()
	storeMetrics.loaded(s, set, now)
}

// Status reports the store's state.
func (s *Store) Status() Status {
	s.statusMu.Lock()
	st := s.status
	s.statusMu.Unlock()
	st.SourceInfo = s.fetcher.info()
	if l, ok := s.fetcher.(lookupStatuser); ok {
		st.Lookups = l.lookupStatus()
		st.Loaded = st.Lookups.Connected
	}
	return st
}

func (s *Store) failures() int {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return s.status.Failures
}

// Refresh fetches the source now and swaps in what it brings. A refused
// document leaves the current set serving.
func (s *Store) Refresh(ctx context.Context) error {
	return s.refresh(ctx, true)
}

func (s *Store) refresh(ctx context.Context, force bool) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	set, err := s.fetcher.fetch(ctx, force)
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
	}
	switch {
	case failures == 1:
		s.streakStart = now
	case s.fetcher.logsEachError() && err.Error() != s.lastErr:
	case now.Sub(s.streakLogged) >= FailureReminderEvery:
		what = "consumers source still failing"
	default:
		return
	}
	s.streakLogged, s.lastErr = now, err.Error()
	s.log().Error(what+"; "+serving, zap.String("source", s.Name()), zap.Error(err),
		zap.Int("failed_attempts", failures), zap.Duration("failing_for", now.Sub(s.streakStart)))
}

// start begins polling, once; only a running Caddy starts it (see App).
func (s *Store) start() {
	s.startOnce.Do(func() {
		if s.ctx.Err() != nil {
			return
		}
		s.started.Store(true)
		if st, ok := s.fetcher.(starter); ok {
			st.start(s.ctx)
		}
		go s.poll()
	})
}

func (s *Store) poll() {
	defer close(s.done)
	if s.fetcher.fetchAtStart() {
		_ = s.refresh(s.ctx, false)
	}
	for {
		// The failures in a row, admin refreshes included, set the wait.
		wait := s.fetcher.retryAfter(s.failures())
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

// Destruct stops the poller and closes the source's connections when the
// last handler using the store goes away.
func (s *Store) Destruct() error {
	s.cancel()
	s.startOnce.Do(func() {}) // a store not started by now never starts
	if s.started.Load() {
		<-s.done
	}
	s.fetcher.close()
	storeMetrics.forget(s)
	return nil
}

var _ caddy.Destructor = (*Store)(nil)

// acquire returns the live store for key, creating it with open when there
// is none. Every successful acquire is matched by one release.
func acquire(key string, open func() (*Store, error)) (*Store, error) {
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) { return open() })
	if err != nil {
		return nil, err
	}
	return v.(*Store), nil
}

func release(s *Store) {
	if _, err := stores.Delete(s.key); err != nil {
		s.log().Error("releasing consumers store", zap.String("source", s.Name()), zap.Error(err))
	}
}

// Stores lists the live stores.
func Stores() []*Store {
	var out []*Store
	stores.Range(func(_, v any) bool {
		out = append(out, v.(*Store))
		return true
	})
	return out
}

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
