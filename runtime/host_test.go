package runtime

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// logSink collects the host's JSON log lines so tests can await events.
type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	entries []map[string]any
	changed chan struct{}
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	for {
		line, err := s.buf.ReadBytes('\n')
		if err != nil {
			s.buf.Write(line) // keep the partial line
			break
		}
		var e map[string]any
		if json.Unmarshal(line, &e) == nil {
			s.entries = append(s.entries, e)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *logSink) Sync() error { return nil }

// matching returns the entries for which f holds.
func (s *logSink) matching(f func(map[string]any) bool) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, e := range s.entries {
		if f(e) {
			out = append(out, e)
		}
	}
	return out
}

// await waits until n entries match f, failing the test after within.
func (s *logSink) await(t *testing.T, what string, n int, within time.Duration, f func(map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if got := s.matching(f); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %d× %s; log:\n%s", within, n, what, s.text())
		}
	}
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, e := range s.entries {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func outcome(o string) func(map[string]any) bool {
	return func(e map[string]any) bool { return e["outcome"] == o }
}

func msgContains(s string) func(map[string]any) bool {
	return func(e map[string]any) bool { m, _ := e["msg"].(string); return strings.Contains(m, s) }
}

// testHost runs a host over one Azurite queue.
type testHost struct {
	srv    *azuritetest.Server
	queue  string
	qc     *azqueue.QueueClient
	logs   *logSink
	cancel context.CancelFunc
	done   chan error
}

type hostSetup struct {
	queues   func(*QueueSettings)
	cfg      func(*Config)
	settings map[string]string
	srv      *azuritetest.Server
	queue    string // default: a fresh queue
}

func startHost(t *testing.T, reg *functions.Registry, s hostSetup) *testHost {
	t.Helper()
	if s.srv == nil {
		s.srv = azuritetest.Shared(t)
	}
	if s.queue == "" {
		s.queue = s.srv.NewQueue(t)
	}
	cfg := DefaultConfig()
	cfg.Queues.MaxPollingInterval = 500 * time.Millisecond
	cfg.Queues.MaxDequeueCount = 3
	cfg.ShutdownTimeout = 5 * time.Second
	if s.queues != nil {
		s.queues(&cfg.Queues)
	}
	if s.cfg != nil {
		s.cfg(cfg)
	}
	values := map[string]string{"AzureWebJobsStorage": s.srv.ConnectionString, "TestQueue": s.queue}
	for k, v := range s.settings {
		values[k] = v
	}
	sink := newLogSink()
	logs, err := NewLogs(LogOptions{Format: "json", Levels: map[string]string{"default": "Debug"}, Output: sink})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Registry: reg, Config: cfg, Settings: NewAppSettings(values), Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	th := &testHost{srv: s.srv, queue: s.queue, qc: s.srv.ServiceClient(t).NewQueueClient(s.queue), logs: sink,
		cancel: cancel, done: make(chan error, 1)}
	go func() { th.done <- h.Run(ctx) }()
	t.Cleanup(func() { th.stop(t) })
	return th
}

// stop stops the host and waits for Run to return.
func (h *testHost) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		h.done <- nil // later stops return at once
	case <-time.After(30 * time.Second):
		t.Fatal("host did not stop")
	}
}

