package tracing

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/bindings"
)

// The message properties that carry a trace context: the W3C names on
// every broker with properties, and Diagnostic-Id, which Azure SDKs set on
// Service Bus messages (W3C traceparent format).
const (
	PropTraceParent  = bindings.PropTraceParent
	PropTraceState   = bindings.PropTraceState
	PropDiagnosticID = bindings.PropDiagnosticID
)

// carrier holds the two W3C headers for the TraceContext propagator.
type carrier struct{ parent, state string }

func (c *carrier) Get(key string) string {
	switch key {
	case PropTraceParent:
		return c.parent
	case PropTraceState:
		return c.state
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	switch key {
	case PropTraceParent:
		c.parent = value
	case PropTraceState:
		c.state = value
	}
}

func (c *carrier) Keys() []string { return []string{PropTraceParent, PropTraceState} }

// Parse reads a W3C traceparent header (and its tracestate, which may be
// empty) as a remote span context; ok is false when traceparent is empty
// or not valid.
func Parse(traceparent, tracestate string) (sc trace.SpanContext, ok bool) {
	if traceparent == "" {
		return trace.SpanContext{}, false
	}
	c := &carrier{parent: strings.TrimSpace(traceparent), state: tracestate}
	sc = trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c))
	return sc, sc.IsValid()
}

// Format returns sc as W3C traceparent and tracestate headers ("" for
// both when sc is not valid; tracestate "" when sc has none).
func Format(sc trace.SpanContext) (traceparent, tracestate string) {
	if !sc.IsValid() {
		return "", ""
	}
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + flags, sc.TraceState().String()
}

// FromProperties returns the producer's span context a message's
// properties carry: traceparent and tracestate (names matched without
// regard to case, as some brokers change it), else a Diagnostic-Id in
// traceparent format.
func FromProperties(props map[string]string) (trace.SpanContext, bool) {
	if len(props) == 0 {
		return trace.SpanContext{}, false
	}
	m := bindings.MetaFromProps(props)
	if sc, ok := Parse(m.TraceParent, m.TraceState); ok {
		return sc, true
	}
	return Parse(property(props, PropDiagnosticID), "")
}

// FromMeta returns the span context jobhost metadata carries (a Storage
// Queue body's $jobhost envelope).
func FromMeta(m bindings.Meta) (trace.SpanContext, bool) { return Parse(m.TraceParent, m.TraceState) }

// property returns props[name], matched exactly, else without regard to
// case.
func property(props map[string]string, name string) string {
	if v, ok := props[name]; ok {
		return v
	}
	for k, v := range props {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// ToProperties returns a copy of props (nil: a new map) with sc's
// traceparent and tracestate set, in place of any the caller put there
// under any case, and for Service Bus (diagnosticID) Diagnostic-Id too.
// props itself is never changed.
func ToProperties(sc trace.SpanContext, props map[string]string, diagnosticID bool) map[string]string {
	parent, state := Format(sc)
	out := make(map[string]string, len(props)+3)
	for k, v := range props {
		if strings.EqualFold(k, PropTraceParent) || strings.EqualFold(k, PropTraceState) ||
			diagnosticID && strings.EqualFold(k, PropDiagnosticID) {
			continue
		}
		out[k] = v
	}
	if parent == "" {
		return out
	}
	out[PropTraceParent] = parent
	if state != "" {
		out[PropTraceState] = state
	}
	if diagnosticID {
		out[PropDiagnosticID] = parent
	}
	return out
}

// ToMeta returns m with sc's trace context in it, for a Storage Queue
// body's $jobhost envelope.
func ToMeta(sc trace.SpanContext, m bindings.Meta) bindings.Meta {
	m.TraceParent, m.TraceState = Format(sc)
	return m
}
