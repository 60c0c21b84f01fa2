package keyauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// benchStore is a parsed set of n consumers with one random key each, plus
// an anonymous consumer without keys.
type benchStore struct {
	set  *consumers.Set
	keys []string
}

var (
	benchStoresMu sync.Mutex
	benchStores   = map[benchStoreKind]*benchStore{}
)

type benchStoreKind struct {
	n    int
	rich bool // every consumer has groups, labels and tags
}

func loadBenchStore(tb testing.TB, n int) *benchStore { return loadBenchStoreOf(tb, n, false) }

func loadBenchStoreOf(tb testing.TB, n int, rich bool) *benchStore {
	tb.Helper()
	benchStoresMu.Lock()
	defer benchStoresMu.Unlock()
	kind := benchStoreKind{n, rich}
	if s := benchStores[kind]; s != nil {
		return s
	}
	extra := ""
	if rich {
		extra = `, "tags": ["t1", "t2"], "groups": ["silver", "gold", "partner"], "labels": {"plan": "gold", "backend": "10.0.0.7:8080", "region": "eu"}`
	}
	var doc bytes.Buffer
	keys := make([]string, n)
	raw := make([]byte, 16)
	doc.WriteString(`{"consumers": [{"username": "anon"}`)
	for i := range n {
		_, _ = rand.Read(raw)
		keys[i] = hex.EncodeToString(raw)
		fmt.Fprintf(&doc, `,{"username": "user-%d", "custom_id": "c-%d", "keys": [{"key": %q}]%s}`, i, i, keys[i], extra)
	}
	doc.WriteString("]}")
	set, err := consumers.Parse(doc.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	s := &benchStore{set: set, keys: keys}
	benchStores[kind] = s
	return s
}

// newBenchHandler configures a handler against a static store, as
// Provision does against a source.
func newBenchHandler(tb testing.TB, h *Handler, set *consumers.Set) *Handler {
	tb.Helper()
	h.configure(zap.NewNop())
	h.src = sources.StaticStore(set)
	return h
}

// discardWriter is a ResponseWriter that keeps its header map between
// requests, so the benchmark counts the handler's allocations only.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

var nextOK = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// benchCase is one request shape. reset restores what the handler changed
// in the request, so every iteration sees the same request.
type benchCase struct {
	name    string
	handler Handler
	request func(key string) *http.Request
	status  int  // what the writer must have seen; 0 for passed on
	rich    bool // consumers with groups, labels and tags
}

func benchCases() []benchCase {
	get := func(target string, hdr ...string) func(string) *http.Request {
		return func(key string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, strings.ReplaceAll(target, "KEY", key), nil)
			r.Header.Set("User-Agent", "bench")
			r.Header.Set("Accept", "*/*")
			for i := 0; i < len(hdr); i += 2 {
				r.Header.Set(hdr[i], strings.ReplaceAll(hdr[i+1], "KEY", key))
			}
			return r
		}
	}
	return []benchCase{
		{name: "header", request: get("/v1/things", "Apikey", "KEY")},
		// max_idle reads the key's last use from the source's record.
		{name: "header_max_idle", handler: Handler{MaxIdle: caddy.Duration(90 * 24 * time.Hour)}, request: get("/v1/things", "Apikey", "KEY")},
		{name: "query", request: get("/v1/things?page=2&apikey=KEY&sort=asc")},
		{name: "json_body", handler: Handler{KeyInBody: true}, request: func(key string) *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/v1/things", strings.NewReader(`{"name": "x", "apikey": "`+key+`", "n": 1}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}},
		{name: "unknown_key", request: get("/v1/things", "Apikey", "not-a-key-of-anybody-at-all-000"), status: 401},
		{name: "no_key", request: get("/v1/things"), status: 401},
		{name: "anonymous", handler: Handler{Anonymous: "anon"}, request: get("/v1/things", "Apikey", "not-a-key-of-anybody-at-all-000")},
		{name: "hide_query", handler: Handler{HideCredentials: true}, request: get("/v1/things?page=2&apikey=KEY&sort=asc")},
		// A consumer with groups, labels and tags through an allow list
		// that matches its last group, and X-Consumer-Groups sent.
		{name: "groups_labels_allow", rich: true, handler: Handler{Allow: []string{"platinum", "partner"}}, request: get("/v1/things", "Apikey", "KEY")},
		{name: "groups_labels_deny", rich: true, handler: Handler{Deny: []string{"blocked", "banned"}}, request: get("/v1/things", "Apikey", "KEY")},
		{name: "groups_labels_forbidden", rich: true, handler: Handler{Allow: []string{"platinum"}}, request: get("/v1/things", "Apikey", "KEY"), status: 403},
		{name: "header_cookies_off", request: get("/v1/things", "Apikey", "KEY", "Cookie", "session=0123456789abcdef; theme=dark; apikey=x")},
		{name: "cookie", handler: Handler{KeyInCookie: true}, request: get("/v1/things", "Cookie", "session=0123456789abcdef; theme=dark; apikey=KEY")},
		{name: "hide_cookie", handler: Handler{KeyInCookie: true, HideCredentials: true}, request: get("/v1/things", "Cookie", "session=0123456789abcdef; apikey=KEY; theme=dark")},
	}
}

// BenchmarkServeHTTP measures ServeHTTP as Caddy calls it: a fresh replacer
// in the context (shaped like the server's, with its HTTP provider mapped)
// and a no-op next handler, at 1,000 and 1,000,000 consumers.
func BenchmarkServeHTTP(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		for _, bc := range benchCases() {
			b.Run(fmt.Sprintf("%s/consumers=%d", bc.name, n), func(b *testing.B) {
				store := loadBenchStoreOf(b, n, bc.rich)
				h := newBenchHandler(b, &bc.handler, store.set)
				b.ResetTimer() // the store's making is not the handler's work
				serveBench(b, h, bc.request(store.keys[n/2]), bc.status)
			})
		}
	}
}

