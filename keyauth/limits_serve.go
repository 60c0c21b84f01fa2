package keyauth

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// limiter is what a handler with a limits block needs on each request.
type limiter struct {
	store  LimitStore
	costs  []routeCost
	allow  bool // on_error allow: a store that cannot answer lets requests on
	logger *zap.Logger
	streak failureStreak
}

// routeCost is a Cost as requests use it.
type routeCost struct {
	meter       string
	amount      int64  // when placeholder is ""
	placeholder string // resolved per request
	usage       bool
}

// maxCharges is how many charges a request's run holds without another
// allocation: a credential's, its consumer's and two groups' limits, and
// in_flight.
const maxCharges = 8

// limitRun is one request's limits at work: what it charges, what the store
// answered, and what settles it when the request ends. It comes from a pool
// and goes back once settled: nothing outside the handler's ServeHTTP holds
// it. What does outlive it, the values of the RateLimit headers and of the
// placeholders, is in the request's limitView.
type limitRun struct {
	l         *limiter
	view      *limitView
	charges   []limits.Charge
	remaining []int64 // the room each charge has, copied from the admission
	usage     []bool  // charge i is settled from the answer
	adm       limits.Admission
	pending   bool // adm is yet to be settled
	now       time.Time
	shown     int // the charge RateLimit shows: the one with the least room

	w      settleWriter
	ctx    detached
	actual [maxCharges]int64

	chargesA   [maxCharges]limits.Charge
	remainingA [maxCharges]int64
	usageA     [maxCharges]bool
}

var runs = sync.Pool{New: func() any { return new(limitRun) }}

// release puts the run back in the pool, holding nothing of the request.
func (run *limitRun) release() {
	// The charges' scopes and meters are strings of a Set, and the writer
	// the client's: nothing of them stays in the pool. (Clearing what was
	// used, not the whole run: it is most of a kilobyte.)
	clear(run.charges)
	if run.w.ResponseWriter != nil {
		run.w = settleWriter{}
	}
	run.l, run.view, run.ctx = nil, nil, detached{}
	run.adm, run.pending, run.shown = limits.Admission{}, false, 0
	runs.Put(run)
}

// maxViewMeters is how many meters a request's placeholders tell of.
const maxViewMeters = 3

// limitView is what a request's limits show after the handler: the values
// of its RateLimit headers (the header map points into it) and of its
// {http.auth.user.limits.*} placeholders. It is one allocation with the
// request's identity (limitIdentity), so that a request with limits
// allocates no more than one without.
type limitView struct {
	meters  [maxViewMeters]meterView
	n       int
	headers [3]string // RateLimit-Policy, RateLimit, Retry-After
	buf     [160]byte
}

// meterView is a meter's placeholders: its limit with the least room, as
// admitted.
type meterView struct {
	meter          string
	remaining, max int64
	reset          int64 // seconds; 0 for in_flight
}

// limitIdentity is the identity of a request with limits, and its view.
type limitIdentity struct {
	id   identity
	view limitView
}

// admit is the limits phase of a request that goes on as a consumer: it
// charges what the route costs against every limit that applies, in one
// step at the store. It returns the request's identity-to-be with its view
// of the limits (nil when no limit applies, or when the store failed and
// on_error allows), the run still to settle when the request ends (nil when
// none is), or why the request is refused: 429 (a limit has no room), 503
// (the store cannot answer), 400 (a cost placeholder is not a count).
// Refused, the RateLimit headers and Retry-After are set on w.
func (h *Handler) admit(w http.ResponseWriter, q *request, v *verdict) (*limitIdentity, *limitRun, *failure) {
	if !hasLimits(v) {
		return nil, nil, nil
	}
	l := h.limiter
	run := runs.Get().(*limitRun)
	run.l = l
	run.now = h.now()
	run.charges = run.chargesA[:0]
	run.usage = run.usageA[:0]
	if f := h.chargesOf(run, q.r, v); f != nil || len(run.charges) == 0 {
		run.release()
		return nil, nil, f
	}
	adm, err := l.store.Admit(q.r.Context(), run.charges)
	if err != nil {
		run.release()
		l.storeFailed(err, "admit")
		if l.allow {
			limitUncounted.Inc()
			return nil, nil, nil
		}
		return nil, nil, errLimitsUnavailable
	}
	l.streak.ok(l.logger)
	run.adm, run.pending = adm, true
	run.remaining = append(run.remainingA[:0], adm.Remaining...)
	li := new(limitIdentity)
	run.view = &li.view
	if !adm.Allowed {
		run.settleNow(q.r.Context())
		c := &run.charges[adm.Refused]
		limitRefusals.WithLabelValues(c.Meter, c.Kind.String()).Inc()
		if ce := h.logger.Check(zapcore.DebugLevel, "request over a limit"); ce != nil {
			ce.Write(zap.String("meter", c.Meter), zap.Stringer("scope_kind", c.Kind), zap.String("scope", c.Scope), zap.Int64("max", c.Max))
		}
		run.shown = adm.Refused
		run.setHeaders(w, true)
		run.release()
		return nil, nil, errRateLimited
	}
	run.shown = run.leastRoom()
	run.setHeaders(w, false)
	run.setMeters()
	if !run.settlesLater() {
		run.settleNow(q.r.Context())
		run.release()
		return li, nil, nil
	}
	return li, run, nil
}

