// Package otlp links the OTLP/HTTP trace exporter into a binary: import it
// for its side effect, and tracing.Setup exports to the endpoint the
// OTEL_EXPORTER_OTLP_* variables name. A binary without it refuses those
// variables with an error naming this import, and links neither the
// exporter nor the gRPC packages it brings.
//
//	import _ "github.com/jobhost/jobhost/tracing/otlp"
package otlp

import (
	"context"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/jobhost/jobhost/tracing"
)

func init() { tracing.NewOTLPExporter = newExporter }

func newExporter(ctx context.Context, c tracing.OTLPConfig) (sdktrace.SpanExporter, error) {
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint)}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	if c.Timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(c.Timeout))
	}
	if c.Gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	} else {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
	}
	return otlptracehttp.New(ctx, opts...)
}
