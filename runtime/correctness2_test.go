package runtime

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// TestPoisonQueueNameChecked: a Storage Queue with no valid poison queue
// (its name too long for "-poison", or itself a poison queue) is a problem
// at start unless jobhost.functions.<name>.poison names one.
func TestPoisonQueueNameChecked(t *testing.T) {
	long := strings.Repeat("q", 57)
	for _, tc := range []struct {
		queue, override, want, poison string
	}{
		{queue: long, want: `"` + long + `-poison" is longer than 63 characters`},
		{queue: "orders-poison", want: "the queue is itself a poison queue"},
		{queue: long, override: "Long-Poison", poison: "long-poison"},
		{queue: "orders-poison", override: "orders-poison-2", poison: "orders-poison-2"},
		{queue: "orders", poison: "orders-poison"},
		{queue: "orders", override: "Bad--Name", want: `"bad--name"`},
		{queue: "orders", override: "orders", want: "must be another queue"},
	} {
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger(tc.queue), noop)
		cfg := DefaultConfig()
		if tc.override != "" {
			cfg.Functions = map[string]FunctionOverrides{"f": {Poison: &tc.override}}
		}
		funcs, _, err := ResolveFunctions(cfg, reg, NewAppSettings(nil))
		if tc.want != "" {
			got := problems(t, err)
			if len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], "function F: poison") {
				t.Errorf("queue %s, poison %q: problems %q, want one naming %q", tc.queue, tc.override, got, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("queue %s, poison %q: %v", tc.queue, tc.override, err)
			continue
		}
		if funcs[0].Poison != tc.poison {
			t.Errorf("queue %s, poison %q: resolved poison queue %q, want %q", tc.queue, tc.override, funcs[0].Poison, tc.poison)
		}
	}
}

// TestRunRefusesTriggerWithoutPoison: a URL trigger whose driver has no
// poison destination is refused at start instead of retrying a failing
// message for ever.
func TestRunRefusesTriggerWithoutPoison(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.SubscriptionTrigger("memqueue://nopoison"), noop)
		d := newFakeDriver()
		d.poison = ""
		c := DefaultConfig()
		h, err := New(Options{Registry: reg, Config: c, Settings: NewAppSettings(nil), Logs: discardLogs(t),
			Open: func(context.Context, *FunctionConfig) (triggers.Driver, error) { return d, nil }})
		if err != nil {
			t.Fatal(err)
		}
		err = h.Run(context.Background())
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "no poison destination") || !strings.Contains(err.Error(), "jobhost.functions.F.poison") {
			t.Fatalf("Run = %v, want a *ConfigError naming the missing poison destination", err)
		}
	})
}

// TestOutputThatCannotBeSentPoisonsWithoutRunning: an output whose target
// cannot be resolved from the trigger message (a missing {property}, a name
// that is no valid queue) poisons the message at once, without running the
// function; one over the Storage Queue limit poisons it after the first
// attempt instead of running the body again and again.
func TestOutputThatCannotBeSentPoisonsWithoutRunning(t *testing.T) {
	for _, tc := range []struct {
		name, output, body string
		result             string
		runs               int32
	}{
		{name: "missing property", output: "{missing}", body: `{"n":1}`, runs: 0},
		{name: "invalid queue name", output: "{queue}", body: `{"queue":"Not A Queue!"}`, runs: 0},
		{name: "over 64 KiB", output: "results", body: `{"n":1}`, result: strings.Repeat("x", 70*1024), runs: 1},
	} {
		synctest.Test(t, func(t *testing.T) {
			var runs atomic.Int32
			reg := &functions.Registry{}
			functions.AddResult(reg, "F", functions.QueueTrigger("fake-q"), tc.output,
				func(context.Context, []byte, *triggers.Message) (string, error) {
					runs.Add(1)
					return tc.result, nil
				}, functions.MaxDequeueCount(5))
			d := newFakeDriver()
			d.send(tc.body)
			h := runFakeHost(t, reg, d, nil)
			h.logs.await(t, "poisoned", 1, time.Minute, outcome(OutcomePoisoned))
			h.stop()
			if got := runs.Load(); got != tc.runs {
				t.Errorf("%s: the function ran %d times, want %d", tc.name, got, tc.runs)
			}
			if d.count("retry") != 0 || d.count("deadletter") != 1 {
				t.Errorf("%s: calls %v, want one dead-letter and no retry", tc.name, d.callLog())
			}
		})
	}
}

// countingPublishers is a test scheme whose publishers count opens and
// closes.
type countingPublishers struct {
	mu            sync.Mutex
	open, maxOpen int
	opened        int
	failFirst     bool
}

