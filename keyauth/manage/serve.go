package manage

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/keyauth"
)

// resource is what a path names, relative to where the handler is
// mounted.
type resource uint8

const (
	resSelf       resource = iota // /self
	resConsumers                  // /consumers
	resConsumer                   // /consumers/{username}
	resKeys                       // /consumers/{username}/keys
	resKey                        // /consumers/{username}/keys/{id}
	resRoll                       // /consumers/{username}/keys/{id}/roll
	resUsage                      // /consumers/{username}/usage
	resUsageMeter                 // /consumers/{username}/usage/{meter}
)

// endpoint is what a method does to a resource.
type endpoint struct {
	method string
	// action names a change in the audit line and the metric; "" for a
	// read.
	action string
	serve  func(h *Handler, q *call) (status int, body any, err *apiError)
}

var endpoints = [...][]endpoint{
	resSelf:      {{http.MethodGet, "", nil}}, // served before authorization
	resConsumers: {{http.MethodGet, "", (*Handler).listConsumers}},
	resConsumer: {
		{http.MethodGet, "", (*Handler).getConsumer},
		{http.MethodPut, "put_consumer", (*Handler).putConsumer},
		{http.MethodPatch, "patch_consumer", (*Handler).patchConsumer},
		{http.MethodDelete, "delete_consumer", (*Handler).deleteConsumer},
	},
	resKeys: {{http.MethodPost, "add_key", (*Handler).addKey}},
	resKey: {
		{http.MethodPatch, "patch_key", (*Handler).patchKey},
		{http.MethodDelete, "delete_key", (*Handler).deleteKey},
	},
	resRoll: {{http.MethodPost, "roll_key", (*Handler).rollKey}},
	resUsage: {
		{http.MethodGet, "", (*Handler).getUsage},
		{http.MethodDelete, "usage_reset", (*Handler).resetUsage},
	},
	resUsageMeter: {
		{http.MethodDelete, "usage_reset", (*Handler).resetUsage},
		{http.MethodPost, "usage_topup", (*Handler).topUpUsage},
	},
}

// call is one request to the API.
type call struct {
	w   http.ResponseWriter
	r   *http.Request
	mgr keyauth.Identity // who calls
	// scope is the manager's value of the scope label, when scoped.
	scope    string
	username string // from the path
	credID   string // from the path, or the credential a POST created
	meter    string // from the path of /usage/{meter}
	// action is the endpoint's, for the audit line; refined by an
	// endpoint whose outcome decides it (put_consumer creates or replaces).
	action string
}

// ServeHTTP answers every request itself: the API is a terminal handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	mgr, ok := keyauth.IdentityOf(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", "Key")
		writeError(w, fail(http.StatusUnauthorized, "no consumer was authenticated: the management API needs a key"))
		return nil
	}
	res, username, credID, meter, e := route(r)
	if e != nil {
		writeError(w, e)
		return nil
	}
	var ep *endpoint
	var allow []string
	for i := range endpoints[res] {
		allow = append(allow, endpoints[res][i].method)
		if endpoints[res][i].method == r.Method {
			ep = &endpoints[res][i]
		}
	}
	if ep == nil {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, fail(http.StatusMethodNotAllowed, "%s is not allowed here (allowed: %s)", r.Method, strings.Join(allow, ", ")))
		return nil
	}
	q := &call{w: w, r: r, mgr: mgr, username: username, credID: credID, meter: meter, action: ep.action}
	if res == resSelf {
		s := selfView(mgr)
		var e *apiError
		if s.Limits, e = h.selfLimits(q); e != nil {
			writeError(w, e)
			return nil
		}
		writeJSON(w, http.StatusOK, s)
		return nil
	}
	status, body, e := h.authorize(q)
	if e == nil {
		status, body, e = ep.serve(h, q)
	}
	if e != nil {
		status, body = e.status, struct {
			Message string `json:"message"`
		}{e.message}
	}
	if q.action != "" {
		h.audit(q, status)
	}
	writeJSON(w, status, body)
	return nil
}

