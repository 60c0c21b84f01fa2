package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/caddyfilearg"
)

func init() {
	caddy.RegisterModule(LimitStore{})
}

// DefaultLeaseTTL is how long an in-flight slot outlives an instance that
// stopped renewing it (a crash, a partition).
const DefaultLeaseTTL = 30 * time.Second

// LimitStore is the limits store key_auth.limits.stores.redis: counters in
// Redis (or Valkey), shared by every instance that uses the same Redis and
// prefix, so a fleet never lets more through than a limit's max.
//
// An admission is one Lua script, one round trip, over every charge: it
// reads every counter, and takes them all only when all have room. A
// window's counter is a string (INCRBY) that expires at the window's end
// (PEXPIREAT). An in-flight slot is a lease: a member of a sorted set,
// scored with its expiry, which the instance renews while the request runs
// (every third of LeaseTTL) and removes when it ends; an admission first
// drops the expired ones, so the slots of a crashed instance come back
// within LeaseTTL. A settlement is one script too, and none when there is
// nothing to settle (no lease, no reservation to correct).
//
// Every key of the store carries one hash tag, {<prefix>limits}: all live
// in one slot of a Redis Cluster, which is what lets one script take a
// credential's, a consumer's and its groups' counters at once, since a
// group's pool is shared by consumers that no other tag would put
// together. The store's load is then one master's; stores with another
// prefix live in another slot.
type LimitStore struct {
	// Options say how to reach Redis and the prefix of the keys; the
	// Caddyfile block takes the Redis source's options.
	Options

	// LeaseTTL is how long an in-flight slot outlives an instance that
	// stopped renewing it, a duration (nanoseconds in JSON), at least
	// 100ms. Default: 30s.
	LeaseTTL caddy.Duration `json:"lease_ttl,omitempty"`

	live     *limitsClient
	key      string
	released bool
}

// CaddyModule returns the Caddy module information.
func (LimitStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth.limits.stores.redis",
		New: func() caddy.Module { return new(LimitStore) },
	}
}

// Validate checks the configuration.
func (s *LimitStore) Validate() error {
	if err := s.validate(negativeOption{"lease_ttl", s.LeaseTTL < 0}); err != nil {
		return err
	}
	if s.LeaseTTL != 0 && time.Duration(s.LeaseTTL) < 100*time.Millisecond {
		return errors.New("lease_ttl must be at least 100ms")
	}
	if strings.ContainsAny(s.Prefix, "{}") {
		return &sources.OptionError{Option: "prefix", Rest: ": the limits store's may not hold '{' or '}', which make its hash tag"}
	}
	return nil
}

// limitClients are the limits stores' connections, by configuration: a
// reload that keeps a store's configuration keeps its connection and the
// leases it renews.
var limitClients = caddy.NewUsagePool()

// Provision joins the connection of a store configured the same way, or
// makes one. It connects to nothing: the first admission does.
func (s *LimitStore) Provision(ctx caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	canon := *s
	var password string
	canon.Options, password = s.resolved()
	if canon.LeaseTTL == 0 {
		canon.LeaseTTL = caddy.Duration(DefaultLeaseTTL)
	}
	key, err := sources.Key("redis-limits", &canon, passwordDigest(password))
	if err != nil {
		return err
	}
	v, _, err := limitClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		t, err := canon.tlsConfig(ctx)
		if err != nil {
			return nil, err
		}
		return newLimitsClient(&canon, password, t), nil
	})
	if err != nil {
		return err
	}
	s.live, s.key, s.released = v.(*limitsClient), key, false
	s.live.logger.Store(ctx.Logger())
	return sources.RegisterLimitMetrics(ctx)
}

// Admit checks and takes a request's charges, in one round trip
// (keyauth.LimitStore).
func (s *LimitStore) Admit(ctx context.Context, charges []limits.Charge) (limits.Admission, error) {
	return s.live.admit(ctx, charges)
}

