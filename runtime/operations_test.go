package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/triggers"
)

// countingStore counts the writes made to a store and can be taken down
// (every call fails) to play an outage.
type countingStore struct {
	operations.Store
	creates, updates atomic.Int64
	down             atomic.Bool
}

var errStoreDown = errors.New("store unreachable (test outage)")

func (s *countingStore) Create(ctx context.Context, r *operations.Record) (*operations.Record, error) {
	if s.down.Load() {
		return nil, errStoreDown
	}
	rec, err := s.Store.Create(ctx, r)
	if err == nil {
		s.creates.Add(1)
	}
	return rec, err
}

func (s *countingStore) Get(ctx context.Context, id string) (*operations.Record, error) {
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.Get(ctx, id)
}

func (s *countingStore) Update(ctx context.Context, id string, c operations.Change) (*operations.Record, error) {
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.Update(ctx, id, func(r *operations.Record) (bool, error) {
		changed, err := c(r)
		if changed && err == nil {
			s.updates.Add(1)
		}
		return changed, err
	})
}

func (s *countingStore) writes() int64 { return s.creates.Load() + s.updates.Load() }

// opsHost is a running host with the operations API on a real listener.
type opsHost struct {
	h      *Host
	logs   *logSink
	store  *countingStore
	client *client.Client // a client of the host's own configuration
	base   string         // http://127.0.0.1:port/api/operations
	stop   func()
}

type opsSetup struct {
	trigger  string            // the function's queue or URL
	settings map[string]string // app settings
	cfg      func(*Config)
	store    operations.Store // default: a new memstore
}

// startOpsHost runs reg's functions with the HTTP listener on a free
// loopback port and the store wrapped in a countingStore.
func startOpsHost(t *testing.T, reg *functions.Registry, s opsSetup) *opsHost {
	t.Helper()
	if s.store == nil {
		s.store = memstore.New(memstore.Options{})
	}
	cs := &countingStore{Store: s.store}
	cfg := DefaultConfig()
	cfg.Queues.MaxPollingInterval = 200 * time.Millisecond
	cfg.PubSub.MaxPollingInterval = 200 * time.Millisecond
	cfg.Queues.MaxDequeueCount = 3
	cfg.PubSub.MaxDequeueCount = 3
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	if s.cfg != nil {
		s.cfg(cfg)
	}
	settings := NewAppSettings(s.settings)
	sink := newLogSink()
	logs, err := NewLogs(LogOptions{Format: "json", Levels: map[string]string{"default": "Debug"}, Output: sink})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs, Operations: cs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	listening := make(chan struct{})
	go func() {
		sink.await(t, "the HTTP listener", 1, 10*time.Second, func(e map[string]any) bool {
			return strings.HasPrefix(fmt.Sprint(e["msg"]), "HTTP listener started")
		})
		close(listening)
	}()
	select {
	case <-listening:
	case err := <-done:
		cancel()
		t.Fatalf("Run returned at start: %v", err)
	}
	opts, err := ClientOptions(cfg, settings, reg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Store = cs
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	oh := &opsHost{h: h, logs: sink, store: cs, client: c, base: "http://" + h.HTTPAddr() + OperationsPath}
	var once sync.Once
	oh.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			c.Close()
		})
	}
	t.Cleanup(oh.stop)
	return oh
}

// apiRecord is the part of the API's record JSON the tests read.
type apiRecord struct {
	ID         string          `json:"id"`
	Status     int             `json:"status"`
	StatusName string          `json:"statusName"`
	Output     json.RawMessage `json:"output"`
	Progress   json.RawMessage `json:"progress"`
	Attempt    int             `json:"attempt"`
	ErrorCode  string          `json:"errorCode"`
	Location   string          `json:"location"`
}

func (o *opsHost) do(t *testing.T, method, url string, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func decodeRecord(t *testing.T, b []byte) apiRecord {
	t.Helper()
	var r apiRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("record JSON: %v: %s", err, b)
	}
	return r
}

// waitFinal waits (through the client's Wait) until operation id completes.
func (o *opsHost) waitFinal(t *testing.T, id string) *operations.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec, err := o.client.Wait(ctx, id)
	if err != nil {
		t.Fatalf("operation %s did not complete: %v (last: %+v)", id, err, rec)
	}
	return rec
}

type provisionRequest struct {
	Title string `json:"title"`
	Pages int    `json:"pages"`
}

