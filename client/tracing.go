package client

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/tracing"
)

// traceSend starts the PRODUCER span "send {destination}" of one message
// (tracing is on) and returns the context to publish with and the body
// and properties carrying the span's context: traceparent and tracestate
// properties (and Diagnostic-Id on Service Bus), or on a Storage Queue the
// body's $jobhost envelope when Options.TraceStorageQueueBody opts in.
// The span's parent is ctx's span; without one, a traceparent the caller
// set (Properties, WithMeta) is. Tracing never fails a send: a body that
// cannot carry the envelope goes as prepared.
func (c *Client) traceSend(ctx context.Context, p *Prepared) (context.Context, []byte, map[string]string, trace.Span) {
	tr := tracing.Tracer()
	if tr == nil { // turned off since Enabled
		return ctx, p.body, p.props, nil
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		sc, ok := tracing.FromProperties(p.props)
		if !ok {
			sc, ok = tracing.FromMeta(p.meta)
		}
		if ok {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	scheme := ""
	if p.target.u != nil {
		scheme = p.target.u.Scheme
	}
	system := tracing.System(scheme)
	dest := tracing.Destination(p.target.String())
	ctx, span := tr.Start(ctx, "send "+dest, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(system),
			semconv.MessagingDestinationName(dest),
			semconv.MessagingOperationName("send"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingMessageBodySize(len(p.body)),
		))
	sc := span.SpanContext()
	if !sc.IsValid() {
		return ctx, p.body, p.props, span
	}
	if !p.target.IsStorage() {
		return ctx, p.body, tracing.ToProperties(sc, p.props, scheme == "azuresb"), span
	}
	if !c.opts.TraceStorageQueueBody {
		return ctx, p.body, p.props, span
	}
	wrapped, err := bindings.WrapMeta(p.raw, tracing.ToMeta(sc, p.meta))
	if err != nil {
		span.SetAttributes(attribute.String("jobhost.trace.body", "not JSON: no trace context in the body"))
		return ctx, p.body, p.props, span
	}
	body := p.enc.Encode(wrapped)
	if len(body) > MaxStorageMessage {
		span.SetAttributes(attribute.String("jobhost.trace.body", "too large for the trace context: none in the body"))
		return ctx, p.body, p.props, span
	}
	return ctx, body, p.props, span
}

// endSend ends a send's span (nil while tracing is off) with the broker's
// message id or the error.
func endSend(span trace.Span, id string, err error) {
	if span == nil {
		return
	}
	if id != "" {
		span.SetAttributes(semconv.MessagingMessageID(id))
	}
	if err != nil {
		msg := redact.All(err.Error())
		span.SetStatus(codes.Error, msg)
		span.SetAttributes(semconv.ErrorTypeOther)
		span.AddEvent("exception", trace.WithAttributes(semconv.ExceptionMessage(msg)))
	}
	span.End()
}
