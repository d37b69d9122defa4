package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/triggers"
)

// watcher is a broker whose publisher reads the operation's record when
// a message arrives, to see what was written before the send.
type watcher struct {
	store operations.Store
	mu    sync.Mutex
	seen  []*operations.Record
	props []map[string]string
	fail  error
}

func (w *watcher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return "", w.fail
	}
	rec, err := w.store.Get(ctx, bindings.MetaFromProps(props).OperationID)
	if err != nil {
		return "", err
	}
	w.seen, w.props = append(w.seen, rec), append(w.props, props)
	return rec.ID, nil
}

func (w *watcher) Close() error { return nil }

// opsClient returns a client over a memstore with functions Job (on a
// watcher broker), Typed (an order argument, on the watcher too) and Big
// (a Storage Queue: its checks need no server).
func opsClient(t *testing.T, o client.Options) (*client.Client, *memstore.Store, *watcher, functions.Ref[order]) {
	t.Helper()
	store := memstore.New(memstore.Options{})
	w := &watcher{store: store}
	restore := triggers.Replace(triggers.Scheme{Name: "watch",
		Subscription: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Driver, error) {
			return nil, errors.New("unused")
		},
		Publisher: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Publisher, error) { return w, nil }})
	t.Cleanup(restore)
	reg := &functions.Registry{}
	ref := functions.Add(reg, "Typed", functions.SubscriptionTrigger("watch://typed"),
		func(context.Context, order, *triggers.Message) error { return nil })
	typed := reg.Functions()[0]
	o.Store = store
	o.Functions = []client.Function{{Name: "Job", Queue: "watch://jobs"}, {Name: "Big", Queue: "big-q"},
		{Name: typed.Name, Queue: typed.Trigger.Queue, Validate: typed.Validate}}
	return newClient(t, o), store, w, ref
}

func TestSubmitWritesThenSends(t *testing.T) {
	c, store, w, _ := opsClient(t, client.Options{})
	ctx := context.Background()
	rec, created, err := c.Submit(ctx, client.Submission{Function: "job", Input: json.RawMessage(`{"n": 1}`), RunAs: "key1",
		CallbackURL: "https://example.com/cb"})
	if err != nil || !created {
		t.Fatalf("%v %v", created, err)
	}
	if rec.Name != "Job" || rec.Status != operations.WaitingForResources || string(rec.Input) != `{"n": 1}` || rec.RunAs != "key1" || rec.CallbackURL == "" {
		t.Errorf("record %+v", rec)
	}
	if len(w.seen) != 1 || w.seen[0].ID != rec.ID || w.seen[0].Status != operations.WaitingForResources {
		t.Fatalf("the broker saw %+v; want the record written before the message", w.seen)
	}
	if got, err := c.Get(ctx, rec.ID); err != nil || got.ID != rec.ID {
		t.Errorf("Get: %v", err)
	}
	page, err := c.List(ctx, operations.Query{Name: "Job"})
	if err != nil || len(page.Records) != 1 {
		t.Errorf("List: %v", err)
	}
	if _, err := store.Get(ctx, rec.ID); err != nil {
		t.Error(err)
	}
}

func TestSubmitIdempotent(t *testing.T) {
	c, _, w, _ := opsClient(t, client.Options{})
	ctx := context.Background()
	s := client.Submission{Function: "Job", Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "k", RunAs: "me"}
	first, created, err := c.Submit(ctx, s)
	if err != nil || !created || first.ID != operations.IdempotentID("me", "Job", "k") {
		t.Fatalf("%+v %v %v", first, created, err)
	}
	s.Input = json.RawMessage(` { "n" : 1 } `) // the same JSON
	again, created, err := c.Submit(ctx, s)
	if err != nil || created || again.ID != first.ID {
		t.Errorf("repeat: %+v %v %v", again, created, err)
	}
	s.Input = json.RawMessage(`{"n":2}`)
	if _, _, err := c.Submit(ctx, s); !errors.Is(err, client.ErrIdempotencyConflict) {
		t.Errorf("another input: %v", err)
	}
	if len(w.seen) != 1 {
		t.Errorf("%d messages sent, want 1", len(w.seen))
	}
	s.RunAs = "someone else"
	if _, created, err := c.Submit(ctx, s); err != nil || !created {
		t.Errorf("another caller's key: %v %v", created, err)
	}
}

func TestSubmitSendFailureMarksFailed(t *testing.T) {
	c, store, w, _ := opsClient(t, client.Options{})
	w.fail = errors.New("broker down, password=s3cret")
	rec, created, err := c.Submit(context.Background(), client.Submission{Function: "Job", Input: json.RawMessage(`1`)})
	if err == nil || !created || rec == nil {
		t.Fatalf("%+v %v %v", rec, created, err)
	}
	stored, gerr := store.Get(context.Background(), rec.ID)
	if gerr != nil || stored.Status != operations.Failed || stored.ErrorCode != "EnqueueFailed" || rec.Status != operations.Failed {
		t.Errorf("stored %+v %v", stored, gerr)
	}
	if strings.Contains(stored.ErrorMessage, "s3cret") {
		t.Errorf("the record shows a secret: %q", stored.ErrorMessage)
	}
}