// Settle gives back a request's in-flight slots and settles its
// reservations, in at most one round trip (keyauth.LimitStore).
func (s *LimitStore) Settle(ctx context.Context, a limits.Admission, st limits.Settlement) error {
	return s.live.settle(ctx, a, st)
}

// Cleanup lets the connection go with the module's config.
func (s *LimitStore) Cleanup() error {
	if s.live == nil || s.released {
		return nil
	}
	s.released = true
	if _, err := limitClients.Delete(s.key); err != nil {
		caddy.Log().Error("releasing a limits store", zap.String("store", s.live.store), zap.Error(err))
	}
	return nil
}

// UnmarshalCaddyfile reads the store's part of a limits block:
//
//	store redis <address...> {
//		<every option of the Redis source but cache>
//		lease_ttl <duration>
//	}
func (s *LimitStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return s.unmarshalBlock(d, "limits store", func(opt string) (bool, error) {
		if opt != "lease_ttl" {
			return false, nil
		}
		t, err := caddyfilearg.Duration(d)
		if err == nil {
			s.LeaseTTL = *t
		}
		return true, err
	})
}

// limitsClient is a store's live state: its connection, made at the first
// admission, and the leases this instance renews.
type limitsClient struct {
	opt      rueidis.ClientOption
	store    string // for logs and metric labels: "redis <addresses>"
	tag      string // the hash tag that starts every key
	timeout  time.Duration
	leaseTTL time.Duration
	instance string // starts the name of each lease this instance holds
	seq      atomic.Uint64

	client    atomic.Pointer[clientHolder]
	connectMu sync.Mutex
	retryAt   time.Time // no new attempt before, after a failed one
	backoff   time.Duration
	lastErr   error

	leasesMu sync.Mutex
	leases   map[*admission]struct{} // admitted, with leases to renew
	inFlight atomic.Int64
	renewals atomic.Uint64 // renewal rounds done, for tests

	ctx      context.Context
	cancel   context.CancelFunc
	renewing sync.WaitGroup
	logger   atomic.Pointer[zap.Logger]
	errs     prometheus.Counter
}

func newLimitsClient(cfg *LimitStore, password string, t *tls.Config) *limitsClient {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	c := &limitsClient{
		opt:      cfg.clientOption(password, t),
		store:    "redis " + cfg.location(),
		tag:      "{" + cfg.Prefix + "limits}",
		timeout:  time.Duration(cfg.Timeout),
		leaseTTL: time.Duration(cfg.LeaseTTL),
		instance: hex.EncodeToString(id),
		leases:   map[*admission]struct{}{},
	}
	c.opt.DisableCache = true
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.logger.Store(caddy.Log())
	c.errs = sources.LimitStoreErrors(c.store)
	sources.TrackInFlight(c, c.store, c.inFlight.Load)
	return c
}

func (c *limitsClient) log() *zap.Logger { return c.logger.Load() }

// conn is the connection, made now if there is none: at the first
// admission, since `caddy validate` provisions stores that never run. A
// failed attempt answers the admissions of the next moments (50ms, growing
// to 1s) with its error rather than try again for each.
func (c *limitsClient) conn() (rueidis.Client, error) {
	if h := c.client.Load(); h != nil {
		return h.Client, nil
	}
	c.connectMu.Lock()
	defer c.connectMu.Unlock()
	if h := c.client.Load(); h != nil {
		return h.Client, nil
	}
	if c.ctx.Err() != nil {
		return nil, errors.New("the limits store is closed")
	}
	if time.Now().Before(c.retryAt) {
		return nil, c.lastErr
	}
	cl, err := rueidis.NewClient(c.opt)
	if err != nil {
		c.backoff = min(max(2*c.backoff, 50*time.Millisecond), time.Second)
		c.retryAt = time.Now().Add(c.backoff)
		err = fmt.Errorf("connecting to %s: %w", c.store, err)
		if c.lastErr == nil || c.lastErr.Error() != err.Error() {
			c.log().Error("limits store not connected; admissions fail (on_error decides) until it is", zap.String("store", c.store), zap.Error(err))
		}
		c.lastErr = err
		return nil, err
	}
	if c.lastErr != nil {
		c.log().Info("limits store connected", zap.String("store", c.store))
	}
	c.lastErr, c.backoff = nil, 0
	c.client.Store(&clientHolder{cl})
	c.renewing.Add(1)
	go c.renew(cl)
	return cl, nil
}