// A submitted operation runs, ends Succeeded with the function's return
// value, and costs three store writes: created, started, succeeded.
func TestOperationSucceedsInThreeWrites(t *testing.T) {
	reg := &functions.Registry{}
	functions.AddResult(reg, "Provision", functions.SubscriptionTrigger("memqueue://ops-succeed"), "",
		func(ctx context.Context, in provisionRequest, _ *triggers.Message) (map[string]any, error) {
			if functions.OperationID(ctx) == "" {
				return nil, errors.New("no operation id in the context")
			}
			return map[string]any{"url": "https://contoso/sites/" + in.Title, "pages": in.Pages}, nil
		})
	o := startOpsHost(t, reg, opsSetup{})
	resp, b := o.do(t, "POST", o.base+"/Provision", `{"title":"hr","pages":3}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http://127.0.0.1:") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("Location %q, Retry-After %q", loc, resp.Header.Get("Retry-After"))
	}
	sub := decodeRecord(t, b)
	rec := o.waitFinal(t, sub.ID)
	if rec.Status != operations.Succeeded || rec.Attempt != 1 {
		t.Fatalf("record: %s attempt %d (%s)", rec.Status, rec.Attempt, rec.ErrorMessage)
	}
	resp, b = o.do(t, "GET", loc, "")
	got := decodeRecord(t, b)
	if resp.StatusCode != 200 || got.StatusName != "Succeeded" || !bytes.Contains(got.Output, []byte(`"url":"https://contoso/sites/hr"`)) {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	// The last write may land just after Wait saw it: stop the host to
	// flush, then count.
	o.stop()
	if n := o.store.writes(); n != 3 {
		t.Fatalf("store writes per operation = %d, want 3", n)
	}
}

// A queued operation that is cancelled never runs: its message is
// completed without invoking the function.
func TestCancelQueuedOperationNeverRuns(t *testing.T) {
	reg := &functions.Registry{}
	var calls atomic.Int32
	functions.Add(reg, "Slow", functions.SubscriptionTrigger("memqueue://ops-cancel-queued"),
		func(ctx context.Context, in provisionRequest, _ *triggers.Message) error { calls.Add(1); return nil })
	store := memstore.New(memstore.Options{})
	// A client of its own submits and cancels before any host runs.
	cfg := DefaultConfig()
	opts, err := ClientOptions(cfg, NewAppSettings(nil), reg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Store = store
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rec, _, err := c.Submit(ctx, client.Submission{Function: "Slow", Input: json.RawMessage(`{"title":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = c.Cancel(ctx, rec.ID); err != nil || rec.Status != operations.Canceled {
		t.Fatalf("cancel: %v %v", rec, err)
	}
	o := startOpsHost(t, reg, opsSetup{store: store})
	o.logs.await(t, "the canceled message dropped", 1, 10*time.Second, func(e map[string]any) bool {
		return e["outcome"] == OutcomeOperationCanceled
	})
	o.stop()
	if n := calls.Load(); n != 0 {
		t.Fatalf("the function ran %d times", n)
	}
	if got, _ := store.Get(ctx, rec.ID); got.Status != operations.Canceled {
		t.Fatalf("record %s", got.Status)
	}
}

// blockingFunction registers F, which reports each start on started and
// runs until its context ends, then returns what ctx's end gives.
func blockingFunction(reg *functions.Registry, trigger string, started chan<- time.Time, ended chan<- time.Time, calls *atomic.Int32) {
	functions.Add(reg, "Long", functions.SubscriptionTrigger(trigger),
		func(ctx context.Context, in provisionRequest, _ *triggers.Message) error {
			calls.Add(1)
			_ = functions.Progress(ctx, map[string]int{"done": 1})
			started <- time.Now()
			<-ctx.Done()
			ended <- time.Now()
			return nil // a function that swallows the cancel: still not retried
		})
}

// Cancelling a running operation through the API cancels the function's
// context at once, the attempt is never retried, and the record ends
// Canceled.
func TestCancelRunningOperationThroughAPI(t *testing.T) {
	reg := &functions.Registry{}
	started, ended := make(chan time.Time, 4), make(chan time.Time, 4)
	var calls atomic.Int32
	blockingFunction(reg, "memqueue://ops-cancel-running", started, ended, &calls)
	o := startOpsHost(t, reg, opsSetup{})
	resp, b := o.do(t, "POST", o.base+"/Long", `{"title":"long"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	id := decodeRecord(t, b).ID
	<-started
	asked := time.Now()
	resp, b = o.do(t, "DELETE", o.base+"/"+id, "")
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	select {
	case at := <-ended:
		took := at.Sub(asked)
		t.Logf("DELETE → function context cancelled: %s", took)
		if took > 2*time.Second {
			t.Errorf("the function's context was cancelled %s after the DELETE; want within 2 s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the function's context was never cancelled")
	}
	rec := o.waitFinal(t, id)
	resp, _ = o.do(t, "DELETE", o.base+"/"+id, "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("second DELETE: %d, want 200 (already canceled)", resp.StatusCode)
	}
	o.stop()
	if rec.Status != operations.Canceled || calls.Load() != 1 {
		t.Fatalf("record %s after %d calls", rec.Status, calls.Load())
	}
	if string(rec.Progress) != `{"done":1}` {
		t.Errorf("progress %s", rec.Progress)
	}
}

// An API in another process writes only the record: the host holding the
// operation finds the cancel in the store within cancelPollInterval.
func TestCancelRunningOperationFromAnotherProcess(t *testing.T) {
	reg := &functions.Registry{}
	started, ended := make(chan time.Time, 4), make(chan time.Time, 4)
	var calls atomic.Int32
	blockingFunction(reg, "memqueue://ops-cancel-remote", started, ended, &calls)
	o := startOpsHost(t, reg, opsSetup{})
	ctx := context.Background()
	rec, _, err := o.client.Submit(ctx, client.Submission{Function: "Long", Input: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	asked := time.Now()
	// o.client has no OnCancel: as a web app's client, it only writes.
	if rec, err = o.client.Cancel(ctx, rec.ID); err != nil || rec.Status != operations.Canceling {
		t.Fatalf("cancel: %v %v", rec, err)
	}
	select {
	case at := <-ended:
		took := at.Sub(asked)
		t.Logf("cancel in the store → function context cancelled: %s", took)
		if took > 2*time.Second {
			t.Errorf("cancelled %s after the request; want within 2 s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the function's context was never cancelled")
	}
	if rec := o.waitFinal(t, rec.ID); rec.Status != operations.Canceled {
		t.Fatalf("record %s", rec.Status)
	}
}

// A store outage while messages run delays the records but loses and
// re-runs nothing: every function runs once, and the records converge
// once the store is back.
func TestStoreOutageLosesNothing(t *testing.T) {
	reg := &functions.Registry{}
	var calls atomic.Int32
	ran := make(chan struct{}, 64)
	functions.Add(reg, "Work", functions.SubscriptionTrigger("memqueue://ops-outage"),
		func(ctx context.Context, in provisionRequest, _ *triggers.Message) error {
			calls.Add(1)
			ran <- struct{}{}
			return nil
		})
	o := startOpsHost(t, reg, opsSetup{})
	ctx := context.Background()
	// The records are written, then the store goes down before the host
	// takes the messages.
	o.store.down.Store(true)
	const n = 10
	var ids []string
	for i := range n {
		o.store.down.Store(false)
		rec, _, err := o.client.Submit(ctx, client.Submission{Function: "Work", Input: json.RawMessage(fmt.Sprintf(`{"pages":%d}`, i))})
		o.store.down.Store(true)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	for range n {
		select {
		case <-ran:
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d functions ran during the outage", calls.Load())
		}
	}
	o.logs.await(t, "the outage logged once", 1, 5*time.Second, func(e map[string]any) bool {
		return strings.Contains(fmt.Sprint(e["msg"]), "operations store cannot be reached")
	})
	o.store.down.Store(false)
	for _, id := range ids {
		if rec := o.waitFinal(t, id); rec.Status != operations.Succeeded {
			t.Fatalf("record %s: %s", id, rec.Status)
		}
	}
	o.stop()
	if c := calls.Load(); c != n {
		t.Fatalf("functions ran %d times for %d messages", c, n)
	}
	if got := len(o.logs.matching(func(e map[string]any) bool {
		return strings.Contains(fmt.Sprint(e["msg"]), "operations store cannot be reached")
	})); got != 1 {
		t.Errorf("outage logged %d times, want once", got)
	}
}

// A message without an operation is untouched by the envelope logic, and a
// Storage-Queue-style envelope is stripped before binding.
func TestEnvelopeStrippedBeforeBinding(t *testing.T) {
	reg := &functions.Registry{}
	got := make(chan string, 1)
	functions.Add(reg, "Echo", functions.SubscriptionTrigger("memqueue://ops-envelope"),
		func(ctx context.Context, in json.RawMessage, _ *triggers.Message) error {
			got <- string(in) + "|" + functions.OperationID(ctx)
			return nil
		})
	o := startOpsHost(t, reg, opsSetup{})
	body, err := bindings.WrapMeta([]byte(`{"a":1}`), bindings.Meta{OperationID: "not-a-record"})
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := client.ParseTarget("memqueue://ops-envelope", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.client.SendPayload(context.Background(), tgt, body); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != `{"a":1}|not-a-record` {
			t.Fatalf("function got %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not run")
	}
}
