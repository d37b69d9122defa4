// Package tracingtest turns jobhost's tracing on for a test, with spans
// recorded in memory.
package tracingtest

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/tracing"
)

// Record turns tracing on until the test ends, each span exported to the
// returned in-memory exporter as it ends, and returns a tracer for the
// test's own spans. At the end it turns tracing off again and restores
// the default link rule.
func Record(t testing.TB) (*tracetest.InMemoryExporter, trace.Tracer) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	restore := tracing.Use(tp)
	t.Cleanup(func() {
		restore()
		tp.Shutdown(context.Background()) //nolint:errcheck // in memory
		tracing.SetLinkAfter(0)
	})
	return exp, tp.Tracer("test")
}
