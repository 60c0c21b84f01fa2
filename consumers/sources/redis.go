package sources

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
)

func init() {
	caddy.RegisterModule(RedisSource{})
}

// Defaults of the Redis source.
const (
	DefaultRedisPrefix           = "keyauth:"
	DefaultRedisCache            = 64 << 20
	DefaultRedisTimeout          = 500 * time.Millisecond
	DefaultRedisPartitionTimeout = 3 * time.Second
)

// RedisSource looks consumers up in Redis (or Valkey) one key at a time,
// for key sets larger than one instance should hold and for revocation
// everywhere within milliseconds. Answers are kept in a local cache that
// Redis itself keeps correct: RESP3 server-assisted client-side caching
// (CLIENT TRACKING), so a DEL or HSET of a key cached here drops it at once.
//
// The layout, which any service may write:
//
//	<prefix>cred:<hex SHA-256 of the key>  hash: consumer, id (both required),
//	                                       expires_at (RFC 3339), disabled, canary
//	<prefix>consumer:<username>            hash: id (default the username), custom_id,
//	                                       tags, groups (comma-separated),
//	                                       labels (a JSON object), disabled
//
// When Redis cannot answer, requests get 503 {"message":"consumers source
// unavailable"}, never 401 and never a cached answer older than
// PartitionTimeout. `caddy validate` and `caddy adapt` connect to nothing:
// the key_auth app connects in a running Caddy.
type RedisSource struct {
	// Addresses are the Redis servers, host:port. Several addresses are the
	// seeds of a Redis Cluster; one address may also be a cluster node, which
	// is detected. They may use {env.*} placeholders. Required.
	Addresses []string `json:"addresses,omitempty"`

	// Username is the ACL user. It may use {env.*} and {file.*}.
	Username string `json:"username,omitempty"`

	// Password is the ACL user's password (or requirepass). It may use
	// {env.*} and {file.*}, filled in when the config loads; it never
	// appears in logs or in the admin API.
	Password string `json:"password,omitempty"`

	// DB is the database number (standalone Redis only). Default: 0.
	DB int `json:"db,omitempty"`

	// Prefix starts every key this source reads. Default: "keyauth:".
	Prefix string `json:"prefix,omitempty"`

	// Cache is the memory this instance gives its local cache, in bytes
	// (the Caddyfile also takes a size such as 64MB), one budget however
	// many masters: an eighth of it holds the answers for unknown keys, so
	// a flood of random keys never evicts the good ones. Default: 64 MiB.
	Cache int64 `json:"cache,omitempty"`

	// Timeout bounds a lookup that must ask Redis (a cached answer has no
	// deadline), a duration (nanoseconds in JSON). Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// PartitionTimeout bounds how long cached answers are served after a
	// Redis server stops answering without closing its connection (a
	// silent partition, a frozen process): the connection is probed and
	// dropped, and the cache with it, within this time. Default: 3s.
	PartitionTimeout caddy.Duration `json:"partition_timeout,omitempty"`

	// TLS configures a TLS connection to Redis, as the HTTP source's.
	TLS *HTTPSourceTLS `json:"tls,omitempty"`

	store *Store
}

// CaddyModule returns the Caddy module information.
func (RedisSource) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth.sources.redis",
		New: func() caddy.Module { return new(RedisSource) },
	}
}

// Validate checks the configuration.
func (s *RedisSource) Validate() error {
	if len(s.Addresses) == 0 {
		return errors.New("addresses: at least one Redis address is required")
	}
	repl := caddy.NewReplacer()
	for _, a := range s.Addresses {
		host, port, err := net.SplitHostPort(repl.ReplaceKnown(a, ""))
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("addresses: %q is not host:port", a)
		}
	}
	if s.DB < 0 || s.Cache < 0 || s.Timeout < 0 || s.PartitionTimeout < 0 {
		return errors.New("db, cache, timeout and partition_timeout must not be negative")
	}
	if s.DB != 0 && len(s.Addresses) > 1 {
		return errors.New("db: a Redis Cluster has only database 0")
	}
	if s.PartitionTimeout != 0 && time.Duration(s.PartitionTimeout) < 30*time.Millisecond {
		return errors.New("partition_timeout must be at least 30ms")
	}
	return nil
}