func (c *countingPublishers) openPub(context.Context, *url.URL, triggers.OpenOptions) (triggers.Publisher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failFirst {
		c.failFirst = false
		return nil, errors.New("transient: broker busy")
	}
	c.opened++
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	return &countedPub{c: c}, nil
}

type countedPub struct {
	c      *countingPublishers
	closed bool
}

func (p *countedPub) Publish(context.Context, []byte, map[string]string) (string, error) {
	return "", nil
}
func (p *countedPub) Close() error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.c.open--
	}
	return nil
}

// TestOutputPublishersBounded: outputs keep at most client.MaxPublishers open, and
// a failed open is tried again on the next send.
func TestOutputPublishersBounded(t *testing.T) {
	cp := &countingPublishers{failFirst: true}
	restore := triggers.Replace(triggers.Scheme{Name: "countpub",
		Subscription: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Driver, error) {
			return nil, errors.New("unused")
		},
		Publisher: cp.openPub})
	defer restore()
	o := testOutputs(t, NewAppSettings(nil))
	ctx := context.Background()
	p := planned{target: target{output: "out", name: "countpub://t0"}, body: []byte("x")}
	if err := o.publish(ctx, p); err == nil {
		t.Fatal("the first open was to fail")
	}
	if err := o.publish(ctx, p); err != nil {
		t.Fatalf("a failed open was kept: %v", err)
	}
	const targets = client.MaxPublishers + 44
	for i := range targets {
		p.name = "countpub://t" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + "-" + time.Duration(i).String()
		if err := o.publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.maxOpen > client.MaxPublishers {
		t.Errorf("%d publishers open at once, want at most %d", cp.maxOpen, client.MaxPublishers)
	}
	if cp.open != 0 {
		t.Errorf("%d publishers left open after close", cp.open)
	}
}

// TestOutputQueueCreateRetried: a Storage output queue whose create failed
// once is created on the next send, not failed until restart.
func TestOutputQueueCreateRetried(t *testing.T) {
	var creates, sends atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut: // create queue
			if creates.Add(1) == 1 {
				w.Header().Set("x-ms-error-code", "AuthorizationFailure")
				w.WriteHeader(http.StatusForbidden)
				return
			}
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodPost: // enqueue
			sends.Add(1)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage><MessageId>1</MessageId><PopReceipt>r</PopReceipt></QueueMessage></QueueMessagesList>`))
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	settings := NewAppSettings(map[string]string{"AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;QueueEndpoint=" + srv.URL + "/devstoreaccount1"})
	o := testOutputs(t, settings)
	p := planned{target: target{output: "out", name: "results", connection: "Storage", storage: true}, body: []byte("x")}
	ctx := context.Background()
	if err := o.publish(ctx, p); err == nil {
		t.Fatal("the first create was to fail")
	}
	if err := o.publish(ctx, p); err != nil {
		t.Fatalf("after one failed create: %v", err)
	}
	if creates.Load() != 2 || sends.Load() != 1 {
		t.Errorf("creates %d, sends %d; want 2 and 1", creates.Load(), sends.Load())
	}
}

// TestMissingQueueHintNamesTheSection: the hint for a missing queue names
// the host.json section that applies to the trigger.
func TestMissingQueueHintNamesTheSection(t *testing.T) {
	for trigger, want := range map[string]string{
		"fake-q":          "extensions.queues.createQueues",
		"memqueue://gone": "extensions.pubsub.createQueues",
	} {
		synctest.Test(t, func(t *testing.T) {
			reg := &functions.Registry{}
			functions.Add(reg, "F", functions.SubscriptionTrigger(trigger), noop)
			d := newFakeDriver()
			d.notFound = true
			h := runFakeHost(t, reg, d, nil)
			got := h.logs.await(t, "the missing-queue warning", 1, time.Minute, msgContains("queue does not exist"))
			h.stop()
			if msg := got[0]["msg"].(string); !strings.Contains(msg, want) {
				t.Errorf("%s: %q, want it to name %s", trigger, msg, want)
			}
		})
	}
}

// testOutputs returns the outputs of a host with no functions.
func testOutputs(t *testing.T, settings *AppSettings) *outputs {
	t.Helper()
	o, err := newOutputs(DefaultConfig(), settings, newAzureOpener(settings), nil,
		func(string, string) bindings.Encoding { return bindings.Base64 }, func(string, string) {})
	if err != nil {
		t.Fatal(err)
	}
	return o
}
