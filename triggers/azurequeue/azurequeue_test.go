package azurequeue_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/queueerror"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/drivertest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

func TestConformance(t *testing.T) {
	t.Parallel()
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness {
		return azuritetest.Shared(t).Harness()
	})
}

// setup returns a driver on a fresh queue of the shared Azurite.
func setup(t *testing.T) (*azuritetest.Server, *azurequeue.Driver, context.Context) {
	t.Helper()
	srv := azuritetest.Shared(t)
	d := azurequeue.New(srv.ServiceClient(t), srv.NewQueue(t), azurequeue.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return srv, d, ctx
}

func receiveOne(ctx context.Context, t *testing.T, d *azurequeue.Driver, lease time.Duration) *triggers.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, err := d.Receive(ctx, 1, lease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) == 1 {
			return ms[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("no message arrived")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func queueExists(ctx context.Context, t *testing.T, srv *azuritetest.Server, name string) bool {
	t.Helper()
	_, err := srv.ServiceClient(t).NewQueueClient(name).GetProperties(ctx, nil)
	if err == nil {
		return true
	}
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		return false
	}
	t.Fatalf("GetProperties(%q): %v", name, err)
	return false
}

func TestBodyNotDecoded(t *testing.T) {
	t.Parallel()
	_, d, ctx := setup(t)
	const text = "aGVsbG8gd29ybGQ=" // base64 of "hello world": must stay as is
	if _, err := d.Send(ctx, text); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(ctx, t, d, time.Minute)
	if m.Text() != text || m.Source != d.Name() || m.PopReceipt == "" || m.ExpirationTime.IsZero() || m.NextVisibleTime.IsZero() {
		t.Errorf("got %+v", m)
	}
}

func TestPoisonQueueCreatedWhenMissing(t *testing.T) {
	t.Parallel()
	srv, d, ctx := setup(t)
	poisonName := d.PoisonDestination()
	if poisonName != d.Name()+"-poison" {
		t.Fatalf("PoisonDestination() = %q", poisonName)
	}
	if queueExists(ctx, t, srv, poisonName) {
		t.Fatalf("poison queue %q exists before any DeadLetter", poisonName)
	}
	for _, text := range []string{"first", "second"} { // second uses the cached "exists"
		if _, err := d.Send(ctx, text); err != nil {
			t.Fatal(err)
		}
		m := receiveOne(ctx, t, d, time.Minute)
		id, err := d.DeadLetter(ctx, m, "test")
		if err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		if id == "" {
			t.Error("DeadLetter returned no poison id")
		}
	}
	p := azurequeue.New(srv.ServiceClient(t), poisonName, azurequeue.Options{})
	ms, err := p.Peek(ctx, 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Text() != "first" || ms[1].Text() != "second" {
		t.Errorf("poison queue holds %d messages: %v", len(ms), ms)
	}
	if n, err := d.ApproximateCount(ctx); err != nil || n != 0 {
		t.Errorf("original queue count = %d, %v; want 0", n, err)
	}
}

func TestPoisonQueueCreatedConcurrently(t *testing.T) {
	t.Parallel()
	srv, d, ctx := setup(t)
	const n = 8
	for range n {
		if _, err := d.Send(ctx, "x"); err != nil {
			t.Fatal(err)
		}
	}
	var got []*triggers.Message
	for len(got) < n {
		ms, err := d.Receive(ctx, n-len(got), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
	}
	// Two drivers on the same queue, as two hosts would have.
	d2 := azurequeue.New(srv.ServiceClient(t), d.Name(), azurequeue.Options{})
	var wg sync.WaitGroup
	for i, m := range got {
		dr := d
		if i%2 == 1 {
			dr = d2
		}
		wg.Go(func() {
			if _, err := dr.DeadLetter(ctx, m, "test"); err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
		})
	}
	wg.Wait()
	p := azurequeue.New(srv.ServiceClient(t), d.PoisonDestination(), azurequeue.Options{})
	if c, err := p.ApproximateCount(ctx); err != nil || c != n {
		t.Errorf("poison count = %d, %v; want %d", c, err, n)
	}
}

func TestNoPoisonQueueForPoisonName(t *testing.T) {
	t.Parallel()
	srv := azuritetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := srv.NewQueue(t) + "-poison"
	d := azurequeue.New(srv.ServiceClient(t), name, azurequeue.Options{CreateIfMissing: true})
	t.Cleanup(func() { _, _ = srv.ServiceClient(t).DeleteQueue(context.Background(), name, nil) })
	if d.PoisonDestination() != "" {
		t.Errorf("PoisonDestination() = %q, want none", d.PoisonDestination())
	}
	if _, err := d.Send(ctx, "poisoned twice"); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(ctx, t, d, time.Minute)
	id, err := d.DeadLetter(ctx, m, "test")
	if !errors.Is(err, azurequeue.ErrNoPoisonQueue) || id != "" {
		t.Fatalf("DeadLetter = %q, %v; want an error wrapping ErrNoPoisonQueue", id, err)
	}
	if queueExists(ctx, t, srv, name+"-poison") {
		t.Error("a -poison-poison queue was created")
	}
	// The message was left alone: we still hold it.
	if err := d.Complete(ctx, m); err != nil {
		t.Errorf("Complete after refused DeadLetter: %v", err)
	}
}

func TestStalePopReceiptAfterExtendLease(t *testing.T) {
	t.Parallel()
	_, d, ctx := setup(t)
	if _, err := d.Send(ctx, "renewed"); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(ctx, t, d, 5*time.Second)
	old := *m
	oldVisible := m.NextVisibleTime
	if err := d.ExtendLease(ctx, m, time.Minute); err != nil {
		t.Fatalf("ExtendLease: %v", err)
	}
	if m.PopReceipt == old.PopReceipt {
		t.Error("ExtendLease did not store a new pop receipt")
	}
	if !m.NextVisibleTime.After(oldVisible.Add(30 * time.Second)) {
		t.Errorf("NextVisibleTime = %v, want about a minute from now (was %v)", m.NextVisibleTime, oldVisible)
	}
	err := d.Complete(ctx, &old)
	if !errors.Is(err, triggers.ErrLeaseLost) {
		t.Fatalf("Complete with the stale pop receipt: %v, want ErrLeaseLost", err)
	}
	t.Logf("stale receipt error: %v", err)
	if err := d.Retry(ctx, m, time.Minute); err != nil {
		t.Fatalf("Retry with the new receipt: %v", err)
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatalf("Complete with the newest pop receipt: %v", err)
	}
	if n, err := d.ApproximateCount(ctx); err != nil || n != 0 {
		t.Errorf("count after Complete = %d, %v", n, err)
	}
}

func TestSendPeekCountCreate(t *testing.T) {
	t.Parallel()
	srv := azuritetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := azuritetest.UniqueQueueName(t)
	d := azurequeue.New(srv.ServiceClient(t), name, azurequeue.Options{})
	t.Cleanup(func() { _, _ = srv.ServiceClient(t).DeleteQueue(context.Background(), name, nil) })

	if _, err := d.Send(ctx, "x"); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Send to a missing queue: %v, want ErrNotFound", err)
	}
	if _, err := d.ApproximateCount(ctx); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("ApproximateCount of a missing queue: %v, want ErrNotFound", err)
	}
	if _, err := d.Peek(ctx, 1); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Peek at a missing queue: %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := d.Create(ctx); err != nil {
			t.Fatalf("Create (idempotent): %v", err)
		}
	}
	var ids []string
	for _, text := range []string{"one", "two", "three"} {
		id, err := d.Send(ctx, text)
		if err != nil || id == "" {
			t.Fatalf("Send(%q) = %q, %v", text, id, err)
		}
		ids = append(ids, id)
	}
	if n, err := d.ApproximateCount(ctx); err != nil || n != 3 {
		t.Errorf("ApproximateCount = %d, %v; want 3", n, err)
	}
	ms, err := d.Peek(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Text() != "one" || ms[0].ID != ids[0] || ms[1].Text() != "two" || ms[0].DequeueCount != 0 || ms[0].PopReceipt != "" {
		t.Errorf("Peek(2) = %+v", ms)
	}
	if err := d.Complete(ctx, ms[0]); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Complete of a peeked message: %v, want ErrLeaseLost", err)
	}
	if ms, err := d.Peek(ctx, 100); err != nil || len(ms) != 3 {
		t.Errorf("Peek(100) = %d messages, %v; want 3", len(ms), err)
	}
	m := receiveOne(ctx, t, d, time.Minute)
	if m.ID != ids[0] || m.DequeueCount != 1 {
		t.Errorf("Receive after Peek = %s (DequeueCount %d)", m.ID, m.DequeueCount)
	}
}

func TestCreateIfMissing(t *testing.T) {
	t.Parallel()
	srv := azuritetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := azuritetest.UniqueQueueName(t)
	t.Cleanup(func() { _, _ = srv.ServiceClient(t).DeleteQueue(context.Background(), name, nil) })

	plain := azurequeue.New(srv.ServiceClient(t), name, azurequeue.Options{})
	if _, err := plain.Receive(ctx, 1, time.Second); !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("Receive without CreateIfMissing: %v, want ErrNotFound", err)
	}
	if queueExists(ctx, t, srv, name) {
		t.Fatal("queue created without CreateIfMissing")
	}
	d := azurequeue.New(srv.ServiceClient(t), name, azurequeue.Options{CreateIfMissing: true})
	ms, err := d.Receive(ctx, 1, time.Second)
	if err != nil || len(ms) != 0 {
		t.Fatalf("Receive with CreateIfMissing = %v, %v", ms, err)
	}
	if !queueExists(ctx, t, srv, name) {
		t.Fatal("queue not created")
	}
}