// authorize lets on a manager of this API, in its scope, to a source that
// can be changed here.
func (h *Handler) authorize(q *call) (int, any, *apiError) {
	if !q.mgr.Consumer.InGroup(h.ManageGroup) {
		return 0, nil, fail(http.StatusForbidden, "consumer %q is not in the group %q that manages consumers", q.mgr.Consumer.Username(), h.ManageGroup)
	}
	if h.Scope != nil {
		v, ok := q.mgr.Consumer.Label(h.Scope.Label)
		if !ok || v == "" {
			return 0, nil, fail(http.StatusForbidden, "consumer %q has no %q label: a manager manages the consumers of its own %q", q.mgr.Consumer.Username(), h.Scope.Label, h.Scope.Label)
		}
		q.scope = v
	}
	if h.writer == nil {
		return 0, nil, fail(http.StatusConflict, "this consumers source cannot be changed here: consumers are managed where the source is served")
	}
	return 0, nil, nil
}

// route reads the path: the resource and the username and credential id it
// names, percent-decoded (a username may hold a '/', sent as %2F).
func route(r *http.Request) (res resource, username, credID, meter string, e *apiError) {
	path := r.URL.EscapedPath()
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return 0, "", "", "", badRequest("the path is not a valid URL path")
		}
		segs[i] = u
	}
	nf := fail(http.StatusNotFound, "no such endpoint: %s (see the README, Management API)", path)
	if !strings.HasPrefix(path, "/") {
		return 0, "", "", "", nf
	}
	switch {
	case len(segs) == 1 && segs[0] == "self":
		return resSelf, "", "", "", nil
	case len(segs) == 0 || segs[0] != "consumers":
		return 0, "", "", "", nf
	case len(segs) == 1:
		return resConsumers, "", "", "", nil
	}
	username = segs[1]
	if username == "" {
		return 0, "", "", "", badRequest("username is empty")
	}
	switch {
	case len(segs) == 2:
		return resConsumer, username, "", "", nil
	case segs[2] == "usage" && len(segs) == 3:
		return resUsage, username, "", "", nil
	case segs[2] == "usage" && len(segs) == 4:
		if segs[3] == "" {
			return 0, "", "", "", badRequest("meter is empty")
		}
		return resUsageMeter, username, "", segs[3], nil
	case segs[2] != "keys":
		return 0, "", "", "", nf
	case len(segs) == 3:
		return resKeys, username, "", "", nil
	}
	credID = segs[3]
	if credID == "" {
		return 0, "", "", "", badRequest("credential id is empty")
	}
	switch {
	case len(segs) == 4:
		return resKey, username, credID, "", nil
	case len(segs) == 5 && segs[4] == "roll":
		return resRoll, username, credID, "", nil
	}
	return 0, "", "", "", nf
}

// self is GET /self: who the caller is and the credential it called with.
type self struct {
	Username   string   `json:"username"`
	ID         string   `json:"id"`
	CustomID   string   `json:"custom_id,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	Credential struct {
		ID        string `json:"id"`
		ExpiresAt string `json:"expires_at,omitempty"`
		LastUsed  string `json:"last_used,omitempty"`
	} `json:"credential"`
	// Limits are every limit the credential's requests are under (its
	// own, its consumer's, its groups'); absent when none applies.
	Limits []limitView `json:"limits,omitempty"`
}

func selfView(id keyauth.Identity) self {
	c := id.Consumer
	s := self{Username: c.Username(), ID: c.ID(), CustomID: c.CustomID(), Groups: c.Groups()}
	s.Credential.ID = id.CredentialID
	s.Credential.ExpiresAt = formatTime(id.ExpiresAt)
	s.Credential.LastUsed = formatTime(id.LastUsed)
	return s
}

// unavailable is the answer to a source that could not be read or written:
// the error goes to the log, which may name a file or a server, never to
// the client.
func (h *Handler) unavailable(q *call, err error) *apiError {
	return h.failed(q, "the consumers source", "nothing was changed", err)
}

// failed answers 503 for what (a source, a limits store) that failed,
// saying what came of a change (changed), and logs the error, which the
// client does not see.
func (h *Handler) failed(q *call, what, changed string, err error) *apiError {
	h.logger.Error(what+" failed", zap.String("method", q.r.Method),
		zap.String("consumer", q.username), zap.Error(err))
	if q.action == "" {
		return fail(http.StatusServiceUnavailable, "%s is unavailable", what)
	}
	return fail(http.StatusServiceUnavailable, "%s is unavailable; %s", what, changed)
}
