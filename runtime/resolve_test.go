package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

func noop(ctx context.Context, s string, m *triggers.Message) error { return nil }

func TestResolveURLTriggers(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0",
	  "extensions": {
	    "queues": {"batchSize": 4},
	    "pubsub": {"batchSize": 8, "maxDequeueCount": 7, "visibilityTimeout": "00:00:02"},
	    "serviceBus": {"maxConcurrentCalls": 40, "maxAutoLockRenewalDuration": "00:02:00", "prefetchCount": 10,
	                   "sessionHandlerOptions": {"maxConcurrentSessions": 4}}},
	  "jobhost": {"functions": {"Rabbit": {"poison": "dead-orders", "maxDequeueCount": 2}}}}`)
	settings := NewAppSettings(map[string]string{"OrdersSubscription": "rabbit://orders"})
	cfg, err := LoadConfig(p, true, settings)
	if err != nil {
		t.Fatal(err)
	}
	reg := &functions.Registry{}
	functions.Add(reg, "Storage", functions.QueueTrigger("orders"), noop)
	functions.Add(reg, "Rabbit", functions.SubscriptionTrigger("%OrdersSubscription%"), noop)
	functions.Add(reg, "Bus", functions.SubscriptionTrigger("azuresb://orders?subscription=jobhost").WithConnection("Bus"), noop)
	functions.Add(reg, "Mem", functions.SubscriptionTrigger("mem://orders"), noop, functions.BatchSize(1))
	funcs, _, err := ResolveFunctions(cfg, reg, settings)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*FunctionConfig{}
	for _, f := range funcs {
		by[f.Name()] = f
	}
	if s := by["Storage"]; s.URL != nil || s.Queues.BatchSize != 4 || s.Queues.MessageEncoding != bindings.Base64 || s.Connection != "Storage" {
		t.Errorf("storage: %+v", s)
	}
	r := by["Rabbit"]
	if r.URL == nil || r.Queue != "rabbit://orders" || r.Queues.BatchSize != 8 || r.Queues.MaxDequeueCount != 2 ||
		r.Queues.VisibilityTimeout != 2*time.Second || r.Queues.MessageEncoding != bindings.None || r.Poison != "dead-orders" || r.Connection != "" {
		t.Errorf("rabbit: %+v", r)
	}
	b := by["Bus"]
	if b.Queues.BatchSize+b.Queues.NewBatchThreshold != 40 || b.Queues.MaxRenewal != 2*time.Minute || b.Queues.MaxDequeueCount != 10 || b.Connection != "Bus" {
		t.Errorf("service bus: %+v", b.Queues)
	}
	if m := by["Mem"]; m.Queues.BatchSize != 1 {
		t.Errorf("mem: %+v", m.Queues)
	}
}

func TestResolveURLProblems(t *testing.T) {
	reg := &functions.Registry{}
	functions.Add(reg, "A", functions.SubscriptionTrigger("gopher://x"), noop)
	functions.Add(reg, "B", functions.SubscriptionTrigger("%Unset%"), noop)
	_, _, err := ResolveFunctions(DefaultConfig(), reg, NewAppSettings(nil))
	got := problems(t, err)
	if len(got) != 2 || !strings.Contains(got[0], `unknown scheme "gopher"`) || !strings.Contains(got[1], "Unset") {
		t.Errorf("got %q", got)
	}
}

func TestServiceBusAutoCompleteFalseRejected(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "extensions": {"serviceBus": {"autoCompleteMessages": false, "maxConcurrentCalls": 0}}}`)
	_, err := LoadConfig(p, true, NewAppSettings(nil))
	got := problems(t, err)
	if len(got) != 2 || !strings.Contains(got[0], "extensions.serviceBus.autoCompleteMessages") || !strings.Contains(got[1], "maxConcurrentCalls") {
		t.Errorf("got %q", got)
	}
}