func TestInvalidQueueName(t *testing.T) {
	t.Parallel()
	srv := azuritetest.Shared(t)
	d := azurequeue.New(srv.ServiceClient(t), "Bad_Name", azurequeue.Options{CreateIfMissing: true})
	if _, err := d.Receive(context.Background(), 1, time.Second); err == nil {
		t.Fatal("Receive on an invalid queue name succeeded")
	}
	if err := d.Create(context.Background()); err == nil {
		t.Fatal("Create of an invalid queue name succeeded")
	}
}

// TestRestart checks the harness's outage support: a server with a
// Location keeps its messages across Restart on the same port, and a
// driver made before the outage works after it.
func TestRestart(t *testing.T) {
	t.Parallel()
	if os.Getenv(azuritetest.EnvConnection) != "" {
		t.Skipf("%s is set: an external Azurite cannot be stopped", azuritetest.EnvConnection)
	}
	srv := azuritetest.Start(t, azuritetest.Options{Location: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := azurequeue.New(srv.ServiceClient(t), srv.NewQueue(t), azurequeue.Options{})
	if _, err := d.Send(ctx, "survives"); err != nil {
		t.Fatal(err)
	}
	port := srv.Port
	srv.Stop()
	down, cancelDown := context.WithTimeout(ctx, 2*time.Second)
	_, err := d.Receive(down, 1, time.Second)
	cancelDown()
	if err == nil {
		t.Fatal("Receive succeeded while Azurite was stopped")
	}
	if errors.Is(err, triggers.ErrNotFound) || errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("outage error maps to a sentinel: %v", err)
	}
	t.Logf("outage error: %v", err)
	srv.Restart(t)
	if srv.Port != port {
		t.Errorf("Restart moved the port from %d to %d", port, srv.Port)
	}
	m := receiveOne(ctx, t, d, time.Minute)
	if m.Text() != "survives" {
		t.Errorf("after restart got %q", m.Text())
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
}
