package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// The demo receives both completion callbacks: the operation that
// succeeded with its output, and the invalid one, poisoned at once.
func TestDemo(t *testing.T) {
	srv := azuritetest.Shared(t)
	var out, logs bytes.Buffer
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString, "LongOperationQueue=" + azuritetest.UniqueQueueName(t)}
	if err := run(context.Background(), env, "../host.json", &out, &logs); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), logs.String())
	}
	got := out.String()
	for _, want := range []string{`callback: succeeded`, `"operationId":"provision-42","steps":3`, `callback: poisoned`,
		`after 1 attempt(s), output null, error "operationId is required"`} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
