package runtime

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsPath is where the host's HTTP listener serves Prometheus metrics.
const MetricsPath = "/metrics"

// durationBuckets reach the long functions this host is for: from 5 ms to
// an hour.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// waitBuckets are for the time from enqueue to start: from 1 ms to a day.
var waitBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400}

var attemptBuckets = []float64{1, 2, 3, 4, 5, 10, 20}

// hostMetrics is the host's Prometheus registry. Counters and gauges are
// read from the listeners' atomics when scraped; the histograms are
// observed on the hot path through shards of each worker's own
// (histogram.go), which allocates nothing and shares no cache line.
type hostMetrics struct {
	reg      *prometheus.Registry
	duration *shardedHistogram
	wait     *shardedHistogram
	attempts *shardedHistogram
	handler  http.Handler

	mu        sync.Mutex
	listeners []*listener
	host      *Host
}

// listenerMetrics are one listener's histogram series; zero without
// metrics.
type listenerMetrics struct {
	duration, wait, attempts *histSeries
	shared                   histObserver // for callers without shards of their own: batches and timers
}

// newObserver returns a histObserver with shards of its own (one per
// worker, and the listener's shared one); it records nothing without
// metrics.
func (lm *listenerMetrics) newObserver() histObserver {
	if lm.duration == nil {
		return histObserver{}
	}
	return histObserver{duration: lm.duration.newShard(), wait: lm.wait.newShard(), attempts: lm.attempts.newShard()}
}

func newHostMetrics(h *Host, reg *prometheus.Registry) *hostMetrics {
	labels := []string{"function", "queue", "broker"}
	m := &hostMetrics{reg: reg, host: h,
		duration: newShardedHistogram("jobhost_invocation_duration_seconds",
			"Time from taking a message up to its settlement, by function.", labels, durationBuckets),
		wait: newShardedHistogram("jobhost_message_wait_seconds",
			"Time from enqueue to the start of the first attempt, where the broker gives an enqueue time.", labels, waitBuckets),
		attempts: newShardedHistogram("jobhost_message_delivery_attempts",
			"The delivery attempt (dequeue count) of each invocation.", labels, attemptBuckets),
	}
	reg.MustRegister(m.duration, m.wait, m.attempts, (*metricsCollector)(m))
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
	return m
}

// newRegistry is the default registry: the host's metrics plus the Go and
// process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// attach resolves l's histogram series and adds l to what is scraped.
func (m *hostMetrics) attach(l *listener) {
	lv := []string{l.fc.Name(), l.fc.Queue, l.broker}
	lm := listenerMetrics{duration: m.duration.with(lv...), wait: m.wait.with(lv...), attempts: m.attempts.with(lv...)}
	lm.shared = lm.newObserver()
	l.metrics = lm
	m.mu.Lock()
	m.listeners = append(m.listeners, l)
	m.mu.Unlock()
}

func (m *hostMetrics) snapshot() []*listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*listener(nil), m.listeners...)
}

// metricsCollector reads the listeners' counters when scraped.
type metricsCollector hostMetrics

var (
	lblFn         = []string{"function", "queue", "broker"}
	descReceived  = prometheus.NewDesc("jobhost_messages_received_total", "Messages received from the broker.", lblFn, nil)
	descInvoked   = prometheus.NewDesc("jobhost_invocations_total", "Invocations by outcome: succeeded, failed (to be retried), poisoned, cancelled (by the shutdown; given back), operation_canceled.", append(lblFn[:3:3], "outcome"), nil)
	descInFlight  = prometheus.NewDesc("jobhost_invocations_in_flight", "Invocations running now.", lblFn, nil)
	descLimit     = prometheus.NewDesc("jobhost_concurrency_limit", "How many invocations may run at once (batchSize + newBatchThreshold).", lblFn, nil)
	descPoison    = prometheus.NewDesc("jobhost_poison_moves_total", "Messages moved to the poison destination.", lblFn, nil)
	descRecvErr   = prometheus.NewDesc("jobhost_receive_errors_total", "Polls that failed.", lblFn, nil)
	descSettleErr = prometheus.NewDesc("jobhost_settle_errors_total", "Completes, retries, releases and poison moves that failed.", lblFn, nil)
	descRenewals  = prometheus.NewDesc("jobhost_lease_renewals_total", "Lease renewals that succeeded.", lblFn, nil)
	descRenewErr  = prometheus.NewDesc("jobhost_lease_renewal_errors_total", "Lease renewals that failed.", lblFn, nil)
	descLost      = prometheus.NewDesc("jobhost_leases_lost_total", "Messages whose lease was lost before settlement (another receiver may have them).", lblFn, nil)
	descDepth     = prometheus.NewDesc("jobhost_queue_depth_messages", "Messages in the queue, as last sampled in the background (brokers that can count).", lblFn, nil)
	descUp        = prometheus.NewDesc("jobhost_listener_up", "1 when the listener's last poll reached the broker, else 0.", lblFn, nil)
	descCallbacks = prometheus.NewDesc("jobhost_callbacks_total", "Completion callbacks by outcome: delivered, failed, refused, dropped.", []string{"outcome"}, nil)
	descOps       = prometheus.NewDesc("jobhost_operations", "Operation records by state, as last counted in the background (stores that can count).", []string{"state"}, nil)
	descBuild     = prometheus.NewDesc("jobhost_build_info", "The jobhost build: 1, with the version, the commit and the Go version as labels.", []string{"version", "revision", "goversion"}, nil)
)

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descInvoked, descInFlight, descLimit, descPoison, descRecvErr,
		descSettleErr, descRenewals, descRenewErr, descLost, descDepth, descUp, descCallbacks, descOps, descBuild} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*hostMetrics)(c)
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	for _, l := range m.snapshot() {
		s := &l.stats
		lv := []string{l.fc.Name(), l.fc.Queue, l.broker}
		counter(descReceived, s.received.Load(), lv...)
		for _, o := range []struct {
			name string
			v    uint64
		}{{OutcomeSucceeded, s.succeeded.Load()}, {OutcomeFailed, s.failed.Load()}, {OutcomePoisoned, s.poisoned.Load()},
			{OutcomeCancelled, s.cancelled.Load()}, {"operation_canceled", s.opCanceled.Load()}} {
			counter(descInvoked, o.v, append(lv[:3:3], o.name)...)
		}
		gauge(descInFlight, float64(l.running()), lv...)
		gauge(descLimit, float64(l.fc.Queues.BatchSize+l.fc.Queues.NewBatchThreshold), lv...)
		counter(descPoison, s.poisonMoves.Load(), lv...)
		counter(descRecvErr, s.receiveErrors.Load(), lv...)
		counter(descSettleErr, s.settleErrors.Load(), lv...)
		counter(descRenewals, s.renewals.Load(), lv...)
		counter(descRenewErr, s.renewalErrors.Load(), lv...)
		counter(descLost, s.leasesLost.Load(), lv...)
		if d := s.depth.Load(); d >= 0 && s.depthAt.Load() != 0 {
			gauge(descDepth, float64(d), lv...)
		}
		up := 0.0
		if l.stats.stateName() == "listening" {
			up = 1
		}
		gauge(descUp, up, lv...)
	}
	if h := m.host; h != nil {
		if cb := h.callbacks; cb != nil {
			for _, o := range cb.counts() {
				counter(descCallbacks, o.n, o.outcome)
			}
		}
		if h.records != nil {
			for state, n := range h.records.stateCounts() {
				gauge(descOps, float64(n), state)
			}
		}
	}
	v := Version()
	gauge(descBuild, 1, v.Version, v.Revision, v.GoVersion)
}