// send enqueues text as any Azure Storage client would.
func (h *testHost) send(t *testing.T, text string) string {
	t.Helper()
	resp, err := h.qc.EnqueueMessage(context.Background(), text, nil)
	if err != nil {
		t.Fatal(err)
	}
	return *resp.Messages[0].MessageID
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// count returns the queue's approximate message count (visible or not).
func count(t *testing.T, qc *azqueue.QueueClient) int {
	t.Helper()
	p, err := qc.GetProperties(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return int(*p.ApproximateMessagesCount)
}

func peekAll(t *testing.T, qc *azqueue.QueueClient) []string {
	t.Helper()
	resp, err := qc.PeekMessages(context.Background(), &azqueue.PeekMessagesOptions{NumberOfMessages: ptr(int32(32))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range resp.Messages {
		out = append(out, *m.MessageText)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

type siteRequest struct {
	SiteURL       string `json:"siteUrl"`
	RequestorName string `json:"requestorName"`
}

// A message written as Functions producers write it (base64 of UTF-8 JSON)
// is bound, run once, and deleted.
func TestSuccessDeletesMessage(t *testing.T) {
	reg := &functions.Registry{}
	got := make(chan siteRequest, 4)
	var meta triggers.Message
	functions.Add(reg, "Provision", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, req siteRequest, msg *triggers.Message) error {
			meta = *msg
			got <- req
			return nil
		})
	h := startHost(t, reg, hostSetup{})
	id := h.send(t, b64(`{"siteUrl":"https://contoso.sharepoint.com/sites/ü","requestorName":"Zoë"}`))
	lines := h.logs.await(t, "success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	req := <-got
	if req.SiteURL != "https://contoso.sharepoint.com/sites/ü" || req.RequestorName != "Zoë" {
		t.Errorf("bound %+v", req)
	}
	if meta.ID != id || meta.DequeueCount != 1 || meta.InsertionTime.IsZero() || meta.ExpirationTime.IsZero() ||
		meta.PopReceipt == "" || meta.NextVisibleTime.IsZero() || !strings.HasPrefix(meta.Text(), "eyJ") {
		t.Errorf("metadata: %+v", meta)
	}
	l := lines[0]
	for _, k := range []string{"function", "invocationId", "queue", "messageId", "dequeueCount", "outcome", "durationMs"} {
		if _, ok := l[k]; !ok {
			t.Errorf("completion line lacks %s: %v", k, l)
		}
	}
	if l["messageId"] != id || l["queue"] != h.queue || l["function"] != "Provision" {
		t.Errorf("completion line: %v", l)
	}
	h.stop(t)
	if n := count(t, h.qc); n != 0 {
		t.Errorf("queue holds %d messages after success, want 0", n)
	}
	if len(got) != 0 {
		t.Errorf("function ran more than once")
	}
}

// A failing message is retried with a growing DequeueCount, then poisoned
// with a byte-identical body after maxDequeueCount attempts.
func TestFailureRetriesThenPoisons(t *testing.T) {
	reg := &functions.Registry{}
	var mu sync.Mutex
	var counts []int64
	functions.Add(reg, "AlwaysFails", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, in map[string]any, msg *triggers.Message) error {
			mu.Lock()
			counts = append(counts, msg.DequeueCount)
			mu.Unlock()
			return errors.New("site is locked")
		})
	h := startHost(t, reg, hostSetup{})
	body := b64(`{"siteUrl": "https://x", "n": 1}`)
	id := h.send(t, body)
	h.logs.await(t, "poisoned", 1, 30*time.Second, outcome(OutcomePoisoned))
	warn := h.logs.await(t, "poison warning", 1, time.Second, msgContains("moved to poison"))[0]
	h.stop(t)
	mu.Lock()
	if fmt.Sprint(counts) != "[1 2 3]" {
		t.Errorf("attempts saw DequeueCount %v, want [1 2 3]", counts)
	}
	mu.Unlock()
	if n := len(h.logs.matching(outcome(OutcomeFailed))); n != 2 {
		t.Errorf("%d failed lines, want 2", n)
	}
	if warn["messageId"] != id || warn["poisonMessageId"] == "" || warn["dequeueCount"] != 3.0 ||
		warn["error"] != "site is locked" || warn["poisonQueue"] != h.queue+"-poison" {
		t.Errorf("poison warning: %v", warn)
	}
	poison := h.srv.ServiceClient(t).NewQueueClient(h.queue + "-poison")
	if got := peekAll(t, poison); len(got) != 1 || got[0] != body {
		t.Errorf("poison queue holds %q, want [%q]", got, body)
	}
	if n := count(t, h.qc); n != 0 {
		t.Errorf("source queue holds %d, want 0", n)
	}
}

// Bad base64 and bad JSON are poisoned on their first delivery, unchanged,
// without running the function.
func TestUndecodablePoisonedAtOnce(t *testing.T) {
	reg := &functions.Registry{}
	var calls atomic.Int32
	functions.Add(reg, "Typed", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, in siteRequest, msg *triggers.Message) error {
			calls.Add(1)
			return nil
		})
	h := startHost(t, reg, hostSetup{})
	badB64 := `{"siteUrl": "not base64"}`
	badJSON := b64(`{"siteUrl": `)
	h.send(t, badB64)
	h.send(t, badJSON)
	lines := h.logs.await(t, "two poisoned", 2, 20*time.Second, outcome(OutcomePoisoned))
	h.stop(t)
	if calls.Load() != 0 {
		t.Errorf("function ran %d times", calls.Load())
	}
	reasons := ""
	for _, l := range lines {
		if l["dequeueCount"] != 1.0 {
			t.Errorf("poisoned on delivery %v, want 1", l["dequeueCount"])
		}
		reasons += fmt.Sprint(l["error"]) + "\n"
	}
	if !strings.Contains(reasons, "base64") || !strings.Contains(reasons, "cannot be bound") {
		t.Errorf("reasons logged:\n%s", reasons)
	}
	got := peekAll(t, h.srv.ServiceClient(t).NewQueueClient(h.queue+"-poison"))
	if strings.Join(got, "|") != badB64+"|"+badJSON && strings.Join(got, "|") != badJSON+"|"+badB64 {
		t.Errorf("poison bodies %q", got)
	}
}

// A message already past maxDequeueCount (an earlier host died mid-run) is
// poisoned without running.
func TestOverLimitPoisonedWithoutRunning(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	drv := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	ctx := context.Background()
	if _, err := drv.Send(ctx, b64(`{}`)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // three deliveries that never finished
		msgs, err := drv.Receive(ctx, 1, time.Minute)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("receive: %v %d", err, len(msgs))
		}
		if err := drv.Retry(ctx, msgs[0], 0); err != nil {
			t.Fatal(err)
		}
	}
	reg := &functions.Registry{}
	var calls atomic.Int32
	functions.Add(reg, "F", functions.QueueTrigger(queue), func(ctx context.Context, in []byte, msg *triggers.Message) error {
		calls.Add(1)
		return nil
	})
	h := startHost(t, reg, hostSetup{srv: srv, queue: queue})
	l := h.logs.await(t, "poisoned", 1, 20*time.Second, outcome(OutcomePoisoned))[0]
	h.stop(t)
	if calls.Load() != 0 || l["dequeueCount"] != 4.0 || !strings.Contains(fmt.Sprint(l["error"]), "attempts allowed by maxDequeueCount") {
		t.Errorf("calls=%d line=%v", calls.Load(), l)
	}
}

// A function running longer than its lease keeps the message (renewal at
// half-lease) and runs once; the delete uses the renewed pop receipt.
func TestLeaseRenewalRunsOnce(t *testing.T) {
	reg := &functions.Registry{}
	var calls atomic.Int32
	functions.Add(reg, "Slow", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, in string, msg *triggers.Message) error {
			calls.Add(1)
			select {
			case <-time.After(5 * time.Second): // 2.5 leases
			case <-ctx.Done():
			}
			return nil
		}, functions.LeaseDuration(2*time.Second))
	h := startHost(t, reg, hostSetup{})
	h.send(t, b64("work"))
	h.logs.await(t, "success", 1, 30*time.Second, outcome(OutcomeSucceeded))
	if n := len(h.logs.matching(msgContains("lease renewed"))); n < 2 {
		t.Errorf("lease renewed %d times, want at least 2", n)
	}
	h.stop(t)
	if calls.Load() != 1 {
		t.Errorf("function ran %d times, want 1", calls.Load())
	}
	if n := count(t, h.qc); n != 0 {
		t.Errorf("queue holds %d after success", n)
	}
}

// A panic is recovered, logged with its stack and counted as a failure; a
// function timeout cancels the context and counts as a failure.
func TestPanicAndTimeoutAreFailures(t *testing.T) {
	reg := &functions.Registry{}
	functions.Add(reg, "Panics", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, in string, msg *triggers.Message) error {
			if in == "panic" {
				var m map[string]int
				m["boom"]++ // nil map write
			}
			<-ctx.Done() // until functionTimeout
			return ctx.Err()
		}, functions.MaxDequeueCount(1), functions.Timeout(300*time.Millisecond))
	h := startHost(t, reg, hostSetup{})
	h.send(t, b64("panic"))
	h.send(t, b64("hang"))
	lines := h.logs.await(t, "two poisoned", 2, 20*time.Second, outcome(OutcomePoisoned))
	h.stop(t)
	errs := fmt.Sprint(lines[0]["error"], "|", lines[1]["error"])
	if !strings.Contains(errs, "panic: assignment to entry in nil map") || !strings.Contains(errs, "timed out after 300ms") {
		t.Errorf("errors: %s", errs)
	}
	p := h.logs.matching(msgContains("function panicked"))
	if len(p) != 1 || !strings.Contains(fmt.Sprint(p[0]["stack"]), "host_test.go") {
		t.Errorf("panic line: %v", p)
	}
}

// Stop: a function that finishes within the shutdown timeout is completed;
// one that does not is cancelled and its message stays in the queue.
func TestShutdownKeepsUnfinishedMessages(t *testing.T) {
	reg := &functions.Registry{}
	started := make(chan string, 2)
	functions.Add(reg, "Work", functions.QueueTrigger("%TestQueue%"),
		func(ctx context.Context, in string, msg *triggers.Message) error {
			started <- in
			d := 300 * time.Millisecond
			if in == "long" {
				d = time.Hour
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	h := startHost(t, reg, hostSetup{cfg: func(c *Config) { c.ShutdownTimeout = time.Second }})
	h.send(t, b64("short"))
	h.send(t, b64("long"))
	<-started
	<-started
	h.stop(t)
	if n := len(h.logs.matching(outcome(OutcomeSucceeded))); n != 1 {
		t.Errorf("%d succeeded, want 1 (the short one finished during shutdown)", n)
	}
	if n := len(h.logs.matching(outcome(OutcomeCancelled))); n != 1 {
		t.Errorf("%d cancelled, want 1", n)
	}
	if n := count(t, h.qc); n != 1 {
		t.Errorf("queue holds %d, want 1: the unfinished message must stay", n)
	}
}

// batchSize + newBatchThreshold bound the functions running at once.
func TestConcurrencyLimit(t *testing.T) {
	// want is the most that may run at once; atLeast what the batch alone
	// guarantees (a third slot opening depends on timing).
	for _, tc := range []struct{ batch, threshold, want, atLeast int }{{1, 0, 1, 1}, {2, 1, 3, 2}} {
		t.Run(fmt.Sprintf("batch%d-threshold%d", tc.batch, tc.threshold), func(t *testing.T) {
			reg := &functions.Registry{}
			var cur, peak atomic.Int32
			functions.Add(reg, "Busy", functions.QueueTrigger("%TestQueue%"),
				func(ctx context.Context, in string, msg *triggers.Message) error {
					n := cur.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					time.Sleep(200 * time.Millisecond) // the work being limited
					cur.Add(-1)
					return nil
				}, functions.BatchSize(tc.batch), functions.NewBatchThreshold(tc.threshold))
			h := startHost(t, reg, hostSetup{})
			for i := range 8 {
				h.send(t, b64(fmt.Sprint(i)))
			}
			h.logs.await(t, "8 successes", 8, 30*time.Second, outcome(OutcomeSucceeded))
			if p := int(peak.Load()); p > tc.want || p < tc.atLeast {
				t.Errorf("peak concurrency %d, want %d..%d", p, tc.atLeast, tc.want)
			}
		})
	}
}

// A missing queue is waited for with a warning, or created when configured.
func TestMissingQueue(t *testing.T) {
	srv := azuritetest.Shared(t)
	t.Run("wait", func(t *testing.T) {
		queue := azuritetest.UniqueQueueName(t)
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger(queue), func(ctx context.Context, in string, msg *triggers.Message) error { return nil })
		h := startHost(t, reg, hostSetup{srv: srv, queue: queue})
		h.logs.await(t, "missing-queue warning", 1, 10*time.Second, msgContains("queue does not exist"))
		if _, err := h.qc.Create(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.qc.Delete(context.Background(), nil) })
		h.send(t, b64("x"))
		h.logs.await(t, "success after the queue appears", 1, 20*time.Second, outcome(OutcomeSucceeded))
		if n := len(h.logs.matching(func(e map[string]any) bool {
			return e["level"] == "warn" && strings.Contains(fmt.Sprint(e["msg"]), "does not exist")
		})); n > 2 {
			t.Errorf("%d warnings for one missing queue: the log must not flood", n)
		}
	})
	t.Run("create", func(t *testing.T) {
		queue := azuritetest.UniqueQueueName(t)
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger(queue), func(ctx context.Context, in string, msg *triggers.Message) error { return nil })
		h := startHost(t, reg, hostSetup{srv: srv, queue: queue, queues: func(q *QueueSettings) { q.CreateQueues = true }})
		t.Cleanup(func() { h.qc.Delete(context.Background(), nil) })
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := h.qc.GetProperties(context.Background(), nil); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("queue was not created")
			}
			time.Sleep(50 * time.Millisecond) // polling an external resource
		}
		h.send(t, b64("x"))
		h.logs.await(t, "success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	})
}

// The host stays up while Azurite is down and picks up work when it returns.
func TestSurvivesAzuriteOutage(t *testing.T) {
	srv := azuritetest.Start(t, azuritetest.Options{Location: t.TempDir()})
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.QueueTrigger("%TestQueue%"), func(ctx context.Context, in string, msg *triggers.Message) error { return nil })
	h := startHost(t, reg, hostSetup{srv: srv})
	h.send(t, b64("before"))
	h.logs.await(t, "first success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	srv.Stop()
	h.logs.await(t, "poll failure", 1, 20*time.Second, msgContains("polling the queue failed"))
	srv.Restart(t)
	h.send(t, b64("after"))
	h.logs.await(t, "success after restart", 2, 30*time.Second, outcome(OutcomeSucceeded))
	h.logs.await(t, "recovery line", 1, time.Second, msgContains("reachable again"))
}

// No account key, SAS signature or connection string reaches the log, even
// when the storage account cannot be reached.
func TestSecretsNeverLogged(t *testing.T) {
	const key = "c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5MTI="
	const sig = "SIGSECRETvalue%3D"
	for name, cs := range map[string]string{
		"shared key": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + key + ";QueueEndpoint=http://127.0.0.1:1/devstoreaccount1",
		"sas":        "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;SharedAccessSignature=sv=2021-08-06&ss=q&srt=sco&sp=rwdlacup&se=2099-01-01T00:00:00Z&sig=" + sig,
	} {
		t.Run(name, func(t *testing.T) {
			reg := &functions.Registry{}
			functions.Add(reg, "F", functions.QueueTrigger("some-queue"), func(ctx context.Context, in string, msg *triggers.Message) error { return nil })
			h := startHost(t, reg, hostSetup{queue: "some-queue", settings: map[string]string{"AzureWebJobsStorage": cs}})
			h.logs.await(t, "poll failure", 1, 20*time.Second, msgContains("polling the queue failed"))
			h.stop(t)
			out := h.logs.text()
			for _, secret := range []string{key, sig, "SIGSECRET", cs} {
				if strings.Contains(out, secret) {
					t.Errorf("log contains a secret %q:\n%s", secret, out)
				}
			}
		})
	}
}
