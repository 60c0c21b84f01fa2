package keyauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// authzConsumers have groups, labels, tags, and disabled parts.
const authzConsumers = `{"consumers": [
  {"username": "gold", "groups": ["gold", "partner"], "labels": {"plan": "gold", "backend": "10.0.0.7:8080"},
   "tags": ["eu", "vip"], "keys": [{"id": "gold-k", "key": "gold-key"}, {"id": "gold-off", "key": "gold-off-key", "disabled": true}]},
  {"username": "free", "groups": ["free"], "labels": {"plan": "free"}, "keys": [{"id": "free-k", "key": "free-key"}]},
  {"username": "plain", "keys": [{"id": "plain-k", "key": "plain-key"}]},
  {"username": "gone", "disabled": true, "groups": ["gold"], "keys": [{"id": "gone-k", "key": "gone-key"}]},
  {"username": "guest"},
  {"username": "vip-guest", "groups": ["gold"]},
  {"username": "free-guest", "groups": ["free"]},
  {"username": "off-guest", "disabled": true}
]}`

// counted is the request counter's value for o.
func counted(t *testing.T, o outcome) float64 {
	t.Helper()
	var m dto.Metric
	if err := outcomes[o].Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func authzHandler(t *testing.T, h *Handler) *Handler {
	t.Helper()
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	set, err := consumers.Parse([]byte(authzConsumers))
	if err != nil {
		t.Fatal(err)
	}
	h = provisioned(t, h)
	h.src = sources.StaticStore(set)
	return h
}

// authzServe runs h over a request with key (none when empty) and reports
// the status and, when it went on, the request the next handler saw.
func authzServe(t *testing.T, h *Handler, key string, hdr ...string) (int, *httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	if key != "" {
		hdr = append(hdr, "Apikey", key)
	}
	r, _ := fieldRequest(http.MethodGet, "/", nil, hdr...)
	var seen *http.Request
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if seen != nil {
		return 0, w, seen
	}
	return w.Code, w, nil
}

// Kong's acl (kong/plugins/acl/handler.lua): allow lets on the groups it
// lists; deny refuses them and lets on consumers without groups; under
// allow, an anonymous consumer without groups gets the 401 of an unknown
// key, any other refusal 403.
func TestACL(t *testing.T) {
	allow := &Handler{Allow: []string{"gold", "staff"}}
	deny := &Handler{Deny: []string{"free", "blocked"}}
	anonAllow := func(anon string) *Handler { return &Handler{Allow: []string{"gold"}, Anonymous: anon} }
	anonDeny := func(anon string) *Handler { return &Handler{Deny: []string{"free"}, Anonymous: anon} }
	for _, tc := range []struct {
		name string
		h    *Handler
		key  string
		want int // 0: went on
	}{
		{"allow, in group", allow, "gold-key", 0},
		{"allow, not in group", allow, "free-key", 403},
		{"allow, no groups", allow, "plain-key", 403},
		{"deny, in group", deny, "free-key", 403},
		{"deny, not in group", deny, "gold-key", 0},
		{"deny, no groups", deny, "plain-key", 0},
		{"allow, anonymous in group", anonAllow("vip-guest"), "", 0},
		{"allow, anonymous not in group", anonAllow("free-guest"), "", 403},
		{"allow, anonymous without groups", anonAllow("guest"), "", 401},
		{"allow, anonymous without groups, unknown key", anonAllow("guest"), "nobody-key", 401},
		{"deny, anonymous in group", anonDeny("free-guest"), "", 403},
		{"deny, anonymous not in group", anonDeny("vip-guest"), "", 0},
		{"deny, anonymous without groups", anonDeny("guest"), "", 0},
		// An authenticated consumer refused by the list is not let on as
		// the anonymous one: it did authenticate.
		{"allow, refused key with anonymous", anonAllow("vip-guest"), "free-key", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := authzHandler(t, tc.h)
			before := counted(t, outcomeForbidden)
			got, w, _ := authzServe(t, h, tc.key)
			if got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			switch tc.want {
			case 403:
				if body := w.Body.String(); body != `{"message":"You cannot consume this service"}` {
					t.Errorf("body %s", body)
				}
				if w.Header().Get("WWW-Authenticate") != "" {
					t.Error("a 403 with a challenge")
				}
			case 401:
				if body := w.Body.String(); body != `{"message":"Unauthorized"}` {
					t.Errorf("body %s", body)
				}
				if w.Header().Get("WWW-Authenticate") != "Key" {
					t.Errorf("challenge %q", w.Header().Get("WWW-Authenticate"))
				}
			}
			forbidden := counted(t, outcomeForbidden) - before
			if want := map[bool]float64{true: 1}[tc.want != 0]; forbidden != want {
				t.Errorf("forbidden outcomes +%v, want +%v", forbidden, want)
			}
		})
	}
}

