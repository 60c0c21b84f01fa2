package keyauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// fieldConsumers is the consumers document of issue 8.
const fieldConsumers = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a",
   "keys": [{"id": "alice-cred", "key": "alice-key-1"}]},
  {"username": "guest", "keys": []}
]}`

func fieldHandler(t *testing.T, h *Handler) *Handler {
	t.Helper()
	set, err := consumers.Parse([]byte(fieldConsumers))
	if err != nil {
		t.Fatal(err)
	}
	h = provisioned(t, h)
	h.src = sources.StaticStore(set)
	return h
}

// fieldRequest is a request as Caddy's server hands it to a handler: its
// vars, a replacer with the server's providers and, when srv is set, the
// server.
func fieldRequest(method, target string, srv *caddyhttp.Server, hdr ...string) (*http.Request, *caddy.Replacer) {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i < len(hdr); i += 2 {
		r.Header[hdr[i]] = append(r.Header[hdr[i]], hdr[i+1])
	}
	r = serverRequest(r)
	if srv != nil {
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv))
	}
	return r, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
}

// placeholders reads every {http.auth.user.*} placeholder; an unknown one
// is "?".
func placeholders(repl *caddy.Replacer) string {
	var b strings.Builder
	for _, k := range []string{"id", "consumer_id", "custom_id", "credential_id", "anonymous", "email"} {
		v, ok := repl.GetString("http.auth.user." + k)
		if !ok {
			v = "?"
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

// chain runs handlers in order, the last one passing to next.
func chain(next caddyhttp.Handler, hs ...caddyhttp.MiddlewareHandler) caddyhttp.Handler {
	for i := len(hs) - 1; i >= 0; i-- {
		h, n := hs[i], next
		next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return h.ServeHTTP(w, r, n) })
	}
	return next
}

// setter stands in for an auth handler that sets static placeholders, as
// caddyauth (basic_auth) does: repl.Set("http.auth.user.id", ...).
type setter map[string]string

func (s setter) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for k, v := range s {
		repl.Set(k, v)
	}
	return next.ServeHTTP(w, r)
}

// consumerOf is what ConsumerOf reports: "" for no consumer, else the
// username, marked when anonymous.
func consumerOf(r *http.Request) string {
	c, anonymous, ok := ConsumerOf(r)
	switch {
	case !ok:
		return ""
	case anonymous:
		return c.Username() + " (anonymous)"
	}
	return c.Username()
}

// Whatever identifies a request last is its identity in headers and every
// placeholder, whichever handler came first.
func TestStackedIdentity(t *testing.T) {
	first := func() *Handler { return fieldHandler(t, &Handler{KeyNames: []string{"apikey"}, Anonymous: "guest"}) }
	second := func() *Handler { return fieldHandler(t, &Handler{KeyNames: []string{"token"}}) }
	basic := setter{"http.auth.user.id": "bob", "http.auth.user.email": "bob@example.com"}
	const alice = "id=alice consumer_id=alice-id custom_id=cust-a credential_id=alice-cred anonymous=false email=?"
	const guest = "id=guest consumer_id=guest custom_id= credential_id= anonymous=true email=?"
	const bob = "id=bob consumer_id= custom_id= credential_id= anonymous=false email=bob@example.com"
	if r, _ := fieldRequest(http.MethodGet, "/", nil); consumerOf(r) != "" {
		t.Error("ConsumerOf found a consumer where no key_auth ran")
	}
	for _, tc := range []struct {
		name     string
		handlers []caddyhttp.MiddlewareHandler
		hdr      []string
		want     string // placeholders seen after the chain
		username string // X-Consumer-Username
		consumer string // what ConsumerOf reports
	}{
		{"anonymous first, then a key in token", []caddyhttp.MiddlewareHandler{first(), second()},
			[]string{"Token", "alice-key-1"}, alice, "alice", "alice"},
		{"anonymous first, no key for either", []caddyhttp.MiddlewareHandler{first(), fieldHandler(t, &Handler{KeyNames: []string{"token"}, Anonymous: "guest"})},
			nil, guest, "guest", "guest (anonymous)"},
		// Kong's logical OR: an anonymous fallback leaves an authenticated
		// request as it is.
		{"key in token first, then anonymous", []caddyhttp.MiddlewareHandler{second(), first()},
			[]string{"Token", "alice-key-1"}, alice, "alice", "alice"},
		{"both with keys: the last one", []caddyhttp.MiddlewareHandler{first(), second()},
			[]string{"Apikey", "alice-key-1", "Token", "alice-key-1"}, alice, "alice", "alice"},
		{"basic_auth, then key_auth", []caddyhttp.MiddlewareHandler{basic, second()},
			[]string{"Token", "alice-key-1"}, alice, "alice", "alice"},
		{"basic_auth, then key_auth falling back to anonymous", []caddyhttp.MiddlewareHandler{basic, first()},
			[]string{"X-Consumer-Username", "forged"}, bob, "", ""},
		// basic_auth does not know the X-Consumer-* headers: they name the
		// consumer, the placeholders basic_auth's user (README).
		{"key_auth, then basic_auth", []caddyhttp.MiddlewareHandler{second(), basic},
			[]string{"Token", "alice-key-1"}, bob, "alice", ""},
		{"key_auth, basic_auth, anonymous key_auth", []caddyhttp.MiddlewareHandler{second(), basic, first()},
			[]string{"Token", "alice-key-1"}, bob, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, repl := fieldRequest(http.MethodGet, "/", nil, tc.hdr...)
			var seen *http.Request
			err := chain(caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			}), tc.handlers...).ServeHTTP(httptest.NewRecorder(), r)
			if err != nil || seen == nil {
				t.Fatalf("the request did not go on: %v", err)
			}
			if got := placeholders(repl); got != tc.want {
				t.Errorf("placeholders:\n got %s\nwant %s", got, tc.want)
			}
			if got := seen.Header.Get(headerUsername); got != tc.username {
				t.Errorf("X-Consumer-Username %q, want %q", got, tc.username)
			}
			if got := consumerOf(seen); got != tc.consumer {
				t.Errorf("ConsumerOf %q, want %q", got, tc.consumer)
			}
		})
	}
}

// A handler that lets a request through as nobody (a preflight) after one
// that identified it leaves it nobody everywhere, and a handler after that
// still identifies it.
func TestNobodyReplacesIdentity(t *testing.T) {
	auth := fieldHandler(t, &Handler{})
	skip := fieldHandler(t, &Handler{KeyNames: []string{"token"}, RunOnPreflight: ptr(false)})
	r, repl := fieldRequest(http.MethodOptions, "/", nil, "Apikey", "alice-key-1", "Origin", "https://x", "Access-Control-Request-Method", "GET")
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { seen = r; return nil })
	if err := chain(next, auth, skip).ServeHTTP(httptest.NewRecorder(), r); err != nil || seen == nil {
		t.Fatalf("the preflight did not go on: %v", err)
	}
	if got, want := placeholders(repl), "id= consumer_id= custom_id= credential_id= anonymous=false email=?"; got != want {
		t.Errorf("placeholders %s, want %s", got, want)
	}
	if got := seen.Header.Get(headerUsername); got != "" {
		t.Errorf("X-Consumer-Username %q after a preflight skip", got)
	}
	if got := consumerOf(seen); got != "" {
		t.Errorf("ConsumerOf %q after a preflight skip", got)
	}

	// Skipped first: the shared nobody answers, and must not be written.
	r, repl = fieldRequest(http.MethodOptions, "/", nil, "Apikey", "alice-key-1", "Origin", "https://x", "Access-Control-Request-Method", "GET")
	if err := chain(next, skip, auth).ServeHTTP(httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	if got, want := placeholders(repl), "id=alice consumer_id=alice-id custom_id=cust-a credential_id=alice-cred anonymous=false email=?"; got != want {
		t.Errorf("placeholders %s, want %s", got, want)
	}
	if got := consumerOf(seen); got != "alice" {
		t.Errorf("ConsumerOf %q, want alice", got)
	}
	if nobodyVals != [6]string{4: "false"} {
		t.Fatalf("the shared nobody values were written: %q", nobodyVals)
	}
}

// With hide_credentials, every path a request goes on by carries no key
// under any key name, in any location.
func TestHideEveryPath(t *testing.T) {
	srv := &caddyhttp.Server{ExpectedUnderscoreHeaders: []string{"X_*", "Api_*"}}
	names := []string{"apikey", "api_key", "authorization"}
	for _, tc := range []struct {
		name   string
		h      Handler
		method string
		hdr    []string
		status int // 0: passed on
	}{
		{"authenticated", Handler{}, http.MethodGet, []string{"Apikey", "alice-key-1"}, 0},
		{"authenticated by bearer", Handler{}, http.MethodGet, []string{"Authorization", "Bearer alice-key-1"}, 0},
		{"anonymous", Handler{Anonymous: "guest"}, http.MethodGet, []string{"Apikey", "nobody's"}, 0},
		{"preflight skipped", Handler{RunOnPreflight: ptr(false)}, http.MethodOptions,
			[]string{"Apikey", "alice-key-1", "Origin", "https://x", "Access-Control-Request-Method", "GET"}, 0},
		{"rejected to handle_errors", Handler{HandleErrors: true}, http.MethodGet, []string{"Apikey", "nobody's"}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.h.KeyNames, tc.h.HideCredentials = names, true
			h := fieldHandler(t, &tc.h)
			hdr := append([]string{"Api-Key", "alice-key-1", "Api_key", "alice-key-1", "Api.key", "alice-key-1",
				"X_consumer_username", "root", "X-Other", "kept"}, tc.hdr...)
			r, _ := fieldRequest(tc.method, "/p?z=1&apikey=alice-key-1&%61pi_key=alice-key-1&page=2", srv, hdr...)
			var seen *http.Request
			err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			}))
			if tc.status != 0 {
				if he, ok := err.(caddyhttp.HandlerError); !ok || he.StatusCode != tc.status {
					t.Fatalf("error %v, want status %d", err, tc.status)
				}
				seen = r // what the error routes get
			}
			if seen == nil {
				t.Fatalf("the request did not go on: %v", err)
			}
			if seen.URL.RawQuery != "z=1&page=2" || seen.RequestURI != "/p?z=1&page=2" {
				t.Errorf("query %q, RequestURI %q; want z=1&page=2", seen.URL.RawQuery, seen.RequestURI)
			}
			for name, v := range seen.Header {
				if strings.Contains(strings.Join(v, ","), "alice-key-1") || strings.EqualFold(name, "X_consumer_username") {
					t.Errorf("the request went on with %s: %q", name, v)
				}
			}
			if seen.Header.Get("X-Other") != "kept" {
				t.Errorf("X-Other was lost")
			}
		})
	}
}

// Identity header spellings that fold to an identity header are removed
// only where the server keeps names with '_' or '.', in any case.
func TestScrubOddSpellings(t *testing.T) {
	h := fieldHandler(t, &Handler{})
	for _, srv := range []*caddyhttp.Server{
		{ExpectedUnderscoreHeaders: []string{"X_*"}},
		{ExpectedDotHeaders: []string{"X.*"}},
	} {
		r, _ := fieldRequest(http.MethodGet, "/", srv, "Apikey", "alice-key-1",
			"X_consumer_username", "root", "X_Consumer_Custom_Id", "admin", "X.anonymous.consumer", "true",
			"X_credential-identifier", "x", "X_consumer_id_2", "kept", "Connection", "x_consumer_id, X.Consumer.Username, keep-alive")
		var seen *http.Request
		if err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r
			return nil
		})); err != nil || seen == nil {
			t.Fatalf("the request did not go on: %v", err)
		}
		for name := range seen.Header {
			if isIdentityHeader(name) && strings.ContainsAny(name, "_.") {
				t.Errorf("%s survived", name)
			}
		}
		if got := seen.Header.Get("X_consumer_id_2"); got != "kept" {
			t.Errorf("X_consumer_id_2 = %q, want kept", got)
		}
		if got := seen.Header.Get("Connection"); got != "keep-alive" {
			t.Errorf("Connection = %q, want keep-alive", got)
		}
		if got := seen.Header.Get(headerUsername); got != "alice" {
			t.Errorf("X-Consumer-Username = %q", got)
		}
	}
}

// IdentityOf names the credential a request presented, its expiry and its
// last use (this request's minute), and nothing for a request that went on
// as the anonymous consumer, as nobody, or as another auth handler's user.
func TestIdentityOf(t *testing.T) {
	const doc = `{"consumers": [
  {"username": "alice", "keys": [{"id": "alice-cred", "key": "alice-key-1", "expires_at": "2099-01-02T03:04:05Z"},
                                 {"id": "alice-forever", "key": "alice-key-2"}]},
  {"username": "guest"}
]}`
	set, err := consumers.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	h := provisioned(t, &Handler{Anonymous: "guest"})
	h.src = sources.StaticStore(set)
	run := func(hs []caddyhttp.MiddlewareHandler, hdr ...string) (Identity, bool) {
		t.Helper()
		r, _ := fieldRequest(http.MethodGet, "/", nil, hdr...)
		var seen *http.Request
		if err := chain(caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r
			return nil
		}), hs...).ServeHTTP(httptest.NewRecorder(), r); err != nil || seen == nil {
			t.Fatalf("the request did not go on: %v", err)
		}
		return IdentityOf(seen)
	}
	before := time.Now().Add(-time.Minute)
	id, ok := run([]caddyhttp.MiddlewareHandler{h}, "Apikey", "alice-key-1")
	if !ok || id.Consumer.Username() != "alice" || id.CredentialID != "alice-cred" ||
		!id.ExpiresAt.Equal(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)) || id.LastUsed.Before(before) {
		t.Errorf("IdentityOf = %+v, %v", id, ok)
	}
	if id, ok := run([]caddyhttp.MiddlewareHandler{h}, "Apikey", "alice-key-2"); !ok || id.CredentialID != "alice-forever" || !id.ExpiresAt.IsZero() {
		t.Errorf("IdentityOf = %+v, %v; want alice-forever, no expiry", id, ok)
	}
	if id, ok := run([]caddyhttp.MiddlewareHandler{h}); ok {
		t.Errorf("IdentityOf of the anonymous consumer = %+v", id)
	}
	if id, ok := run([]caddyhttp.MiddlewareHandler{h, setter{"http.auth.user.id": "bob"}}, "Apikey", "alice-key-1"); ok {
		t.Errorf("IdentityOf after basic_auth = %+v", id)
	}
	if r, _ := fieldRequest(http.MethodGet, "/", nil); func() bool { _, ok := IdentityOf(r); return ok }() {
		t.Error("IdentityOf found an identity where no key_auth ran")
	}
}
