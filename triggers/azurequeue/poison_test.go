package azurequeue_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// poisonSetup returns a fresh queue of the shared Azurite with its poison
// administration.
func poisonSetup(t *testing.T) (*azuritetest.Server, string, triggers.PoisonAdmin, context.Context) {
	t.Helper()
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	p, err := azurequeue.OpenPoison(srv.ServiceClient(t), queue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return srv, queue, p, ctx
}

// poisonStorage puts texts on queue and moves them to its poison queue the
// way the host does (receive, DeadLetter), returning the poison copies' ids.
func poisonStorage(ctx context.Context, t *testing.T, srv *azuritetest.Server, queue string, texts ...string) []string {
	t.Helper()
	d := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	ids := map[string]string{} // text to poison id
	for _, text := range texts {
		if _, err := d.Send(ctx, text); err != nil {
			t.Fatal(err)
		}
	}
	for tries := 0; len(ids) < len(texts) && tries < 10; tries++ {
		msgs, err := d.Receive(ctx, 32, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			id, err := d.DeadLetter(ctx, m, "test")
			if err != nil {
				t.Fatal(err)
			}
			ids[m.Text()] = id
		}
	}
	if len(ids) != len(texts) {
		t.Fatalf("poisoned %d of %d", len(ids), len(texts))
	}
	out := make([]string, len(texts))
	for i, text := range texts {
		out[i] = ids[text]
	}
	return out
}

// drainStorage receives (and deletes) every message of queue.
func drainStorage(ctx context.Context, t *testing.T, srv *azuritetest.Server, queue string) []*triggers.Message {
	t.Helper()
	d := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	var out []*triggers.Message
	for {
		msgs, err := d.Receive(ctx, 32, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			if err := d.Complete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, msgs...)
	}
}

// visiblePoison peeks at queue's poison queue: the texts visible now.
func visiblePoison(ctx context.Context, t *testing.T, srv *azuritetest.Server, queue string) []string {
	t.Helper()
	msgs, err := azurequeue.New(srv.ServiceClient(t), queue+azurequeue.PoisonSuffix, azurequeue.Options{}).Peek(ctx, 32)
	if err != nil {
		t.Fatal(err)
	}
	return texts(msgs)
}

func texts(msgs []*triggers.Message) []string {
	s := []string{}
	for _, m := range msgs {
		s = append(s, m.Text())
	}
	slices.Sort(s)
	return s
}

func count(ctx context.Context, t *testing.T, p triggers.PoisonAdmin) int {
	t.Helper()
	n, _, err := p.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Before anything was poisoned the poison queue does not exist: nothing to
// count, list or purge.
func TestPoisonQueueMissing(t *testing.T) {
	t.Parallel()
	_, queue, p, ctx := poisonSetup(t)
	if p.Source() != "queue "+queue || p.Poison() != "queue "+queue+"-poison" {
		t.Errorf("Source %q, Poison %q", p.Source(), p.Poison())
	}
	if n, exists, err := p.Count(ctx); n != 0 || exists || err != nil {
		t.Errorf("Count = %d, %v, %v; want 0, false, nil", n, exists, err)
	}
	if msgs, err := p.List(ctx, 32); len(msgs) != 0 || err != nil {
		t.Errorf("List = %d, %v", len(msgs), err)
	}
	if n, err := p.Purge(ctx, 5); n != 0 || err != nil {
		t.Errorf("Purge = %d, %v; want 0, nil", n, err)
	}
}

// List peeks: the messages stay, unchanged, with their ids and times.
func TestPoisonList(t *testing.T) {
	t.Parallel()
	srv, queue, p, ctx := poisonSetup(t)
	ids := poisonStorage(ctx, t, srv, queue, "one", "two")
	msgs, err := p.List(ctx, 32)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("List = %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if !slices.Contains(ids, m.ID) || m.InsertionTime.IsZero() || m.Reason != "" {
			t.Errorf("listed %+v", m)
		}
	}
	if msgs, _ := p.List(ctx, 1); len(msgs) != 1 {
		t.Errorf("List(1) = %d messages", len(msgs))
	}
	if got := visiblePoison(ctx, t, srv, queue); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("after List, poison has %q visible", got)
	}
}