// Stacked handlers: the lists of a handler apply to the consumer the
// request goes on as, which an earlier handler may have established.
func TestACLStacked(t *testing.T) {
	byToken := func() *Handler { return authzHandler(t, &Handler{KeyNames: []string{"token"}}) }
	basic := setter{"http.auth.user.id": "bob"}
	for _, tc := range []struct {
		name     string
		handlers []caddyhttp.MiddlewareHandler
		hdr      []string
		want     int    // 0: went on
		consumer string // ConsumerOf, when it went on
	}{
		{"earlier key_auth's consumer in the allowed group", []caddyhttp.MiddlewareHandler{byToken(), authzHandler(t, &Handler{Allow: []string{"gold"}, Anonymous: "guest"})},
			[]string{"Token", "gold-key"}, 0, "gold"},
		{"earlier key_auth's consumer not in it", []caddyhttp.MiddlewareHandler{byToken(), authzHandler(t, &Handler{Allow: []string{"gold"}, Anonymous: "vip-guest"})},
			[]string{"Token", "free-key"}, 403, ""},
		{"earlier key_auth's consumer denied", []caddyhttp.MiddlewareHandler{byToken(), authzHandler(t, &Handler{Deny: []string{"free"}, Anonymous: "guest"})},
			[]string{"Token", "free-key"}, 403, ""},
		{"basic_auth's user under allow", []caddyhttp.MiddlewareHandler{basic, authzHandler(t, &Handler{Allow: []string{"gold"}, Anonymous: "vip-guest"})},
			nil, 403, ""},
		{"basic_auth's user under deny", []caddyhttp.MiddlewareHandler{basic, authzHandler(t, &Handler{Deny: []string{"gold"}, Anonymous: "vip-guest"})},
			nil, 0, ""},
		{"first anonymous, then allowed by key", []caddyhttp.MiddlewareHandler{authzHandler(t, &Handler{Anonymous: "guest"}), authzHandler(t, &Handler{KeyNames: []string{"token"}, Allow: []string{"gold"}})},
			[]string{"Token", "gold-key"}, 0, "gold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := fieldRequest(http.MethodGet, "/", nil, tc.hdr...)
			var seen *http.Request
			w := httptest.NewRecorder()
			err := chain(caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			}), tc.handlers...).ServeHTTP(w, r)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			if seen == nil {
				got = w.Code
			}
			if got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			if seen != nil {
				if c := consumerOf(seen); c != tc.consumer {
					t.Errorf("ConsumerOf %q, want %q", c, tc.consumer)
				}
			}
		})
	}
}

