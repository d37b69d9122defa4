package servicebus_test

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"
	"gocloud.dev/pubsub/azuresb"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

// maxLiveLock is the longest queue LockDuration the suite's lease checks
// can live with: they wait at most 10 s for a message whose lock ran out.
const maxLiveLock = 8 * time.Second

// TestLiveConformance runs the conformance suite against a real queue. It
// needs SERVICEBUS_CONNECTION_STRING and SERVICEBUS_TEST_QUEUE: a queue
// that nothing else uses (the test empties it and its dead-letter queue),
// created with a short lock, for example
//
//	az servicebus queue create -g RG --namespace-name NS -n jobhost-test \
//	    --lock-duration PT5S --max-delivery-count 10
//
// The suite runs its subtests one after another on that one queue.
func TestLiveConformance(t *testing.T) {
	cs, queue := os.Getenv(servicebus.ConnectionStringVar), os.Getenv("SERVICEBUS_TEST_QUEUE")
	if cs == "" || queue == "" {
		t.Skip("live Service Bus test skipped: set SERVICEBUS_CONNECTION_STRING and SERVICEBUS_TEST_QUEUE " +
			"(a queue only this test uses, LockDuration at most 8s, e.g. PT5S) to run the conformance suite against it")
	}
	client, err := azuresb.NewClientFromConnectionString(cs, &azservicebus.ClientOptions{RetryOptions: azservicebus.RetryOptions{
		MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second, // fail fast, as OpenURL's client does
	}})
	if err != nil {
		t.Fatalf("client: %s", servicebus.Redact(err.Error()))
	}
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	h := &liveHarness{client: client, queue: queue, turn: make(chan struct{}, 1)}

	// Check the queue's lock duration first: a long lock would make the
	// lease subtests time out with a confusing message.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.drain(ctx, t)
	d := h.open(ctx, t)
	defer d.Close()
	snd := h.sender(t)
	if err := snd.SendMessage(ctx, sbfake.NewMessage([]byte("lock probe"), nil), nil); err != nil {
		t.Fatalf("send: %s", servicebus.Redact(err.Error()))
	}
	var probe *triggers.Message
	for probe == nil && ctx.Err() == nil {
		ms, err := d.Receive(ctx, 1, 0)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(ms) > 0 {
			probe = ms[0]
		}
	}
	lock := time.Until(probe.NextVisibleTime)
	if err := d.Complete(ctx, probe); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if lock > maxLiveLock {
		t.Fatalf("queue %s has a lock of about %v; the lease subtests need LockDuration at most %v (e.g. PT5S)", queue, lock.Round(time.Second), maxLiveLock)
	}
	t.Logf("queue %s: lock duration about %v", queue, lock.Round(time.Second))

	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return h })
}

type liveHarness struct {
	client *azservicebus.Client
	queue  string
	turn   chan struct{} // one subtest at a time on the one queue
}

func (h *liveHarness) url() *url.URL { return &url.URL{Scheme: servicebus.Scheme, Host: h.queue} }

func (h *liveHarness) open(ctx context.Context, t *testing.T) *servicebus.Driver {
	t.Helper()
	d, err := servicebus.OpenURL(ctx, h.url(), triggers.OpenOptions{Lookup: os.LookupEnv})
	if err != nil {
		t.Fatalf("OpenURL: %v", err)
	}
	return d.(*servicebus.Driver)
}

func (h *liveHarness) sender(t *testing.T) *azservicebus.Sender {
	t.Helper()
	s, err := h.client.NewSender(h.queue, nil)
	if err != nil {
		t.Fatalf("sender: %s", servicebus.Redact(err.Error()))
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// drain completes whatever the queue and its dead-letter queue hold.
func (h *liveHarness) drain(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, e := range []servicebus.Entity{{Queue: h.queue}, {Queue: h.queue, DeadLetterQueue: true}} {
		d, err := servicebus.OpenClient(h.client, e, &servicebus.Options{ReceiveWait: time.Second})
		if err != nil {
			t.Fatalf("open %s: %v", e, err)
		}
		for {
			ms, err := sbfake.ReceiveAll(ctx, d)
			if err != nil {
				t.Fatalf("drain %s: %v", e, err)
			}
			if len(ms) == 0 {
				break
			}
		}
		_ = d.Close()
	}
}

func (h *liveHarness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	// Wait for our turn without ctx: the subtests queue up on one queue.
	h.turn <- struct{}{}
	t.Cleanup(func() { <-h.turn }) // runs after the suite's own Close
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.drain(ctx, t)
	d := h.open(ctx, t)
	dlq, err := servicebus.OpenClient(h.client, servicebus.Entity{Queue: h.queue, DeadLetterQueue: true}, &servicebus.Options{ReceiveWait: time.Second})
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { _ = dlq.Close() })
	snd := h.sender(t)
	return drivertest.Queue{
		Driver: d,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			return snd.SendMessage(ctx, sbfake.NewMessage(body, props), nil)
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) { return sbfake.ReceiveAll(ctx, dlq) },
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			return servicebus.OpenClient(h.client, servicebus.Entity{Queue: "jobhost-missing-" + uuid.NewString()}, nil)
		},
		// The registered openers, as the host and the CLI use them.
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			return servicebus.OpenPublisherURL(ctx, h.url(), triggers.OpenOptions{Lookup: os.LookupEnv})
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			return servicebus.OpenPoisonURL(ctx, h.url(), triggers.OpenOptions{Lookup: os.LookupEnv})
		},
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}