// Provision joins the store of a source configured the same way, or makes
// one. It connects to nothing: the key_auth app does in a running Caddy.
func (s *RedisSource) Provision(ctx caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	canon := *s
	canon.Addresses = make([]string, len(s.Addresses))
	for i, a := range s.Addresses {
		canon.Addresses[i] = repl.ReplaceKnown(a, "")
	}
	canon.Username = repl.ReplaceKnown(s.Username, "")
	password := repl.ReplaceKnown(s.Password, "")
	canon.Password = ""
	if canon.Prefix == "" {
		canon.Prefix = DefaultRedisPrefix
	}
	if canon.Cache == 0 {
		canon.Cache = DefaultRedisCache
	}
	if canon.Timeout == 0 {
		canon.Timeout = caddy.Duration(DefaultRedisTimeout)
	}
	if canon.PartitionTimeout == 0 {
		canon.PartitionTimeout = caddy.Duration(DefaultRedisPartitionTimeout)
	}
	// The password takes part in the key as a digest: a rotated password
	// makes a new client, and the key holds no secret.
	pw := sha256.Sum256([]byte(password))
	key, err := storeKey("redis", &canon, hex.EncodeToString(pw[:]))
	if err != nil {
		return err
	}
	logger := ctx.Logger()
	s.store, err = acquire(key, func() (*Store, error) {
		var tlsCfg *tls.Config
		if canon.TLS != nil {
			var err error
			if tlsCfg, err = canon.TLS.config(ctx); err != nil {
				return nil, err
			}
		}
		l := newRedisLooker(&canon, password, tlsCfg)
		st := newStore(key, l, logger)
		l.log = st.log
		l.metrics = newLookupMetrics(st.Name())
		return st, nil
	})
	if err != nil {
		return err
	}
	return use(ctx, s.store)
}

// Store is the live store of this source.
func (s *RedisSource) Store() *Store { return s.store }

// Cleanup drops this source's reference to its store.
func (s *RedisSource) Cleanup() error {
	if s.store != nil {
		release(s.store)
		s.store = nil
	}
	return nil
}

// LookupStatus is the state of a Looker for the admin API: never a key or a
// password.
type LookupStatus struct {
	Addresses []string `json:"addresses"`
	Connected bool     `json:"connected"`
	// CacheEntries and UnknownEntries count the cached answers for known
	// and unknown keys; CacheBytes is their estimated memory.
	CacheEntries   int   `json:"cache_entries"`
	UnknownEntries int   `json:"unknown_entries"`
	CacheBytes     int64 `json:"cache_bytes"`
	// Hits are lookups answered from the cache; Misses asked Redis.
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	Errors uint64 `json:"errors"`
}

// redisLooker is the Redis source's fetcher and Looker.
type redisLooker struct {
	opt       rueidis.ClientOption
	addresses []string
	prefix    string
	credPfx   string // prefix + "cred:"
	consPfx   string // prefix + "consumer:"
	timeout   time.Duration

	client  atomic.Pointer[clientHolder]
	cache   *lookupCache
	flight  singleflight.Group
	log     func() *zap.Logger
	metrics lookupMetrics

	hits, misses, errs atomic.Uint64
	loggedBad          sync.Map // what was logged once: credential ids and digest prefixes
	badLogged          atomic.Int32

	connecting sync.WaitGroup
	connectErr string // the last connection error logged, owned by connect
}

type clientHolder struct{ rueidis.Client }

