package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/bindings"
)

const (
	sampleParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sampleState  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

func TestParseAndFormat(t *testing.T) {
	sc, ok := Parse(sampleParent, sampleState)
	if !ok || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("Parse: %v %v", sc, ok)
	}
	if got := sc.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id %s", got)
	}
	parent, state := Format(sc)
	if parent != sampleParent || state != sampleState {
		t.Fatalf("Format: %q %q", parent, state)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"} {
		if _, ok := Parse(bad, ""); ok {
			t.Errorf("Parse(%q) is valid", bad)
		}
	}
	if p, s := Format(trace.SpanContext{}); p != "" || s != "" {
		t.Fatalf("Format(zero) = %q %q", p, s)
	}
}

func TestFromProperties(t *testing.T) {
	for name, props := range map[string]map[string]string{
		"w3c":                {"traceparent": sampleParent, "tracestate": sampleState},
		"other case":         {"TraceParent": sampleParent, "TRACESTATE": sampleState},
		"diagnostic-id":      {"Diagnostic-Id": sampleParent},
		"diagnostic-id case": {"diagnostic-id": sampleParent},
	} {
		sc, ok := FromProperties(props)
		if !ok || sc.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("%s: %v %v", name, sc, ok)
		}
	}
	if _, ok := FromProperties(map[string]string{"Diagnostic-Id": "|legacy.1."}); ok {
		t.Error("a legacy Request-Id format Diagnostic-Id was read")
	}
	if _, ok := FromProperties(nil); ok {
		t.Error("nil properties")
	}
	// traceparent wins over Diagnostic-Id.
	sc, _ := FromProperties(map[string]string{"traceparent": sampleParent,
		"Diagnostic-Id": "00-11111111111111111111111111111111-2222222222222222-01"})
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("Diagnostic-Id won over traceparent")
	}
}

func TestToPropertiesCopies(t *testing.T) {
	sc, _ := Parse(sampleParent, sampleState)
	in := map[string]string{"TraceParent": "old", "x": "1"}
	out := ToProperties(sc, in, false)
	if in["TraceParent"] != "old" || len(in) != 2 {
		t.Fatalf("the caller's map changed: %v", in)
	}
	want := map[string]string{"traceparent": sampleParent, "tracestate": sampleState, "x": "1"}
	if len(out) != len(want) {
		t.Fatalf("got %v", out)
	}
	for k, v := range want {
		if out[k] != v {
			t.Fatalf("got %v", out)
		}
	}
	sb := ToProperties(sc, nil, true)
	if sb["Diagnostic-Id"] != sampleParent || sb["traceparent"] != sampleParent {
		t.Fatalf("Service Bus: %v", sb)
	}
	m := ToMeta(sc, bindings.Meta{OperationID: "op"})
	if m.OperationID != "op" || m.TraceParent != sampleParent || m.TraceState != sampleState {
		t.Fatalf("ToMeta: %+v", m)
	}
	if sc2, ok := FromMeta(m); !ok || sc2.SpanID() != sc.SpanID() {
		t.Fatal("FromMeta")
	}
}

func TestLinked(t *testing.T) {
	t.Cleanup(func() { SetLinkAfter(0) })
	now := time.Now()
	cases := []struct {
		after    time.Duration
		enqueued time.Time
		want     bool
	}{
		{0, now.Add(-30 * time.Second), false},
		{0, now.Add(-2 * time.Minute), true},
		{0, time.Time{}, false}, // no insertion time: a child
		{0, now.Add(time.Second), false},
		{time.Hour, now.Add(-2 * time.Minute), false},
		{time.Second, now.Add(-2 * time.Second), true},
		{-1, now.Add(-48 * time.Hour), false}, // never links
	}
	for _, c := range cases {
		SetLinkAfter(c.after)
		if got := Linked(c.enqueued, now); got != c.want {
			t.Errorf("LinkAfter %s, waited %s: Linked %v", c.after, now.Sub(c.enqueued), got)
		}
	}
	SetLinkAfter(0)
	if LinkAfter() != DefaultLinkAfter {
		t.Fatal("0 does not restore the default")
	}
	Settings{LinkAfter: 5 * time.Minute}.Apply()
	if LinkAfter() != 5*time.Minute {
		t.Fatal("Apply")
	}
}

