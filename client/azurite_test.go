package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// azurite returns the shared Azurite, a client whose Storage connection
// leads to it, and a fresh queue name that the client will create (deleted
// when the test ends).
func azurite(t *testing.T, o client.Options) (*client.Client, *azuritetest.Server, string) {
	t.Helper()
	srv := azuritetest.Shared(t)
	queue := azuritetest.UniqueQueueName(t)
	svc := srv.ServiceClient(t)
	t.Cleanup(func() { svc.DeleteQueue(context.Background(), queue, nil) })
	o.Lookup = func(name string) (string, bool) {
		if name == "AzureWebJobsStorage" {
			return srv.ConnectionString, true
		}
		return "", false
	}
	return newClient(t, o), srv, queue
}

func peek(t *testing.T, srv *azuritetest.Server, queue string) []*triggers.Message {
	t.Helper()
	msgs, err := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{}).Peek(context.Background(), 32)
	if err != nil && !errors.Is(err, triggers.ErrNotFound) {
		t.Fatal(err)
	}
	return msgs
}

func TestStorageQueueBase64ByDefault(t *testing.T) {
	c, srv, queue := azurite(t, client.Options{})
	id, err := c.Send(context.Background(), strings.ToUpper(queue), order{ID: 1}) // names are lower-cased
	if err != nil || id == "" {
		t.Fatalf("%q %v", id, err)
	}
	msgs := peek(t, srv, queue)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if p, err := bindings.Base64.Decode(msgs[0].Body); err != nil || string(p) != `{"id":1}` {
		t.Errorf("text %q: %v", msgs[0].Body, err)
	}
}

// A function's messageEncoding none is honoured: by name, by its Ref and
// by its queue's name.
func TestStorageQueueFunctionEncodingNone(t *testing.T) {
	none := bindings.None
	srv := azuritetest.Shared(t)
	queue := azuritetest.UniqueQueueName(t)
	reg := &functions.Registry{}
	ref := functions.Add(reg, "Raw", functions.QueueTrigger(queue), func(context.Context, order, *triggers.Message) error { return nil })
	c, _, _ := azurite(t, client.Options{Functions: []client.Function{{Name: "Raw", Queue: queue, Encoding: &none}}})
	t.Cleanup(func() { srv.ServiceClient(t).DeleteQueue(context.Background(), queue, nil) })
	ctx := context.Background()
	if _, err := c.SendTo(ctx, "Raw", order{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(ctx, c, ref, order{ID: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, queue, order{ID: 3}); err != nil {
		t.Fatal(err)
	}
	if got := bodies(peek(t, srv, queue)); strings.Join(got, " ") != `{"id":1} {"id":2} {"id":3}` {
		t.Errorf("got %q", got)
	}
}

// Over 64 KiB after encoding is refused before sending: a batch holding
// one such value sends nothing (and creates no queue).
func TestStorageQueueTooLargeSendsNothing(t *testing.T) {
	c, srv, queue := azurite(t, client.Options{})
	big := strings.Repeat("x", 48<<10+1)
	_, err := c.SendBatch(context.Background(), queue, []any{order{ID: 1}, big})
	var tl *client.TooLargeError
	if !errors.As(err, &tl) || tl.Size != 65540 || tl.Limit != 65536 || tl.Queue != queue {
		t.Fatalf("got %v", err)
	}
	if msgs := peek(t, srv, queue); len(msgs) != 0 {
		t.Errorf("%d messages sent", len(msgs))
	}
	var nx *client.NotXMLError
	if _, err := c.Send(context.Background(), queue, []byte{'{', 0xff, '}'}, client.Encoding(bindings.None)); !errors.As(err, &nx) {
		t.Errorf("not XML text: %v", err)
	}
	if msgs := peek(t, srv, queue); len(msgs) != 0 {
		t.Errorf("%d messages sent", len(msgs))
	}
}

// A delayed message is invisible until its delay has passed.
func TestStorageQueueDelay(t *testing.T) {
	c, srv, queue := azurite(t, client.Options{})
	const delay = 2 * time.Second
	start := time.Now()
	if _, err := c.Send(context.Background(), queue, "later", client.Delay(delay)); err != nil {
		t.Fatal(err)
	}
	drv := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	if msgs := peek(t, srv, queue); len(msgs) != 0 && time.Since(start) < delay {
		t.Fatalf("visible at once: %q", bodies(msgs))
	}
	if n, err := drv.ApproximateCount(context.Background()); err != nil || n != 1 {
		t.Fatalf("count %d %v; want the delayed message on the queue", n, err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if msgs := peek(t, srv, queue); len(msgs) == 1 {
			if since := time.Since(start); since < delay-500*time.Millisecond {
				t.Errorf("visible after %s, delay %s", since, delay)
			}
			if p, _ := bindings.Base64.Decode(msgs[0].Body); string(p) != "later" {
				t.Errorf("got %q", msgs[0].Body)
			}
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the delayed message never became visible")
		}
	}
}

// Submit to a Storage Queue function: the record first, then a message
// whose JSON body carries the operation id.
func TestStorageQueueSubmit(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := azuritetest.UniqueQueueName(t)
	t.Cleanup(func() { srv.ServiceClient(t).DeleteQueue(context.Background(), queue, nil) })
	store := memstore.New(memstore.Options{})
	c, _, _ := azurite(t, client.Options{Store: store, Functions: []client.Function{{Name: "Job", Queue: queue}}})
	rec, created, err := c.Submit(context.Background(), client.Submission{Function: "Job", Input: json.RawMessage(`{"site":"contoso"}`)})
	if err != nil || !created {
		t.Fatal(err)
	}
	msgs := peek(t, srv, queue)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	payload, err := bindings.Base64.Decode(msgs[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	m, rest, ok, err := bindings.SplitMeta(payload)
	if !ok || err != nil || m.OperationID != rec.ID || string(rest) != `{"site":"contoso"}` {
		t.Errorf("message %q: %+v %q %v", payload, m, rest, err)
	}
}

// A connection that does not resolve fails Open and the send; the
// message is not lost silently.
func TestStorageQueueConnectionProblem(t *testing.T) {
	c := newClient(t, client.Options{})
	err := c.Open(context.Background(), mustTarget(t, "orders", "Missing"))
	if err == nil || !strings.Contains(err.Error(), "Missing") {
		t.Errorf("got %v", err)
	}
	if _, err := c.Send(context.Background(), "orders", "x", client.Connection("Missing")); err == nil {
		t.Error("sent through an unresolved connection")
	}
}