// Requeue of all copies every message back byte for byte, then empties the
// poison queue; the copies are new messages (first delivery).
func TestPoisonRequeueAll(t *testing.T) {
	t.Parallel()
	srv, queue, p, ctx := poisonSetup(t)
	sent := []string{"eyJpZCI6IDF9", `{"id": 2, "name": "ünïcödé"}`, "raw text, not base64 ?&<>"}
	poisonStorage(ctx, t, srv, queue, sent...)
	var moved []string
	found, err := p.Requeue(ctx, "", 3, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("message %s: %v", m.ID, err)
		}
		moved = append(moved, string(m.Body))
	})
	if found || err != nil || len(moved) != 3 {
		t.Fatalf("Requeue = %v, %v, moved %q", found, err, moved)
	}
	if n := count(ctx, t, p); n != 0 {
		t.Errorf("poison queue still has %d", n)
	}
	got := drainStorage(ctx, t, srv, queue)
	want := slices.Sorted(slices.Values(sent))
	if !slices.Equal(texts(got), want) {
		t.Errorf("source has %q, want %q", texts(got), want)
	}
	for _, m := range got {
		if m.DequeueCount != 1 {
			t.Errorf("message %s: DequeueCount %d, want 1 (a fresh message)", m.ID, m.DequeueCount)
		}
	}
	// An empty poison queue is nothing to do.
	if found, err := p.Requeue(ctx, "", 3, func(m *triggers.PoisonMessage, err error) { t.Errorf("moved %s", m.ID) }); found || err != nil {
		t.Errorf("Requeue of an empty poison queue = %v, %v", found, err)
	}
}

// Requeue by id moves that message only; the others it dequeued while
// looking are visible again at once.
func TestPoisonRequeueID(t *testing.T) {
	t.Parallel()
	srv, queue, p, ctx := poisonSetup(t)
	ids := poisonStorage(ctx, t, srv, queue, "one", "two", "three")
	n := 0
	found, err := p.Requeue(ctx, ids[1], 1, func(m *triggers.PoisonMessage, err error) {
		if err != nil || m.ID != ids[1] || string(m.Body) != "two" || m.DequeueCount < 1 {
			t.Errorf("moved %+v, %v", m, err)
		}
		n++
	})
	if !found || err != nil || n != 1 {
		t.Fatalf("Requeue(id) = %v, %v, %d moved", found, err, n)
	}
	if got := texts(drainStorage(ctx, t, srv, queue)); !slices.Equal(got, []string{"two"}) {
		t.Errorf("source has %q", got)
	}
	if got := visiblePoison(ctx, t, srv, queue); !slices.Equal(got, []string{"one", "three"}) {
		t.Errorf("poison has %q visible", got)
	}
	found, err = p.Requeue(ctx, "no-such-id", 1, func(m *triggers.PoisonMessage, err error) { t.Errorf("moved %s", m.ID) })
	if found || err != nil {
		t.Errorf("Requeue of an unknown id = %v, %v", found, err)
	}
	if got := visiblePoison(ctx, t, srv, queue); !slices.Equal(got, []string{"one", "three"}) {
		t.Errorf("after scanning for an unknown id, poison has %q visible", got)
	}
}

// When the context ends mid-requeue (Ctrl-C), the messages not yet moved
// are released visibly at once, not left hidden for the lease.
func TestPoisonRequeueReleasesAfterCancel(t *testing.T) {
	t.Parallel()
	srv, queue, p, ctx := poisonSetup(t)
	poisonStorage(ctx, t, srv, queue, "one", "two", "three")
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	_, err := p.Requeue(rctx, "", 3, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("message %s: %v", m.ID, err)
		}
		n++
		cancel()
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("Requeue = %v, %d moved; want context.Canceled after 1", err, n)
	}
	moved := texts(drainStorage(ctx, t, srv, queue))
	left := visiblePoison(ctx, t, srv, queue)
	if len(moved) != 1 || len(left) != 2 || slices.Contains(left, moved[0]) {
		t.Errorf("source has %q, poison %q visible; want one moved, two visible", moved, left)
	}
}