// X-Consumer-Groups carries the groups of the consumer that goes on, or
// nothing; a client's own, in any spelling, never reaches the upstream.
func TestGroupsHeader(t *testing.T) {
	srv := &caddyhttp.Server{ExpectedUnderscoreHeaders: []string{"X_*"}}
	forged := []string{"X-Consumer-Groups", "admin", "X_Consumer_Groups", "admin", "x_consumer-GROUPS", "admin", "Connection", "X-Consumer-Groups, keep-alive"}
	for _, tc := range []struct {
		name string
		h    *Handler
		key  string
		want string
	}{
		{"with groups", &Handler{}, "gold-key", "gold, partner"},
		{"without groups", &Handler{}, "plain-key", ""},
		{"hidden", &Handler{HideGroupsHeader: true}, "gold-key", ""},
		{"anonymous with groups", &Handler{Anonymous: "vip-guest"}, "", "gold"},
		{"anonymous without groups", &Handler{Anonymous: "guest"}, "", ""},
		{"preflight let on", &Handler{RunOnPreflight: ptr(false)}, "gold-key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := authzHandler(t, tc.h)
			method := http.MethodGet
			hdr := append([]string{}, forged...)
			if tc.name == "preflight let on" {
				method = http.MethodOptions
				hdr = append(hdr, "Origin", "https://x", "Access-Control-Request-Method", "GET")
			}
			if tc.key != "" {
				hdr = append(hdr, "Apikey", tc.key)
			}
			r, _ := fieldRequest(method, "/", srv, hdr...)
			var seen *http.Request
			if err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			})); err != nil || seen == nil {
				t.Fatalf("did not go on: %v", err)
			}
			var got []string
			for name, vals := range seen.Header {
				if sameFolded(name, "x-consumer-groups") {
					got = append(got, name+": "+strings.Join(vals, "|"))
				}
			}
			want := []string(nil)
			if tc.want != "" {
				want = []string{"X-Consumer-Groups: " + tc.want}
			}
			if strings.Join(got, "; ") != strings.Join(want, "; ") {
				t.Errorf("groups headers %q, want %q", got, want)
			}
			if c := seen.Header.Get("Connection"); c != "keep-alive" {
				t.Errorf("Connection %q, want keep-alive", c)
			}
		})
	}
}

