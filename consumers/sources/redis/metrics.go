package redis

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// The lookup metrics: lookups by result, and the time of those that asked
// the source.
var (
	lookupsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "source_lookups_total",
		Help: "Key lookups of sources that look keys up one by one (Redis), per source and result: cache_hit, redis_hit, miss (an unknown key, asked), error.",
	}, []string{"source", "result"})
	lookupSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "source_lookup_duration_seconds",
		Help:    "Time of the key lookups that asked the source, per source.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"source"})
)

// lookupMetrics are one Redis source's metrics, resolved once so a lookup only
// adds to a counter.
type lookupMetrics struct {
	name                             string
	cacheHit, redisHit, miss, failed prometheus.Counter
	latency                          prometheus.Observer
}

func newLookupMetrics(name string) lookupMetrics {
	return lookupMetrics{
		name:     name,
		cacheHit: lookupsTotal.WithLabelValues(name, "cache_hit"),
		redisHit: lookupsTotal.WithLabelValues(name, "redis_hit"),
		miss:     lookupsTotal.WithLabelValues(name, "miss"),
		failed:   lookupsTotal.WithLabelValues(name, "error"),
		latency:  lookupSeconds.WithLabelValues(name),
	}
}

func (m lookupMetrics) forget(l sources.Live) {
	if m.name == "" {
		return
	}
	if sources.InUse(m.name, l) {
		return
	}
	lookupsTotal.DeletePartialMatch(prometheus.Labels{"source": m.name})
	lookupSeconds.DeleteLabelValues(m.name)
}