// Purge clears the poison queue.
func TestPoisonPurge(t *testing.T) {
	t.Parallel()
	srv, queue, p, ctx := poisonSetup(t)
	poisonStorage(ctx, t, srv, queue, "one", "two")
	if n := count(ctx, t, p); n != 2 {
		t.Fatalf("Count = %d", n)
	}
	if n, err := p.Purge(ctx, 2); n != 2 || err != nil {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	if n, exists, err := p.Count(ctx); n != 0 || !exists || err != nil {
		t.Errorf("Count after Purge = %d, %v, %v; want 0, true, nil", n, exists, err)
	}
	if got := drainStorage(ctx, t, srv, queue); len(got) != 0 {
		t.Errorf("Purge put %q back on the source", texts(got))
	}
}

// fakeServiceClient returns a client for a fake account whose requests handle
// answers.
func fakeServiceClient(t *testing.T, handle func(r *http.Request) (*http.Response, error)) (*azqueue.ServiceClient, *fakeService) {
	t.Helper()
	f := &fakeService{handle: handle}
	svc, err := azqueue.NewServiceClientWithNoCredential("https://acct.queue.example/", &azqueue.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: f, Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, f
}

// A message whose copy to the source fails stays in poison, released at
// once; it is never deleted.
func TestPoisonRequeueCopyFailureReleases(t *testing.T) {
	svc, f := fakeServiceClient(t, func(r *http.Request) (*http.Response, error) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/orders":
			return respond(r, 201, nil, ""), nil
		case r.Method == http.MethodGet && r.URL.Path == "/orders-poison/messages":
			return respond(r, 200, nil, dequeueBody("body")), nil
		case r.Method == http.MethodPost && r.URL.Path == "/orders/messages":
			return storageError(r, 500, "InternalError"), nil
		case r.Method == http.MethodPut && r.URL.Path == "/orders-poison/messages/m1":
			return respond(r, 204, map[string]string{"x-ms-popreceipt": "pr2"}, ""), nil
		}
		return storageError(r, 400, "InvalidInput"), nil
	})
	p, err := azurequeue.OpenPoison(svc, "orders")
	if err != nil {
		t.Fatal(err)
	}
	var failed error
	found, err := p.Requeue(context.Background(), "", 1, func(m *triggers.PoisonMessage, err error) { failed = err })
	if found || err != nil || failed == nil || !strings.Contains(failed.Error(), "stays in poison") {
		t.Fatalf("Requeue = %v, %v; done got %v", found, err, failed)
	}
	if n := f.count(http.MethodDelete, "/m1"); n != 0 {
		t.Errorf("poison message deleted %d times after a failed copy", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	released := slices.ContainsFunc(f.requests, func(r string) bool {
		return strings.HasPrefix(r, "PUT /orders-poison/messages/m1?") && strings.Contains(r, "visibilitytimeout=0")
	})
	if !released {
		t.Errorf("not released at once; requests: %q", f.requests)
	}
}

func TestOpenPoisonRefuses(t *testing.T) {
	svc, f := fakeServiceClient(t, func(r *http.Request) (*http.Response, error) {
		return storageError(r, 400, "InvalidInput"), nil
	})
	for _, c := range []struct{ queue, want string }{
		{"orders-poison", "orders"},
		{strings.Repeat("q", 60), "63 characters"},
	} {
		_, err := azurequeue.OpenPoison(svc, c.queue)
		if !errors.Is(err, azurequeue.ErrNoPoisonQueue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenPoison(%s): %v, want ErrNoPoisonQueue mentioning %q", c.queue, err, c.want)
		}
	}
	if _, err := azurequeue.OpenPoison(svc, "Bad--Name"); err == nil {
		t.Error("OpenPoison of an invalid name: no error")
	}
	if len(f.requests) != 0 {
		t.Errorf("requests: %q", f.requests)
	}
}

// After Close, the driver and the poison administration fail every call
// with ErrClosed and make no request.
func TestClosed(t *testing.T) {
	svc, f := fakeServiceClient(t, func(r *http.Request) (*http.Response, error) {
		return storageError(r, 400, "InvalidInput"), nil
	})
	ctx := context.Background()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	d := azurequeue.New(svc, "orders", azurequeue.Options{})
	for range 2 {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.Send(ctx, "x")
	check("Send", err)
	_, err = d.Publish(ctx, []byte("x"), nil)
	check("Publish", err)
	_, err = d.Peek(ctx, 1)
	check("Peek", err)
	_, err = d.ApproximateCount(ctx)
	check("ApproximateCount", err)
	check("Create", d.Create(ctx))

	p, err := azurequeue.OpenPoison(svc, "orders")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = p.Count(ctx)
	check("Count", err)
	_, err = p.List(ctx, 1)
	check("List", err)
	_, err = p.Requeue(ctx, "", 1, func(*triggers.PoisonMessage, error) {})
	check("Requeue", err)
	_, err = p.Purge(ctx, 1)
	check("Purge", err)
	if len(f.requests) != 0 {
		t.Errorf("requests after Close: %q", f.requests)
	}
}
