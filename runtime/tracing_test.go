package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/tracing"
	"github.com/jobhost/jobhost/tracing/tracingtest"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

func spanAttr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// unitListener is a listener of one function on trigger, not running, for
// calling startInvocation and the span's end directly.
func unitListener(t *testing.T, trigger string) *listener {
	t.Helper()
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.SubscriptionTrigger(trigger),
		func(ctx context.Context, p []byte, m *triggers.Message) error { return nil }, functions.MaxDequeueCount(3))
	cfg := DefaultConfig()
	funcs, _, err := ResolveFunctions(cfg, reg, NewAppSettings(map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"}))
	if err != nil {
		t.Fatal(err)
	}
	logs, err := NewLogs(LogOptions{Levels: map[string]string{"default": "None"}, Output: zapcore.AddSync(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	return newListener(funcs[0], nopDriver{}, logs, context.Background(), nil)
}

const producerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// A message taken up soon after it was sent is a child of its producer's
// span; one that waited longer than LinkAfter starts a trace of its own,
// linked to the producer's.
func TestTracingChildOrLink(t *testing.T) {
	exp, _ := tracingtest.Record(t)
	l := unitListener(t, "rabbit://orders")
	producer, _ := tracing.Parse(producerParent, "")
	start := time.Now()
	for _, c := range []struct {
		name      string
		linkAfter time.Duration
		enqueued  time.Time
		props     map[string]string
		linked    bool
	}{
		{"fresh", 0, start.Add(-10 * time.Second), map[string]string{"traceparent": producerParent}, false},
		{"waited", 0, start.Add(-2 * time.Minute), map[string]string{"traceparent": producerParent}, true},
		{"no insertion time", 0, time.Time{}, map[string]string{"traceparent": producerParent}, false},
		{"threshold raised", time.Hour, start.Add(-2 * time.Minute), map[string]string{"traceparent": producerParent}, false},
		{"never link", -1, start.Add(-48 * time.Hour), map[string]string{"traceparent": producerParent}, false},
		{"diagnostic-id", 0, start.Add(-time.Second), map[string]string{"Diagnostic-Id": producerParent}, false},
	} {
		exp.Reset()
		tracing.SetLinkAfter(c.linkAfter)
		view := &triggers.Message{ID: "m1", Body: []byte(`{}`), DequeueCount: 2, InsertionTime: c.enqueued, Properties: c.props}
		ctx, span := l.startInvocation(context.Background(), view, "inv-"+c.name, nil, start)
		if span == nil || tracing.TraceID(ctx) == "" {
			t.Fatalf("%s: no span", c.name)
		}
		span.end(nil, false)
		got := exp.GetSpans()
		if len(got) != 1 {
			t.Fatalf("%s: %d spans", c.name, len(got))
		}
		s := got[0]
		if c.linked {
			if s.Parent.IsValid() || s.SpanContext.TraceID() == producer.TraceID() || len(s.Links) != 1 ||
				s.Links[0].SpanContext.SpanID() != producer.SpanID() || !spanAttr(s, "jobhost.trace.linked").AsBool() {
				t.Errorf("%s: want a new trace linked to the producer; parent %v, trace %s, links %v", c.name, s.Parent, s.SpanContext.TraceID(), s.Links)
			}
		} else if s.Parent.SpanID() != producer.SpanID() || s.SpanContext.TraceID() != producer.TraceID() || !s.Parent.IsRemote() || len(s.Links) != 0 {
			t.Errorf("%s: want a child of the producer; parent %v, links %v", c.name, s.Parent, s.Links)
		}
		if !s.StartTime.Equal(start) {
			t.Errorf("%s: span starts %s, want when the host took the message up (%s)", c.name, s.StartTime, start)
		}
		if l.traceIDOf("inv-"+c.name) != s.SpanContext.TraceID().String() || l.traceIDOf("inv-"+c.name) != "" {
			t.Errorf("%s: traceIDOf is not the span's trace id, once", c.name)
		}
	}
	// Without a producer context: a root span.
	exp.Reset()
	_, span := l.startInvocation(context.Background(), &triggers.Message{ID: "m2", DequeueCount: 1}, "inv-root", nil, start)
	span.end(nil, false)
	if s := exp.GetSpans(); len(s) != 1 || s[0].Parent.IsValid() || len(s[0].Links) != 0 {
		t.Fatalf("root span: %v", s)
	}
	l.traceIDOf("inv-root")
}

// The consumer span's name, kind and attributes follow the messaging
// conventions; a failure sets the Error status with the outcome settle
// will give.
func TestTracingSpanAttributesAndOutcome(t *testing.T) {
	exp, _ := tracingtest.Record(t)
	l := unitListener(t, "azuresb://orders")
	errBoom := errors.New("boom: Password=hunter2")
	for _, c := range []struct {
		dequeue  int64
		err      error
		canceled bool
		outcome  string
		status   codes.Code
		errType  string
	}{
		{1, nil, false, OutcomeSucceeded, codes.Unset, ""},
		{1, errBoom, false, OutcomeFailed, codes.Error, "_OTHER"},
		{3, errBoom, false, OutcomePoisoned, codes.Error, "_OTHER"},
		{1, functions.Permanent(errBoom), false, OutcomePoisoned, codes.Error, "permanent"},
		{1, fmt.Errorf("function timed out: %w", context.DeadlineExceeded), false, OutcomeFailed, codes.Error, "timeout"},
		{1, context.Canceled, true, OutcomeOperationCanceled, codes.Unset, ""},
	} {
		exp.Reset()
		view := &triggers.Message{ID: "msg-1", Body: []byte(`{"a":1}`), DequeueCount: c.dequeue}
		_, span := l.startInvocation(context.Background(), view, "inv-1", nil, time.Now())
		span.end(c.err, c.canceled)
		l.traceIDOf("inv-1")
		s := exp.GetSpans()[0]
		if s.Name != "process orders" || s.SpanKind != trace.SpanKindConsumer {
			t.Fatalf("span %q kind %v", s.Name, s.SpanKind)
		}
		for k, want := range map[string]any{
			"messaging.system": "servicebus", "messaging.destination.name": "orders",
			"messaging.operation.name": "process", "messaging.operation.type": "process",
			"messaging.message.id": "msg-1", "messaging.consumer.group.name": "F",
			"faas.trigger": "pubsub", "faas.invocation_id": "inv-1",
			"jobhost.invocation.outcome":                  c.outcome,
			"jobhost.message.dequeue_count":               c.dequeue,
			"messaging.servicebus.message.delivery_count": c.dequeue,
			"messaging.message.body.size":                 int64(7),
		} {
			if got := spanAttr(s, k).AsInterface(); got != want {
				t.Errorf("outcome %s: %s = %v (%T), want %v", c.outcome, k, got, got, want)
			}
		}
		if s.Status.Code != c.status {
			t.Errorf("outcome %s: status %v", c.outcome, s.Status)
		}
		if got := spanAttr(s, "error.type").AsString(); got != c.errType {
			t.Errorf("outcome %s: error.type %q, want %q", c.outcome, got, c.errType)
		}
		if strings.Contains(s.Status.Description, "hunter2") {
			t.Errorf("the status shows a secret: %s", s.Status.Description)
		}
	}
}

// A Storage Queue message carries its producer's context in the body's
// envelope, base64 or not.
func TestTracingStorageQueueEnvelope(t *testing.T) {
	exp, _ := tracingtest.Record(t)
	l := unitListener(t, "orders")
	body, err := bindings.WrapMeta([]byte(`{"id":1}`), bindings.Meta{TraceParent: producerParent})
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []bindings.Encoding{bindings.Base64, bindings.None} {
		exp.Reset()
		l.fc.Queues.MessageEncoding = enc
		_, span := l.startInvocation(context.Background(), &triggers.Message{ID: "m", Body: enc.Encode(body), DequeueCount: 1}, "inv", nil, time.Now())
		span.end(nil, false)
		l.traceIDOf("inv")
		s := exp.GetSpans()[0]
		if s.Parent.SpanID().String() != "00f067aa0ba902b7" || spanAttr(s, "messaging.system").AsString() != "azure_storage_queue" {
			t.Errorf("%s: parent %v, system %v", enc, s.Parent, spanAttr(s, "messaging.system"))
		}
	}
}

// ctxSink keeps a context from being optimised away where allocations are
// counted.
var ctxSink context.Context

// Tracing off: an invocation gets no span, allocates nothing for tracing
// and keeps no trace id.
func TestTracingOffStartsNothing(t *testing.T) {
	restore := tracing.Use(nil)
	defer restore()
	l := unitListener(t, "rabbit://orders")
	view := &triggers.Message{ID: "m", Properties: map[string]string{"traceparent": producerParent}, InsertionTime: time.Now()}
	allocs := testing.AllocsPerRun(100, func() {
		ctx, span := l.startInvocation(context.Background(), view, "inv", nil, time.Now())
		span.end(nil, false)
		if span != nil || trace.SpanContextFromContext(ctx).IsValid() {
			t.Fatal("a span while tracing is off")
		}
	})
	before := testing.AllocsPerRun(100, func() { ctxSink = invocation.With(context.Background(), l.user, "inv") })
	if allocs != before {
		t.Fatalf("%.0f allocations; want %.0f, invocation.With's, as before tracing", allocs, before)
	}
	if l.traceIDOf("inv") != "" {
		t.Fatal("a trace id while tracing is off")
	}
}

// traceBroker is a real broker for the end-to-end tests: how to name its
// queues and reach them.
type traceBroker struct {
	trigger  func(queue string) string // the trigger and output target of a queue
	queue    func(t *testing.T) string // a new queue
	settings map[string]string
	storage  bool
}

func traceBrokers() map[string]func(t *testing.T) traceBroker {
	return map[string]func(t *testing.T) traceBroker{
		"memqueue": func(t *testing.T) traceBroker {
			var n atomic.Int64
			return traceBroker{trigger: func(q string) string { return "memqueue://" + q },
				queue: func(t *testing.T) string {
					return fmt.Sprintf("trace-%s-%d-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano(), n.Add(1))
				}}
		},
		"rabbitmq": func(t *testing.T) traceBroker {
			url := rabbittest.Require(t)
			return traceBroker{trigger: func(q string) string { return "rabbit://" + q }, queue: func(t *testing.T) string { return rabbittest.UniqueName(t) },
				settings: map[string]string{"RABBIT_SERVER_URL": url}}
		},
		// Storage Queues, the trace context in the body (opted in).
		"azurite": func(t *testing.T) traceBroker {
			srv := azuritetest.Shared(t)
			return traceBroker{trigger: func(q string) string { return q }, queue: func(t *testing.T) string { return srv.NewQueue(t) }, storage: true,
				settings: map[string]string{"AzureWebJobsStorage": srv.ConnectionString}}
		},
	}
}

type traceStep struct {
	N int `json:"n"`
}

// The acceptance test: a client send made under a span → function
// A, whose output goes to queue B → function B. All spans share the
// client's trace id, each the child of the one before: request → send A →
// process A → send B → process B; B's log lines carry its trace and span
// ids. On RabbitMQ (properties), on Azurite with the body opt-in, and on
// memqueue.
func TestTracingAcrossTwoFunctions(t *testing.T) {
	for name, setup := range traceBrokers() {
		t.Run(name, func(t *testing.T) {
			b := setup(t)
			exp, tr := tracingtest.Record(t)
			qa, qb := b.queue(t), b.queue(t)
			type seen struct {
				payload string
				props   map[string]string
				traceID string
				spanID  string
				invID   string
			}
			got := make(chan seen, 1)
			reg := &functions.Registry{}
			functions.AddResult(reg, "A", functions.SubscriptionTrigger(b.trigger(qa)), b.trigger(qb),
				func(ctx context.Context, in traceStep, _ *triggers.Message) (traceStep, error) {
					return traceStep{N: in.N + 1}, nil
				})
			functions.Add(reg, "B", functions.SubscriptionTrigger(b.trigger(qb)),
				func(ctx context.Context, in json.RawMessage, msg *triggers.Message) error {
					functions.Logger(ctx).Info("in B")
					got <- seen{string(in), msg.Properties, tracing.TraceID(ctx), tracing.SpanID(ctx), functions.InvocationID(ctx)}
					return nil
				})
			th := startTraceHost(t, reg, b)

			ctx, request := tr.Start(context.Background(), "request")
			if _, err := th.client.Send(ctx, b.trigger(qa), traceStep{N: 1}); err != nil {
				t.Fatal(err)
			}
			request.End()
			var inB seen
			select {
			case inB = <-got:
			case <-time.After(30 * time.Second):
				t.Fatalf("B never ran; log:\n%s", th.logs.text())
			}
			th.stop() // every invocation has returned: its span has ended
			traceID := request.SpanContext().TraceID()

			spans := map[string]tracetest.SpanStub{}
			for _, s := range exp.GetSpans() {
				if s.SpanContext.TraceID() != traceID {
					t.Errorf("span %s is in trace %s, not the request's %s", s.Name, s.SpanContext.TraceID(), traceID)
				}
				if _, dup := spans[s.Name]; dup {
					t.Errorf("two spans named %s", s.Name)
				}
				spans[s.Name] = s
			}
			da, db := tracing.Destination(b.trigger(qa)), tracing.Destination(b.trigger(qb))
			chain := []struct {
				name string
				kind trace.SpanKind
			}{{"request", trace.SpanKindInternal}, {"send " + da, trace.SpanKindProducer}, {"process " + da, trace.SpanKindConsumer},
				{"send " + db, trace.SpanKindProducer}, {"process " + db, trace.SpanKindConsumer}}
			for i, c := range chain {
				s, ok := spans[c.name]
				if !ok {
					t.Fatalf("no span %q; spans: %v", c.name, names(exp.GetSpans()))
				}
				if s.SpanKind != c.kind {
					t.Errorf("%s: kind %v, want %v", c.name, s.SpanKind, c.kind)
				}
				if i > 0 {
					if parent := spans[chain[i-1].name]; s.Parent.SpanID() != parent.SpanContext.SpanID() {
						t.Errorf("%s: parent %s, want %s (%s)", c.name, s.Parent.SpanID(), parent.SpanContext.SpanID(), parent.Name)
					}
				}
			}
			if len(spans) != len(chain) {
				t.Errorf("spans %v; want exactly the chain", names(exp.GetSpans()))
			}
			pa := spans["process "+da]
			if spanAttr(pa, "messaging.consumer.group.name").AsString() != "A" || spanAttr(pa, "jobhost.invocation.outcome").AsString() != OutcomeSucceeded {
				t.Errorf("process A attributes %v", pa.Attributes)
			}
			pb := spans["process "+db]
			if inB.traceID != traceID.String() || inB.spanID != pb.SpanContext.SpanID().String() {
				t.Errorf("B's context: trace %s span %s; want %s %s", inB.traceID, inB.spanID, traceID, pb.SpanContext.SpanID())
			}
			line := th.logs.matching(func(e map[string]any) bool { return e["msg"] == "in B" })
			if len(line) != 1 || line[0]["traceId"] != traceID.String() || line[0]["spanId"] != pb.SpanContext.SpanID().String() {
				t.Errorf("B's log line %v", line)
			}
			// The completion line carries the trace id (and so does the
			// ring of recent invocations, which the dashboard shows).
			done := th.logs.await(t, "B's completion line", 1, 10*time.Second, func(e map[string]any) bool {
				return e["invocationId"] == inB.invID && e["outcome"] == OutcomeSucceeded
			})
			if done[0]["traceId"] != traceID.String() {
				t.Errorf("B's completion line: traceId %v, want %s", done[0]["traceId"], traceID)
			}
			if inB.payload != `{"n":2}` {
				t.Errorf("B got %s (the envelope must be stripped)", inB.payload)
			}
			want, _ := tracing.Format(spans["send "+db].SpanContext)
			switch {
			case b.storage && len(inB.props) != 0:
				t.Errorf("a Storage Queue message with properties %v", inB.props)
			case !b.storage && inB.props["traceparent"] != want:
				t.Errorf("B's message traceparent %q, want %q", inB.props["traceparent"], want)
			}
		})
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+" ("+s.SpanKind.String()+")")
	}
	return out
}

// traceHost is a running host and a client of its configuration.
type traceHost struct {
	h      *Host
	logs   *logSink
	client *client.Client
	stop   func()
}

func startTraceHost(t *testing.T, reg *functions.Registry, b traceBroker) *traceHost {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Queues.MaxPollingInterval = 200 * time.Millisecond
	cfg.PubSub.MaxPollingInterval = 200 * time.Millisecond
	cfg.PubSub.CreateQueues = true
	cfg.ShutdownTimeout = 5 * time.Second
	settings := NewAppSettings(b.settings)
	sink := newLogSink()
	logs, err := NewLogs(LogOptions{Format: "json", Levels: map[string]string{"default": "Debug"}, Output: sink})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := ClientOptions(cfg, settings, reg)
	if err != nil {
		t.Fatal(err)
	}
	if b.storage {
		// The opt-in, in the caller's client and the host's outputs
		// (host.json jobhost.tracing.storageQueueBody).
		opts.TraceStorageQueueBody = true
		ho := clientOptions(h.cfg, h.settings, h.funcs)
		ho.StorageEncoding, ho.OnSent, ho.StorageClient = h.storageEncoding, h.wake, newAzureOpener(h.settings).client
		ho.TraceStorageQueueBody = true
		oc, err := client.New(ho)
		if err != nil {
			t.Fatal(err)
		}
		h.outputs.client.Close()
		h.outputs.client = oc
	}
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	th := &traceHost{h: h, logs: sink, client: c}
	stopped := false
	th.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the host did not stop")
		}
		c.Close()
	}
	t.Cleanup(th.stop)
	return th
}

// Tracing off, a message carrying a traceparent through two functions:
// no span anywhere, no trace context added to the output, no trace ids in
// the log lines.
func TestTracingOffHostAddsNothing(t *testing.T) {
	restore := tracing.Use(nil)
	defer restore()
	b := traceBrokers()["memqueue"](t)
	qa, qb := b.queue(t), b.queue(t)
	got := make(chan *triggers.Message, 1)
	reg := &functions.Registry{}
	functions.AddResult(reg, "A", functions.SubscriptionTrigger(b.trigger(qa)), b.trigger(qb),
		func(ctx context.Context, in traceStep, _ *triggers.Message) (traceStep, error) {
			functions.Logger(ctx).Info("in A")
			return traceStep{N: in.N + 1}, nil
		})
	functions.Add(reg, "B", functions.SubscriptionTrigger(b.trigger(qb)),
		func(ctx context.Context, in json.RawMessage, msg *triggers.Message) error {
			if trace.SpanContextFromContext(ctx).IsValid() {
				t.Error("a span in B's context")
			}
			got <- msg
			return nil
		})
	th := startTraceHost(t, reg, b)
	if _, err := th.client.Send(context.Background(), b.trigger(qa), traceStep{N: 1},
		client.Properties(map[string]string{"traceparent": producerParent})); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if len(m.Properties) != 0 {
			t.Errorf("B's message has properties %v", m.Properties)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("B never ran")
	}
	th.stop()
	for _, e := range th.logs.matching(func(map[string]any) bool { return true }) {
		if _, ok := e["traceId"]; ok {
			t.Errorf("a log line with a trace id: %v", e)
		}
	}
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkDispatchTraced is BenchmarkDispatch with tracing on (a batch
// processor exporting nowhere), with and without a producer context in
// the message: what a traced host pays per message.
func BenchmarkDispatchTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	defer tp.Shutdown(context.Background())
	defer tracing.Use(tp)()
	body := []byte(`{"id": 42, "customer": "Contoso", "total": 12.5}`)
	for name, props := range map[string]map[string]string{"root": nil, "child": {"traceparent": producerParent}} {
		b.Run(name, func(b *testing.B) {
			l := benchListener(b, map[string]string{"default": "None"})
			m := &triggers.Message{ID: "m", Body: body, DequeueCount: 1, Properties: props, InsertionTime: time.Now()}
			w := l.newWorker()
			b.ReportAllocs()
			for b.Loop() {
				l.mu.Lock()
				l.inflight++
				l.mu.Unlock()
				l.process(m, w)
				l.traceIDOf("") // as finish will
			}
		})
	}
}
