package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/tracing"
	"github.com/jobhost/jobhost/tracing/tracingtest"
)

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// With tracing off a send carries nothing more, even with a span in ctx.
func TestTracingOffSendCarriesNothing(t *testing.T) {
	name := memName(t)
	tp := sdktrace.NewTracerProvider() // the program's own, not jobhost's
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	c := newClient(t, client.Options{})
	if _, err := c.Send(ctx, "memqueue://"+name, order{ID: 1}, client.Properties(map[string]string{"a": "b"})); err != nil {
		t.Fatal(err)
	}
	msgs := receive(t, name, 1, 5*time.Second)
	if len(msgs) != 1 || len(msgs[0].Properties) != 1 || msgs[0].Properties["a"] != "b" {
		t.Fatalf("properties %v", msgs[0].Properties)
	}
}

// A send is a PRODUCER span, child of ctx's span, whose context the
// message carries; the caller's properties are not changed.
func TestTracingSendInjects(t *testing.T) {
	exp, tr := tracingtest.Record(t)
	name := memName(t)
	c := newClient(t, client.Options{})
	ctx, parent := tr.Start(context.Background(), "request")
	props := map[string]string{"a": "b", "traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}
	id, err := c.Send(ctx, "memqueue://"+name, order{ID: 1}, client.Properties(props))
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	if props["traceparent"] != "00-11111111111111111111111111111111-2222222222222222-01" || len(props) != 2 {
		t.Fatalf("the caller's properties changed: %v", props)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	send := spans[0]
	if send.Name != "send "+name || send.SpanKind != trace.SpanKindProducer || send.Parent.SpanID() != parent.SpanContext().SpanID() ||
		send.SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("send span %s %v parent %v", send.Name, send.SpanKind, send.Parent)
	}
	for k, want := range map[string]string{"messaging.system": "memqueue", "messaging.destination.name": name,
		"messaging.operation.name": "send", "messaging.operation.type": "send", "messaging.message.id": id} {
		if got := attr(send, k).AsString(); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	msgs := receive(t, name, 1, 5*time.Second)
	want, _ := tracing.Format(send.SpanContext)
	if p := msgs[0].Properties; p["traceparent"] != want || p["a"] != "b" {
		t.Fatalf("properties %v, want traceparent %s", p, want)
	}
	if _, ok := msgs[0].Properties["Diagnostic-Id"]; ok {
		t.Fatal("Diagnostic-Id on a broker other than Service Bus")
	}
}

// Without a span in ctx, a traceparent the caller set is the send span's
// parent: a message forwarded keeps its trace.
func TestTracingSendContinuesCallersTraceparent(t *testing.T) {
	exp, _ := tracingtest.Record(t)
	name := memName(t)
	c := newClient(t, client.Options{})
	const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, opt := range []client.SendOption{client.Properties(map[string]string{"TraceParent": given}),
		client.WithMeta(bindings.Meta{TraceParent: given})} {
		if _, err := c.Send(context.Background(), "memqueue://"+name, order{ID: 1}, opt); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Fatalf("span %s in trace %s, parent %s", s.Name, s.SpanContext.TraceID(), s.Parent.SpanID())
		}
	}
	for _, m := range receive(t, name, 2, 5*time.Second) {
		if tp := m.Properties["traceparent"]; !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") {
			t.Fatalf("traceparent %q: not the send span's", tp)
		}
		for k := range m.Properties {
			if strings.EqualFold(k, "traceparent") && k != "traceparent" {
				t.Fatalf("the caller's %s is still there: %v", k, m.Properties)
			}
		}
	}
}

// On a Storage Queue the trace context goes in the body's envelope only
// when Options.TraceStorageQueueBody opts in; a payload that is not JSON
// goes as it is.
func TestTracingStorageQueueBody(t *testing.T) {
	exp, tr := tracingtest.Record(t)
	for _, optIn := range []bool{false, true} {
		c, srv, queue := azurite(t, client.Options{TraceStorageQueueBody: optIn})
		ctx, parent := tr.Start(context.Background(), "request")
		if _, err := c.Send(ctx, queue, order{ID: 7}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctx, queue, "plain text"); err != nil {
			t.Fatal(err)
		}
		parent.End()
		msgs := peek(t, srv, queue)
		if len(msgs) != 2 {
			t.Fatalf("%d messages", len(msgs))
		}
		body, err := bindings.Base64.Decode(msgs[0].Body)
		if err != nil {
			t.Fatal(err)
		}
		meta, rest, ok, err := bindings.SplitMeta(body)
		var sends []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.Name == "send "+queue {
				sends = append(sends, s)
			}
		}
		if len(sends) != 2 || attr(sends[0], "messaging.system").AsString() != "azure_storage_queue" {
			t.Fatalf("send spans %v", sends)
		}
		switch {
		case !optIn && (ok || string(body) != `{"id":7}`):
			t.Fatalf("not opted in: body %s", body)
		case optIn:
			want, _ := tracing.Format(sends[0].SpanContext)
			if !ok || err != nil || string(rest) != `{"id":7}` || meta.TraceParent != want {
				t.Fatalf("opted in: body %s (%v %v), want traceparent %s", body, ok, err, want)
			}
		}
		if text, _ := bindings.Base64.Decode(msgs[1].Body); string(text) != "plain text" {
			t.Fatalf("text payload became %q", text)
		}
		exp.Reset()
	}
}
