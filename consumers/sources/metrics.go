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

// storeCollectors are the metrics of every source, registered by Provide.
var storeCollectors = []prometheus.Collector{consumersLoaded, keysLoaded, loadsTotal, loadFailuresTotal, lastLoad}

// RegisterMetrics registers a source's collectors on the registry of the
// config being loaded: each config gets a fresh one, while the collectors,
// kept at package level, and so the counts, live on.
func RegisterMetrics(ctx caddy.Context, collectors ...prometheus.Collector) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return fmt.Errorf("registering consumers source metrics: %w", err)
			}
		}
	}
	return nil
}

// InUse reports whether a source named name (see Name) other than except is
// in use: a source that goes keeps its metrics while another of the same
// name lives.
func InUse(name string, except Live) bool {
	for _, l := range Lives() {
		if l != except && Name(l) == name {
			return true
		}
	}
	return false
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
	if InUse(name, s) { // s has left the pool already
		return
	}
	consumersLoaded.DeleteLabelValues(name)
	keysLoaded.DeleteLabelValues(name)
	lastLoad.DeleteLabelValues(name)
}
