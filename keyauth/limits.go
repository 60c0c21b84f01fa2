package keyauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// limitStoresNamespace is where the limit stores live, as modules.
const limitStoresNamespace = "key_auth.limits.stores"

// Limits is a key_auth handler's limits block: what a request through it
// charges against the limits its consumer has in the consumers document
// (its credential's, its own, its groups'), and where the counts live. Only
// a handler with a limits block charges, so stacked handlers never charge a
// request twice. A request is charged after authentication and the allow or
// deny list, and only when it goes on as a consumer (authenticated, as the
// anonymous consumer, or as an earlier key_auth's); a refused, failed or
// preflight request is not.
type Limits struct {
	// Costs are what a request through this handler charges, one per
	// meter. A limit on a meter the route does not charge is not checked
	// here, but for in_flight, which every limited route takes a slot of.
	// Default: [{"meter": "requests", "amount": 1}].
	Costs []Cost `json:"costs,omitempty"`

	// Store is where counts live: a module of the key_auth.limits.stores
	// namespace, named by its "store" key: {"store": "local"} (in memory,
	// saved to Caddy's data directory) or {"store": "redis", ...} (shared
	// by a fleet). Default: local.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=key_auth.limits.stores inline_key=store"`

	// OnError is what a request gets when the store cannot answer:
	// "deny" answers 503 {"message":"limits store unavailable"}, "allow"
	// lets it on uncounted (logged and counted in a metric). Default: deny.
	OnError string `json:"on_error,omitempty"`
}

// Cost is what a request charges on one meter.
type Cost struct {
	// Meter is the meter charged: requests, tokens, or any name the limits
	// in the consumers document use. Not in_flight, whose slot a request
	// takes wherever a limit caps it.
	Meter string `json:"meter"`

	// Amount is what a request charges, or with Usage what it reserves
	// until its answer says what it used: a non-negative integer, or a
	// placeholder that resolves to one per request (such as
	// {http.request.header.X-Cost}); a request whose placeholder does not
	// is refused with 400. Required.
	Amount caddyhttp.WeakString `json:"amount,omitempty"`

	// Usage settles the charge from the answer: Amount is held at
	// admission, then replaced by the tokens the answer says it used as it
	// streams by (usage.total_tokens of an OpenAI-compatible answer or of
	// the last server-sent event that carries usage, or Ollama's
	// prompt_eval_count + eval_count). A failed upstream (no answer, 5xx)
	// is refunded; a 2xx without usage keeps the reservation.
	Usage bool `json:"usage,omitempty"`
}

// defaultCosts is what a limits block without costs charges.
var defaultCosts = []Cost{{Meter: "requests", Amount: "1"}}

// The values of on_error.
const (
	onErrorDeny  = "deny"
	onErrorAllow = "allow"
)

// checkMeter checks the name of a meter a cost charges: a meter of the
// consumers document (consumers.CheckMeterName), since a cost charges the
// limits the document sets on it.
func checkMeter(name string) error {
	switch {
	case name == "":
		return errors.New("a cost needs a meter")
	case name == limits.InFlight:
		return errors.New("in_flight is not charged by a cost: every limited request takes a slot where a limit caps in_flight")
	}
	return consumers.CheckMeterName(name)
}

// checkAmount checks an amount: a non-negative integer or a placeholder.
func checkAmount(meter, amount string) error {
	if amount == "" {
		return fmt.Errorf("cost %s: an amount is required", meter)
	}
	if strings.Contains(amount, "{") {
		return nil
	}
	if n, err := strconv.ParseInt(amount, 10, 64); err != nil || n < 0 {
		return fmt.Errorf("cost %s: amount %q is not a non-negative integer or a placeholder", meter, amount)
	}
	return nil
}

// Validate checks the block: each meter charged once, with a valid amount;
// on_error deny or allow.
func (l *Limits) Validate() error {
	for i, c := range l.Costs {
		if err := checkMeter(c.Meter); err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		for _, d := range l.Costs[:i] {
			if d.Meter == c.Meter {
				return fmt.Errorf("limits: meter %s is charged twice", c.Meter)
			}
		}
		if err := checkAmount(c.Meter, string(c.Amount)); err != nil {
			return fmt.Errorf("limits: %w", err)
		}
	}
	switch l.OnError {
	case "", onErrorDeny, onErrorAllow:
	default:
		return fmt.Errorf("limits: on_error must be deny or allow, got %q", l.OnError)
	}
	return nil
}

// provisionLimits loads the limits block's store (local by default) and
// works out what requests charge.
func (h *Handler) provisionLimits(ctx caddy.Context) error {
	l := h.Limits
	if l == nil {
		return nil
	}
	if l.StoreRaw == nil {
		l.StoreRaw = caddyconfig.JSONModuleObject(struct{}{}, "store", "local", nil)
	}
	mod, err := ctx.LoadModule(l, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading limits store: %w", err)
	}
	store, ok := mod.(LimitStore)
	if !ok {
		return fmt.Errorf("module %s is not a limits store: it does not implement keyauth.LimitStore", caddy.GetModuleID(mod))
	}
	h.limiter = newLimiter(l, store, h.logger)
	return nil
}

// newLimiter works out what requests through a limits block charge.
func newLimiter(l *Limits, store LimitStore, logger *zap.Logger) *limiter {
	costs := l.Costs
	if len(costs) == 0 {
		costs = defaultCosts
	}
	rt := &limiter{store: store, allow: l.OnError == onErrorAllow, logger: logger}
	for _, c := range costs {
		rc := routeCost{meter: c.Meter, usage: c.Usage, placeholder: string(c.Amount)}
		if !strings.Contains(rc.placeholder, "{") {
			rc.amount, _ = strconv.ParseInt(rc.placeholder, 10, 64) // checked by Validate
			rc.placeholder = ""
		}
		rt.costs = append(rt.costs, rc)
	}
	return rt
}