// Destruct closes the connection when the last config using the store
// goes. Leases still held are no longer renewed: they expire within the
// TTL.
func (c *limitsClient) Destruct() error {
	// Under the lock: a connection being made is kept before, and none is
	// made after.
	c.connectMu.Lock()
	c.cancel()
	c.connectMu.Unlock()
	c.renewing.Wait()
	if h := c.client.Swap(nil); h != nil {
		h.Close()
	}
	sources.UntrackInFlight(c)
	return nil
}

// admission is an admitted request's state (its Ticket): what Settle must give
// back or correct.
type admission struct {
	client    *limitsClient
	allowed   bool
	done      atomic.Bool
	counters  []string // each charge's counter key, "" for in-flight
	costs     []int64
	leaseSets []string // the sorted set of each lease, one per slot
	members   []string
	remaining []int64
}

// The keys: {<prefix>limits}:<kind>:<length of scope>:<scope>:<meter>:<window
// start, Unix ms> for a window's counter, and ...:<scope>:in_flight for a
// lease set. The scope's length keeps a scope holding ':' apart from a
// meter.
func (c *limitsClient) keyOf(ch *limits.Charge) string {
	var b strings.Builder
	b.Grow(len(c.tag) + len(ch.Scope) + len(ch.Meter) + 32)
	b.WriteString(c.tag)
	b.WriteByte(':')
	b.WriteString(ch.Kind.String())
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(len(ch.Scope)))
	b.WriteByte(':')
	b.WriteString(ch.Scope)
	b.WriteByte(':')
	b.WriteString(ch.Meter)
	if ch.Meter != limits.InFlight {
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(ch.Start.UnixMilli(), 10))
	}
	return b.String()
}

// admitScript checks and takes the charges. KEYS are the charges'
// counters and lease sets (one key may come twice); ARGV[1] starts the
// name of this admission's leases, ARGV[2] is the lease TTL in ms, and
// charge i has ARGV[3i], ARGV[3i+1], ARGV[3i+2]: its max, its cost and its
// window's end in Unix ms (0 for a lease set). It answers {allowed (1 or
// 0), the refused charge's number (from 1) or 0, then per charge its usage
// after the admission (refused: before)}. Time is Redis's, so the
// instances' clocks do not matter to the leases.
var admitScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local used, take = {}, {}
for i, k in ipairs(KEYS) do
  if used[k] == nil then
    if tonumber(ARGV[3*i+2]) == 0 then
      redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
      used[k] = redis.call('ZCARD', k)
    else
      used[k] = tonumber(redis.call('GET', k) or '0')
    end
    take[k] = 0
  end
end
local refused = 0
for i, k in ipairs(KEYS) do
  local cost = tonumber(ARGV[3*i+1])
  if used[k] + take[k] + cost > tonumber(ARGV[3*i]) then
    refused = i
    break
  end
  take[k] = take[k] + cost
end
local out = {1, 0}
if refused > 0 then
  out = {0, refused}
  for _, k in ipairs(KEYS) do take[k] = 0 end
