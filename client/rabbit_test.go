package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// rabbit returns a client whose RABBIT_SERVER_URL leads to the test broker.
func rabbit(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	serverURL := rabbittest.Require(t)
	o.Lookup = func(name string) (string, bool) {
		if name == rabbitmq.EnvServerURL {
			return serverURL, true
		}
		return "", false
	}
	return newClient(t, o)
}

// On RabbitMQ bytes go as they are (pubsub's messageEncoding none), the
// missing queue is created, and metadata travels in headers.
func TestRabbitSendAndSubmit(t *testing.T) {
	queue := rabbittest.UniqueName(t)
	store := memstore.New(memstore.Options{})
	c := rabbit(t, client.Options{Store: store, Functions: []client.Function{{Name: "Job", Queue: "rabbit://" + queue}}})
	ctx := context.Background()
	if _, err := c.Send(ctx, "rabbit://"+queue, []byte{'{', 0xff, '}'}); err != nil {
		t.Fatal(err)
	}
	rec, created, err := c.Submit(ctx, client.Submission{Function: "Job", Input: json.RawMessage(`{"n":1}`)})
	if err != nil || !created {
		t.Fatal(err)
	}
	conn := rabbittest.Dial(t)
	d, ok := rabbittest.Get(t, conn, queue)
	if !ok || string(d.Body) != "{\xff}" {
		t.Fatalf("first message %q %v", d.Body, ok)
	}
	d, ok = rabbittest.Get(t, conn, queue)
	if !ok || string(d.Body) != `{"n":1}` || d.Headers[bindings.PropOperationID] != rec.ID {
		t.Errorf("submitted message %q headers %v; want the operation id %s in a header", d.Body, d.Headers, rec.ID)
	}
}

// RabbitMQ delays through its delay queue: the message is not there until
// the delay has passed.
func TestRabbitDelay(t *testing.T) {
	queue := rabbittest.UniqueName(t)
	c := rabbit(t, client.Options{})
	const delay = time.Second
	start := time.Now()
	if _, err := c.Send(context.Background(), "rabbit://"+queue, "later", client.Delay(delay)); err != nil {
		t.Fatal(err)
	}
	conn := rabbittest.Dial(t)
	if _, ok := rabbittest.Get(t, conn, queue); ok && time.Since(start) < delay {
		t.Fatal("the message arrived before its delay")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if d, ok := rabbittest.Get(t, conn, queue); ok {
			if since := time.Since(start); since < delay || string(d.Body) != "later" {
				t.Errorf("got %q after %s (delay %s)", d.Body, since, delay)
			}
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the delayed message never arrived")
		}
	}
}