func newRedisLooker(cfg *RedisSource, password string, t *tls.Config) *redisLooker {
	pt := time.Duration(cfg.PartitionTimeout)
	l := &redisLooker{
		addresses: cfg.Addresses,
		prefix:    cfg.Prefix,
		credPfx:   cfg.Prefix + "cred:",
		consPfx:   cfg.Prefix + "consumer:",
		timeout:   time.Duration(cfg.Timeout),
		cache:     newLookupCache(cfg.Cache),
	}
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

// start connects in the background: until Redis answers, lookups get
// ErrUnavailable, and a Redis down at startup does not fail the config.
func (l *redisLooker) start(ctx context.Context) {
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
					l.log().Info("consumers source connected", zap.String("source", l.info().Location))
				}
				return
			}
			if msg := err.Error(); msg != l.connectErr {
				l.log().Error("consumers source not connected; lookups get 503 until it is",
					zap.String("source", l.info().Location), zap.Error(err))
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

// close is called once the store's context is cancelled.
func (l *redisLooker) close() {
	l.connecting.Wait()
	if c := l.client.Swap(nil); c != nil {
		c.Close()
	}
	l.metrics.forget()
}

func (l *redisLooker) fetch(context.Context, bool) (*consumers.Set, error) { return nil, nil }
func (l *redisLooker) retryAfter(int) time.Duration                        { return 0 }
func (l *redisLooker) fetchAtStart() bool                                  { return false }

func (l *redisLooker) info() SourceInfo {
	return SourceInfo{Kind: "redis", Location: strings.Join(l.addresses, ",")}
}

func (l *redisLooker) lookupStatus() *LookupStatus {
	st := &LookupStatus{Addresses: l.addresses, Hits: l.hits.Load(), Misses: l.misses.Load(), Errors: l.errs.Load()}
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
func (l *redisLooker) Lookup(ctx context.Context, digest consumers.Digest) (consumers.Credential, bool, error) {
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
		return consumers.Credential{}, false, ErrUnavailable
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
			ce.Write(zap.String("source", l.info().Location), zap.Error(err))
		}
		return consumers.Credential{}, false, ErrUnavailable
	}
	e := v.(*cacheEntry)
	if e.found {
		l.metrics.redisHit.Inc()
	} else {
		l.metrics.miss.Inc()
	}
	return e.cred, e.found, nil
}

