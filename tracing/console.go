package tracing

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// consoleOut is where the console exporter writes (tests change it).
var consoleOut io.Writer = os.Stdout

// consoleExporter writes every span as one JSON line: OTEL_TRACES_EXPORTER
// =console, for looking at traces without a collector.
type consoleExporter struct {
	mu  sync.Mutex
	out io.Writer
}

func newConsoleExporter(w io.Writer) *consoleExporter { return &consoleExporter{out: w} }

// consoleSpan is the JSON line of one span.
type consoleSpan struct {
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	TraceID      string         `json:"traceId"`
	SpanID       string         `json:"spanId"`
	ParentSpanID string         `json:"parentSpanId,omitempty"`
	Start        time.Time      `json:"start"`
	End          time.Time      `json:"end"`
	DurationMs   float64        `json:"durationMs"`
	Status       string         `json:"status"`
	Description  string         `json:"statusDescription,omitempty"`
	Attributes   map[string]any `json:"attributes,omitempty"`
	Links        []consoleLink  `json:"links,omitempty"`
	Events       []consoleEvent `json:"events,omitempty"`
	Resource     map[string]any `json:"resource,omitempty"`
	Scope        string         `json:"scope,omitempty"`
}

type consoleLink struct {
	TraceID string `json:"traceId"`
	SpanID  string `json:"spanId"`
}

type consoleEvent struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// ExportSpans writes spans, one JSON line each.
func (e *consoleExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	enc := json.NewEncoder(e.out)
	for _, s := range spans {
		line := consoleSpan{
			Name: s.Name(), Kind: s.SpanKind().String(),
			TraceID: s.SpanContext().TraceID().String(), SpanID: s.SpanContext().SpanID().String(),
			Start: s.StartTime(), End: s.EndTime(),
			DurationMs:  float64(s.EndTime().Sub(s.StartTime()).Microseconds()) / 1000,
			Status:      s.Status().Code.String(),
			Description: s.Status().Description,
			Attributes:  attrMap(s.Attributes()),
			Scope:       s.InstrumentationScope().Name,
		}
		if p := s.Parent(); p.IsValid() {
			line.ParentSpanID = p.SpanID().String()
		}
		for _, l := range s.Links() {
			line.Links = append(line.Links, consoleLink{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
		}
		for _, ev := range s.Events() {
			line.Events = append(line.Events, consoleEvent{Name: ev.Name, Time: ev.Time, Attributes: attrMap(ev.Attributes)})
		}
		if r := s.Resource(); r != nil {
			line.Resource = attrMap(r.Attributes())
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown does nothing: the exporter holds nothing.
func (e *consoleExporter) Shutdown(context.Context) error { return nil }
