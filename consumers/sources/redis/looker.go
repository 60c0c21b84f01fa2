package redis

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"net"
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
}

type clientHolder struct{ rueidis.Client }

func newLooker(cfg *Source, password string, t *tls.Config) *looker {
	pt := time.Duration(cfg.PartitionTimeout)
	l := &looker{
		addresses: cfg.Addresses,
		layout:    NewLayout(cfg.Prefix),
		timeout:   time.Duration(cfg.Timeout),
		cache:     newLookupCache(cfg.Cache),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.logger.Store(caddy.Log())
	l.metrics = newLookupMetrics(sources.Name(l))
	l.opt = rueidis.ClientOption{
		InitAddress: cfg.Addresses,
		Username:    cfg.Username,
		Password:    password,
		SelectDB:    cfg.DB,
		ClientName:  "caddy-keyauth",
		// The local cache is ours (one entry joins a credential and its
		// consumer); rueidis keeps none, but still registers each read
		// with CLIENT TRACKING and reports the invalidations.
		NewCacheStoreFn: func(rueidis.CacheStoreOption) rueidis.CacheStore { return noCache{} },
		OnInvalidations: l.invalidated,
		// rueidis sends a PING when nothing was read for a period, which
		// must answer within a timeout. A server frozen just after an
		// answer is pinged at most two periods later: with a quarter of
		// the bound for each, it is given up, and with it the cache (its
		// invalidations are lost), within three quarters of the bound.
		Dialer:           net.Dialer{KeepAlive: pt / 4, Timeout: max(pt/4, time.Second)},
		ConnWriteTimeout: pt / 4,
		// A refused connection answers 503 at once, not after retries
		// that would outlast the lookup's deadline.
		DisableRetry: true,
	}
	l.opt.TLSConfig = t
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
	l.connecting.Add(1)
	go func() {
		defer l.connecting.Done()
		for wait := 50 * time.Millisecond; ; wait = min(wait*2, time.Second) {
			c, err := rueidis.NewClient(l.opt)
			if err == nil {
				if ctx.Err() != nil {
					c.Close()
					return
				}
				l.client.Store(&clientHolder{c})
				if l.connectErr != "" {
					l.log().Info("consumers source connected", zap.String("source", l.Info().Location))
				}
				return
			}
			if msg := err.Error(); msg != l.connectErr {
				l.log().Error("consumers source not connected; lookups get 503 until it is",
					zap.String("source", l.Info().Location), zap.Error(err))
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

// Destruct stops connecting and closes the client when the last config
// using the source goes.
func (l *looker) Destruct() error {
	l.cancel()
	l.startOnce.Do(func() {}) // a source not started by now never starts
	l.close()
	return nil
}

func (l *looker) close() {
	l.connecting.Wait()
	if c := l.client.Swap(nil); c != nil {
		c.Close()
	}
	l.metrics.forget(l)
}

// Now is the looker itself: its answers do not come in whole sets, and it
// answers every lookup, with sources.ErrUnavailable (503) while it cannot
// reach Redis.
func (l *looker) Now() sources.View { return l }

// Refresh has nothing to reload: Redis tells this instance of every change
// to what it has cached.
func (l *looker) Refresh(context.Context) error { return nil }

func (l *looker) Info() sources.SourceInfo {
	return sources.SourceInfo{Kind: "redis", Location: strings.Join(l.addresses, ",")}
}

// Status is the source's state for the admin API; it asks each node for a
// PING.
func (l *looker) Status() sources.Status {
	ls := l.lookupStatus()
	return sources.Status{SourceInfo: l.Info(), Loaded: ls.Connected, Lookups: ls}
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
		l.errs.Add(1)
		l.metrics.failed.Inc()
		return consumers.Credential{}, false, sources.ErrUnavailable
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
		return consumers.Consumer{}, false, sources.ErrUnavailable
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
	cons, err := hgetall(ctx, c, consKey)
	if err != nil {
		return nil, err
	}
	if len(cons) != 0 {
		set, err := Decode(username, cons, d, cred)
		if err != nil {
			l.logBad("credential refused; its key is treated as unknown", "credential_id", id, err)
		} else if credential, ok := set.Lookup(d); ok && !credential.Disabled() && !credential.Consumer().Disabled() {
			// Disabled keys and consumers are refused here, like unknown
			// ones, whatever the handler checks.
			e.cred, e.found = credential, true
			e.size = int64(set.Bytes())
		}
	}
	l.cache.put(d, e, tk, username, tk2)
	return e, nil
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
		return hgetall(ctx, c, key)
	}
	decode := func(username string, h map[string]string) (consumers.Consumer, bool) {
		set, err := Decode(username, h, nil, nil)
		if err != nil {
			l.logBad("consumer refused; it is treated as missing", "consumer", username, err)
			return consumers.Consumer{}, false
		}
		return set.ConsumerAt(0), true
	}
	cons, err := read(l.layout.ConsumerKey(nameOrID))
	if err != nil {
		return nil, err
	}
	if len(cons) != 0 {
		e.cons, e.found = decode(nameOrID, cons)
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
				if c, ok := decode(username, cons); ok && c.ID() == nameOrID {
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
	_ rueidis.CacheStore = noCache{}
)