// The placeholders of groups, tags and labels follow the request's
// identity, and are empty, never literal, without a consumer.
func TestAuthzPlaceholders(t *testing.T) {
	read := func(r *http.Request) string {
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		return repl.ReplaceKnown("groups={http.auth.user.groups} tags={http.auth.user.tags} plan={http.auth.user.labels.plan} backend={http.auth.user.labels.backend} none={http.auth.user.labels.none} bare={http.auth.user.labels.}", "")
	}
	for _, tc := range []struct {
		name string
		h    *Handler
		key  string
		want string
	}{
		{"gold", &Handler{}, "gold-key", "groups=gold, partner tags=eu, vip plan=gold backend=10.0.0.7:8080 none= bare="},
		{"hidden header, placeholder still there", &Handler{HideGroupsHeader: true}, "gold-key", "groups=gold, partner tags=eu, vip plan=gold backend=10.0.0.7:8080 none= bare="},
		{"free", &Handler{}, "free-key", "groups=free tags= plan=free backend= none= bare="},
		{"plain", &Handler{}, "plain-key", "groups= tags= plan= backend= none= bare="},
		{"anonymous", &Handler{Anonymous: "free-guest"}, "", "groups=free tags= plan= backend= none= bare="},
		{"preflight let on", &Handler{RunOnPreflight: ptr(false)}, "gold-key", "groups= tags= plan= backend= none= bare="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := authzHandler(t, tc.h)
			method := http.MethodGet
			var hdr []string
			if tc.name == "preflight let on" {
				method = http.MethodOptions
				hdr = []string{"Origin", "https://x", "Access-Control-Request-Method", "GET"}
			}
			if tc.key != "" {
				hdr = append(hdr, "Apikey", tc.key)
			}
			r, _ := fieldRequest(method, "/", nil, hdr...)
			var seen *http.Request
			if err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			})); err != nil || seen == nil {
				t.Fatalf("did not go on: %v", err)
			}
			if got := read(seen); got != tc.want {
				t.Errorf("placeholders\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// A disabled key or consumer is an unknown key: 401 Unauthorized, or the
// anonymous consumer; a disabled anonymous consumer is a 500.
func TestDisabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    *Handler
		key  string
		want int
		user string // who went on
		body string
	}{
		{"enabled key of the consumer", &Handler{}, "gold-key", 0, "gold", ""},
		{"disabled key", &Handler{}, "gold-off-key", 401, "", `{"message":"Unauthorized"}`},
		{"disabled consumer", &Handler{}, "gone-key", 401, "", `{"message":"Unauthorized"}`},
		{"disabled key, anonymous", &Handler{Anonymous: "guest"}, "gold-off-key", 0, "guest", ""},
		{"disabled consumer, anonymous", &Handler{Anonymous: "guest"}, "gone-key", 0, "guest", ""},
		{"disabled anonymous", &Handler{Anonymous: "off-guest"}, "", 500, "", `{"message":"anonymous consumer off-guest is configured but disabled"}`},
		{"missing anonymous", &Handler{Anonymous: "nobody"}, "", 500, "", `{"message":"anonymous consumer nobody is configured but doesn't exist"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, w, seen := authzServe(t, authzHandler(t, tc.h), tc.key)
			if got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			if seen != nil {
				if u := seen.Header.Get(headerUsername); u != tc.user {
					t.Errorf("went on as %q, want %q", u, tc.user)
				}
				return
			}
			if body := w.Body.String(); body != tc.body {
				t.Errorf("body %s, want %s", body, tc.body)
			}
		})
	}
}

// allow and deny are refused together, and their groups are checked, in
// JSON as in the Caddyfile.
func TestValidateACL(t *testing.T) {
	for _, tc := range []struct {
		json string
		want string
	}{
		{`{"allow": ["a"], "deny": ["b"]}`, "allow and deny cannot be used together"},
		{`{"allow": []}`, "allow: list at least one group"},
		{`{"deny": ["a", "a"]}`, `deny: group "a" is listed twice`},
		{`{"deny": ["a b"]}`, `deny: group name "a b" holds white space, a comma or a control character`},
		{`{"allow": ["a,b"]}`, `allow: group name "a,b" holds white space, a comma or a control character`},
		{`{"allow": [""]}`, "allow: group name is empty"},
		{`{"allow": ["a\u0085"]}`, "holds white space"},
	} {
		var h Handler
		if err := json.Unmarshal([]byte(tc.json), &h); err != nil {
			t.Fatal(err)
		}
		err := h.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.json, err, tc.want)
		}
	}
	var h Handler
	if err := json.Unmarshal([]byte(`{"allow": ["gold", "équipe", "a.b-c_d"], "hide_groups_header": true}`), &h); err != nil || h.Validate() != nil {
		t.Errorf("a valid list refused: %v, %v", err, h.Validate())
	}
}

// A request let on as nobody by one handler and identified by a later one
// has its placeholders as static values (the shared nobody answers first):
// groups, tags and labels too, and a third handler's identity replaces
// them all.
func TestAuthzPlaceholdersAfterNobody(t *testing.T) {
	skip := authzHandler(t, &Handler{KeyNames: []string{"skip"}, RunOnPreflight: ptr(false)})
	auth := authzHandler(t, &Handler{})
	byToken := authzHandler(t, &Handler{KeyNames: []string{"token"}})
	const show = "id={http.auth.user.id} groups={http.auth.user.groups} tags={http.auth.user.tags} plan={http.auth.user.labels.plan} backend={http.auth.user.labels.backend}"
	for _, tc := range []struct {
		name     string
		handlers []caddyhttp.MiddlewareHandler
		want     string
		consumer string
	}{
		{"nobody, then gold", []caddyhttp.MiddlewareHandler{skip, auth}, "id=gold groups=gold, partner tags=eu, vip plan=gold backend=10.0.0.7:8080", "gold"},
		{"nobody, gold, then free", []caddyhttp.MiddlewareHandler{skip, auth, byToken}, "id=free groups=free tags= plan=free backend=", "free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, repl := fieldRequest(http.MethodOptions, "/", nil, "Origin", "https://x", "Access-Control-Request-Method", "GET",
				"Apikey", "gold-key", "Token", "free-key")
			var seen *http.Request
			if err := chain(caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				seen = r
				return nil
			}), tc.handlers...).ServeHTTP(httptest.NewRecorder(), r); err != nil || seen == nil {
				t.Fatalf("did not go on: %v", err)
			}
			if got := repl.ReplaceKnown(show, ""); got != tc.want {
				t.Errorf("placeholders\n got %s\nwant %s", got, tc.want)
			}
			if got := consumerOf(seen); got != tc.consumer {
				t.Errorf("ConsumerOf %q, want %q", got, tc.consumer)
			}
		})
	}
}