// serveBench runs h over copies of r, made in batches with the timer
// stopped, so ns/op and allocs/op are the handler's own.
func serveBench(b *testing.B, h *Handler, r *http.Request, status int) {
	const batch = 64
	newCopies := copier(r)
	w := &discardWriter{h: http.Header{}}
	var reqs []*http.Request
	b.ReportAllocs()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			b.StopTimer()
			reqs = newCopies(batch)
			b.StartTimer()
		}
		if err := h.ServeHTTP(w, reqs[i%batch], nextOK); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w.status != status {
		b.Fatalf("status %d, want %d", w.status, status)
	}
}

// copier returns a function making n copies of r, each with its own header
// map, URL, body reader, and the context the server gives every request:
// its vars (client_ip, trusted_proxy, start_time) and a replacer with
// Caddy's own HTTP placeholder provider mapped.
func copier(r *http.Request) func(n int) []*http.Request {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, _ = io.ReadAll(r.Body)
	}
	return func(n int) []*http.Request {
		reqs := make([]*http.Request, n)
		for i := range reqs {
			c := serverRequest(r)
			c.Header = r.Header.Clone()
			u := *r.URL
			c.URL = &u
			if body != nil {
				c.Body = io.NopCloser(bytes.NewReader(body))
			}
			reqs[i] = c
		}
		return reqs
	}
}

// serverRequest is r in a context shaped like the one Caddy's server
// gives a request (modules/caddyhttp/server.go): a vars map holding the
// client's address, and a replacer with the HTTP placeholders.
func serverRequest(r *http.Request) *http.Request {
	ctx := context.WithValue(context.Background(), caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.TrustedProxyVarKey: false,
		caddyhttp.ClientIPVarKey:     "192.0.2.1",
	})
	c := r.WithContext(ctx)
	caddyhttp.NewTestReplacer(c)
	return c
}

// hotPathAllocs is what a served request allocates: one identity (the
// values its headers and placeholders point into) and the placeholder
// provider that serves them.
const hotPathAllocs = 2

// TestHotPathAllocs holds the hot paths to their allocation budget: a
// served request allocates hotPathAllocs, a rejected one nothing. The
// count is deterministic, unlike a time.
func TestHotPathAllocs(t *testing.T) {
	budget := map[string]uint64{"header": hotPathAllocs, "header_max_idle": hotPathAllocs, "query": hotPathAllocs, "unknown_key": 0, "no_key": 0, "anonymous": hotPathAllocs,
		"groups_labels_allow": hotPathAllocs, "groups_labels_deny": hotPathAllocs, "groups_labels_forbidden": 0,
		"header_cookies_off": hotPathAllocs, "cookie": hotPathAllocs}
	for _, bc := range benchCases() {
		want, ok := budget[bc.name]
		if !ok {
			continue
		}
		t.Run(bc.name, func(t *testing.T) {
			store := loadBenchStoreOf(t, 1_000, bc.rich)
			h := newBenchHandler(t, &bc.handler, store.set)
			const n = 1000
			reqs := copier(bc.request(store.keys[7]))(n)
			w := &discardWriter{h: http.Header{}}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for _, r := range reqs {
				_ = h.ServeHTTP(w, r, nextOK)
			}
			runtime.ReadMemStats(&after)
			if got := (after.Mallocs - before.Mallocs + n/2) / n; got > want {
				t.Errorf("%s: %d allocations per request, want at most %d", bc.name, got, want)
			}
			if w.status != bc.status {
				t.Errorf("status %d, want %d", w.status, bc.status)
			}
		})
	}
}

