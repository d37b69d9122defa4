// Package tracing is jobhost's OpenTelemetry tracing: the switch the host's
// hot path reads, the W3C trace context that travels in messages, the
// names of messaging systems, and Setup, which builds a TracerProvider from
// the standard OTEL_* variables.
//
// Tracing is off unless configured: while it is off, Enabled is one atomic
// load and nothing else happens — no span, no property, no allocation. It
// is on after Setup found an exporter to use (OTEL_TRACES_EXPORTER=otlp or
// console, or an OTLP endpoint set), or after Use was given a
// TracerProvider (an embedding program that built its own, or a test).
//
// When on, the host starts a CONSUMER span "process {queue}" for every
// invocation, a child of the producer's span when the message carries one
// (W3C traceparent/tracestate in its properties, Diagnostic-Id on Service
// Bus, or the $jobhost envelope of a Storage Queue body) and was taken up
// within LinkAfter of its enqueueing, else a new trace linked to the
// producer's. The client (and so every output binding) starts a PRODUCER
// span "send {destination}" for every message and puts its context in the
// message. See docs/observability.md.
package tracing

import (
	"context"
	"sync/atomic"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of jobhost's spans.
const ScopeName = "github.com/jobhost/jobhost"

// DefaultLinkAfter is how long a message may wait in its queue and still
// have its consumer span made a child of its producer's span.
const DefaultLinkAfter = time.Minute

// Settings are jobhost's own tracing settings, besides the OTEL_*
// variables: host.json's jobhost.tracing.
type Settings struct {
	// LinkAfter: a message taken up more than this after it was enqueued
	// starts a new trace linked to its producer's span instead of joining
	// it (jobhost.tracing.linkAfter; 0 is DefaultLinkAfter, negative never
	// links).
	LinkAfter time.Duration
	// StorageQueueBody puts the trace context of messages sent to Storage
	// Queues, which have no properties, in the JSON body's $jobhost
	// envelope (jobhost.tracing.storageQueueBody; client
	// Options.TraceStorageQueueBody). Off by default: a consumer other than
	// jobhost would see the envelope in the body.
	StorageQueueBody bool
}

// Apply makes s's LinkAfter the process's (SetLinkAfter). StorageQueueBody
// is the client's to apply (client.Options.TraceStorageQueueBody).
func (s Settings) Apply() { SetLinkAfter(s.LinkAfter) }

// state is what tracing holds while it is on.
type state struct {
	tracer trace.Tracer
}

var (
	current   atomic.Pointer[state]
	linkAfter atomic.Int64 // nanoseconds; 0 is DefaultLinkAfter
)

// Enabled reports whether tracing is on. It is one atomic load: the host
// calls it on every message and does nothing more when it is false.
func Enabled() bool { return current.Load() != nil }

// Tracer returns jobhost's tracer, or nil while tracing is off.
func Tracer() trace.Tracer {
	if s := current.Load(); s != nil {
		return s.tracer
	}
	return nil
}

// Use makes jobhost trace with tp's tracer (nil turns tracing off) and
// returns a function that puts back what was in use before. An embedding
// program that set up its own TracerProvider passes it here instead of
// calling Setup; tests pass one with an in-memory exporter. Use does not
// touch OpenTelemetry's global provider.
func Use(tp trace.TracerProvider) (restore func()) {
	var s *state
	if tp != nil {
		s = &state{tracer: tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))}
	}
	prev := current.Swap(s)
	return func() { current.CompareAndSwap(s, prev) }
}

// SetLinkAfter sets how long a message may wait in its queue and still
// join its producer's trace (see Settings.LinkAfter): 0 restores
// DefaultLinkAfter, a negative value never links.
func SetLinkAfter(d time.Duration) { linkAfter.Store(int64(d)) }

// LinkAfter returns the threshold SetLinkAfter set; negative means never
// link.
func LinkAfter() time.Duration {
	if d := time.Duration(linkAfter.Load()); d != 0 {
		return d
	}
	return DefaultLinkAfter
}

// Linked reports whether a message enqueued at enqueued and taken up at
// start gets a consumer span of its own trace, linked to the producer's,
// rather than a child of the producer's span: when it waited longer than
// LinkAfter. A message without an insertion time (zero) is a child: how
// long it waited is not known, and most brokers give one.
func Linked(enqueued, start time.Time) bool {
	d := LinkAfter()
	return d >= 0 && !enqueued.IsZero() && start.Sub(enqueued) > d
}

// TraceID returns the W3C trace id (32 hex digits) of the span ctx
// carries, or "" when it carries none (tracing off).
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// SpanID returns the span id (16 hex digits) of the span ctx carries, or
// "" when it carries none.
func SpanID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.SpanID().String()
}
