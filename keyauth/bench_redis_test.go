package keyauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

// BenchmarkServeHTTPRedis measures ServeHTTP against the Redis source, the
// key in its local cache (every request but the first): what the handler
// and the source cost a request, with and without max_idle, which reads
// the key's last use.
func BenchmarkServeHTTPRedis(b *testing.B) {
	srv := redistest.Start(b)
	c := redistest.Client(b, srv.Addr())
	const key = "redis-bench-key-0001"
	sum := sha256.Sum256([]byte(key))
	redistest.Do(b, c, "HSET", "keyauth:consumer:alice", "id", "a11ce", "custom_id", "c1")
	redistest.Do(b, c, "HSET", "keyauth:cred:"+hex.EncodeToString(sum[:]), "consumer", "alice", "id", "alice-1",
		"created_at", time.Now().UTC().Format(time.RFC3339))
	for _, bc := range []struct {
		name string
		h    Handler
	}{{"header", Handler{}}, {"header_max_idle", Handler{MaxIdle: caddy.Duration(90 * 24 * time.Hour)}}} {
		b.Run(bc.name, func(b *testing.B) {
			base, err := caddy.ProvisionContext(nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := caddy.NewContext(base)
			defer cancel()
			h := bc.h
			h.ConsumersRaw = json.RawMessage(`{"source": "redis", "addresses": ["` + srv.Addr() + `"]}`)
			if err := h.Provision(ctx); err != nil {
				b.Fatal(err)
			}
			app, err := ctx.App("key_auth")
			if err != nil {
				b.Fatal(err)
			}
			if err := app.(caddy.App).Start(); err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/v1/things", nil)
			r.Header.Set("Apikey", key)
			// Connected, and the key cached.
			for deadline := time.Now().Add(10 * time.Second); ; {
				if _, ok, err := h.src.Now().Lookup(context.Background(), sum); ok && err == nil {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal("the Redis source never found the key")
				}
				time.Sleep(5 * time.Millisecond)
			}
			h.now = time.Now
			b.ResetTimer()
			serveBench(b, &h, r, 0)
		})
	}
}