// BenchmarkRejectTiming shows that rejecting an unknown key takes the same
// time whether it shares a long prefix with a real key or shares nothing:
// the key is hashed whole and looked up by digest, so no comparison ever
// runs over the key's bytes. Each case cycles through 512 keys, so the
// probe length of any one digest averages out. Compare the ns/op.
func BenchmarkRejectTiming(b *testing.B) {
	store := loadBenchStore(b, 1_000)
	cases := []struct {
		name string
		key  func(real string, i int) string
	}{
		{"shares_all_but_last_byte", func(real string, i int) string { return real[:len(real)-1] + "g" }},
		{"shares_half", func(real string, i int) string {
			return real[:len(real)/2] + fmt.Sprintf("%0*x", len(real)-len(real)/2, i)[:len(real)-len(real)/2]
		}},
		{"shares_nothing", func(real string, i int) string {
			return fmt.Sprintf("zz%0*d", len(real)-2, i)
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := newBenchHandler(b, &Handler{}, store.set)
			// A rejection changes nothing in the request, so the requests
			// can be sent again and again.
			runs := make([]*http.Request, 512)
			for i := range runs {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("Apikey", c.key(store.keys[i], i))
				runs[i] = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			}
			w := &discardWriter{h: http.Header{}}
			i := 0
			for b.Loop() {
				_ = h.ServeHTTP(w, runs[i&511], nextOK)
				i++
			}
			if w.status != http.StatusUnauthorized {
				b.Fatalf("status %d", w.status)
			}
		})
	}
}

// BenchmarkIdentityPrimitives compares two ways of finding a request's
// earlier identity, against a request shaped like the server's: asking the
// replacer (what identify does: Caddy's HTTP provider is walked before any
// module's, so a miss costs its whole walk, but the same Get also tells
// whether another auth handler set a static user), and the alternative
// measured and left: the request's vars map (a lookup and an insert) plus
// a sweep of the static placeholders for another auth handler's.
func BenchmarkIdentityPrimitives(b *testing.B) {
	const identityVar = "key_auth identity"
	newReq := func() *http.Request { return serverRequest(httptest.NewRequest(http.MethodGet, "/v1/things", nil)) }
	b.Run("replacer_get_miss", func(b *testing.B) {
		repl := newReq().Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		for b.Loop() {
			_, _ = repl.Get(userIDPlaceholder)
		}
	})
	b.Run("getvar_miss", func(b *testing.B) {
		ctx := newReq().Context()
		for b.Loop() {
			_ = caddyhttp.GetVar(ctx, identityVar)
		}
	})
	b.Run("delete_by_prefix_empty", func(b *testing.B) {
		repl := newReq().Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		for b.Loop() {
			repl.DeleteByPrefix(placeholderPrefix)
		}
	})
	b.Run("setvar_insert_delete", func(b *testing.B) {
		b.ReportAllocs()
		ctx := newReq().Context()
		vars := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any)
		id := new(identity)
		for b.Loop() {
			caddyhttp.SetVar(ctx, identityVar, id)
			delete(vars, identityVar)
		}
	})
}

// BenchmarkIdentify measures identify alone, on fresh server-shaped
// requests made in batches with the timer stopped: finding (or giving) the
// request's identity, and the identity headers.
func BenchmarkIdentify(b *testing.B) {
	store := loadBenchStore(b, 1_000)
	h := newBenchHandler(b, &Handler{}, store.set)
	c := store.set.ConsumerAt(7)
	r := httptest.NewRequest(http.MethodGet, "/v1/things", nil)
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	r.Header.Set("Apikey", "k")
	newCopies := copier(r)
	const batch = 256
	var reqs []*http.Request
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			b.StopTimer()
			reqs = newCopies(batch)
			b.StartTimer()
		}
		h.identify(reqs[i%batch], c, "cred", false)
	}
}

