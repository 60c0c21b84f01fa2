package manage

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// limitView is one limit that applies to a consumer's requests, as GET
// /self and the usage endpoints show it: what it counts, whose count it
// is, and, with a limits_store, how much of it is used.
type limitView struct {
	Meter string `json:"meter"`
	// Scope is whose count it is: credential (one key's own), consumer
	// (the consumer's own, or its group tier's member_limits) or group (a
	// pool the group's members share).
	Scope string `json:"scope"`
	// Credential is the key's id of a credential limit; Group the group
	// of a group pool.
	Credential string `json:"credential,omitempty"`
	Group      string `json:"group,omitempty"`
	Max        int64  `json:"max"`
	// Per and Timezone are the window; absent for in_flight.
	Per      string `json:"per,omitempty"`
	Timezone string `json:"timezone,omitempty"`
	// Used and Remaining are absent without a limits_store. Used is the
	// window's usage (the slots in use for in_flight); below zero, and
	// Remaining above Max, after a top-up larger than the usage.
	Used      *int64 `json:"used,omitempty"`
	Remaining *int64 `json:"remaining,omitempty"`
	// Reset is the seconds until the window ends; absent for in_flight.
	Reset int64 `json:"reset,omitempty"`

	counter limits.Charge
}

// limitsOf lists the limits each yields (a credential's or a consumer's
// EachLimit), with their counters at now.
func limitsOf(each func(func(limits.ScopeKind, string, string, consumers.Limit) bool), now time.Time) []limitView {
	var out []limitView
	each(func(kind limits.ScopeKind, scope, meter string, l consumers.Limit) bool {
		out = append(out, newLimitView(kind, scope, meter, l.Max, l.Window, now))
		return true
	})
	return out
}

func newLimitView(kind limits.ScopeKind, scope, meter string, max int64, w consumers.Window, now time.Time) limitView {
	v := limitView{Meter: meter, Scope: kind.String(), Max: max,
		counter: limits.Charge{Kind: kind, Scope: scope, Meter: meter, Max: max}}
	switch kind {
	case limits.Credential:
		v.Credential = scope
	case limits.Group:
		v.Group = scope
	}
	if meter != limits.InFlight {
		v.Per, v.Timezone = w.Per(), w.Timezone()
		v.counter.Start, v.counter.End = w.Bounds(now)
		v.Reset = int64((v.counter.End.Sub(now) + time.Second - 1) / time.Second)
	}
	return v
}

// fill reads the usage of ls from the limits store, if the handler has
// one.
func (h *Handler) fill(q *call, ls []limitView) *apiError {
	if h.usage == nil || len(ls) == 0 {
		return nil
	}
	cs := make([]limits.Charge, len(ls))
	for i := range ls {
		cs[i] = ls[i].counter
	}
	used, err := h.usage.Usage(q.r.Context(), cs)
	if err != nil {
		return h.limitsUnavailable(q, err)
	}
	for i := range ls {
		u := used[i]
		rem := max(0, ls[i].Max-u)
		ls[i].Used, ls[i].Remaining = &u, &rem
	}
	return nil
}

func (h *Handler) limitsUnavailable(q *call, err error) *apiError {
	return h.failed(q, "the limits store", "usage may be unchanged", err)
}

// selfLimits are the limits of the caller's credential, for GET /self.
func (h *Handler) selfLimits(q *call) ([]limitView, *apiError) {
	ls := limitsOf(q.mgr.Credential.EachLimit, h.now())
	return ls, h.fill(q, ls)
}

// usageOf lists every limit of the consumer named by the path: its own and
// its group tier's, its group pools', and its credentials' own. The
// consumer must be in the manager's scope.
func (h *Handler) usageOf(q *call) ([]limitView, *apiError) {
	if h.usage == nil {
		return nil, fail(http.StatusConflict, "usage is not known here: key_auth_api needs limits_store, naming the store key_auth counts in")
	}
	entry, err := h.writer.ReadConsumer(q.r.Context(), q.username)
	if err != nil {
		return nil, h.unavailable(q, err)
	}
	if entry == nil || !h.inScope(q, entry) {
		return nil, notFound(q.username)
	}
	v := h.src.Now()
	if v == nil {
		return nil, h.unavailable(q, errors.New("the source has no consumers yet"))
	}
	c, ok, err := v.Consumer(q.r.Context(), q.username)
	if err != nil {
		return nil, h.unavailable(q, err)
	}
	if !ok || c.Username() != q.username {
		return nil, notFound(q.username)
	}
	now := h.now()
	var ls []limitView
	for _, k := range entry.Keys {
		for _, meter := range slices.Sorted(maps.Keys(k.Limits)) {
			e := k.Limits[meter]
			var w consumers.Window
			if meter != limits.InFlight {
				if w, err = consumers.ParseWindow(e.Per, e.Timezone); err != nil {
					// The source refused such a document: it is not this one.
					return nil, h.unavailable(q, err)
				}
			}
			ls = append(ls, newLimitView(limits.Credential, k.ID, meter, e.Max, w, now))
		}
	}
	ls = append(ls, limitsOf(c.EachLimit, now)...)
	return ls, h.fill(q, ls)
}