func TestSystemAndDestination(t *testing.T) {
	for scheme, want := range map[string]string{"": "azure_storage_queue", "rabbit": "rabbitmq", "azuresb": "servicebus",
		"kafka": "kafka", "awssqs": "aws_sqs", "gcppubsub": "gcp_pubsub", "nats": "nats", "redis": "redis",
		"postgres": "postgresql", "memqueue": "memqueue", "mem": "mempubsub", "other": "other"} {
		if got := System(scheme); got != want {
			t.Errorf("System(%q) = %q, want %q", scheme, got, want)
		}
	}
	for in, want := range map[string]string{"orders": "orders", "rabbit://orders": "orders",
		"gcppubsub://projects/p/subscriptions/s": "projects/p/subscriptions/s", "nats://jobs/": "jobs"} {
		if got := Destination(in); got != want {
			t.Errorf("Destination(%q) = %q", in, got)
		}
	}
}

func TestUseAndTraceID(t *testing.T) {
	if Enabled() || Tracer() != nil {
		t.Fatal("tracing is on before anything turned it on")
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	restore := Use(tp)
	if !Enabled() || Tracer() == nil {
		t.Fatal("Use did not turn tracing on")
	}
	ctx, span := Tracer().Start(context.Background(), "x")
	if TraceID(ctx) != span.SpanContext().TraceID().String() || SpanID(ctx) != span.SpanContext().SpanID().String() {
		t.Fatal("TraceID/SpanID")
	}
	span.End()
	restore()
	if Enabled() {
		t.Fatal("restore did not turn tracing off")
	}
	if TraceID(context.Background()) != "" || SpanID(context.Background()) != "" {
		t.Fatal("ids without a span")
	}
	if got := exp.GetSpans(); len(got) != 1 || got[0].InstrumentationScope.Name != ScopeName {
		t.Fatalf("spans %v", got)
	}
}

func TestSetupOff(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"nothing set": {},
		"disabled":    {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		"none":        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		"only other":  {"OTEL_SERVICE_NAME": "x"},
	} {
		shutdown, err := Setup(context.Background(), env(vars))
		if err != nil || Enabled() {
			t.Errorf("%s: err %v, enabled %v", name, err, Enabled())
		}
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("%s: shutdown: %v", name, err)
		}
	}
	if _, err := Setup(context.Background(), nil); err != nil || Enabled() {
		t.Fatal("nil lookup")
	}
}

func TestSetupErrors(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"zipkin":      {"OTEL_TRACES_EXPORTER": "zipkin"},
		"grpc":        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		"sampler":     {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "jaeger_remote"},
		"sampler arg": {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		"endpoint":    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:4318"},
		"timeout":     {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
		"headers":     {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
		"resource":    {"OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "a=%zz"},
	} {
		if _, err := Setup(context.Background(), env(vars)); err == nil || Enabled() {
			t.Errorf("%s: no error (enabled %v)", name, Enabled())
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestSetupConsole(t *testing.T) {
	var buf bytes.Buffer
	old := consoleOut
	consoleOut = &buf
	t.Cleanup(func() { consoleOut = old })
	shutdown, err := Setup(context.Background(), env(map[string]string{
		"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "worker",
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test,team=a%20b"}))
	if err != nil || !Enabled() {
		t.Fatalf("Setup: %v", err)
	}
	_, span := Tracer().Start(context.Background(), "console-span", trace.WithSpanKind(trace.SpanKindConsumer))
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Fatal("still on after shutdown")
	}
	var line consoleSpan
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line.Name != "console-span" || line.Kind != "consumer" || line.Resource["service.name"] != "worker" ||
		line.Resource["team"] != "a b" || line.Resource["deployment.environment.name"] != "test" || len(line.TraceID) != 32 {
		t.Fatalf("line %s", buf.String())
	}
}

// Without tracing/otlp linked, asking for OTLP is an error naming the
// import, and tracing stays off.
func TestSetupOTLPNotLinked(t *testing.T) {
	if NewOTLPExporter != nil {
		t.Skip("tracing/otlp is linked into this test binary")
	}
	_, err := Setup(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}))
	if err == nil || !strings.Contains(err.Error(), `import _ "github.com/jobhost/jobhost/tracing/otlp"`) || Enabled() {
		t.Fatalf("Setup = %v (enabled %v); want the error naming the import", err, Enabled())
	}
}
