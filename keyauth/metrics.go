package keyauth

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// outcome is how a request fared; it is the only label of the request
// counter, so the counter never grows with the consumers.
type outcome int

const (
	outcomeAuthenticated outcome = iota
	outcomeAnonymous
	outcomeMissing
	outcomeInvalid
	outcomeDuplicate
	outcomeError
	// outcomeForbidden is a consumer the allow or deny list refused.
	outcomeForbidden
	// outcomeCanary is a canary key, whether rejected or let on as
	// anonymous.
	outcomeCanary
	// outcomeLimited is a request refused by a limit (429).
	outcomeLimited
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"authenticated", "anonymous", "missing", "invalid", "duplicate", "error", "forbidden", "canary", "limited"}

// requestsTotal lives at package level so its counts survive config
// reloads; each new config's registry gets it registered again.
var requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy",
	Subsystem: "key_auth",
	Name:      "requests_total",
	Help:      "Requests seen by key_auth, by outcome: authenticated, anonymous, missing, invalid, duplicate, error, forbidden, canary (a canary key, whether rejected or let on as anonymous), limited (refused by a limit, 429).",
}, []string{"outcome"})

// outcomes are the counter's children, resolved once so counting a request
// is one atomic add.
var outcomes = func() (c [numOutcomes]prometheus.Counter) {
	for i, name := range outcomeNames {
		c[i] = requestsTotal.WithLabelValues(name)
	}
	return c
}()

// limitRefusals counts the requests a limit refused, by the refusing
// limit's meter and the kind of its scope (credential, consumer, group):
// never a name or a key, so the series are few (a meter is a name of the
// configuration, not of a consumer).
var limitRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy",
	Subsystem: "key_auth",
	Name:      "limits_refused_total",
	Help:      "Requests refused by a limit (429), by meter and scope kind (credential, consumer, group).",
}, []string{"meter", "scope"})

// limitUncounted counts the requests let on uncounted: the store could not
// answer and on_error allows.
var limitUncounted = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "caddy",
	Subsystem: "key_auth",
	Name:      "limits_uncounted_total",
	Help:      "Requests let on without counting them because the limits store could not answer (on_error allow).",
})

func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{requestsTotal, limitRefusals, limitUncounted} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return fmt.Errorf("registering key_auth metrics: %w", err)
			}
		}
	}
	return nil
}