// usageAnswer is the body of the usage endpoints.
type usageAnswer struct {
	Username string      `json:"username"`
	Limits   []limitView `json:"limits"`
}

// getUsage is GET /consumers/{username}/usage.
func (h *Handler) getUsage(q *call) (int, any, *apiError) {
	ls, e := h.usageOf(q)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, usageAnswer{q.username, nonNil(ls)}, nil
}

func nonNil(ls []limitView) []limitView {
	if ls == nil {
		return []limitView{}
	}
	return ls
}

// resetUsage is DELETE /consumers/{username}/usage[/{meter}]: the window
// counters of the consumer's own limits and of its credentials' (of the
// meter, or of every meter) start again from zero. A group's pool is its
// members', not one consumer's: it is left alone, and so is in_flight,
// whose slots are requests under way.
func (h *Handler) resetUsage(q *call) (int, any, *apiError) {
	if q.meter == limits.InFlight {
		return 0, nil, badRequest("meter: %v", limits.ErrInFlight)
	}
	ls, e := h.usageOf(q)
	if e != nil {
		return 0, nil, e
	}
	var cs []limits.Charge
	for _, l := range ls {
		if l.counter.Kind != limits.Group && l.Meter != limits.InFlight && (q.meter == "" || l.Meter == q.meter) {
			cs = append(cs, l.counter)
		}
	}
	if q.meter != "" && len(cs) == 0 {
		return 0, nil, fail(http.StatusNotFound, "consumer %q has no limit of its own or of its keys on meter %q", q.username, q.meter)
	}
	if err := h.usage.Reset(q.r.Context(), cs); err != nil {
		return 0, nil, h.limitsUnavailable(q, err)
	}
	if e := h.fill(q, ls); e != nil {
		return 0, nil, e
	}
	return http.StatusOK, usageAnswer{q.username, nonNil(ls)}, nil
}

// topUpRequest is the body of POST /consumers/{username}/usage/{meter}.
type topUpRequest struct {
	// Add is the room given in the current window, on top of what is left.
	Add int64 `json:"add"`
}

// topUpUsage is POST /consumers/{username}/usage/{meter} {"add": N}: the
// consumer's own limit on the meter (or, with ?credential=ID, that key's
// own limit) gets N more room in its current window. A group's pool is
// not one consumer's to top up.
func (h *Handler) topUpUsage(q *call) (int, any, *apiError) {
	if q.meter == limits.InFlight {
		return 0, nil, badRequest("meter: %v", limits.ErrInFlight)
	}
	cred := ""
	for name, vals := range q.r.URL.Query() {
		if name != "credential" {
			return 0, nil, badRequest("unknown query parameter %q (want credential)", name)
		}
		cred = vals[len(vals)-1]
		if cred == "" {
			return 0, nil, badRequest("credential is empty")
		}
	}
	q.credID = cred
	body, e := readBody(q.w, q.r, false)
	if e != nil {
		return 0, nil, e
	}
	var req topUpRequest
	if e := decodeStrict(body, &req); e != nil {
		return 0, nil, e
	}
	if req.Add < 1 || req.Add > consumers.MaxLimit {
		return 0, nil, badRequest("add: want a number from 1 to %d", int64(consumers.MaxLimit))
	}
	ls, e := h.usageOf(q)
	if e != nil {
		return 0, nil, e
	}
	kind, scope := limits.Consumer, ""
	if cred != "" {
		kind, scope = limits.Credential, cred
	}
	i := slices.IndexFunc(ls, func(l limitView) bool {
		return l.counter.Kind == kind && l.Meter == q.meter && (scope == "" || l.counter.Scope == scope)
	})
	if i < 0 {
		if cred != "" {
			return 0, nil, fail(http.StatusNotFound, "consumer %q has no key %q with a limit of its own on meter %q", q.username, cred, q.meter)
		}
		return 0, nil, fail(http.StatusNotFound, "consumer %q has no limit of its own on meter %q (a group's pool is its members', not one consumer's to top up)", q.username, q.meter)
	}
	if _, err := h.usage.TopUp(q.r.Context(), ls[i].counter, req.Add); err != nil {
		return 0, nil, h.limitsUnavailable(q, err)
	}
	if e := h.fill(q, ls); e != nil {
		return 0, nil, e
	}
	return http.StatusOK, usageAnswer{q.username, ls}, nil
}
