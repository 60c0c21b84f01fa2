package keyauth

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// failure is a way a request can fail, with its answer written once: the
// JSON body, and the error handed to handle_errors. (The caddyhttp.Error
// value itself is made per request: it carries an id unique to the error.)
type failure struct {
	status  int
	message string
	outcome outcome
	body    []byte
	err     error
}

func newFailure(status int, message string, o outcome) *failure {
	body, _ := jsonMessage(message)
	return &failure{status: status, message: message, outcome: o, body: body, err: errors.New(message)}
}

// jsonMessage is the body of a failure answered as JSON, as Kong's.
func jsonMessage(m string) ([]byte, error) {
	return json.Marshal(struct {
		Message string `json:"message"`
	}{m})
}

var (
	errNoKey     = newFailure(http.StatusUnauthorized, "No API key found in request", outcomeMissing)
	errDuplicate = newFailure(http.StatusUnauthorized, "Duplicate API key found", outcomeDuplicate)
	// errInvalid is Kong 3.7+'s answer to an unknown or expired key
	// (ERR_INVALID_AUTH_CRED in kong/plugins/key-auth/handler.lua); 3.6 and
	// earlier said "Invalid authentication credentials".
	errInvalid      = newFailure(http.StatusUnauthorized, "Unauthorized", outcomeInvalid)
	errNotLoaded    = newFailure(http.StatusServiceUnavailable, "consumers are not loaded yet", outcomeError)
	errUnexpected   = newFailure(http.StatusInternalServerError, "An unexpected error occurred", outcomeError)
	errBodyTooLarge = newFailure(http.StatusRequestEntityTooLarge, "Request body too large", outcomeError)
	errBodyRead     = newFailure(http.StatusBadRequest, "Could not read request body", outcomeError)
	errBodyTimeout  = newFailure(http.StatusRequestTimeout, "Request timeout", outcomeError)
	// errClientGone is a client that went away mid-body: nobody reads the
	// answer, and the access log shows 499 (client closed request), as
	// reverse_proxy records a client that leaves.
	errClientGone = newFailure(statusClientClosedRequest, "Client closed request", outcomeError)
	// errForbidden is Kong's acl plugin's answer to a consumer its list
	// refuses (kong/plugins/acl/handler.lua).
	errForbidden = newFailure(http.StatusForbidden, "You cannot consume this service", outcomeForbidden)
	// errAnonymousNoGroups is Kong's acl answer to an anonymous consumer
	// without groups under allow: kong.response.error(401), whose body is
	// "Unauthorized", the body of an unknown key here too, with the
	// challenge: it never authenticated.
	errAnonymousNoGroups = newFailure(http.StatusUnauthorized, "Unauthorized", outcomeForbidden)
)

// errCanary answers a canary key exactly as errInvalid an unknown one, so
// its holder cannot tell it tripped a wire; only the count differs.
var errCanary = &failure{status: errInvalid.status, message: errInvalid.message, outcome: outcomeCanary, body: errInvalid.body, err: errInvalid.err}

const statusClientClosedRequest = 499

// errUnavailable is a source that looks keys up (Redis) and cannot answer
// now: the key may be good, so never 401.
var errUnavailable = newFailure(http.StatusServiceUnavailable, "consumers source unavailable", outcomeError)

var jsonContentType = []string{"application/json"}

// challengeFor sets the WWW-Authenticate challenge of a 401.
func (h *Handler) challengeFor(w http.ResponseWriter, f *failure) {
	if f.status == http.StatusUnauthorized {
		w.Header()["Www-Authenticate"] = h.challenge
	}
}

// answer writes a failure's answer, as JSON: nothing goes on.
func (h *Handler) answer(w http.ResponseWriter, f *failure) error {
	h.challengeFor(w, f)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(f.status)
	_, _ = w.Write(f.body)
	return nil
}

// toErrorRoutes hands a failure to the server's error routes
// (handle_errors), with {http.error.status_code} and {http.error.message}.
func (h *Handler) toErrorRoutes(w http.ResponseWriter, r *http.Request, f *failure) error {
	h.challengeFor(w, f)
	if f.status >= http.StatusInternalServerError && !hasErrorRoutes(r) {
		// What Caddy would answer, without its ERROR line: that line holds
		// the request as it arrived, key included when it came in a header
		// other than Authorization or in the query. (With error routes, or
		// below 500, Caddy logs it at DEBUG, as the README says.)
		w.WriteHeader(f.status)
		return nil
	}
	return caddyhttp.Error(f.status, f.err)
}

// hasErrorRoutes reports whether the request's server has error routes
// (true outside a server, where the caller handles the error).
func hasErrorRoutes(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return !ok || srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// hideForErrorRoutes applies hide_credentials to a failed request the error
// routes get, which may pass it on, to an upstream even.
func (h *Handler) hideForErrorRoutes(q *request) {
	if !h.HideCredentials {
		return
	}
	if err := q.hideAll(h); err != nil {
		// The body could not be re-encoded without its key: the error
		// routes get none.
		q.r.Body, q.r.ContentLength = http.NoBody, 0
		delete(q.r.Header, "Content-Length")
	}
	if h.searches(locQuery) {
		hideOriginalQuery(h, q.r)
	}
}

// hideOriginalQuery removes the key names from the query of the original
// request Caddy keeps: before the error routes run, the server puts the
// original URL back (caddyhttp.OriginalRequestCtxKey, issue caddy#3717),
// which would hand them the key hide_credentials removed. Its
// {http.request.orig_uri*} placeholders lose the key too, which they
// should; the access log has its own copy.
func hideOriginalQuery(h *Handler, r *http.Request) {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil {
		return
	}
	for i := range h.names {
		if raw, ok := removeParam(orig.URL.RawQuery, h.names[i].name); ok {
			orig.URL.RawQuery = raw
		}
	}
}

// errRateLimited is Kong's rate-limiting plugin's answer to a request over a
// limit (kong/plugins/rate-limiting/handler.lua); Retry-After and the
// RateLimit headers go with it.
var errRateLimited = newFailure(http.StatusTooManyRequests, "API rate limit exceeded", outcomeLimited)

// errLimitsUnavailable is a limits store that cannot answer, with on_error
// deny: the request may be within its limits, so never 429.
var errLimitsUnavailable = newFailure(http.StatusServiceUnavailable, "limits store unavailable", outcomeError)

// errBadCost is a cost placeholder that did not resolve to a count for this
// request (a header the route reads it from, missing or not a number).
var errBadCost = newFailure(http.StatusBadRequest, "Invalid request cost", outcomeError)