// Input problems are found before anything is written.
func TestSubmitRefusesBeforeWriting(t *testing.T) {
	c, store, w, _ := opsClient(t, client.Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		s     client.Submission
		field string
		check func(error) bool
	}{
		{client.Submission{Function: "Typed", Input: json.RawMessage(`{"id":"seven"}`)}, "id", nil},
		{client.Submission{Function: "Typed", Input: json.RawMessage(`{"id":7,"extra":1}`)}, "extra", nil},
		{client.Submission{Function: "Typed", Input: json.RawMessage(`{nope`)}, "", nil},
		{client.Submission{Function: "Big", Input: json.RawMessage(`"` + strings.Repeat("x", 60<<10) + `"`)}, "", func(err error) bool {
			var tl *client.TooLargeError
			return errors.As(err, &tl) && tl.Limit == client.MaxStorageMessage
		}},
		{client.Submission{Function: "Nope"}, "", func(err error) bool { return errors.Is(err, client.ErrUnknownFunction) }},
	} {
		_, _, err := c.Submit(ctx, tc.s)
		if tc.check != nil {
			if !tc.check(err) {
				t.Errorf("%s: %v", tc.s.Function, err)
			}
			continue
		}
		var ie *client.InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("%s %s: %v; want an *InputError on field %q", tc.s.Function, tc.s.Input, err, tc.field)
		}
	}
	if page, _ := store.List(ctx, operations.Query{}); len(page.Records) != 0 || len(w.seen) != 0 {
		t.Errorf("%d records written, %d messages sent", len(page.Records), len(w.seen))
	}
	if _, _, err := newClient(t, client.Options{}).Submit(ctx, client.Submission{Function: "Job"}); !errors.Is(err, client.ErrNoStore) {
		t.Errorf("no store: %v", err)
	}
}

// The message to a Storage Queue carries the operation id in its body.
func TestSubmitStorageEnvelope(t *testing.T) {
	c, _, _, _ := opsClient(t, client.Options{})
	p, err := c.Prepare(mustTarget(t, "big-q", ""), []byte(`{"a":1}`), client.WithMeta(bindings.Meta{OperationID: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := bindings.Base64.Decode(p.Body())
	if err != nil {
		t.Fatal(err)
	}
	if m, rest, ok, err := bindings.SplitMeta(payload); !ok || err != nil || m.OperationID != "x" || string(rest) != `{"a":1}` {
		t.Errorf("%q: %+v %q", payload, m, rest)
	}
}

func TestStartTyped(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c, _, w, ref := opsClient(t, client.Options{Now: func() time.Time { return now }, TimeToLive: time.Hour})
	rec, err := client.Start(context.Background(), c, ref, order{ID: 9}, client.SubmitOptions{IdempotencyKey: "k"})
	if err != nil || string(rec.Input) != `{"id":9}` || !rec.ExpiresOn.Equal(now.Add(time.Hour)) || rec.IdempotencyKey != "k" {
		t.Fatalf("%+v %v", rec, err)
	}
	if len(w.props) != 1 || w.props[0][bindings.PropOperationID] != rec.ID {
		t.Errorf("the message's properties %v lack the operation id", w.props)
	}
	rec2, err := client.Start(context.Background(), c, ref, order{ID: 9}, client.SubmitOptions{IdempotencyKey: "k"})
	if err != nil || rec2.ID != rec.ID || len(w.seen) != 1 {
		t.Errorf("repeat: %v", err)
	}
}

func TestCancelAndWait(t *testing.T) {
	var canceled []string
	c, store, _, _ := opsClient(t, client.Options{OnCancel: func(id string) { canceled = append(canceled, id) }})
	ctx := context.Background()
	waiting, _, err := c.Submit(ctx, client.Submission{Function: "Job"})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := c.Cancel(ctx, waiting.ID); err != nil || rec.Status != operations.Canceled || len(canceled) != 0 {
		t.Errorf("a waiting operation: %+v %v %v", rec, err, canceled)
	}
	running, _, _ := c.Submit(ctx, client.Submission{Function: "Job"})
	if _, err := store.Update(ctx, running.ID, operations.Started(1, time.Now())); err != nil {
		t.Fatal(err)
	}
	if rec, err := c.Cancel(ctx, running.ID); err != nil || rec.Status != operations.Canceling || len(canceled) != 1 || canceled[0] != running.ID {
		t.Errorf("a running operation: %+v %v %v", rec, err, canceled)
	}

	// Wait returns once the record completes, or when ctx ends.
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	if rec, err := c.Wait(short, running.ID); !errors.Is(err, context.DeadlineExceeded) || rec == nil || rec.Status != operations.Canceling {
		t.Errorf("Wait before completion: %+v %v", rec, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(200 * time.Millisecond)
		store.Update(ctx, running.ID, operations.EndCanceled(time.Now()))
	}()
	long, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if rec, err := c.Wait(long, running.ID); err != nil || rec.Status != operations.Canceled {
		t.Errorf("Wait: %+v %v", rec, err)
	}
	<-done
	if _, err := c.Wait(long, "0190e2a0-0000-7000-8000-000000000000"); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Wait on an unknown id: %v", err)
	}
}
