package runtime

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// shardedHistogram is a Prometheus histogram family observed through
// shards: each worker writes shards of its own, so workers on different
// cores do not contend for the same cache lines on every invocation (a
// client_golang histogram is one set of atomics per series), and a scrape
// adds the shards up. A series is exposed as soon as its listener is
// attached, with zero counts, as a HistogramVec child is.
type shardedHistogram struct {
	desc  *prometheus.Desc
	upper []float64 // bucket upper bounds, ascending; +Inf is implicit

	mu     sync.Mutex
	series map[string]*histSeries // by label values joined with \xff
}

// maxBuckets bounds the buckets of a sharded histogram (a shard is one
// fixed-size allocation).
const maxBuckets = 23

func newShardedHistogram(name, help string, labels []string, upper []float64) *shardedHistogram {
	if len(upper) > maxBuckets {
		panic("runtime: too many histogram buckets")
	}
	return &shardedHistogram{desc: prometheus.NewDesc(name, help, labels, nil), upper: upper,
		series: map[string]*histSeries{}}
}

// histSeries is one labelled series and its shards.
type histSeries struct {
	h      *shardedHistogram
	labels []string

	mu     sync.Mutex
	shards []*histShard
}

// histShard holds observations: counts per bucket (the last is +Inf) and
// the sum as float64 bits. Every field is atomic, so a shared shard is
// safe for concurrent observers; a worker's own is written by it alone.
type histShard struct {
	upper  []float64
	counts [maxBuckets + 1]atomic.Uint64
	sum    atomic.Uint64
}

// with returns the series for label values lv, creating it when missing.
func (h *shardedHistogram) with(lv ...string) *histSeries {
	key := strings.Join(lv, "\xff")
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.series[key]; ok {
		return s
	}
	s := &histSeries{h: h, labels: lv}
	h.series[key] = s
	return s
}

// newShard adds a shard to s and returns it.
func (s *histSeries) newShard() *histShard {
	sh := &histShard{upper: s.h.upper}
	s.mu.Lock()
	s.shards = append(s.shards, sh)
	s.mu.Unlock()
	return sh
}

// observe records v.
func (sh *histShard) observe(v float64) {
	i := 0
	for i < len(sh.upper) && v > sh.upper[i] {
		i++
	}
	sh.counts[i].Add(1)
	for {
		old := sh.sum.Load()
		if sh.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Describe implements prometheus.Collector.
func (h *shardedHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector: each series' shards added up.
// The count is the sum of the bucket counts read, so a scrape during
// observations is consistent in itself.
func (h *shardedHistogram) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	series := slices.Collect(maps.Values(h.series)) // the registry sorts what it gathers
	h.mu.Unlock()
	for _, s := range series {
		s.mu.Lock()
		shards := append([]*histShard(nil), s.shards...)
		s.mu.Unlock()
		counts := make([]uint64, len(h.upper)+1)
		var sum float64
		for _, sh := range shards {
			for i := range counts {
				counts[i] += sh.counts[i].Load()
			}
			sum += math.Float64frombits(sh.sum.Load())
		}
		buckets := make(map[float64]uint64, len(h.upper))
		var cum uint64
		for i, u := range h.upper {
			cum += counts[i]
			buckets[u] = cum
		}
		cum += counts[len(h.upper)]
		ch <- prometheus.MustNewConstHistogram(h.desc, cum, sum, buckets, s.labels...)
	}
}

// histObserver records finished invocations into one set of shards; its zero
// value records nothing (a host without metrics).
type histObserver struct{ duration, wait, attempts *histShard }

// observe records one finished invocation.
func (o *histObserver) observe(start time.Time, insertion time.Time, dequeueCount int64, d time.Duration) {
	if o.duration == nil {
		return
	}
	o.duration.observe(d.Seconds())
	o.attempts.observe(float64(dequeueCount))
	if dequeueCount == 1 && !insertion.IsZero() {
		if w := start.Sub(insertion); w >= 0 {
			o.wait.observe(w.Seconds())
		}
	}
}
