package runtime

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/status"
	_ "github.com/jobhost/jobhost/timer/timerblob" // the blob store, as a worker imports it
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// occurrences counts the runs of a timer function by occurrence, across
// hosts.
type occurrences struct {
	mu   sync.Mutex
	runs map[time.Time]int
	byID map[string]int // host → runs
	seen chan struct{}
}

func newOccurrences() *occurrences {
	return &occurrences{runs: map[time.Time]int{}, byID: map[string]int{}, seen: make(chan struct{}, 1000)}
}

func (o *occurrences) fire(host string) functions.TimerHandler {
	return func(ctx context.Context, info functions.TimerInfo) error {
		o.mu.Lock()
		o.runs[info.Next]++
		o.byID[host]++
		o.mu.Unlock()
		o.seen <- struct{}{}
		return nil
	}
}

func timerHost(t *testing.T, o *occurrences, host string, settings map[string]string, tune func(*Config)) (*Host, context.CancelFunc, chan error) {
	t.Helper()
	reg := &functions.Registry{}
	functions.AddTimer(reg, "Tick", functions.TimerTrigger("%TickSchedule%"), o.fire(host))
	reg.SettingDefault("TickSchedule", "*/1 * * * * *")
	cfg := DefaultConfig()
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.HostID = "timer-test"
	if tune != nil {
		tune(cfg)
	}
	h, err := New(Options{Registry: reg, Config: cfg, Settings: NewAppSettings(settings), Logs: discardLogs(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	return h, cancel, done
}

// A timer function runs through the host like any function: its
// occurrences are invocations with a completion line, counted in the
// metrics and shown as a function whose broker is "timer".
func TestTimerFunctionRunsOnHost(t *testing.T) {
	o := newOccurrences()
	h, cancel, done := timerHost(t, o, "a", nil, func(c *Config) { c.Timers.Store = "memory" })
	// The function signals before it returns, and the host counts an
	// occurrence after that. Occurrences run one after another, so the
	// fourth signal means the first three are counted.
	for range 4 {
		select {
		case <-o.seen:
		case <-time.After(10 * time.Second):
			t.Fatal("the timer did not fire four times in 10 s")
		}
	}
	fs := h.Status().Functions()
	if len(fs) != 1 || fs[0].Broker != "timer" || fs[0].State != status.Listening || fs[0].Succeeded < 3 || fs[0].PoisonAdmin {
		t.Errorf("Functions() = %+v", fs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for at, n := range o.runs {
		if n != 1 {
			t.Errorf("occurrence %s ran %d times", at, n)
		}
	}
}

// Two hosts with one host id on Azurite's blob service: each occurrence
// runs once, on one of them; when the holder stops, the other takes over.
func TestTimerOncePerOccurrenceAcrossHosts(t *testing.T) {
	srv := azuritetest.SharedBlob(t)
	settings := map[string]string{"AzureWebJobsStorage": srv.ConnectionString}
	tune := func(c *Config) {
		c.Timers.LeaseDuration = 15 * time.Second // the shortest blob lease
		c.Timers.AcquireInterval = time.Second
		c.HostID = "timer-test-" + time.Now().Format("150405")
	}
	o := newOccurrences()
	_, cancelA, doneA := timerHost(t, o, "a", settings, tune)
	_, cancelB, doneB := timerHost(t, o, "b", settings, tune)
	wait := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for range n {
			select {
			case <-o.seen:
			case <-deadline:
				t.Fatalf("fewer than %d runs within %s", n, within)
			}
		}
	}
	wait(6, 40*time.Second)
	o.mu.Lock()
	leader := "a"
	if o.byID["b"] > 0 {
		leader = "b"
	}
	o.mu.Unlock()
	// The leader stops (releasing its lease as a host does at shutdown);
	// the other fires the next occurrences.
	rest := doneB
	if leader == "a" {
		cancelA()
		<-doneA
	} else {
		cancelB()
		<-doneB
		rest = doneA
	}
	o.mu.Lock()
	before := o.byID
	o.byID = map[string]int{}
	o.mu.Unlock()
	wait(3, 40*time.Second)
	cancelA()
	cancelB()
	select {
	case <-rest:
	case <-time.After(30 * time.Second):
		t.Fatal("a host did not stop")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for at, n := range o.runs {
		if n != 1 {
			t.Errorf("occurrence %s ran %d times; want once across both hosts", at.Format(time.RFC3339), n)
		}
	}
	if len(before) != 1 {
		t.Errorf("before the stop both hosts fired: %v", before)
	}
	if o.byID[leader] != 0 {
		t.Errorf("the stopped host fired again: %v", o.byID)
	}
}
