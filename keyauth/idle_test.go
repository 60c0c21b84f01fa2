package keyauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// TestMaxIdle: with max_idle a key unused that long, counted from its last
// use or else from its created_at, is refused as an expired key is (401,
// the unknown key's answer); a key with neither is exempt; an
// authenticated request records the use that keeps its key alive. The
// handler's clock is injected: no waiting.
func TestMaxIdle(t *testing.T) {
	base := time.Now().UTC().Truncate(time.Minute)
	rfc := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	set, err := consumers.Parse([]byte(`{"consumers": [{"username": "a", "keys": [
		{"id": "fresh", "key": "fresh-key-0001", "created_at": "` + rfc(-time.Hour) + `"},
		{"id": "old", "key": "old-key-00001", "created_at": "` + rfc(-100*24*time.Hour) + `"},
		{"id": "revived", "key": "revived-key-01", "created_at": "` + rfc(-100*24*time.Hour) + `"},
		{"id": "ageless", "key": "ageless-key-01"},
		{"id": "unseen", "key": "unseen-key-001"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	store := sources.StaticStore(set)
	now := base
	idle := provisioned(t, &Handler{MaxIdle: caddy.Duration(90 * 24 * time.Hour)})
	idle.now = func() time.Time { return now }
	idle.src = store
	plain := provisioned(t, &Handler{})
	plain.src = store

	serve := func(h *Handler, key string) int {
		r := serverRequest(httptest.NewRequest(http.MethodGet, "/", nil))
		r.Header.Set("Apikey", key)
		w := httptest.NewRecorder()
		status := 0
		err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			status = http.StatusOK
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		if status == 0 {
			status = w.Code
		}
		return status
	}
	expect := func(key string, want int) {
		t.Helper()
		if got := serve(idle, key); got != want {
			t.Errorf("%s at %s: status %d, want %d", key, now.Sub(base), got, want)
		}
	}

	// A handler without max_idle lets the old key in, and records it.
	if got := serve(plain, "revived-key-01"); got != http.StatusOK {
		t.Fatalf("without max_idle: %d", got)
	}
	expect("fresh-key-0001", http.StatusOK)
	expect("old-key-00001", http.StatusUnauthorized)
	expect("revived-key-01", http.StatusOK)
	expect("ageless-key-01", http.StatusOK)

	// 91 days on (the store records the wall clock's minute): the keys
	// used at base are idle now, the one without a created_at too; a key
	// with neither a use nor a created_at is exempt.
	now = base.Add(91 * 24 * time.Hour)
	expect("fresh-key-0001", http.StatusUnauthorized)
	expect("revived-key-01", http.StatusUnauthorized)
	expect("ageless-key-01", http.StatusUnauthorized)
	expect("unseen-key-001", http.StatusOK)

	// Just inside the limit.
	now = base.Add(89 * 24 * time.Hour)
	expect("fresh-key-0001", http.StatusOK)
}