// BenchmarkIdentifyAlternatives weighs the identity machinery (identity.go)
// against the plain way Caddy's caddyauth identifies a request, on fresh
// server-shaped requests and a consumer with groups, labels and tags:
//
//   - machinery: identify as it is: one allocation holds the header values,
//     and a provider serves every placeholder from it;
//   - plain: a one-value slice per header, and Replacer.Set for each
//     placeholder, tag list and label (a label the consumer lacks would
//     then be unknown, not empty: the machinery's answer is kept anyway);
//   - consumer_of / consumer_of_second_get: the consumer matcher's lookup
//     of the request's identity, as it is (one Get and a cast back from the
//     user value) and with the identity found through a second, private
//     placeholder instead of the cast.
func BenchmarkIdentifyAlternatives(b *testing.B) {
	store := loadBenchStoreOf(b, 1_000, true)
	h := newBenchHandler(b, &Handler{}, store.set)
	c := store.set.ConsumerAt(7)
	r := httptest.NewRequest(http.MethodGet, "/v1/things", nil)
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	newCopies := copier(r)
	const batch = 256
	run := func(b *testing.B, identify func(r *http.Request)) {
		var reqs []*http.Request
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%batch == 0 {
				b.StopTimer()
				reqs = newCopies(batch)
				b.StartTimer()
			}
			identify(reqs[i%batch])
		}
	}
	b.Run("machinery", func(b *testing.B) {
		run(b, func(r *http.Request) { h.identify(r, c, "cred", false) })
	})
	b.Run("plain", func(b *testing.B) {
		run(b, func(r *http.Request) {
			hdr := r.Header
			hdr[headerUsername] = []string{c.Username()}
			hdr[headerConsumerID] = []string{c.ID()}
			if c.CustomID() != "" {
				hdr[headerCustomID] = []string{c.CustomID()}
			}
			hdr[headerCredentialID] = []string{"cred"}
			delete(hdr, headerAnonymous)
			hdr[headerGroups] = []string{c.GroupsHeader()}
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			repl.Set(userIDPlaceholder, c.Username())
			repl.Set(placeholderPrefix+"consumer_id", c.ID())
			repl.Set(placeholderPrefix+"custom_id", c.CustomID())
			repl.Set(placeholderPrefix+"credential_id", "cred")
			repl.Set(placeholderPrefix+"anonymous", "false")
			repl.Set(placeholderPrefix+"groups", c.GroupsHeader())
			repl.Set(placeholderPrefix+"tags", c.TagsJoined())
			for name, value := range c.AllLabels() {
				repl.Set(placeholderPrefix+labelsPrefix+name, value)
			}
		})
	})
	identified := serverRequest(r)
	h.identify(identified, c, "cred", false)
	repl := identified.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	b.Run("consumer_of", func(b *testing.B) {
		for b.Loop() {
			_, _, _ = ConsumerOf(identified)
		}
	})
	b.Run("consumer_of_second_get", func(b *testing.B) {
		for b.Loop() {
			_, _, _ = ConsumerOf(identified)
			_, _ = repl.Get(placeholderPrefix + "identity")
		}
	})
}

// anonymousHandleErrorsAllocs is what caddyhttp.Error allocates (an id, a
// trace of the caller) and the error interface holding its value; it was
// 10 when each request built its failure and its error.
const anonymousHandleErrorsAllocs = 7

// TestAnonymousFailureAllocs holds the anonymous consumer's 500s (missing,
// disabled) to the budget of the other failures: answered as JSON they
// allocate nothing (4 when each request built its failure), their answer
// being built at configure; handed to
// handle_errors they allocate only what caddyhttp.Error does (an error id
// and a trace) and the interface holding its value.
func TestAnonymousFailureAllocs(t *testing.T) {
	set, err := consumers.Parse([]byte(`{"consumers": [{"username": "off", "disabled": true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, anon := range []string{"nobody", "off"} {
		for _, handleErrors := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/handle_errors=%v", anon, handleErrors), func(t *testing.T) {
				h := newBenchHandler(t, &Handler{Anonymous: anon, HandleErrors: handleErrors}, set)
				reqs := copier(httptest.NewRequest(http.MethodGet, "/v1/things", nil))(1)
				w := &discardWriter{h: http.Header{}}
				var err error
				got := testing.AllocsPerRun(1000, func() { err = h.ServeHTTP(w, reqs[0], nextOK) })
				want := 0.0
				if handleErrors {
					want = anonymousHandleErrorsAllocs
					if herr, ok := err.(caddyhttp.HandlerError); !ok || herr.StatusCode != 500 || !strings.Contains(herr.Err.Error(), "anonymous consumer "+anon) {
						t.Errorf("error %v", err)
					}
				} else if w.status != 500 {
					t.Errorf("status %d", w.status)
				}
				t.Logf("%.0f allocations per request", got)
				if got > want {
					t.Errorf("%.0f allocations per request, want at most %.0f", got, want)
				}
			})
		}
	}
}
