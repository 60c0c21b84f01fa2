package redis

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// looker is the live state of a Redis source, shared by the handlers of
// every config that names it the same way: the client, its local cache and
// the counts. It looks each key up in Redis (keyauth.Source), and connects
// when a running Caddy starts it.
type looker struct {
	opt       rueidis.ClientOption
	addresses []string
	layout    Layout
	timeout   time.Duration
	// partitionTimeout bounds how long a cached answer may be stale: see
	// PartitionTimeout, and lookupCache for the answers of a cluster
	// that rest on an absent hash.
	partitionTimeout time.Duration

	client  atomic.Pointer[clientHolder]
	cache   *lookupCache
	flight  singleflight.Group
	logger  atomic.Pointer[zap.Logger]
	metrics lookupMetrics

	hits, misses, errs atomic.Uint64
	loggedBad          sync.Map // what was logged once: credential ids and digest prefixes
	badLogged          atomic.Int32

	// Connecting runs from Start until Destruct cancels ctx.
	ctx        context.Context
	cancel     context.CancelFunc
	startOnce  sync.Once
	connecting sync.WaitGroup
	connectErr string // the last connection error logged, owned by connect

	// fallback is the source's previous configuration (at the same
	// addresses), whose connection serves lookups until this one's
	// connects (sources.Heir). Lookups through it hold fbMu's read lock,
	// so it is let go only once none is under way.
	fbMu     sync.RWMutex
	fallback *looker

	// A looker closes when its config goes (Destruct) and no heir serves
	// through it any more.
	holdMu             sync.Mutex
	holders            int
	destructed, closed bool

	// usage is the record of use of the cached credentials (usage.go).
	usage usage

	// writeMu makes this instance's writes (the management API's) one at
	// a time: they never conflict with each other (write.go).
	writeMu sync.Mutex

	statusMu    sync.Mutex // guards the connection's failure streak
	lastErr     string
	lastErrTime *time.Time
	failures    int
}

type clientHolder struct{ rueidis.Client }

