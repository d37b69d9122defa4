package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The OTEL_* variables Setup reads (through its lookup, so app settings
// from local.settings.json count as well as the environment).
const (
	EnvSDKDisabled        = "OTEL_SDK_DISABLED"
	EnvTracesExporter     = "OTEL_TRACES_EXPORTER"
	EnvEndpoint           = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint     = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvHeaders            = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvTracesHeaders      = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	EnvTimeout            = "OTEL_EXPORTER_OTLP_TIMEOUT"
	EnvTracesTimeout      = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
	EnvCompression        = "OTEL_EXPORTER_OTLP_COMPRESSION"
	EnvTracesCompression  = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
	EnvProtocol           = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol     = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvServiceName        = "OTEL_SERVICE_NAME"
	EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	EnvSampler            = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg         = "OTEL_TRACES_SAMPLER_ARG"
)

// defaultEndpoint is OTLP/HTTP's default when otlp is asked for without an
// endpoint.
const defaultEndpoint = "http://localhost:4318"

// noShutdown is Setup's shutdown when tracing stays off.
func noShutdown(context.Context) error { return nil }

// Setup turns tracing on as the standard OTEL_* variables say, read
// through lookup (nil: nothing is set), and returns the function that
// flushes and stops it (call it at exit, with a deadline).
//
// Tracing is on when OTEL_TRACES_EXPORTER names otlp or console (a
// comma-separated list; otlp is the default when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set), and off when OTEL_SDK_DISABLED is true, the exporter is none, or
// nothing is set: then Setup does nothing and its shutdown is a no-op.
//
// otlp is OTLP over HTTP/protobuf (otlptracehttp) to
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is) or
// OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces (default
// http://localhost:4318), with the _HEADERS, _TIMEOUT and _COMPRESSION
// variables; console writes every span as a JSON line to stdout. The
// resource has OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler
// is OTEL_TRACES_SAMPLER/_ARG (default parentbased_always_on). Setup
// installs the provider as OpenTelemetry's global one, with the W3C trace
// context and baggage propagators, so spans a function starts from its
// context join the invocation's trace.
//
// An exporter or protocol it does not support (zipkin, grpc, http/json) or
// a malformed value is an error, and tracing stays off.
func Setup(ctx context.Context, lookup func(string) (string, bool)) (shutdown func(context.Context) error, err error) {
	get := func(name string) string {
		if lookup == nil {
			return ""
		}
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	if strings.EqualFold(get(EnvSDKDisabled), "true") {
		return noShutdown, nil
	}
	names := get(EnvTracesExporter)
	if names == "" {
		if get(EnvEndpoint) == "" && get(EnvTracesEndpoint) == "" {
			return noShutdown, nil
		}
		names = "otlp"
	}
	var kinds []string
	for _, name := range strings.Split(names, ",") {
		switch name = strings.ToLower(strings.TrimSpace(name)); name {
		case "", "none":
		case "otlp", "console":
			kinds = append(kinds, name)
		default:
			return noShutdown, fmt.Errorf("tracing: %s=%s: exporter %q is not supported (otlp, console or none)", EnvTracesExporter, names, name)
		}
	}
	if len(kinds) == 0 {
		return noShutdown, nil
	}
	sampler, err := samplerFrom(get)
	if err != nil {
		return noShutdown, err
	}
	res, err := resourceFrom(get)
	if err != nil {
		return noShutdown, err
	}
	var exporters []sdktrace.SpanExporter
	for _, kind := range kinds {
		if kind == "console" {
			exporters = append(exporters, newConsoleExporter(consoleOut))
			continue
		}
		exp, err := otlpExporter(ctx, get)
		if err != nil {
			return noShutdown, err
		}
		exporters = append(exporters, exp)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	for _, exp := range exporters {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	restore := Use(tp)
	return func(ctx context.Context) error {
		restore()
		return tp.Shutdown(ctx)
	}, nil
}

// OTLPConfig is the OTLP/HTTP exporter's configuration, from the OTEL_*
// variables.
type OTLPConfig struct {
	// Endpoint is the traces endpoint URL (…/v1/traces).
	Endpoint string
	// Headers are sent with every export.
	Headers map[string]string
	// Timeout bounds one export (0: the exporter's default).
	Timeout time.Duration
	// Gzip compresses the exports.
	Gzip bool
}

// NewOTLPExporter builds the OTLP exporter; tracing/otlp sets it in its
// init, so that a binary that never exports OTLP does not link the
// exporter (and gRPC's packages it brings). Nil: not linked.
var NewOTLPExporter func(ctx context.Context, c OTLPConfig) (sdktrace.SpanExporter, error)

// otlpExporter checks the OTLP variables and builds the exporter.
func otlpExporter(ctx context.Context, get func(string) string) (sdktrace.SpanExporter, error) {
	either := func(specific, general string) string {
		if v := get(specific); v != "" {
			return v
		}
		return get(general)
	}
	switch p := strings.ToLower(either(EnvTracesProtocol, EnvProtocol)); p {
	case "", "http/protobuf":
	default:
		return nil, fmt.Errorf("tracing: OTLP protocol %q is not supported: jobhost exports http/protobuf (port 4318)", p)
	}
	endpoint := get(EnvTracesEndpoint)
	if endpoint == "" {
		base := get(EnvEndpoint)
		if base == "" {
			base = defaultEndpoint
		}
		endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	if u, err := url.Parse(endpoint); err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("tracing: the OTLP traces endpoint %q is not an http(s) URL", endpoint)
	}
	c := OTLPConfig{Endpoint: endpoint}
	if h := either(EnvTracesHeaders, EnvHeaders); h != "" {
		headers, err := keyValues(h)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP headers: %w", err)
		}
		c.Headers = headers
	}
	if t := either(EnvTracesTimeout, EnvTimeout); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms <= 0 {
			return nil, fmt.Errorf("tracing: OTLP timeout %q is not a positive number of milliseconds", t)
		}
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	switch comp := strings.ToLower(either(EnvTracesCompression, EnvCompression)); comp {
	case "", "none":
	case "gzip":
		c.Gzip = true
	default:
		return nil, fmt.Errorf("tracing: OTLP compression %q is not supported (gzip or none)", comp)
	}
	if NewOTLPExporter == nil {
		return nil, errors.New(`tracing: the OTEL_* variables ask for the OTLP exporter, which this binary does not link: add import _ "github.com/jobhost/jobhost/tracing/otlp" to its main package (cmd/jobhost has it)`)
	}
	return NewOTLPExporter(ctx, c)
}

// samplerFrom is the SDK's OTEL_TRACES_SAMPLER rule, read through get.
func samplerFrom(get func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(get(EnvSampler))
	arg := get(EnvSamplerArg)
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("tracing: %s=%q is not a ratio from 0 to 1", EnvSamplerArg, arg)
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		s, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(s), nil
	}
	return nil, fmt.Errorf("tracing: %s=%q is not supported (always_on, always_off, traceidratio and their parentbased_ forms)", EnvSampler, name)
}

// resourceFrom is the SDK's default resource (SDK name and version, and
// what it reads from the environment) with OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME read through get on top.
func resourceFrom(get func(string) string) (*sdkresource.Resource, error) {
	var attrs []attribute.KeyValue
	if s := get(EnvResourceAttributes); s != "" {
		kv, err := keyValues(s)
		if err != nil {
			return nil, fmt.Errorf("tracing: %s: %w", EnvResourceAttributes, err)
		}
		for k, v := range kv {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	if name := get(EnvServiceName); name != "" {
		attrs = append(attrs, semconv.ServiceName(name))
	}
	return sdkresource.Merge(sdkresource.Default(), sdkresource.NewSchemaless(attrs...))
}

// keyValues parses the OTEL_*_HEADERS / OTEL_RESOURCE_ATTRIBUTES form:
// comma-separated key=value pairs, values percent-encoded.
func keyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, errors.New("expected key=value pairs separated by commas")
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not percent-encoded properly", k)
		}
		out[k] = dv
	}
	return out, nil
}
