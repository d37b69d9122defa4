package runtime

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// opsBroker is a real broker and store for the cancel tests.
type opsBroker struct {
	trigger  string
	settings map[string]string
	store    operations.Store
}

func opsBrokers(t *testing.T) map[string]func(t *testing.T) opsBroker {
	return map[string]func(t *testing.T) opsBroker{
		// Storage Queues with records on Azurite's table service, as a
		// deployment on Azure keeps them.
		"azurite": func(t *testing.T) opsBroker {
			q := azuritetest.Shared(t)
			tbl := azuritetest.SharedTable(t)
			store, err := tablestore.FromConnectionString(tbl.ConnectionString, tablestore.Options{Table: tbl.NewTableName(t)})
			if err != nil {
				t.Fatal(err)
			}
			return opsBroker{trigger: "%TestQueue%", store: store,
				settings: map[string]string{"AzureWebJobsStorage": q.ConnectionString, "TestQueue": q.NewQueue(t)}}
		},
		// RabbitMQ (a quorum queue) with records in memory.
		"rabbitmq": func(t *testing.T) opsBroker {
			serverURL := rabbittest.Require(t)
			q := rabbittest.UniqueName(t)
			t.Cleanup(func() { rabbittest.DeleteQueues(serverURL, q, q+"-poison", q+"-retry-q") })
			return opsBroker{trigger: "rabbit://" + q, settings: map[string]string{"RABBIT_SERVER_URL": serverURL}}
		},
	}
}

// On Azurite and RabbitMQ: a cancelled queued operation never runs, and
// a running one has its context cancelled within 2 s of the DELETE, is
// not retried, and ends Canceled.
func TestCancelOnBrokers(t *testing.T) {
	for name, setup := range opsBrokers(t) {
		t.Run(name, func(t *testing.T) {
			b := setup(t)
			reg := &functions.Registry{}
			started, ended := make(chan string, 4), make(chan time.Time, 4)
			var calls atomic.Int32
			functions.Add(reg, "Long", functions.SubscriptionTrigger(b.trigger),
				func(ctx context.Context, in provisionRequest, _ *triggers.Message) error {
					calls.Add(1)
					started <- in.Title
					<-ctx.Done()
					ended <- time.Now()
					return ctx.Err() // the host must not retry it
				})
			o := startOpsHost(t, reg, opsSetup{settings: b.settings, store: b.store, cfg: func(c *Config) {
				c.PubSub.CreateQueues = true
				c.Queues.BatchSize, c.PubSub.BatchSize = 1, 1
				c.Queues.NewBatchThreshold, c.PubSub.NewBatchThreshold = 0, 0
			}})
			// One runs and blocks the only slot; the second waits queued
			// and is cancelled there.
			resp, body := o.do(t, "POST", o.base+"/Long", `{"title":"running"}`)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %d %s", resp.StatusCode, body)
			}
			running := decodeRecord(t, body).ID
			if got := <-started; got != "running" {
				t.Fatalf("started %q", got)
			}
			resp, body = o.do(t, "POST", o.base+"/Long", `{"title":"queued"}`)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %d %s", resp.StatusCode, body)
			}
			queued := decodeRecord(t, body).ID
			if resp, body = o.do(t, "DELETE", o.base+"/"+queued, ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("DELETE queued: %d %s", resp.StatusCode, body)
			}
			asked := time.Now()
			if resp, body = o.do(t, "DELETE", o.base+"/"+running, ""); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("DELETE running: %d %s", resp.StatusCode, body)
			}
			select {
			case at := <-ended:
				took := at.Sub(asked)
				t.Logf("%s: DELETE → function context cancelled in %s", name, took)
				if took > 2*time.Second {
					t.Errorf("cancelled %s after the DELETE; want within 2 s", took)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the running function's context was never cancelled")
			}
			if rec := o.waitFinal(t, running); rec.Status != operations.Canceled {
				t.Fatalf("running operation ended %s", rec.Status)
			}
			// The queued one's message arrives now that the slot is free,
			// and is dropped without running.
			o.logs.await(t, "the queued operation's message dropped", 2, 15*time.Second, func(e map[string]any) bool {
				return e["outcome"] == OutcomeOperationCanceled
			})
			o.stop()
			if n := calls.Load(); n != 1 {
				t.Fatalf("the function ran %d times; want once (the cancelled one never retried, the queued one never run)", n)
			}
			for _, id := range []string{running, queued} {
				if rec, err := b.storeOr(o).Get(context.Background(), id); err != nil || rec.Status != operations.Canceled {
					t.Fatalf("record %s: %v %v", id, rec, err)
				}
			}
		})
	}
}

func (b opsBroker) storeOr(o *opsHost) operations.Store {
	if b.store != nil {
		return b.store
	}
	return o.store
}

// A Storage Queue message carries its operation in the JSON body (the
// queue has no properties), base64-encoded as the host reads it.
func TestSubmitToStorageQueueCarriesOperation(t *testing.T) {
	b := opsBrokers(t)["azurite"](t)
	reg := &functions.Registry{}
	got := make(chan string, 1)
	functions.Add(reg, "Echo", functions.QueueTrigger(b.trigger),
		func(ctx context.Context, in json.RawMessage, _ *triggers.Message) error {
			got <- string(in) + "|" + functions.OperationID(ctx)
			return nil
		})
	o := startOpsHost(t, reg, opsSetup{settings: b.settings, store: b.store})
	rec, _, err := o.client.Submit(context.Background(), client.Submission{Function: "Echo", Input: json.RawMessage(`{"a": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != `{"a": 1}|`+rec.ID {
			t.Fatalf("function got %s", s)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("not run")
	}
	if rec := o.waitFinal(t, rec.ID); rec.Status != operations.Succeeded {
		t.Fatalf("record %s", rec.Status)
	}
}
