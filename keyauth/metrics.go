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
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"authenticated", "anonymous", "missing", "invalid", "duplicate", "error", "forbidden", "canary"}

// requestsTotal lives at package level so its counts survive config
// reloads; each new config's registry gets it registered again.
var requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy",
	Subsystem: "key_auth",
	Name:      "requests_total",
	Help:      "Requests seen by key_auth, by outcome: authenticated, anonymous, missing, invalid, duplicate, error, forbidden, canary (a canary key, whether rejected or let on as anonymous).",
}, []string{"outcome"})

// outcomes are the counter's children, resolved once so counting a request
// is one atomic add.
var outcomes = func() (c [numOutcomes]prometheus.Counter) {
	for i, name := range outcomeNames {
		c[i] = requestsTotal.WithLabelValues(name)
	}
	return c
}()

func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := reg.Register(requestsTotal); err != nil {
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
			return fmt.Errorf("registering key_auth metrics: %w", err)
		}
	}
	return nil
}