else
  for i, k in ipairs(KEYS) do
    local cost = tonumber(ARGV[3*i+1])
    local e = tonumber(ARGV[3*i+2])
    if e == 0 then
      for j = 1, cost do
        redis.call('ZADD', k, now + ttl, ARGV[1] .. ':' .. i .. ':' .. j)
      end
      redis.call('PEXPIRE', k, ttl)
    elseif cost > 0 then
      redis.call('INCRBY', k, cost)
      redis.call('PEXPIREAT', k, e)
    end
  end
end
for i, k in ipairs(KEYS) do out[2+i] = used[k] + take[k] end
return out
`)

// settleScript ends an admission. ARGV[1] is the number n of leases to
// give back: KEYS[1..n] are their sets and ARGV[2..n+1] their names; the
// KEYS after are counters, each corrected by its ARGV (the settled amount
// less the reservation), only while it lives (a window that ended is not
// brought back), and never below 0 or, on a counter a top-up took below
// 0, below what it was (as limits.Table: a reset between admission and
// settlement gives no room back).
var settleScript = rueidis.NewLuaScript(`
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('ZREM', KEYS[i], ARGV[1+i]) end
for i = n + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local d = tonumber(ARGV[1+i])
    local v = redis.call('INCRBY', KEYS[i], d)
    local floor = math.min(v - d, 0)
    if v < floor then
      redis.call('SET', KEYS[i], floor, 'KEEPTTL')
    end
  end
end
return 0
`)

// usageScript reads counters: KEYS are window counters and lease sets, and
// ARGV[i] is 1 when KEYS[i] is a lease set, whose unexpired leases it
// counts (by Redis's clock, as admissions do).
var usageScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, k in ipairs(KEYS) do
  if ARGV[i] == '1' then
    out[i] = redis.call('ZCOUNT', k, '(' .. now, '+inf')
  else
    out[i] = tonumber(redis.call('GET', k) or '0')
  end
end
return out
`)

// topUpScript lowers the counter KEYS[1] by ARGV[1] and makes it expire at
// its window's end, ARGV[2] in Unix ms (a counter never charged is made);
// it answers the usage after.
var topUpScript = rueidis.NewLuaScript(`
local v = redis.call('DECRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return v
`)

// renewScript renews leases that still exist: KEYS are their sets, ARGV[1]
// the TTL in ms and ARGV[1+i] the name of KEYS[i]'s lease. A lease that
// expired is not brought back: its slot may be another's by now.
var renewScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  if redis.call('ZADD', k, 'XX', 'CH', exp, ARGV[1+i]) == 1 then
    redis.call('PEXPIRE', k, ARGV[1])
  end
