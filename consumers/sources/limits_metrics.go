package sources

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// The metrics of the limit stores (key_auth.limits.stores.*), labelled by
// store: its kind and where its counts live ("local default", "redis
// 10.0.0.1:6379"), never a scope's name or a key. The handler counts the
// refused requests.
var (
	limitStoreErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "key_auth", Name: "limits_store_errors_total",
		Help: "Admissions and settlements a limits store could not do (unreachable, timed out), per store.",
	}, []string{"store"})
	limitsInFlight = &inFlightCollector{
		desc: prometheus.NewDesc("caddy_key_auth_limits_in_flight",
			"In-flight slots this instance holds, per limits store.", []string{"store"}, nil),
		sources: map[any]inFlightSource{},
	}
)

// RegisterLimitMetrics registers the limit stores' collectors on the
// config's registry (see RegisterMetrics).
func RegisterLimitMetrics(ctx caddy.Context) error {
	return RegisterMetrics(ctx, limitStoreErrors, limitsInFlight)
}

// LimitStoreErrors is the error counter of the store named store.
func LimitStoreErrors(store string) prometheus.Counter {
	return limitStoreErrors.WithLabelValues(store)
}

// TrackInFlight makes the in-flight gauge of the store named store read
// count, on behalf of owner (a store's live state), until UntrackInFlight:
// the slots are counted where they are taken, and read when scraped.
func TrackInFlight(owner any, store string, count func() int64) {
	limitsInFlight.mu.Lock()
	defer limitsInFlight.mu.Unlock()
	limitsInFlight.sources[owner] = inFlightSource{store, count}
}

// UntrackInFlight ends TrackInFlight, and drops the store's error count
// when no other state of that name lives.
func UntrackInFlight(owner any) {
	limitsInFlight.mu.Lock()
	defer limitsInFlight.mu.Unlock()
	s, ok := limitsInFlight.sources[owner]
	if !ok {
		return
	}
	delete(limitsInFlight.sources, owner)
	for _, o := range limitsInFlight.sources {
		if o.store == s.store {
			return
		}
	}
	limitStoreErrors.DeleteLabelValues(s.store)
}

type inFlightSource struct {
	store string
	count func() int64
}

// inFlightCollector reports the in-flight gauge at scrape time, summed per
// store name: two states of one name live for a moment during a reload.
type inFlightCollector struct {
	desc    *prometheus.Desc
	mu      sync.Mutex
	sources map[any]inFlightSource
}

func (c *inFlightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *inFlightCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sums := map[string]int64{}
	for _, s := range c.sources {
		sums[s.store] += s.count()
	}
	c.mu.Unlock()
	for store, n := range sums {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), store)
	}
}