func newLooker(cfg *Source, password string, t *tls.Config) *looker {
	pt := time.Duration(cfg.PartitionTimeout)
	l := &looker{
		addresses: cfg.Addresses,
		layout:    NewLayout(cfg.Prefix),
		timeout:   time.Duration(cfg.Timeout),
		cache:     newLookupCache(cfg.Cache),

		partitionTimeout: pt,
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.logger.Store(caddy.Log())
	l.cache.added, l.cache.removed = l.cached, l.uncached
	l.usage.minute.Store(sources.MinuteOf(time.Now()))
	l.metrics = newLookupMetrics(sources.Name(l))
	l.opt = cfg.clientOption(password, t)
	// The local cache is ours (one entry joins a credential and its
	// consumer); rueidis keeps none, but still registers each read with
	// CLIENT TRACKING and reports the invalidations.
	l.opt.NewCacheStoreFn = func(rueidis.CacheStoreOption) rueidis.CacheStore { return noCache{} }
	l.opt.OnInvalidations = l.invalidated
	return l
}

// Start connects in the background, once, and logs into logger from now
// on: until Redis answers, lookups get ErrUnavailable, and a Redis down at
// startup does not fail the config.
func (l *looker) Start(logger *zap.Logger) {
	l.logger.Store(logger)
	l.startOnce.Do(func() { l.start(l.ctx) })
}

func (l *looker) log() *zap.Logger { return l.logger.Load() }

func (l *looker) start(ctx context.Context) {
	l.usage.keeping.Add(1)
	go l.keepUse(ctx)
	l.connecting.Add(1)
	go func() {
		defer l.connecting.Done()
		for wait := 50 * time.Millisecond; ; wait = min(wait*2, time.Second) {
			c, err := rueidis.NewClient(l.opt)
			err = l.plainConnectError(err)
			l.noteConnect(err)
			if err == nil {
				if ctx.Err() != nil {
					c.Close()
					return
				}
				if c.Mode() == rueidis.ClientModeCluster {
					// See lookupCache: in a cluster, an absence is news
					// only to the node that was read, and a slot moves.
					l.cache.absentTTL.Store(int64(l.partitionTimeout))
				}
				l.client.Store(&clientHolder{c})
				if l.dropFallback() {
					l.log().Info("consumers source connected with its new configuration; the previous connection is let go",
						zap.String("source", l.Info().Location))
				} else if l.connectErr != "" {
					l.log().Info("consumers source connected", zap.String("source", l.Info().Location))
				}
				return
			}
			if msg := err.Error(); msg != l.connectErr {
				what := "consumers source not connected; lookups get 503 until it is"
				if l.Predecessor() != nil {
					what = "consumers source not connected with its new configuration; the previous configuration's connection keeps serving until it is"
				}
				l.log().Error(what, zap.String("source", l.Info().Location), zap.Error(err))
				l.connectErr = msg
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

// Destruct stops connecting when the last config using the source goes,
// and closes the client then, or once the source's next configuration no
// longer serves through it.
func (l *looker) Destruct() error {
	l.cancel()
	l.startOnce.Do(func() {}) // a source not started by now never starts
	l.holdMu.Lock()
	l.destructed = true
	closing := l.holders == 0 && !l.closed
	l.closed = l.closed || closing
	l.holdMu.Unlock()
	if closing {
		l.close()
	}
	return nil
}

func (l *looker) close() {
	l.connecting.Wait()
	l.usage.keeping.Wait() // it has written the record of use
	if c := l.client.Swap(nil); c != nil {
		c.Close()
	}
	l.dropFallback()
	l.metrics.forget(l)
}

// hold keeps the looker's client open for an heir that serves through it;
// false when it is closed already.
func (l *looker) hold() bool {
	l.holdMu.Lock()
	defer l.holdMu.Unlock()
	if l.closed {
		return false
	}
	l.holders++
	return true
}

// release ends a hold, and closes a looker whose config has gone.
func (l *looker) release() {
	l.holdMu.Lock()
	l.holders--
	closing := l.holders == 0 && l.destructed && !l.closed
	l.closed = l.closed || closing
	l.holdMu.Unlock()
	if closing {
		l.close()
	}
}

// dropFallback lets the previous configuration go, once no lookup uses it;
// it reports whether there was one.
func (l *looker) dropFallback() bool {
	l.fbMu.Lock()
	p := l.fallback
	l.fallback = nil
	l.fbMu.Unlock()
	if p != nil {
		p.release()
	}
	return p != nil
}

// Predecessor is the previous configuration whose connection serves until
// this one's connects, or nil (sources.Heir).
func (l *looker) Predecessor() sources.Live {
	l.fbMu.RLock()
	defer l.fbMu.RUnlock()
	if l.fallback == nil {
		return nil
	}
	return l.fallback
}

// Disinherit stops serving through the previous configuration
// (sources.Heir).
func (l *looker) Disinherit() { l.dropFallback() }

// plainConnectError says in plain words what a refused connection lacks:
// rueidis reports a refused CLIENT TRACKING as Redis's NOPERM followed by
// its advice to disable its cache, which this source cannot do.
func (l *looker) plainConnectError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	redisErr, _, _ := strings.Cut(msg, ": [") // rueidis appends the command and its advice
	redisErr, _, _ = strings.Cut(redisErr, "\n")
	if !strings.HasPrefix(redisErr, "NOPERM") {
		if errors.Is(err, rueidis.ErrNoCache) {
			return &plainError{fmt.Sprintf("the Redis server refused CLIENT TRACKING, which the source needs (Redis or Valkey 6 or later, with RESP3): %s", redisErr), err}
		}
		return err
	}
	user := l.opt.Username
	if user == "" {
		user = "default"
	}
	// NOPERM ... the 'client|tracking' command
	cmd := "a command the source runs"
	if _, rest, ok := strings.Cut(redisErr, "'"); ok {
		if name, _, ok := strings.Cut(rest, "'"); ok {
			cmd = name
		}
	}
	if cmd == "client|tracking" {
		return &plainError{fmt.Sprintf("the Redis user %q may not run CLIENT TRACKING, which the source needs: Redis keeps its local cache correct through it; grant it +client|tracking (the README lists every right the source needs): %s", user, redisErr), err}
	}
	return &plainError{fmt.Sprintf("the Redis user %q may not run %s, which the source needs; grant it +%s (the README lists every right the source needs): %s", user, strings.ToUpper(strings.ReplaceAll(cmd, "|", " ")), cmd, redisErr), err}
}

// plainError is a connection error said in plain words: its message holds
// only Redis's own part of err's (not rueidis's advice, which %w would
// repeat), and errors.Is and errors.As still reach err.
type plainError struct {
	msg string
	err error
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.err }

// noteConnect records the outcome of a connection attempt for the admin
// view.
func (l *looker) noteConnect(err error) {
	l.statusMu.Lock()
	defer l.statusMu.Unlock()
	if err == nil {
		l.lastErr, l.lastErrTime, l.failures = "", nil, 0
		return
	}
	now := time.Now()
	l.lastErr, l.lastErrTime = err.Error(), &now
	l.failures++
}

// viaFallback asks the previous configuration while this one is not
// connected; used is false when there is none.
func (l *looker) viaFallback(ctx context.Context, d consumers.Digest) (cred consumers.Credential, ok, used bool, err error) {
	l.fbMu.RLock()
	defer l.fbMu.RUnlock()
	if l.fallback == nil {
		return consumers.Credential{}, false, false, nil
	}
	cred, ok, err = l.fallback.Lookup(ctx, d)
	return cred, ok, true, err
}

func (l *looker) consumerViaFallback(ctx context.Context, nameOrID string) (c consumers.Consumer, ok, used bool, err error) {
	l.fbMu.RLock()
	defer l.fbMu.RUnlock()
	if l.fallback == nil {
		return consumers.Consumer{}, false, false, nil
	}
	c, ok, err = l.fallback.Consumer(ctx, nameOrID)
	return c, ok, true, err
}

// Now is the looker itself: its answers do not come in whole sets, and it
// answers every lookup, with sources.ErrUnavailable (503) while it cannot
// reach Redis.
func (l *looker) Now() sources.View { return l }

// Refresh empties the local cache (POST /key_auth/sources/refresh): Redis
// tells this instance of every change to what it has cached, but an
// operator who knows better (a slot moved in a Redis Cluster, data restored
// behind the server's back) can start afresh without a reload.
func (l *looker) Refresh(context.Context) error {
	l.cache.flush()
	return nil
}

func (l *looker) Info() sources.SourceInfo {
	return sources.SourceInfo{Kind: "redis", Location: strings.Join(l.addresses, ",")}
}

// Status is the source's state for the admin API; it asks each node for a
// PING.
func (l *looker) Status() sources.Status {
	ls := l.lookupStatus()
	previous := l.Predecessor() != nil
	st := sources.Status{SourceInfo: l.Info(), Loaded: ls.Connected || previous, Lookups: ls, ServingPrevious: previous}
	l.statusMu.Lock()
	st.LastError, st.LastErrorTime, st.Failures = l.lastErr, l.lastErrTime, l.failures
	l.statusMu.Unlock()
	return st
}

func (l *looker) lookupStatus() *sources.LookupStatus {
	st := &sources.LookupStatus{Addresses: l.addresses, Hits: l.hits.Load(), Misses: l.misses.Load(), Errors: l.errs.Load()}
	st.CacheEntries, st.UnknownEntries, st.CacheBytes = l.cache.size()
	if c := l.client.Load(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		defer cancel()
		st.Connected = true
		for _, n := range c.Nodes() {
			if err := n.Do(ctx, n.B().Ping().Build()).Error(); err != nil {
				st.Connected = false
			}
		}
	}
	return st
}

// Lookup finds the credential of digest d: from the local cache, or from
// Redis in at most two round trips, under the lookup's deadline.
func (l *looker) Lookup(ctx context.Context, digest consumers.Digest) (consumers.Credential, bool, error) {
	d := &digest
	if e := l.cache.get(d); e != nil {
		l.hits.Add(1)
		l.metrics.cacheHit.Inc()
		return e.cred, e.found, nil
	}
	c := l.client.Load()
	if c == nil {
		if cred, ok, used, err := l.viaFallback(ctx, digest); used {
			return cred, ok, err
		}
		if c = l.client.Load(); c == nil { // not connected meanwhile
			l.errs.Add(1)
			l.metrics.failed.Inc()
			return consumers.Credential{}, false, sources.ErrUnavailable
		}
	}
	l.misses.Add(1)
	start := time.Now()
	// One Redis lookup per key at a time, whatever the number of requests
	// waiting for it, and not cancelled by the one client that asked first.
	v, err, _ := l.flight.Do(string(d[:]), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
		defer cancel()
		return l.fetchCredential(ctx, c, d)
	})
	l.metrics.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		l.errs.Add(1)
		l.metrics.failed.Inc()
		if ce := l.log().Check(zap.DebugLevel, "consumers source lookup failed"); ce != nil {
			ce.Write(zap.String("source", l.Info().Location), zap.Error(err))
		}
		return consumers.Credential{}, false, sources.ErrUnavailable
	}
	e := v.(*cacheEntry)
	if e.found {
		l.metrics.redisHit.Inc()
	} else {
		l.metrics.miss.Inc()
	}
	return e.cred, e.found, nil
}

// Consumer finds a consumer by username, then by id (keyauth.Source),
// disabled ones too: the anonymous consumer. The answer is cached until
// Redis reports a change to any hash it was read from.
func (l *looker) Consumer(ctx context.Context, nameOrID string) (consumers.Consumer, bool, error) {
	if e := l.cache.getConsumer(nameOrID); e != nil {
		return e.cons, e.found, nil
	}
	c := l.client.Load()
	if c == nil {
		if cons, ok, used, err := l.consumerViaFallback(ctx, nameOrID); used {
			return cons, ok, err
		}
		if c = l.client.Load(); c == nil {
			return consumers.Consumer{}, false, sources.ErrUnavailable
		}
	}
	v, err, _ := l.flight.Do("consumer\x00"+nameOrID, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
		defer cancel()
		return l.fetchConsumer(ctx, c, nameOrID)
	})
	if err != nil {
		return consumers.Consumer{}, false, sources.ErrUnavailable
	}
	e := v.(*consumerEntry)
	return e.cons, e.found, nil
}

// hgetall reads a hash with CLIENT TRACKING on, so Redis tells this
// instance when it changes. A missing key is an empty hash.
func hgetall(ctx context.Context, c rueidis.Client, key string) (map[string]string, error) {
	// The TTL is rueidis's; its cache here keeps nothing.
	return c.DoCache(ctx, c.B().Hgetall().Key(key).Cache(), time.Hour).AsStrMap()
}

func (l *looker) fetchCredential(ctx context.Context, c *clientHolder, d *consumers.Digest) (*cacheEntry, error) {
	credKey := l.layout.CredentialKey(d)
	tk := l.cache.ticket(credKey)
	cred, err := hgetall(ctx, c, credKey)
	if err != nil {
		return nil, err
	}
	e := &cacheEntry{}
	if len(cred) == 0 {
		l.cache.put(d, e, tk, "", ticket{})
		return e, nil
	}
	username, id := cred[FieldConsumer], cred[FieldID]
	if username == "" || id == "" {
		l.logBad("credential without consumer or id; its key is refused", "digest_prefix", hex.EncodeToString(d[:4]), nil)
		l.cache.put(d, e, tk, "", ticket{})
		return e, nil
	}
	consKey := l.layout.ConsumerKey(username)
	tk2 := l.cache.ticket(consKey)
	// The credential's last use, read alongside its consumer: the two
	// commands share the round trip.
	used := make(chan sources.Minute, 1)
	go func() { used <- l.readLastUsed(ctx, c.Client, id) }()
	cons, err := hgetall(ctx, c, consKey)
	fleet := <-used
	if err != nil {
		return nil, err
	}
	var gtks []ticket
	if len(cons) != 0 {
		var groups map[string]map[string]string
		groups, e.groups, gtks, e.absentGroup, err = l.readGroups(ctx, c, cons)
		if err != nil {
			return nil, err
		}
		set, err := DecodeWithGroups(username, cons, d, cred, groups)
		if err != nil {
			l.logBad("credential refused; its key is treated as unknown", "credential_id", id, err)
		} else if credential, ok := set.Lookup(d); ok && !credential.Disabled() && !credential.Consumer().Disabled() {
			// Disabled keys and consumers are refused here, like unknown
			// ones, whatever the handler checks.
			e.cred, e.found = credential, true
			e.size = int64(set.Bytes()) + useSlotBytes
			e.use = &useSlot{id: id}
			e.use.fleet.Store(fleet)
		}
	}
	// A key refused for its group's hash is known again when the hash is
	// fixed: an unknown answer depends on the groups too.
	l.cache.put(d, e, tk, username, tk2, gtks...)
	return e, nil
}

// readGroups reads the hashes of the groups a consumer hash lists, those
// that exist by name: from the cache, else from Redis, those missing in
// one round trip, with tracking on. It gives the groups' names and the
// tickets taken for them, and whether one had no hash.
func (l *looker) readGroups(ctx context.Context, c *clientHolder, cons map[string]string) (hashes map[string]map[string]string, names []string, tks []ticket, absent bool, err error) {
	names = splitList(cons[FieldGroups])
	if len(names) == 0 {
		return nil, nil, nil, false, nil
	}
	tks = make([]ticket, len(names))
	var missing []int
	use := func(name string, g *groupEntry) {
		if g.fields == nil {
			absent = true
			return
		}
		if hashes == nil {
			hashes = map[string]map[string]string{}
		}
		hashes[name] = g.fields
	}
	for i, name := range names {
		// The ticket first: an invalidation after it voids what is read.
		tks[i] = l.cache.ticket(l.layout.GroupKey(name))
		if g := l.cache.getGroup(name); g != nil {
			use(name, g)
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return hashes, names, tks, absent, nil
	}
	cmds := make([]rueidis.CacheableTTL, len(missing))
	for j, i := range missing {
		cmds[j] = rueidis.CT(c.B().Hgetall().Key(l.layout.GroupKey(names[i])).Cache(), time.Hour)
	}
	for j, r := range c.DoMultiCache(ctx, cmds...) {
		h, err := r.AsStrMap()
		if err != nil {
			return nil, nil, nil, false, err
		}
		g := &groupEntry{}
		if len(h) > 0 {
			g.fields = h
		}
		i := missing[j]
		l.cache.putGroup(names[i], g, tks[i])
		use(names[i], g)
	}
	return hashes, names, tks, absent, nil
}

// fetchConsumer reads the consumer nameOrID names: the consumer hash of that
// username or, failing that, the one the consumer-id hash of that id names,
// if its id is that id.
func (l *looker) fetchConsumer(ctx context.Context, c *clientHolder, nameOrID string) (*consumerEntry, error) {
	e := &consumerEntry{}
	var tks []ticket
	read := func(key string) (map[string]string, error) {
		e.deps = append(e.deps, key)
		tks = append(tks, l.cache.ticket(key))
		h, err := hgetall(ctx, c, key)
		if err == nil && len(h) == 0 {
			e.absent = true
		}
		return h, err
	}
	decode := func(username string, h map[string]string) (consumers.Consumer, bool, error) {
		groups, names, gtks, absent, err := l.readGroups(ctx, c, h)
		if err != nil {
			return consumers.Consumer{}, false, err
		}
		for _, name := range names {
			e.deps = append(e.deps, l.layout.GroupKey(name))
		}
		tks = append(tks, gtks...)
		e.absent = e.absent || absent
		set, err := DecodeWithGroups(username, h, nil, nil, groups)
		if err != nil {
			l.logBad("consumer refused; it is treated as missing", "consumer", username, err)
			return consumers.Consumer{}, false, nil
		}
		return set.ConsumerAt(0), true, nil
	}
	cons, err := read(l.layout.ConsumerKey(nameOrID))
	if err != nil {
		return nil, err
	}
	if len(cons) != 0 {
		if e.cons, e.found, err = decode(nameOrID, cons); err != nil {
			return nil, err
		}
	}
	if !e.found {
		ids, err := read(l.layout.ConsumerIDKey(nameOrID))
		if err != nil {
			return nil, err
		}
		if username := ids[FieldConsumer]; username != "" && username != nameOrID {
			cons, err := read(l.layout.ConsumerKey(username))
			if err != nil {
				return nil, err
			}
			if len(cons) != 0 {
				c, ok, err := decode(username, cons)
				if err != nil {
					return nil, err
				}
				if ok && c.ID() == nameOrID {
					e.cons, e.found = c, true
				}
			}
		}
	}
	l.cache.putConsumer(nameOrID, e, tks)
	return e, nil
}

// logBad logs a refused hash once per name, never with a key. The names
// remembered are capped, so bad data cannot grow memory without bound.
func (l *looker) logBad(msg, field, name string, err error) {
	if _, seen := l.loggedBad.Load(field + name); seen || l.badLogged.Load() > 10000 {
		return
	}
	l.loggedBad.Store(field+name, struct{}{})
	l.badLogged.Add(1)
	fields := []zap.Field{zap.String("source", l.Info().Location), zap.String(field, name)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	l.log().Warn(msg, fields...)
}

// invalidated drops the cached answers that depend on keys Redis reports
// changed; nil means all of them (a connection lost, or FLUSHALL). It runs
// on rueidis's reading goroutine, so it only takes locks no slow path holds.
func (l *looker) invalidated(keys []rueidis.RedisMessage) {
	if keys == nil {
		l.cache.flush()
		return
	}
	for _, k := range keys {
		key, err := k.ToString()
		if err != nil {
			continue
		}
		switch kind, d, name := l.layout.Parse(key); kind {
		case KindCredential:
			l.cache.dropCredential(key, &d)
		case KindConsumer:
			l.cache.dropConsumer(key, name)
		case KindConsumerID:
			l.cache.dropConsumer(key, "")
		case KindGroup:
			l.cache.dropGroup(key, name)
		default:
			l.cache.bump(key)
		}
	}
}

// noCache is rueidis's cache store for a client whose cache is its own: it
// keeps nothing, so every DoCache reaches Redis, with tracking on.
type noCache struct{}

func (noCache) Flight(string, string, time.Duration, time.Time) (rueidis.RedisMessage, rueidis.CacheEntry) {
	return rueidis.RedisMessage{}, nil
}
func (noCache) Update(string, string, rueidis.RedisMessage) int64 { return 0 }
func (noCache) Cancel(string, string, error)                      {}
func (noCache) Delete([]rueidis.RedisMessage)                     {}
func (noCache) Close(error)                                       {}

var (
	_ sources.Live       = (*looker)(nil)
	_ sources.Heir       = (*looker)(nil)
	_ rueidis.CacheStore = noCache{}
)
