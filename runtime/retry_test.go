package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// attemptLog records when each attempt of a message ran.
type attemptLog struct {
	mu    sync.Mutex
	at    []time.Time
	count []int64
}

func (a *attemptLog) add(m *triggers.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = append(a.at, time.Now())
	a.count = append(a.count, m.DequeueCount)
}

func (a *attemptLog) gaps() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var g []time.Duration
	for i := 1; i < len(a.at); i++ {
		g = append(g, a.at[i].Sub(a.at[i-1]))
	}
	return g
}

// An exponential retry policy spaces the attempts out through the queue's
// visibility delay and sets the number of attempts.
func TestRetryPolicyExponential(t *testing.T) {
	reg := &functions.Registry{}
	var log attemptLog
	functions.Add(reg, "F", functions.QueueTrigger("%TestQueue%"), func(ctx context.Context, s string, m *triggers.Message) error {
		log.add(m)
		return errors.New("still failing")
	}, functions.Retry(functions.ExponentialBackoff(2, time.Second, 2*time.Second)))
	h := startHost(t, reg, hostSetup{queues: func(q *QueueSettings) { q.MaxDequeueCount = 10 }})
	h.send(t, b64("x"))
	h.logs.await(t, "poisoned", 1, 30*time.Second, outcome(OutcomePoisoned))
	h.stop(t)
	g := log.gaps()
	if fmt.Sprint(log.count) != "[1 2 3]" {
		t.Fatalf("attempts %v: maxRetryCount 2 means 3 attempts, whatever maxDequeueCount says", log.count)
	}
	// Storage Queue delays have whole-second granularity.
	if g[0] < 900*time.Millisecond || g[1] < 1900*time.Millisecond {
		t.Errorf("gaps %v, want about 1s then 2s", g)
	}
}

// Permanent errors poison at once; RetryAfter sets the next delay.
func TestPermanentAndRetryAfter(t *testing.T) {
	reg := &functions.Registry{}
	var log attemptLog
	functions.Add(reg, "F", functions.QueueTrigger("%TestQueue%"), func(ctx context.Context, s string, m *triggers.Message) error {
		log.add(m)
		if s == "bad" {
			return functions.Permanent(errors.New("request can never succeed"))
		}
		if m.DequeueCount == 1 {
			return functions.RetryAfter(errors.New("throttled"), 2*time.Second)
		}
		return nil
	})
	h := startHost(t, reg, hostSetup{})
	h.send(t, b64("bad"))
	p := h.logs.await(t, "poisoned", 1, 20*time.Second, outcome(OutcomePoisoned))[0]
	if p["dequeueCount"] != 1.0 || !strings.Contains(fmt.Sprint(p["error"]), "can never succeed") {
		t.Errorf("permanent error: %v", p)
	}
	h.send(t, b64("throttled"))
	h.logs.await(t, "success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	h.stop(t)
	if g := log.gaps(); len(g) != 2 || g[1] < 1900*time.Millisecond {
		t.Errorf("gaps %v: the retry must wait the 2s RetryAfter asked for", g)
	}
}

func TestRetryPolicyConfig(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0",
	  "retry": {"strategy": "exponentialBackoff", "maxRetryCount": 4, "minimumInterval": "00:00:02", "maximumInterval": "00:15:00"},
	  "jobhost": {"functions": {"F": {"retry": {"strategy": "fixedDelay", "maxRetryCount": 1, "delayInterval": "00:00:05"}}}}}`)
	cfg, err := LoadConfig(p, true, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Queues.Retry
	if r == nil || r.Attempts() != 5 || r.Delay(1) != 2*time.Second || r.Delay(3) != 8*time.Second || r.Delay(20) != 15*time.Minute {
		t.Errorf("host retry %+v", r)
	}
	if f := cfg.Functions["f"].Retry; f == nil || f.Delay(3) != 5*time.Second || f.Attempts() != 2 {
		t.Errorf("function retry %+v", f)
	}
	bad := writeHostJSON(t, `{"version": "2.0", "retry": {"strategy": "linear", "maxRetryCount": -5}}`)
	_, err = LoadConfig(bad, true, NewAppSettings(nil))
	got := problems(t, err)
	if len(got) != 2 || !strings.Contains(got[0], "retry.maxRetryCount") || !strings.Contains(got[1], "retry.strategy") {
		t.Errorf("got %q", got)
	}
}
