package keyauth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// wayConsumers has a consumer for every way a request can go: keys that
// pass, expire, are disabled or are canaries, and anonymous consumers with
// and without groups, and disabled.
const wayConsumers = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a", "groups": ["gold"],
   "keys": [{"id": "alice-cred", "key": "alice-key"}, {"id": "alice-old", "key": "expired-key", "expires_at": "2001-01-01T00:00:00Z"},
            {"id": "alice-off", "key": "off-key", "disabled": true}]},
  {"username": "plain", "keys": [{"id": "plain-cred", "key": "plain-key"}]},
  {"username": "trip", "keys": [{"id": "trip-cred", "key": "canary-key", "canary": true}]},
  {"username": "guest"},
  {"username": "vip-guest", "groups": ["gold"]},
  {"username": "off-guest", "disabled": true}
]}`

// TestEveryWay walks every way a request can leave the handler, each with
// and without handle_errors and hide_credentials, and checks the promise
// ServeHTTP makes on each: a request that goes on (to the next handler or
// to the error routes) carries no key with hide_credentials, no forged
// identity header in any spelling, and exactly the identity its verdict
// gives it, in headers and placeholders; a failure is answered with its
// status and message; the outcome is counted once.
func TestEveryWay(t *testing.T) {
	set, err := consumers.Parse([]byte(wayConsumers))
	if err != nil {
		t.Fatal(err)
	}
	// An earlier key_auth that authenticates by the Token header.
	earlier := func() caddyhttp.MiddlewareHandler {
		h := provisioned(t, &Handler{KeyNames: []string{"token"}})
		h.src = sources.StaticStore(set)
		return h
	}
	basic := setter{"http.auth.user.id": "bob"}
	type identity struct {
		user, cred string // headers and placeholders; user "" is nobody
		anonymous  bool
		header     bool // the X-Consumer-* headers are set (not for another auth handler's user)
	}
	consumer := func(user, cred string) identity { return identity{user: user, cred: cred, header: true} }
	anonymous := func(user string) identity { return identity{user: user, anonymous: true, header: true} }
	tests := []struct {
		name      string
		h         Handler
		preflight bool
		key       []string // Apikey values sent (also in the query and a cookie)
		token     string   // for the earlier key_auth
		before    caddyhttp.MiddlewareHandler
		notLoaded bool
		body      string // a form body, read through the server's limit of 8 bytes

		status  int    // 0: went on to the next handler
		message string // of a failure
		id      identity
		counts  map[outcome]float64 // default: outcome 1
		outcome outcome
	}{
		{name: "authenticated", key: []string{"alice-key"}, id: consumer("alice", "alice-cred"), outcome: outcomeAuthenticated},
		{name: "anonymous, no key", h: Handler{Anonymous: "guest"}, id: anonymous("guest"), outcome: outcomeAnonymous},
		{name: "anonymous, unknown key", h: Handler{Anonymous: "guest"}, key: []string{"nobody's"}, id: anonymous("guest"), outcome: outcomeAnonymous},
		{name: "anonymous, duplicate key", h: Handler{Anonymous: "guest"}, key: []string{"alice-key", "plain-key"}, id: anonymous("guest"), outcome: outcomeAnonymous},
		{name: "preflight let through", h: Handler{RunOnPreflight: ptr(false)}, preflight: true, key: []string{"alice-key"}, outcome: notCounted},
		{name: "preflight authenticated", preflight: true, key: []string{"alice-key"}, id: consumer("alice", "alice-cred"), outcome: outcomeAuthenticated},

		{name: "no key", status: 401, message: "No API key found in request", outcome: outcomeMissing},
		{name: "unknown key", key: []string{"nobody's"}, status: 401, message: "Unauthorized", outcome: outcomeInvalid},
		{name: "duplicate key", key: []string{"alice-key", "alice-key"}, status: 401, message: "Duplicate API key found", outcome: outcomeDuplicate},
		{name: "expired key", key: []string{"expired-key"}, status: 401, message: "Unauthorized", outcome: outcomeInvalid},
		{name: "disabled key", key: []string{"off-key"}, status: 401, message: "Unauthorized", outcome: outcomeInvalid},
		{name: "not loaded", key: []string{"alice-key"}, notLoaded: true, status: 503, message: "consumers are not loaded yet", outcome: outcomeError},
		{name: "body over the server's limit", h: Handler{KeyInBody: true}, body: "apikey=alice-key", status: 413, message: "Request body too large", outcome: outcomeError},
		{name: "anonymous missing", h: Handler{Anonymous: "who"}, status: 500, message: "anonymous consumer who is configured but doesn't exist", outcome: outcomeError},
		{name: "anonymous disabled", h: Handler{Anonymous: "off-guest"}, status: 500, message: "anonymous consumer off-guest is configured but disabled", outcome: outcomeError},

		{name: "canary", key: []string{"canary-key"}, status: 401, message: "Unauthorized", outcome: outcomeCanary},
		{name: "canary, anonymous", h: Handler{Anonymous: "guest"}, key: []string{"canary-key"}, id: anonymous("guest"), outcome: outcomeCanary},

		{name: "allow lets a member on", h: Handler{Allow: []string{"gold"}}, key: []string{"alice-key"}, id: consumer("alice", "alice-cred"), outcome: outcomeAuthenticated},
		{name: "allow refuses", h: Handler{Allow: []string{"gold"}}, key: []string{"plain-key"}, status: 403, message: "You cannot consume this service", outcome: outcomeForbidden},
		{name: "allow, anonymous without groups", h: Handler{Allow: []string{"gold"}, Anonymous: "guest"}, status: 401, message: "Unauthorized", outcome: outcomeForbidden},
		{name: "allow, anonymous member", h: Handler{Allow: []string{"gold"}, Anonymous: "vip-guest"}, id: anonymous("vip-guest"), outcome: outcomeAnonymous},
		{name: "deny refuses", h: Handler{Deny: []string{"gold"}}, key: []string{"alice-key"}, status: 403, message: "You cannot consume this service", outcome: outcomeForbidden},
		{name: "deny lets others on", h: Handler{Deny: []string{"gold"}}, key: []string{"plain-key"}, id: consumer("plain", "plain-cred"), outcome: outcomeAuthenticated},

		{name: "earlier key_auth's consumer stays", h: Handler{Anonymous: "guest"}, token: "alice-key", before: earlier(),
			id: consumer("alice", "alice-cred"), counts: map[outcome]float64{outcomeAuthenticated: 1, outcomeAnonymous: 1}},
		{name: "earlier key_auth's consumer refused", h: Handler{Anonymous: "vip-guest", Allow: []string{"gold"}}, token: "plain-key", before: earlier(),
			status: 403, message: "You cannot consume this service", counts: map[outcome]float64{outcomeAuthenticated: 1, outcomeForbidden: 1}},
		{name: "earlier key_auth, a key here wins", h: Handler{Anonymous: "guest"}, key: []string{"plain-key"}, token: "alice-key", before: earlier(),
			id: consumer("plain", "plain-cred"), counts: map[outcome]float64{outcomeAuthenticated: 2}},
		{name: "another auth handler's user stays", h: Handler{Anonymous: "guest"}, before: basic, id: identity{user: "bob"}, outcome: outcomeAnonymous},
		{name: "another auth handler's user, deny", h: Handler{Anonymous: "guest", Deny: []string{"gold"}}, before: basic, id: identity{user: "bob"}, outcome: outcomeAnonymous},
		{name: "another auth handler's user, allow", h: Handler{Anonymous: "vip-guest", Allow: []string{"gold"}}, before: basic,
			status: 403, message: "You cannot consume this service", outcome: outcomeForbidden},
	}
	// The server has error routes: without them a 5xx for handle_errors is
	// answered here, not handed on (integration TestKeyNotInErrorLog).
	srv := &caddyhttp.Server{ExpectedUnderscoreHeaders: []string{"X_*"},
		Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	for _, tc := range tests {
		for _, handleErrors := range []bool{false, true} {
			for _, hide := range []bool{false, true} {
				name := fmt.Sprintf("%s/handle_errors=%v,hide=%v", tc.name, handleErrors, hide)
				t.Run(name, func(t *testing.T) {
					opts := tc.h
					opts.KeyNames, opts.KeyInCookie = []string{"apikey"}, true
					opts.HandleErrors, opts.HideCredentials = handleErrors, hide
					h := provisioned(t, &opts)
					h.src = sources.StaticStore(set)
					if tc.notLoaded {
						h.src = sources.StaticStore(nil)
					}

					method, target := http.MethodGet, "/p?page=2"
					hdr := []string{"X-Consumer-Username", "forged", "X_consumer_custom_id", "forged", "X-Anonymous-Consumer", "forged",
						"Connection", "X-Credential-Identifier, keep-alive", "Cookie", "a=1"}
					if tc.preflight {
						method = http.MethodOptions
						hdr = append(hdr, "Origin", "https://x", "Access-Control-Request-Method", "GET")
					}
					for _, k := range tc.key {
						hdr = append(hdr, "Apikey", k, "Cookie", "apikey="+k)
						target += "&apikey=" + k
					}
					if tc.token != "" {
						hdr = append(hdr, "Token", tc.token)
					}
					if tc.body != "" {
						method = http.MethodPost
						hdr = append(hdr, "Content-Type", "application/x-www-form-urlencoded")
					}
					r, repl := fieldRequest(method, target, srv, hdr...)
					if tc.body != "" {
						r.Body = http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(tc.body)), 8)
						r.ContentLength = -1
					}
					before := countsNow()

					var seen *http.Request
					next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { seen = r; return nil })
					handlers := []caddyhttp.MiddlewareHandler{h}
					if tc.before != nil {
						handlers = append([]caddyhttp.MiddlewareHandler{tc.before}, h)
					}
					w := httptest.NewRecorder()
					err := chain(next, handlers...).ServeHTTP(w, r)

					want := tc.counts
					if want == nil {
						want = map[outcome]float64{}
						if tc.outcome != notCounted {
							want[tc.outcome] = 1
						}
					}
					after := countsNow()
					for o := range numOutcomes {
						if got := after[o] - before[o]; got != want[o] {
							t.Errorf("outcome %s counted %v times, want %v", outcomeNames[o], got, want[o])
						}
					}

					wantID := tc.id
					switch {
					case tc.status == 0:
						if err != nil || seen == nil {
							t.Fatalf("the request did not go on: %v (status %d)", err, w.Code)
						}
					case !handleErrors:
						if err != nil || seen != nil {
							t.Fatalf("a failure went on: %v", err)
						}
						if w.Code != tc.status {
							t.Errorf("status %d, want %d", w.Code, tc.status)
						}
						var body struct{ Message string }
						if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Message != tc.message {
							t.Errorf("body %q, want the message %q", w.Body, tc.message)
						}
						checkChallenge(t, w, tc.status)
						return // nothing went on
					default:
						he, ok := err.(caddyhttp.HandlerError)
						if !ok || he.StatusCode != tc.status || he.Err.Error() != tc.message || seen != nil {
							t.Fatalf("error %v, want %d %q for the error routes", err, tc.status, tc.message)
						}
						checkChallenge(t, w, tc.status)
						seen = r // what the error routes get: nobody's
						wantID = identity{}
					}

					// Scrubbed: no forged identity header, in any spelling,
					// and none named in Connection.
					for name, v := range seen.Header {
						if strings.Contains(strings.Join(v, ","), "forged") {
							t.Errorf("forged %s went on: %q", name, v)
						}
					}
					if got := seen.Header.Get("Connection"); got != "keep-alive" {
						t.Errorf("Connection %q, want keep-alive", got)
					}
					// Hidden, in every location searched.
					if hide {
						for name, v := range seen.Header {
							for _, k := range tc.key {
								if strings.Contains(strings.Join(v, ","), k) {
									t.Errorf("key went on in %s: %q", name, v)
								}
							}
						}
						if seen.URL.RawQuery != "page=2" || seen.RequestURI != "/p?page=2" {
							t.Errorf("query %q, RequestURI %q, want page=2 alone", seen.URL.RawQuery, seen.RequestURI)
						}
						if got := seen.Header.Get("Cookie"); got != "a=1" {
							t.Errorf("Cookie %q, want a=1", got)
						}
					} else if len(tc.key) > 0 && seen.Header.Get("Apikey") != tc.key[0] {
						t.Errorf("without hide_credentials the key was taken out: %q", seen.Header.Get("Apikey"))
					}
					// Identified: headers and placeholders.
					wantHeaders := map[string]string{headerUsername: "", headerCredentialID: "", headerAnonymous: ""}
					if wantID.header {
						wantHeaders[headerUsername] = wantID.user
						wantHeaders[headerCredentialID] = wantID.cred
						if wantID.anonymous {
							wantHeaders[headerAnonymous] = "true"
						}
					}
					for name, v := range wantHeaders {
						if got := strings.Join(seen.Header.Values(name), ","); got != v {
							t.Errorf("%s %q, want %q", name, got, v)
						}
					}
					wantPlaceholders := map[string]string{"id": wantID.user, "credential_id": wantID.cred, "anonymous": fmt.Sprint(wantID.anonymous)}
					for k, v := range wantPlaceholders {
						if got, _ := repl.GetString("http.auth.user." + k); got != v {
							t.Errorf("{http.auth.user.%s} %q, want %q", k, got, v)
						}
					}
					c, anon, ok := ConsumerOf(seen)
					switch {
					case !wantID.header && ok:
						t.Errorf("ConsumerOf %s, want none", c.Username())
					case wantID.header && (!ok || c.Username() != wantID.user || anon != wantID.anonymous):
						t.Errorf("ConsumerOf %v %v %v, want %s", c, anon, ok, wantID.user)
					}
				})
			}
		}
	}
}

// countsNow reads every outcome's count.
func countsNow() (c [numOutcomes]float64) {
	for o := range numOutcomes {
		c[o] = count(outcomes[o])
	}
	return c
}

// checkChallenge checks that a 401, and only a 401, carries the challenge.
func checkChallenge(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	got := w.Header().Get("Www-Authenticate")
	if want := map[bool]string{true: "Key"}[status == http.StatusUnauthorized]; got != want {
		t.Errorf("WWW-Authenticate %q, want %q", got, want)
	}
}
