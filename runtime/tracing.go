package runtime

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/tracing"
	"github.com/jobhost/jobhost/triggers"
)

// invocationSpan is the CONSUMER span of one invocation; nil while tracing
// is off, and then end does nothing.
type invocationSpan struct {
	l            *listener
	span         trace.Span
	dequeueCount int64
}

// startInvocation returns the context a function runs in: ctx with the
// invocation's logger and id (invocation.With) and, while tracing is on,
// its consumer span (startSpan), which the caller ends with end. Off, it
// is invocation.With and one atomic load.
func (l *listener) startInvocation(ctx context.Context, view *triggers.Message, id string, pending *invocation.Pending, start time.Time) (context.Context, *invocationSpan) {
	if !tracing.Enabled() {
		return invocation.With(ctx, l.user, id), nil
	}
	ctx, s := l.startSpan(ctx, view, id, start)
	if s == nil {
		return invocation.With(ctx, l.user, id), nil
	}
	sc := s.span.SpanContext()
	if pending != nil {
		pending.SetTrace(sc) // the outputs are sent in this trace
	}
	storeTraceID(id, sc)
	return invocation.WithTrace(ctx, l.user, id, sc), s
}

// spanInfo is what every span of one function shares, made once.
type spanInfo struct {
	name   string // "process {destination}"
	system string
	attrs  []attribute.KeyValue
}

var spanInfos sync.Map // *FunctionConfig → *spanInfo

func (l *listener) spanInfo() *spanInfo {
	if v, ok := spanInfos.Load(l.fc); ok {
		return v.(*spanInfo)
	}
	scheme := ""
	if l.fc.URL != nil {
		scheme = l.fc.URL.Scheme
	}
	dest := tracing.Destination(l.fc.Queue)
	info := &spanInfo{name: "process " + dest, system: tracing.System(scheme)}
	info.attrs = []attribute.KeyValue{
		semconv.MessagingSystemKey.String(info.system),
		semconv.MessagingDestinationName(dest),
		semconv.MessagingOperationName("process"),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingConsumerGroupName(l.fc.Name()),
		semconv.FaaSTriggerPubSub,
	}
	v, _ := spanInfos.LoadOrStore(l.fc, info)
	return v.(*spanInfo)
}

// startSpan starts the consumer span "process {queue}" of the invocation
// id of view, taken up at start (the span starts then). When the message
// carries its producer's span context (producerContext) the span is its
// child, or, when the message waited longer than tracing.LinkAfter, the
// root of a new trace linked to it (the messaging conventions' advice for
// a message processed long after it was sent). It returns nil when tracing
// was turned off meanwhile.
func (l *listener) startSpan(ctx context.Context, view *triggers.Message, id string, start time.Time) (context.Context, *invocationSpan) {
	tr := tracing.Tracer()
	if tr == nil {
		return ctx, nil
	}
	info := l.spanInfo()
	attrs := make([]attribute.KeyValue, 0, len(info.attrs)+6)
	attrs = append(attrs, info.attrs...)
	attrs = append(attrs,
		semconv.MessagingMessageID(view.ID),
		semconv.MessagingMessageBodySize(len(view.Body)),
		tracing.AttrDequeueCount.Int64(view.DequeueCount),
		semconv.FaaSInvocationID(id))
	if a, ok := tracing.DeliveryAttempt(info.system, view.DequeueCount); ok {
		attrs = append(attrs, a)
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start)}
	if producer, ok := l.producerContext(view); ok {
		if tracing.Linked(view.InsertionTime, start) {
			attrs = append(attrs, tracing.AttrLinked.Bool(true))
			opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: producer}))
		} else {
			ctx = trace.ContextWithRemoteSpanContext(ctx, producer)
		}
	}
	opts = append(opts, trace.WithAttributes(attrs...))
	ctx, span := tr.Start(ctx, info.name, opts...)
	return ctx, &invocationSpan{l: l, span: span, dequeueCount: view.DequeueCount}
}

// envelopeBase64 is how a body starting with the $jobhost envelope starts
// under messageEncoding base64: the prefix is 12 bytes, so its 16 base64
// characters never depend on what follows.
var envelopeBase64 = []byte(base64.StdEncoding.EncodeToString([]byte(`{"` + bindings.EnvelopeKey + `":`)))

