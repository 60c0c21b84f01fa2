package integration

// Consumers in Redis, against a real Caddy, a real redis-server and the
// echo upstream.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/redis/rueidis"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

const (
	redisKeyAlice = "redis-alice-secret-1"
	redisKeyBob   = "redis-bob-secret-2"
	redisKeyTrap  = "redis-canary-secret-3"
	redisKeyOff   = "redis-disabled-secret-4"
	redisPassword = "redis-pass-Zq8"
)

func redisCred(prefix, key string) string {
	d := sha256.Sum256([]byte(key))
	return prefix + "cred:" + hex.EncodeToString(d[:])
}

// redisSeed writes alice and bob under the prefix t:.
func redisSeed(t *testing.T, c rueidis.Client) {
	redistest.Do(t, c, "HSET", "t:consumer:alice", "id", "a11ce", "custom_id", "cust-1")
	redistest.Do(t, c, "HSET", redisCred("t:", redisKeyAlice), "consumer", "alice", "id", "alice-key")
	redistest.Do(t, c, "HSET", "t:consumer:bob", "tags", "x")
	redistest.Do(t, c, "HSET", redisCred("t:", redisKeyBob), "consumer", "bob", "id", "bob-key")
	redistest.Do(t, c, "HSET", "t:consumer:guest", "id", "anon-1")
}

// redisConnections counts the connections of key_auth's Redis clients.
func redisConnections(t *testing.T, c rueidis.Client) int {
	list, err := c.Do(context.Background(), c.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(list, "name=caddy-keyauth ")
}

const redisSite = `{{.Global}}
{{.Site}} {
	key_auth {
		anonymous guest
		consumers redis {{.Redis}} {
			password {env.KEYAUTH_TEST_REDIS_PASSWORD}
			prefix t:
			cache 1MB
			partition_timeout 300ms
		}
	}
	reverse_proxy {{.Up}}
}
`

func TestSourceRedis(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", redisPassword)
	t.Setenv("KEYAUTH_TEST_REDIS_PASSWORD", redisPassword)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Password: redisPassword, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	redisSeed(t, rc)

	e := newEnv(t)
	e.vars["Redis"] = srv.Addr()
	e.load(redisSite, "caddyfile")
	// A running Caddy connects in the background; until then requests get
	// 503.
	waitRedisConnected(t)

	// Known keys: the same identity headers as the other sources.
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyAlice), idAlice)
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyAlice), idAlice) // from the cache
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyBob), identity{"bob", "bob", absent, "bob-key", absent})
	// Unknown and missing keys go on as the anonymous consumer, from Redis.
	wantIdentity(t, get(t, site+"/", "apikey", "nobody's"), idGuest)
	wantIdentity(t, get(t, site+"/"), idGuest)

	// A canary key and a disabled one from Redis are refused like unknown
	// ones (here: anonymous), and the canary is reported.
	redistest.Do(t, rc, "HSET", redisCred("t:", redisKeyTrap), "consumer", "alice", "id", "alice-canary", "canary", "true")
	redistest.Do(t, rc, "HSET", redisCred("t:", redisKeyOff), "consumer", "alice", "id", "alice-off", "disabled", "true")
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyTrap), idGuest)
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyOff), idGuest)
	e.waitLog("caddy.log", func(l logEntry) bool {
		return l.str("msg") == "canary key used" && l.str("credential_id") == "alice-canary"
	})

	// One DEL revokes: the next requests go on as anonymous, without any
	// TTL to wait for.
	redistest.Do(t, rc, "DEL", redisCred("t:", redisKeyBob))
	eventually(t, "bob's key revoked", func() bool {
		return identityOf(get(t, site+"/", "apikey", redisKeyBob).echo(t)) == idGuest
	})

	// The admin view: addresses, connection, cache; never the password.
	var st *sources.SourceStatus
	code, body := adminDo(t, http.MethodGet, "/key_auth/sources", nil)
	if code != http.StatusOK || strings.Contains(string(body), redisPassword) {
		t.Fatalf("GET /key_auth/sources: %d %s", code, body)
	}
	var all []sources.SourceStatus
	if err := json.Unmarshal(body, &all); err != nil {
		t.Fatal(err)
	}
	for i := range all {
		if all[i].Kind == "redis" {
			st = &all[i]
		}
	}
	if st == nil || st.Lookups == nil || !st.Lookups.Connected || st.Lookups.Hits == 0 || st.Lookups.Misses == 0 ||
		st.Lookups.CacheEntries == 0 || st.Location != srv.Addr() {
		t.Errorf("admin view of the Redis source: %s", body)
	}
	m, _ := metrics(t)
	if m[`caddy_key_auth_source_lookups_total{result="cache_hit",source="redis `+srv.Addr()+`"}`] == 0 ||
		m[`caddy_key_auth_source_lookups_total{result="redis_hit",source="redis `+srv.Addr()+`"}`] == 0 {
		t.Errorf("lookup metrics missing")
	}

	// A reload of the same config keeps the client; its connections are
	// not multiplied.
	conns := redisConnections(t, rc)
	e.load(redisSite, "caddyfile")
	e.load(redisSite, "caddyfile")
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyAlice), idAlice)
	if n := redisConnections(t, rc); n != conns {
		t.Errorf("%d connections after two reloads, %d before", n, conns)
	}

	// Redis stopped: 503 at once, never 401, for known and unknown keys
	// and for requests without a key (the anonymous consumer is in Redis).
	srv.Stop()
	eventually(t, "503 with Redis stopped", func() bool {
		return get(t, site+"/", "apikey", redisKeyAlice).status == http.StatusServiceUnavailable
	})
	for _, k := range []string{redisKeyAlice, "nobody's", ""} {
		hdr := []string{"apikey", k}
		if k == "" {
			hdr = nil
		}
		wantFailure(t, get(t, site+"/", hdr...), http.StatusServiceUnavailable, "consumers source unavailable", "")
	}

	// Back: service resumes, and the data is what Redis now holds.
	srv.Restart()
	rc2, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Password: redisPassword, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()
	redistest.Do(t, rc2, "HSET", "t:consumer:guest", "id", "anon-1")
	eventually(t, "service resumed", func() bool {
		return get(t, site+"/", "apikey", redisKeyAlice).status != http.StatusServiceUnavailable
	})
	wantIdentity(t, get(t, site+"/", "apikey", redisKeyAlice), idGuest) // deleted meanwhile

	unload(t)
	eventually(t, "no connection left after the last config", func() bool { return redisConnections(t, rc2) == 0 })
}

// caddy validate and caddy adapt connect to nothing; a running Caddy does.
func TestSourceRedisValidateConnectsToNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	e := newEnv(t)
	e.vars["Redis"] = ln.Addr().String()
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(e.render(redisSite)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("validate connected %d times", n)
	}
	// A running Caddy connects (the listener is no Redis: 503s).
	e.load(redisSite, "caddyfile")
	eventually(t, "a running Caddy connects", func() bool { return accepted.Load() > 0 })
	wantFailure(t, get(t, site+"/", "apikey", redisKeyAlice), http.StatusServiceUnavailable, "consumers source unavailable", "")
}

// waitRedisConnected waits until the admin view shows a Redis source
// connected.
func waitRedisConnected(t testing.TB) {
	t.Helper()
	eventually(t, "the Redis source connected", func() bool {
		for _, st := range adminSources(t) {
			if st.Kind == "redis" && st.Lookups != nil && st.Lookups.Connected {
				return true
			}
		}
		return false
	})
}
