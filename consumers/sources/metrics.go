package sources

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// The store metrics are labelled by source (its kind and location), so they
// grow with the sources configured, never with the consumers. They live at
// package level so their counts survive config reloads.
var (
	consumersLoaded = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "consumers",
		Help: "Consumers loaded, per source.",
	}, []string{"source"})
	keysLoaded = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "keys",
		Help: "Keys loaded, per source.",
	}, []string{"source"})
	loadsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "source_loads_total",
		Help: "Consumer sets loaded, per source.",
	}, []string{"source"})
	loadFailuresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "source_load_failures_total",
		Help: "Failed attempts to load a source, per source.",
	}, []string{"source"})
	lastLoad = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "source_last_load_timestamp_seconds",
		Help: "Unix time of the last good load, per source.",
	}, []string{"source"})
)

// registerMetrics registers the store metrics on the registry of the config
// being loaded: each config gets a fresh one, while the collectors, and so
// the counts, live on.
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{consumersLoaded, keysLoaded, loadsTotal, loadFailuresTotal, lastLoad, lookupsTotal, lookupSeconds} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return fmt.Errorf("registering store metrics: %w", err)
			}
		}
	}
	return nil
}

// storeMetrics records the stores' loads.
var storeMetrics storeCollector

type storeCollector struct{}

func (storeCollector) loaded(s *Store, set *consumers.Set, at time.Time) {
	name := s.Name()
	c, k := set.Len()
	consumersLoaded.WithLabelValues(name).Set(float64(c))
	keysLoaded.WithLabelValues(name).Set(float64(k))
	loadsTotal.WithLabelValues(name).Inc()
	lastLoad.WithLabelValues(name).Set(float64(at.UnixNano()) / 1e9)
}

func (storeCollector) failed(s *Store) { loadFailuresTotal.WithLabelValues(s.Name()).Inc() }

// forget drops the gauges of a source no config uses any more. A reload that
// changes a source's settings but not its kind and location makes a new
// store under the same name before the old one goes: its gauges stay.
func (storeCollector) forget(s *Store) {
	name := s.Name()
	for _, o := range Stores() { // s has left the pool already
		if o != s && o.Name() == name {
			return
		}
	}
	consumersLoaded.DeleteLabelValues(name)
	keysLoaded.DeleteLabelValues(name)
	lastLoad.DeleteLabelValues(name)
}

// The Looker metrics: lookups by result, and the time of those that asked
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

// lookupMetrics are one Looker's metrics, resolved once so a lookup only
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

func (m lookupMetrics) forget() {
	if m.name == "" {
		return
	}
	for _, o := range Stores() {
		if o.Name() == m.name {
			return
		}
	}
	lookupsTotal.DeletePartialMatch(prometheus.Labels{"source": m.name})
	lookupSeconds.DeleteLabelValues(m.name)
}
