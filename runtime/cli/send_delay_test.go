package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// send --delay leaves the message invisible; the help documents it; bad
// delays and oversized messages are usage errors that send nothing.
func TestSendDelayAndLimits(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	dir := t.TempDir()
	code, out, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--json", `{"id": 1}`, "--delay", "1h")
	if code != ExitOK || !strings.Contains(out, "invisible for 1h0m0s") || !strings.Contains(out, "base64") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	drv := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	msgs, err := drv.Peek(context.Background(), 32)
	if n, _ := drv.ApproximateCount(context.Background()); err != nil || len(msgs) != 0 || n != 1 {
		t.Errorf("peek %d (%v), count %d: want one invisible message", len(msgs), err, n)
	}
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--json", `{}`, "--delay", "-1s"); code != ExitUsage || !strings.Contains(errs, "--delay") {
		t.Errorf("negative delay: exit %d %q", code, errs)
	}
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--json", `{}`, "--delay", "8d"); code != ExitUsage {
		t.Errorf("unparsable delay: exit %d %q", code, errs)
	}
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--json", `{}`, "--delay", "200h"); code != ExitUsage || !strings.Contains(errs, "--delay") {
		t.Errorf("a delay over 7 days: exit %d %q", code, errs)
	}
	writeBytes(t, dir, "big.json", []byte(`"`+strings.Repeat("x", 50<<10)+`"`))
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--file", "big.json"); code != ExitUsage ||
		!strings.Contains(errs, "after base64 encoding") || !strings.Contains(errs, "at most 65536") {
		t.Errorf("oversized: exit %d %q", code, errs)
	}
	if n, _ := drv.ApproximateCount(context.Background()); n != 1 {
		t.Errorf("%d messages on the queue; the refused ones were sent", n)
	}
	_, _, errs = run(t, dir, &functions.Registry{}, nil, "send", "-h")
	if !strings.Contains(errs, "--delay D") || !strings.Contains(errs, "cannot delay") {
		t.Errorf("send -h does not document --delay:\n%s", errs)
	}
}