// Consumer finds the consumer username, for the anonymous consumer.
func (l *redisLooker) Consumer(ctx context.Context, username string) (consumers.Consumer, bool, error) {
	if e := l.cache.getConsumer(username); e != nil {
		return e.cons, e.found, nil
	}
	c := l.client.Load()
	if c == nil {
		return consumers.Consumer{}, false, ErrUnavailable
	}
	v, err, _ := l.flight.Do("consumer\x00"+username, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
		defer cancel()
		return l.fetchConsumer(ctx, c, username)
	})
	if err != nil {
		return consumers.Consumer{}, false, ErrUnavailable
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

func (l *redisLooker) fetchCredential(ctx context.Context, c *clientHolder, d *consumers.Digest) (*cacheEntry, error) {
	hexd := hex.EncodeToString(d[:])
	credKey := l.credPfx + hexd
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
	username, id := cred["consumer"], cred["id"]
	if username == "" || id == "" {
		l.logBad("credential without consumer or id; its key is refused", "digest_prefix", hexd[:8], nil)
		l.cache.put(d, e, tk, "", ticket{})
		return e, nil
	}
	consKey := l.consPfx + username
	tk2 := l.cache.ticket(consKey)
	cons, err := hgetall(ctx, c, consKey)
	if err != nil {
		return nil, err
	}
	if len(cons) != 0 {
		set, err := buildSet(username, cons, hexd, cred)
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

func (l *redisLooker) fetchConsumer(ctx context.Context, c *clientHolder, username string) (*consumerEntry, error) {
	consKey := l.consPfx + username
	tk := l.cache.ticket(consKey)
	cons, err := hgetall(ctx, c, consKey)
	if err != nil {
		return nil, err
	}
	e := &consumerEntry{}
	if len(cons) != 0 {
		set, err := buildSet(username, cons, "", nil)
		if err != nil {
			l.logBad("consumer refused; it is treated as missing", "consumer", username, err)
		} else if !set.ConsumerAt(0).Disabled() {
			// A disabled consumer cannot be the anonymous one.
			e.cons, e.found = set.ConsumerAt(0), true
		}
	}
	l.cache.putConsumer(username, e, tk)
	return e, nil
}

// logBad logs a refused hash once per name, never with a key. The names
// remembered are capped, so bad data cannot grow memory without bound.
func (l *redisLooker) logBad(msg, field, name string, err error) {
	if _, seen := l.loggedBad.Load(field + name); seen || l.badLogged.Load() > 10000 {
		return
	}
	l.loggedBad.Store(field+name, struct{}{})
	l.badLogged.Add(1)
	fields := []zap.Field{zap.String("source", l.info().Location), zap.String(field, name)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	l.log().Warn(msg, fields...)
}

// invalidated drops the cached answers that depend on keys Redis reports
// changed; nil means all of them (a connection lost, or FLUSHALL). It runs
// on rueidis's reading goroutine, so it only takes locks no slow path holds.
func (l *redisLooker) invalidated(keys []rueidis.RedisMessage) {
	if keys == nil {
		l.cache.flush()
		return
	}
	for _, k := range keys {
		key, err := k.ToString()
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(key, l.credPfx):
			var d consumers.Digest
			if h := key[len(l.credPfx):]; len(h) == 64 {
				if _, err := hex.Decode(d[:], []byte(h)); err == nil {
					l.cache.dropCredential(key, &d)
					continue
				}
			}
			l.cache.bump(key)
		case strings.HasPrefix(key, l.consPfx):
			l.cache.dropConsumer(key, key[len(l.consPfx):])
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

// parseFlag reads a "true"/"false" hash field; empty is false.
func parseFlag(v string) (bool, error) {
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, fmt.Errorf("want true or false, got %q", v)
}

// splitList reads a comma-separated hash field.
func splitList(v string) []string {
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var (
	_ caddy.Provisioner  = (*RedisSource)(nil)
	_ caddy.Validator    = (*RedisSource)(nil)
	_ caddy.CleanerUpper = (*RedisSource)(nil)
	_ Source             = (*RedisSource)(nil)
	_ Looker             = (*redisLooker)(nil)
	_ fetcher            = (*redisLooker)(nil)
	_ starter            = (*redisLooker)(nil)
	_ rueidis.CacheStore = noCache{}
)

// keyDoc and consumerDoc are a Redis consumer and one of its credentials as
// a consumers document, so they pass the very checks of the other sources
// and become the same model the handler reads.
type keyDoc struct {
	ID        string `json:"id"`
	Hash      string `json:"hash"`
	ExpiresAt string `json:"expires_at,omitempty"`
	Disabled  bool   `json:"disabled,omitempty"`
	Canary    bool   `json:"canary,omitempty"`
}

type consumerDoc struct {
	Username string          `json:"username"`
	ID       string          `json:"id,omitempty"`
	CustomID string          `json:"custom_id,omitempty"`
	Tags     []string        `json:"tags,omitempty"`
	Groups   []string        `json:"groups,omitempty"`
	Labels   json.RawMessage `json:"labels,omitempty"`
	Disabled bool            `json:"disabled,omitempty"`
	Keys     []keyDoc        `json:"keys,omitempty"`
}

// buildSet makes the one-consumer set of a consumer hash and, unless cred
// is nil, one credential hash whose key's digest is hexDigest.
func buildSet(username string, cons map[string]string, hexDigest string, cred map[string]string) (*consumers.Set, error) {
	c := consumerDoc{
		Username: username,
		ID:       cons["id"],
		CustomID: cons["custom_id"],
		Tags:     splitList(cons["tags"]),
		Groups:   splitList(cons["groups"]),
	}
	if l := cons["labels"]; l != "" {
		c.Labels = json.RawMessage(l)
	}
	var err error
	if c.Disabled, err = parseFlag(cons["disabled"]); err != nil {
		return nil, fmt.Errorf("consumer %q: disabled: %w", username, err)
	}
	if cred != nil {
		k := keyDoc{ID: cred["id"], Hash: "sha256:" + hexDigest, ExpiresAt: cred["expires_at"]}
		if k.Disabled, err = parseFlag(cred["disabled"]); err != nil {
			return nil, fmt.Errorf("credential %q: disabled: %w", k.ID, err)
		}
		if k.Canary, err = parseFlag(cred["canary"]); err != nil {
			return nil, fmt.Errorf("credential %q: canary: %w", k.ID, err)
		}
		c.Keys = []keyDoc{k}
	}
	doc, err := json.Marshal(struct {
		Consumers []consumerDoc `json:"consumers"`
	}{[]consumerDoc{c}})
	if err != nil {
		// Only labels that are not JSON get here.
		return nil, fmt.Errorf("consumer %q: labels are not a JSON object", username)
	}
	return consumers.Parse(doc)
}

// logsEachError: a Looker's store never fetches; connection errors are
// logged by the looker itself.
func (l *redisLooker) logsEachError() bool { return false }
