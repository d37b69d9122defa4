package runtime

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gatherHistograms(t *testing.T, c prometheus.Collector) []*dto.Histogram {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var hs []*dto.Histogram
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			hs = append(hs, m.GetHistogram())
		}
	}
	return hs
}

// TestShardedHistogramMatchesClientGolang: values observed through several
// shards at once (one of them written by two goroutines) are exposed as a client_golang
// histogram exposes the same values: buckets, count and sum, per series,
// and an attached series without observations is there with zeros.
func TestShardedHistogramMatchesClientGolang(t *testing.T) {
	labels := []string{"function", "queue", "broker"}
	sh := newShardedHistogram("h", "help", labels, durationBuckets)
	ref := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h", Help: "help", Buckets: durationBuckets}, labels)
	series := sh.with("F", "q", "memqueue")
	sh.with("Idle", "q2", "memqueue")
	ref.WithLabelValues("Idle", "q2", "memqueue")
	refF := ref.WithLabelValues("F", "q", "memqueue")
	var wg sync.WaitGroup
	var mu sync.Mutex
	shared := series.newShard() // written by two goroutines at once, as a listener's shared shard is
	for w := range 8 {
		shard := shared
		if w > 1 {
			shard = series.newShard()
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 2000 {
				// Bucket bounds exactly, values between and beyond the last.
				var v float64
				switch r.IntN(3) {
				case 0:
					v = durationBuckets[r.IntN(len(durationBuckets))]
				case 1:
					v = r.Float64() * 10
				default:
					v = 3600 + r.Float64()*1000
				}
				shard.observe(v)
				mu.Lock()
				refF.Observe(v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	got, want := gatherHistograms(t, sh), gatherHistograms(t, ref)
	if len(got) != 2 || len(want) != 2 {
		t.Fatalf("%d and %d series, want 2 each", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.GetSampleCount() != w.GetSampleCount() || len(g.GetBucket()) != len(w.GetBucket()) {
			t.Fatalf("series %d: count %d, %d buckets; want %d, %d", i, g.GetSampleCount(), len(g.GetBucket()), w.GetSampleCount(), len(w.GetBucket()))
		}
		if d := g.GetSampleSum() - w.GetSampleSum(); d > 1e-6*w.GetSampleSum() || d < -1e-6*w.GetSampleSum() {
			t.Errorf("series %d: sum %v, want %v", i, g.GetSampleSum(), w.GetSampleSum())
		}
		for j, b := range w.GetBucket() {
			if gb := g.GetBucket()[j]; gb.GetUpperBound() != b.GetUpperBound() || gb.GetCumulativeCount() != b.GetCumulativeCount() {
				t.Errorf("series %d bucket le=%v: %d, want %d", i, b.GetUpperBound(), gb.GetCumulativeCount(), b.GetCumulativeCount())
			}
		}
	}
	if got[0].GetSampleCount() != 16000 {
		t.Errorf("count %d, want 16000", got[0].GetSampleCount())
	}
}
