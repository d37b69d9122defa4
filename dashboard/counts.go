package dashboard

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/status"
)

// Bounds of the count cache.
const (
	// countTimeout bounds one background count.
	countTimeout = 30 * time.Second
	// firstWait is how long a page waits for a count it has never had (or
	// that an action just made stale) before it renders without it.
	firstWait = 2 * time.Second
)

// countCache keeps counts that are too dear to take for every page (the
// messages of a poison queue, operations by status): a page reads the
// cached value, and a stale one is counted again in the background, one
// count per key at a time, so however many pages are open a key costs one
// count per interval. No goroutine outlives its count.
type countCache struct {
	interval time.Duration
	now      func() time.Time
	log      *zap.Logger

	mu      sync.Mutex
	entries map[string]*countEntry
}

type countEntry struct {
	val     any
	err     string // the last count's failure, redacted ("" none)
	cause   error  // the last count's failure
	at      time.Time
	has     bool
	stale   bool          // invalidated: count again at once
	gen     int           // invalidations so far
	running chan struct{} // closed when the running count ends; nil when none runs
}

// counted is a cached value as a page shows it.
type counted struct {
	Val any
	At  time.Time
	// Err is why the last count failed (the value, if any, is older);
	// Cause is that error.
	Err   string
	Cause error
	OK    bool
}

func newCountCache(interval time.Duration, now func() time.Time, log *zap.Logger) *countCache {
	return &countCache{interval: interval, now: now, log: log, entries: map[string]*countEntry{}}
}

// get returns key's cached value, starting a count with fetch when it is
// missing, stale or older than the interval. When there is no value yet, or
// it was invalidated, it waits for a count started after that, up to
// firstWait (or ctx).
func (c *countCache) get(ctx context.Context, key string, fetch func(context.Context) (any, error)) counted {
	deadline := time.NewTimer(firstWait)
	defer deadline.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		e = &countEntry{}
		c.entries[key] = e
	}
	for {
		wait := e.at.IsZero() || e.stale // never counted, or invalidated
		if e.running == nil && (wait || c.now().Sub(e.at) >= c.interval) {
			e.running = make(chan struct{})
			go c.count(key, e, e.running, e.gen, fetch)
		}
		if !wait {
			break
		}
		running := e.running
		c.mu.Unlock()
		timedOut := false
		select {
		case <-running:
		case <-deadline.C:
			timedOut = true
		case <-ctx.Done():
			timedOut = true
		}
		c.mu.Lock()
		if timedOut {
			break
		}
		// A count ended; if it began before an invalidation, count again.
	}
	return counted{Val: e.val, At: e.at, Err: e.err, Cause: e.cause, OK: e.has}
}

func (c *countCache) count(key string, e *countEntry, done chan struct{}, gen int, fetch func(context.Context) (any, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), countTimeout)
	defer cancel()
	var (
		v   any
		err error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				c.log.Error("dashboard: a count panicked", zap.String("count", key), zap.Any("panic", p))
				err = errPanicked
			}
		}()
		v, err = fetch(ctx)
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	e.at, e.running = c.now(), nil
	if e.gen == gen {
		e.stale = false
	}
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		c.log.Warn("dashboard: counting failed", zap.String("count", key), zap.Error(err))
	}
	if err != nil {
		e.err, e.cause = redact.All(err.Error()), err
	} else {
		e.val, e.err, e.cause, e.has = v, "", nil, true
	}
	close(done)
}

// invalidate makes the next get of key count again and wait for it (after
// an action changed what it counts).
func (c *countCache) invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		e.stale = true
		e.gen++
	}
}

// sampler computes each function's rate of finished invocations from the
// deltas of its counters, sampled when pages are rendered (at most one
// sample a second, kept for rateWindow).
type sampler struct {
	now func() time.Time

	mu      sync.Mutex
	samples map[string][]sample
}

type sample struct {
	at   time.Time
	done uint64
}

// rateWindow is the span rates are averaged over.
const rateWindow = time.Minute

func newSampler(now func() time.Time) *sampler {
	return &sampler{now: now, samples: map[string][]sample{}}
}

// observe records fs's counters and returns each function's rate, in
// invocations finished a second; a function seen for under a second has
// none (ok false).
func (s *sampler) observe(fs []status.Function) map[string]rate {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]rate, len(fs))
	for _, f := range fs {
		done := f.Succeeded + f.Failed + f.Poisoned + f.Cancelled
		h := s.samples[f.Name]
		if n := len(h); n > 0 && done < h[n-1].done {
			h = nil // the counters restarted
		}
		// At most one sample a second: a newer one replaces the last, never
		// the first (the base the rate is measured from).
		if n := len(h); n >= 2 && now.Sub(h[n-2].at) < time.Second {
			h[n-1] = sample{now, done}
		} else {
			h = append(h, sample{now, done})
		}
		// Keep one sample at or before the window's start as the base.
		for len(h) > 2 && now.Sub(h[1].at) >= rateWindow {
			h = h[1:]
		}
		s.samples[f.Name] = h
		first := h[0]
		if dt := now.Sub(first.at); dt >= time.Second {
			out[f.Name] = rate{PerSecond: float64(done-first.done) / dt.Seconds(), OK: true}
		}
	}
	return out
}

// rate is a function's rate as the overview shows it.
type rate struct {
	PerSecond float64
	OK        bool
}