// producerContext returns the producer's span context view carries: its
// traceparent/tracestate (or Service Bus Diagnostic-Id) properties, else,
// on a Storage Queue, the trace context in its body's $jobhost envelope
// (the host strips the envelope before binding; here it is read from the
// body as stored, decoded only when it starts like one).
func (l *listener) producerContext(view *triggers.Message) (trace.SpanContext, bool) {
	if sc, ok := tracing.FromProperties(view.Properties); ok {
		return sc, true
	}
	if l.fc.URL != nil {
		return trace.SpanContext{}, false
	}
	body := view.Body
	if l.fc.Queues.MessageEncoding == bindings.Base64 {
		if !bytes.HasPrefix(body, envelopeBase64) {
			return trace.SpanContext{}, false
		}
		var err error
		if body, err = bindings.Base64.Decode(body); err != nil {
			return trace.SpanContext{}, false
		}
	}
	meta, _, ok, err := bindings.SplitMeta(body)
	if !ok || err != nil {
		return trace.SpanContext{}, false
	}
	return tracing.FromMeta(meta)
}

// end ends the span when the function has returned: err is what it
// returned (a panic recovered, a timeout), canceled whether its background
// operation was cancelled. The outcome is the settlement err leads to, as
// settle decides it.
func (s *invocationSpan) end(err error, canceled bool) {
	if s == nil {
		return
	}
	outcome := s.l.expectedOutcome(s.dequeueCount, err, canceled)
	s.span.SetAttributes(tracing.AttrOutcome.String(outcome))
	if err != nil && (outcome == OutcomeFailed || outcome == OutcomePoisoned) {
		msg := Redact(err.Error())
		s.span.SetStatus(codes.Error, msg)
		s.span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		s.span.AddEvent("exception", trace.WithAttributes(
			semconv.ExceptionMessage(msg), semconv.ExceptionType(fmt.Sprintf("%T", err))))
	}
	s.span.End()
}

// expectedOutcome is the outcome settle gives a message of dequeueCount
// after the function returned err.
func (l *listener) expectedOutcome(dequeueCount int64, err error, canceled bool) string {
	var bindErr *bindings.Error
	var permanent *functions.PermanentError
	switch {
	case canceled:
		return OutcomeOperationCanceled
	case err == nil:
		return OutcomeSucceeded
	case errors.As(err, &bindErr), errors.As(err, &permanent):
		return OutcomePoisoned
	case l.hard.Err() != nil:
		return OutcomeCancelled
	case int(dequeueCount) >= l.attempts():
		return OutcomePoisoned
	}
	return OutcomeFailed
}

// errorType is the span's error.type: a few classes, low in cardinality as
// the conventions ask.
func errorType(err error) string {
	var bindErr *bindings.Error
	var permanent *functions.PermanentError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &bindErr):
		return "binding"
	case errors.As(err, &permanent):
		return "permanent"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// Trace ids of invocations, from invoke (startInvocation) to the
// completion line and the ring (traceIDOf), which process writes after the
// function returned. Only while tracing is on; bounded, so that a path
// that never asks cannot grow it without end.
var (
	invocationTraces sync.Map // invocation id → trace id
	traceEntries     atomic.Int64
)

const maxTraceEntries = 1 << 14

func storeTraceID(id string, sc trace.SpanContext) {
	if !sc.IsValid() || traceEntries.Load() >= maxTraceEntries {
		return
	}
	if _, loaded := invocationTraces.Swap(id, sc.TraceID().String()); !loaded {
		traceEntries.Add(1)
	}
}

// traceIDOf returns, once, the W3C trace id of invocation id's span, for
// its completion line and the ring of recent invocations: "" when tracing
// is off or the function did not run. Call it once per invocation, after
// invoke (process → finish).
func (l *listener) traceIDOf(id string) string {
	if traceEntries.Load() == 0 {
		return ""
	}
	v, ok := invocationTraces.LoadAndDelete(id)
	if !ok {
		return ""
	}
	traceEntries.Add(-1)
	return v.(string)
}

// outputContext returns ctx carrying, while tracing is on, the span of the
// invocation that produced items, so that the client's send spans are its
// children and the messages carry its trace.
func outputContext(ctx context.Context, items []invocation.Item) context.Context {
	if !tracing.Enabled() {
		return ctx
	}
	for _, it := range items {
		if it.Trace.IsValid() {
			return trace.ContextWithSpanContext(ctx, it.Trace)
		}
	}
	return ctx
}