end
return 0
`)

func (c *limitsClient) fail(err error) error {
	c.errs.Inc()
	return fmt.Errorf("limits store %s: %w", c.store, err)
}

func (c *limitsClient) admit(ctx context.Context, charges []limits.Charge) (limits.Admission, error) {
	if len(charges) == 0 {
		return limits.Admission{Allowed: true}, nil
	}
	k := &admission{client: c, counters: make([]string, len(charges)), costs: make([]int64, len(charges))}
	keys := make([]string, len(charges))
	args := make([]string, 2, 2+3*len(charges))
	lease := c.instance + ":" + strconv.FormatUint(c.seq.Add(1), 36)
	args[0], args[1] = lease, strconv.FormatInt(c.leaseTTL.Milliseconds(), 10)
	for i := range charges {
		ch := &charges[i]
		if ch.Cost < 0 || ch.Max < 0 || ch.Kind < limits.Credential || ch.Kind > limits.Group ||
			(ch.Meter != limits.InFlight && !ch.End.After(ch.Start)) {
			return limits.Admission{}, c.fail(fmt.Errorf("charge %d (%s %s): %w", i, ch.Kind, ch.Meter, limits.ErrBadCharge))
		}
		keys[i] = c.keyOf(ch)
		end := "0"
		if ch.Meter != limits.InFlight {
			end = strconv.FormatInt(ch.End.UnixMilli(), 10)
			k.counters[i] = keys[i]
		}
		k.costs[i] = ch.Cost
		args = append(args, strconv.FormatInt(ch.Max, 10), strconv.FormatInt(ch.Cost, 10), end)
	}
	cl, err := c.conn()
	if err != nil {
		return limits.Admission{}, c.fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out, err := admitScript.Exec(ctx, cl, keys, args).AsIntSlice()
	if err == nil && len(out) != 2+len(charges) {
		err = fmt.Errorf("unexpected answer to the admission: %d values", len(out))
	}
	if err != nil {
		return limits.Admission{}, c.fail(err)
	}
	k.allowed = out[0] == 1
	k.remaining = make([]int64, len(charges))
	for i := range charges {
		k.remaining[i] = max(0, charges[i].Max-out[2+i])
	}
	a := limits.Admission{Allowed: k.allowed, Remaining: k.remaining, Ticket: k}
	if !k.allowed {
		a.Refused = int(out[1]) - 1
		return a, nil
	}
	for i := range charges {
		if k.counters[i] != "" {
			continue
		}
		for j := range charges[i].Cost {
			k.leaseSets = append(k.leaseSets, keys[i])
			k.members = append(k.members, lease+":"+strconv.Itoa(i+1)+":"+strconv.FormatInt(j+1, 10))
		}
	}
	if len(k.members) > 0 {
		c.inFlight.Add(int64(len(k.members)))
		c.leasesMu.Lock()
		c.leases[k] = struct{}{}
		c.leasesMu.Unlock()
	}
	return a, nil
}

func (c *limitsClient) settle(ctx context.Context, a limits.Admission, s limits.Settlement) error {
	k, ok := a.Ticket.(*admission)
	if !ok || k == nil || !k.allowed || k.done.Swap(true) {
		return nil
	}
	if k.client != c {
		return errors.New("settling an admission of another limits store")
	}
	if len(k.members) > 0 {
		// Renewed no more from now: if this settlement fails, the slots
		// come back within the TTL.
		c.leasesMu.Lock()
		delete(c.leases, k)
		c.leasesMu.Unlock()
		c.inFlight.Add(-int64(len(k.members)))
	}
	keys := append([]string(nil), k.leaseSets...)
	args := append(make([]string, 0, 1+len(k.members)+len(k.counters)), strconv.Itoa(len(k.members)))
	args = append(args, k.members...)
	for i, key := range k.counters {
		if key == "" || i >= len(s.Actual) || s.Actual[i] < 0 || s.Actual[i] == k.costs[i] {
			continue
		}
		keys = append(keys, key)
		args = append(args, strconv.FormatInt(s.Actual[i]-k.costs[i], 10))
	}
	if len(keys) == 0 {
		return nil
	}
	cl, err := c.conn()
	if err != nil {
		return c.fail(err)
	}
	// The request may be over (a client gone): its settlement is not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	if err := settleScript.Exec(ctx, cl, keys, args).Error(); err != nil {
		return c.fail(err)
	}
	return nil
}

// Usage reads counters' usage in one round trip (keyauth.UsageStore).
func (s *LimitStore) Usage(ctx context.Context, counters []limits.Charge) ([]int64, error) {
	return s.live.usage(ctx, counters)
}

// Reset deletes window counters, in one round trip (keyauth.UsageStore):
// the next admission starts them from zero.
func (s *LimitStore) Reset(ctx context.Context, counters []limits.Charge) error {
	return s.live.reset(ctx, counters)
}

// TopUp lowers a window counter by n, in one round trip
// (keyauth.UsageStore).
func (s *LimitStore) TopUp(ctx context.Context, c limits.Charge, n int64) (int64, error) {
	return s.live.topUp(ctx, c, n)
}

func (c *limitsClient) usage(ctx context.Context, counters []limits.Charge) ([]int64, error) {
	if len(counters) == 0 {
		return nil, nil
	}
	keys := make([]string, len(counters))
	args := make([]string, len(counters))
	for i := range counters {
		keys[i], args[i] = c.keyOf(&counters[i]), "0"
		if counters[i].Meter == limits.InFlight {
			args[i] = "1"
		}
	}
	cl, err := c.conn()
	if err != nil {
		return nil, c.fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out, err := usageScript.Exec(ctx, cl, keys, args).AsIntSlice()
	if err == nil && len(out) != len(counters) {
		err = fmt.Errorf("unexpected answer to reading usage: %d values", len(out))
	}
	if err != nil {
		return nil, c.fail(err)
	}
	return out, nil
}

func (c *limitsClient) reset(ctx context.Context, counters []limits.Charge) error {
	keys := make([]string, 0, len(counters))
	for i := range counters {
		if counters[i].Meter == limits.InFlight {
			return limits.ErrInFlight
		}
		keys = append(keys, c.keyOf(&counters[i]))
	}
	if len(keys) == 0 {
		return nil
	}
	cl, err := c.conn()
	if err != nil {
		return c.fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// One slot (the store's hash tag): one DEL of them all.
	if err := cl.Do(ctx, cl.B().Del().Key(keys...).Build()).Error(); err != nil {
		return c.fail(err)
	}
	return nil
}

func (c *limitsClient) topUp(ctx context.Context, ch limits.Charge, n int64) (int64, error) {
	switch {
	case ch.Meter == limits.InFlight:
		return 0, limits.ErrInFlight
	case n <= 0:
		return 0, fmt.Errorf("%w: a top-up must be positive", limits.ErrBadCharge)
	case ch.Kind < limits.Credential || ch.Kind > limits.Group || !ch.End.After(ch.Start):
		return 0, fmt.Errorf("top-up (%s %s): %w", ch.Kind, ch.Meter, limits.ErrBadCharge)
	}
	cl, err := c.conn()
	if err != nil {
		return 0, c.fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := topUpScript.Exec(ctx, cl, []string{c.keyOf(&ch)},
		[]string{strconv.FormatInt(n, 10), strconv.FormatInt(ch.End.UnixMilli(), 10)}).AsInt64()
	if err != nil {
		return 0, c.fail(err)
	}
	return v, nil
}

// renew renews the leases this instance holds, every third of the TTL,
// until the store closes; renewBatch leases a script.
func (c *limitsClient) renew(cl rueidis.Client) {
	defer c.renewing.Done()
	t := time.NewTicker(c.leaseTTL / 3)
	defer t.Stop()
	ttl := strconv.FormatInt(c.leaseTTL.Milliseconds(), 10)
	failing := ""
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		var keys, members []string
		c.leasesMu.Lock()
		for k := range c.leases {
			keys = append(keys, k.leaseSets...)
			members = append(members, k.members...)
		}
		c.leasesMu.Unlock()
		for len(keys) > 0 {
			n := min(len(keys), renewBatch)
			ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
			err := renewScript.Exec(ctx, cl, keys[:n], append([]string{ttl}, members[:n]...)).Error()
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.errs.Inc()
				if msg := err.Error(); msg != failing {
					failing = msg
					c.log().Error("renewing in-flight leases; slots this instance holds may be taken by others once their TTL passes",
						zap.String("store", c.store), zap.Error(err))
				}
				break
			}
			keys, members = keys[n:], members[n:]
			if len(keys) == 0 && failing != "" {
				failing = ""
				c.log().Info("in-flight leases renewed again", zap.String("store", c.store))
			}
		}
		c.renewals.Add(1)
	}
}

const renewBatch = 1000

var (
	_ caddy.Provisioner     = (*LimitStore)(nil)
	_ caddy.Validator       = (*LimitStore)(nil)
	_ caddy.CleanerUpper    = (*LimitStore)(nil)
	_ caddyfile.Unmarshaler = (*LimitStore)(nil)
	_ caddy.Destructor      = (*limitsClient)(nil)
)
