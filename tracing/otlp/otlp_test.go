package otlp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/tracing"
	_ "github.com/jobhost/jobhost/tracing/otlp"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSetupOTLPOverHTTP(t *testing.T) {
	type request struct {
		path, contentType, auth string
		body                    []byte
	}
	got := make(chan request, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- request{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), b}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	for name, vars := range map[string]map[string]string{
		// otlp is the default exporter when an endpoint is set.
		"base endpoint": {"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20k"},
		"traces endpoint": {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces",
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Authorization=Bearer%20k", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
	} {
		shutdown, err := tracing.Setup(context.Background(), env(vars))
		if err != nil || !tracing.Enabled() {
			t.Fatalf("%s: Setup: %v", name, err)
		}
		_, span := tracing.Tracer().Start(context.Background(), "exported-span-"+strings.ReplaceAll(name, " ", "-"))
		span.End()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := shutdown(ctx); err != nil { // flushes the batch
			t.Fatalf("%s: shutdown: %v", name, err)
		}
		cancel()
		select {
		case r := <-got:
			if r.path != "/v1/traces" || r.contentType != "application/x-protobuf" || r.auth != "Bearer k" ||
				!bytes.Contains(r.body, []byte("exported-span-")) {
				t.Fatalf("%s: request %s %s %q, %d bytes", name, r.path, r.contentType, r.auth, len(r.body))
			}
		default:
			t.Fatalf("%s: nothing was exported by the time shutdown returned", name)
		}
	}
}
