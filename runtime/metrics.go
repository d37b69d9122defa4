package runtime

import (
	"net/http"
	"sync"
	"time"

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
// observed on the hot path through children resolved once per listener,
// which allocates nothing.
type hostMetrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
	attempts *prometheus.HistogramVec
	handler  http.Handler

	mu        sync.Mutex
	listeners []*listener
	host      *Host
}

// listenerMetrics are one listener's histogram children.
type listenerMetrics struct {
	duration, wait, attempts prometheus.Observer
}

func newHostMetrics(h *Host, reg *prometheus.Registry) *hostMetrics {
	labels := []string{"function", "queue", "broker"}
	m := &hostMetrics{reg: reg, host: h,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jobhost_invocation_duration_seconds",
			Help: "Time from taking a message up to its settlement, by function.", Buckets: durationBuckets}, labels),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jobhost_message_wait_seconds",
			Help: "Time from enqueue to the start of the first attempt, where the broker gives an enqueue time.", Buckets: waitBuckets}, labels),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jobhost_message_delivery_attempts",
			Help: "The delivery attempt (dequeue count) of each invocation.", Buckets: attemptBuckets}, labels),
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

// attach resolves l's histogram children and adds l to what is scraped.
func (m *hostMetrics) attach(l *listener) {
	lv := []string{l.fc.Name(), l.fc.Queue, l.broker}
	l.metrics = listenerMetrics{
		duration: m.duration.WithLabelValues(lv...),
		wait:     m.wait.WithLabelValues(lv...),
		attempts: m.attempts.WithLabelValues(lv...),
	}
	m.mu.Lock()
	m.listeners = append(m.listeners, l)
	m.mu.Unlock()
}

func (m *hostMetrics) snapshot() []*listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*listener(nil), m.listeners...)
}

// observe records one finished invocation.
func (lm *listenerMetrics) observe(start time.Time, insertion time.Time, dequeueCount int64, d time.Duration) {
	if lm.duration == nil {
		return
	}
	lm.duration.Observe(d.Seconds())
	lm.attempts.Observe(float64(dequeueCount))
	if dequeueCount == 1 && !insertion.IsZero() {
		if w := start.Sub(insertion); w >= 0 {
			lm.wait.Observe(w.Seconds())
		}
	}
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