// add adds the charge of one limit that applies to the request (see
// consumers.Credential.EachLimit), if the route charges its meter.
func (run *limitRun) add(r *http.Request, kind limits.ScopeKind, scope, meter string, lim consumers.Limit) *failure {
	c := limits.Charge{Kind: kind, Scope: scope, Meter: meter, Max: lim.Max}
	usage := false
	if meter == limits.InFlight {
		c.Cost = 1
	} else {
		i := run.l.costOf(meter)
		if i < 0 {
			return nil
		}
		rc := &run.l.costs[i]
		n, ok := rc.resolve(r)
		if !ok {
			return errBadCost
		}
		c.Cost, usage = n, rc.usage
		c.Start, c.End = lim.Window.Bounds(run.now)
	}
	run.charges = append(run.charges, c)
	run.usage = append(run.usage, usage)
	return nil
}

// costOf is the index of the route's cost of meter, or -1.
func (l *limiter) costOf(meter string) int {
	for i := range l.costs {
		if l.costs[i].meter == meter {
			return i
		}
	}
	return -1
}

// resolve is what the cost charges on this request.
func (rc *routeCost) resolve(r *http.Request) (int64, bool) {
	if rc.placeholder == "" {
		return rc.amount, true
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(repl.ReplaceAll(rc.placeholder, ""), 10, 64)
	return n, err == nil && n >= 0
}

// settlesLater reports whether the run is settled when the request ends: it
// holds an in-flight slot or a reservation settled from the answer.
func (run *limitRun) settlesLater() bool {
	for i := range run.charges {
		if run.usage[i] || run.charges[i].Meter == limits.InFlight {
			return true
		}
	}
	return false
}

// readsAnswer reports whether a charge is settled from the answer.
func (run *limitRun) readsAnswer() bool {
	for _, u := range run.usage {
		if u {
			return true
		}
	}
	return false
}

// settleNow settles an admission that nothing is left to settle later: a
// refused one, or one that only counted.
func (run *limitRun) settleNow(ctx context.Context) {
	run.settle(ctx, limits.Settlement{})
}

// settle hands the admission to Settle, once.
func (run *limitRun) settle(ctx context.Context, s limits.Settlement) {
	if !run.pending {
		return
	}
	run.pending = false
	// The request may be over (its client gone): the slot is given back
	// all the same.
	run.ctx.Context = ctx
	if err := run.l.store.Settle(&run.ctx, run.adm, s); err != nil {
		run.l.storeFailed(err, "settle")
	}
	run.adm = limits.Admission{}
}

// detached is context.WithoutCancel's context, kept in the run: the
// standard one would be an allocation per settlement.
type detached struct{ context.Context }

func (detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (detached) Done() <-chan struct{}       { return nil }
func (detached) Err() error                  { return nil }

// serve passes the request on; a charge settled from the answer reads it
// as it goes by. apply settles the run (end, then release) when the
// request ends, however it ends: answered, failed upstream, its client
// gone, a stream or a WebSocket closed (the handler returns then:
// reverse_proxy waits for a tunnel it hijacked to close), or a panic.
func (run *limitRun) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !run.readsAnswer() {
		return next.ServeHTTP(w, r)
	}
	run.w.ResponseWriter = w
	return next.ServeHTTP(&run.w, r)
}

// end settles the run: in-flight slots given back; each reservation
// replaced by the tokens the answer used, refunded when the upstream failed
// (no answer, or 5xx), or kept when a 2xx carries no usage. A 4xx carries
// its usage when it has one, else it is refunded: the upstream refused the
// request before it generated anything.
func (run *limitRun) end(ctx context.Context, err error) {
	if !run.pending {
		return
	}
	if !run.readsAnswer() {
		run.settle(ctx, limits.Settlement{})
		return
	}
	status := run.w.status
	tokens, read := run.w.reader.Tokens()
	actual := run.actual[:len(run.charges)]
	for i := range actual {
		actual[i] = -1
		if !run.usage[i] {
			continue
		}
		switch {
		case status == 0 && err != nil, status >= 500:
			actual[i] = 0
		case read:
			actual[i] = tokens
		case status >= 400:
			actual[i] = 0
		}
	}
	run.settle(ctx, limits.Settlement{Actual: actual})
}

// leastRoom is the charge with the least room: the smallest share of its
// max left (then the least left, then the soonest reset). An in_flight cap
// is left out when a quota applies too: the request itself holds one of its
// slots while it runs, so it would always look fullest and hide the quota a
// client paces itself by (a refusal by in_flight shows it all the same).
func (run *limitRun) leastRoom() int {
	quota := false
	for i := range run.charges {
		if !run.charges[i].End.IsZero() {
			quota = true
			break
		}
	}
	best := -1
	for i := range run.charges {
		if quota && run.charges[i].End.IsZero() {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		a, b := &run.charges[i], &run.charges[best]
		ra, rb := run.remaining[i], run.remaining[best]
		// ra/a.Max < rb/b.Max, without division (both Max > 0 or the
		// products are zero).
		l, r := mulSat(ra, b.Max), mulSat(rb, a.Max)
		switch {
		case l < r:
			best = i
		case l == r && ra < rb:
			best = i
		case l == r && ra == rb && !a.End.IsZero() && (b.End.IsZero() || a.End.Before(b.End)):
			best = i
		}
	}
	return best
}

// mulSat is a*b of non-negative numbers, saturated.
func mulSat(a, b int64) int64 {
	if a != 0 && b > (1<<63-1)/a {
		return 1<<63 - 1
	}
	return a * b
}

// resetIn is the whole seconds until charge i's window resets, at least 1;
// 0 for in_flight, whose slots come back as requests end.
func (run *limitRun) resetIn(i int) int64 {
	c := &run.charges[i]
	if c.End.IsZero() {
		return 0
	}
	d := c.End.Sub(run.now)
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// policyName is charge i's name in the RateLimit headers: its meter and
// scope kind ("requests-consumer"), numbered from the second charge of the
// same (a member of two groups that both cap requests).
func (run *limitRun) policyName(b []byte, i int) []byte {
	c := &run.charges[i]
	b = append(b, c.Meter...)
	b = append(b, '-')
	b = append(b, c.Kind.String()...)
	n := 1
	for j := range i {
		if run.charges[j].Meter == c.Meter && run.charges[j].Kind == c.Kind {
			n++
		}
	}
	if n > 1 {
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return b
}

// setHeaders sets the RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers-10: a policy per charge (q its max, w
// its window in seconds, qu concurrent-requests for in_flight; a meter
// other than requests is named in keyauth-unit, as qu takes only the
// registered units), and the remaining room (r) and reset (t) of the charge
// with the least room, or of the refusing one. A refused request gets
// Retry-After as well: the seconds until the refusing window resets, 1 for
// in_flight. The values are built in the run's buffer, which the header map
// then points into.
func (run *limitRun) setHeaders(w http.ResponseWriter, refused bool) {
	view := run.view
	b := view.buf[:0]
	b = run.appendPolicy(b)
	policy := len(b)
	b = append(b, '"')
	b = run.policyName(b, run.shown)
	b = append(b, `";r=`...)
	b = strconv.AppendInt(b, run.remaining[run.shown], 10)
	reset := run.resetIn(run.shown)
	if reset > 0 {
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, reset, 10)
	}
	current := len(b)
	if refused {
		b = strconv.AppendInt(b, max(reset, 1), 10)
	}
	// b is not written to again: the strings stay valid.
	all := unsafe.String(unsafe.SliceData(b), len(b))
	view.headers = [3]string{all[:policy], all[policy:current], all[current:]}
	hdr := w.Header()
	hdr["Ratelimit-Policy"] = view.headers[0:1:1]
	hdr["Ratelimit"] = view.headers[1:2:2]
	if refused {
		hdr["Retry-After"] = view.headers[2:3:3]
	}
}

// appendPolicy appends the RateLimit-Policy value of the run's charges.
func (run *limitRun) appendPolicy(b []byte) []byte {
	for i := range run.charges {
		c := &run.charges[i]
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '"')
		b = run.policyName(b, i)
		b = append(b, `";q=`...)
		b = strconv.AppendInt(b, c.Max, 10)
		switch {
		case c.Meter == limits.InFlight:
			b = append(b, `;qu="concurrent-requests"`...)
		case !c.End.IsZero():
			b = append(b, ";w="...)
			b = strconv.AppendInt(b, max(int64(c.End.Sub(c.Start)/time.Second), 1), 10)
		}
		if c.Meter != "requests" && c.Meter != limits.InFlight {
			b = append(b, `;keyauth-unit="`...)
			b = append(b, c.Meter...)
			b = append(b, '"')
		}
	}
	return b
}

// setMeters fills the view's placeholders: for each meter charged (the
// first maxViewMeters of them), its charge with the least room.
func (run *limitRun) setMeters() {
	view := run.view
	for i := range run.charges {
		c := &run.charges[i]
		j := 0
		for j < view.n && view.meters[j].meter != c.Meter {
			j++
		}
		switch {
		case j == view.n && j < maxViewMeters:
			view.n++
		case j == view.n, run.remaining[i] >= view.meters[j].remaining:
			continue
		}
		view.meters[j] = meterView{meter: c.Meter, remaining: run.remaining[i], max: c.Max, reset: run.resetIn(i)}
	}
}

// placeholder serves {http.auth.user.limits.<meter>.remaining}, .max and
// .reset (seconds; empty for in_flight), as admitted.
func (view *limitView) placeholder(name string) (any, bool) {
	meter, field, ok := cutLast(name, '.')
	if !ok {
		return nil, false
	}
	var m *meterView
	for i := range view.n {
		if view.meters[i].meter == meter {
			m = &view.meters[i]
		}
	}
	switch field {
	case "remaining", "max", "reset":
	default:
		return nil, false
	}
	switch {
	case m == nil:
		return emptyPlaceholder, true
	case field == "remaining":
		return m.remaining, true
	case field == "max":
		return m.max, true
	case m.reset > 0:
		return m.reset, true
	}
	return emptyPlaceholder, true
}

// cutLast cuts s around the last sep.
func cutLast(s string, sep byte) (before, after string, ok bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// storeFailed logs a store that could not answer (the store counts it, in
// caddy_key_auth_limits_store_errors_total).
func (l *limiter) storeFailed(err error, op string) {
	l.streak.fail(l.logger, err, op, l.allow)
}

// failureReminderEvery is how often a store failure streak is logged again
// while it lasts, as the consumers sources do.
const failureReminderEvery = 5 * time.Minute

// failureStreak logs a limits store's failures the way the consumers
// sources log theirs: the first of a streak, then a reminder every
// failureReminderEvery while it lasts, then its end. A request on a
// healthy store pays one atomic load.
type failureStreak struct {
	failing atomic.Bool
	mu      sync.Mutex
	count   int
	start   time.Time
	logged  time.Time
}

func (s *failureStreak) fail(logger *zap.Logger, err error, op string, allow bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	what := "limits store unavailable"
	switch {
	case s.count == 1:
		s.start = now
		s.failing.Store(true)
	case now.Sub(s.logged) >= failureReminderEvery:
		what = "limits store still unavailable"
	default:
		return
	}
	s.logged = now
	consequence := "requests with limits get 503"
	if allow {
		consequence = "requests with limits go on uncounted (on_error allow)"
	}
	logger.Error(what+"; "+consequence, zap.String("op", op), zap.Error(err),
		zap.Int("failures", s.count), zap.Duration("failing_for", now.Sub(s.start)))
}

func (s *failureStreak) ok(logger *zap.Logger) {
	if !s.failing.Load() {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == 0 {
		return
	}
	logger.Info("limits store recovered", zap.Int("failures", s.count), zap.Duration("failing_for", now.Sub(s.start)))
	s.count = 0
	s.failing.Store(false)
}

// chargesOf adds to run the charges of every limit that applies to the
// verdict's credential (and so its consumer and groups), or to its
// consumer when no credential let it in (the anonymous consumer).
func (h *Handler) chargesOf(run *limitRun, r *http.Request, v *verdict) *failure {
	var f *failure
	yield := func(kind limits.ScopeKind, scope, meter string, l consumers.Limit) bool {
		f = run.add(r, kind, scope, meter, l)
		return f == nil
	}
	if v.view != nil {
		v.cred.EachLimit(yield)
	} else {
		v.consumer.EachLimit(yield)
	}
	return f
}

// hasLimits reports whether any limit of the document applies to the
// verdict's requests: a request without costs no allocation and no store.
func hasLimits(v *verdict) bool {
	if v.view != nil {
		return v.cred.HasLimits()
	}
	return v.consumer.HasLimits()
}
