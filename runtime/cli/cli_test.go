package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

type order struct {
	ID int `json:"id"`
}

func registry() *functions.Registry {
	r := &functions.Registry{}
	r.SettingDefault("OrdersQueue", "orders")
	functions.Add(r, "ProcessOrder", functions.QueueTrigger("%OrdersQueue%"),
		func(ctx context.Context, o order, msg *triggers.Message) error { return nil },
		functions.BatchSize(4))
	return r
}

// run runs the CLI in dir with the given environment.
func run(t *testing.T, dir string, reg *functions.Registry, environ []string, args ...string) (int, string, string) {
	t.Helper()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	var out, errb bytes.Buffer
	code := Run(context.Background(), Env{Args: args, Stdout: &out, Stderr: &errb, Environ: environ, Registry: reg})
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

const devStorage = "AzureWebJobsStorage=UseDevelopmentStorage=true"

// Bad host.json and settings: exit status 2, one line per problem naming the
// key, nothing else on stdout.
func TestValidateReportsEachProblem(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "host.json", `{"version": "2.0", "functionTimeout": "300",
	  "extensions": {"queues": {"batchSize": 100, "messageEncoding": "hex"}}}`)
	reg := registry()
	functions.Add(reg, "processorder", functions.QueueTrigger("%Missing%"),
		func(ctx context.Context, s string, msg *triggers.Message) error { return nil })
	code, out, errs := run(t, dir, reg, []string{devStorage,
		"AzureFunctionsJobHost__extensions__queues__maxDequeueCount=zero"}, "validate")
	if code != ExitUsage {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	for _, key := range []string{"functionTimeout", "extensions.queues.batchSize", "extensions.queues.messageEncoding",
		"AzureFunctionsJobHost__extensions__queues__maxDequeueCount"} {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "jobhost: "+key+": ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("want one line for %s in:\n%s", key, errs)
		}
	}
	if len(lines) != 4 || out != "" {
		t.Errorf("want 4 lines on stderr and nothing on stdout, got:\n%s\n--\n%s", errs, out)
	}
}

// Registration problems (duplicates, unresolved settings, bad queue names)
// are reported together.
func TestValidateFunctionProblems(t *testing.T) {
	reg := registry()
	h := func(ctx context.Context, s string, msg *triggers.Message) error { return nil }
	functions.Add(reg, "processorder", functions.QueueTrigger("other"), h)
	functions.Add(reg, "Unresolved", functions.QueueTrigger("%NotSet%"), h)
	functions.Add(reg, "BadName", functions.QueueTrigger("Bad--Queue"), h)
	code, _, errs := run(t, t.TempDir(), reg, []string{devStorage}, "validate")
	if code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"registered more than once", "app setting NotSet is not set", `"bad--queue"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(strings.TrimSpace(errs), "\n") + 1; n != 3 {
		t.Errorf("%d lines, want 3:\n%s", n, errs)
	}
}

func TestValidateMissingConnection(t *testing.T) {
	code, _, errs := run(t, t.TempDir(), registry(), nil, "validate")
	if code != ExitUsage || !strings.Contains(errs, "AzureWebJobsStorage") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}

// A connection string never appears in an error, even a malformed one.
func TestConnectionStringNotEchoed(t *testing.T) {
	const secret = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
	code, out, errs := run(t, t.TempDir(), registry(),
		[]string{"AzureWebJobsStorage=AccountName=acct;AccountKey=" + secret + ";garbage"}, "validate")
	if strings.Contains(out+errs, secret) {
		t.Errorf("secret leaked (exit %d):\n%s%s", code, out, errs)
	}
}

func TestUnknownCommandAndFlags(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"run", "--nope"}, {"peek", "--queue", "q", "-n", "99"},
		{"send", "--queue", "q"}, {"send", "--queue", "q", "--json", "{not json"}, {}} {
		if code, _, _ := run(t, t.TempDir(), registry(), []string{devStorage}, args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestFunctionsListing(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "host.json", `{"version": "2.0", "jobhost": {"functions": {"ProcessOrder": {"maxDequeueCount": 2}}}}`)
	code, out, errs := run(t, dir, registry(), []string{devStorage}, "functions", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rows []functionInfo
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	r := rows[0]
	if len(rows) != 1 || r.Queue != "orders" || r.QueueExpression != "%OrdersQueue%" || r.BatchSize != 4 ||
		r.MaxDequeueCount != 2 || r.PoisonQueue != "orders-poison" || r.ArgType != "cli.order" || r.LeaseDuration != "00:10:00" {
		t.Errorf("listing: %+v", rows)
	}
	code, out, _ = run(t, dir, registry(), []string{devStorage, "OrdersQueue=Big-Orders"}, "functions")
	if code != ExitOK || !strings.Contains(out, "big-orders") || !strings.Contains(out, "ProcessOrder") {
		t.Errorf("table (exit %d):\n%s", code, out)
	}
}

// send honours messageEncoding and peek shows what was sent, against Azurite.
func TestSendAndPeek(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString, "OrdersQueue=" + queue}
	dir := t.TempDir()
	code, out, errs := run(t, dir, registry(), env, "send", "--queue", "%OrdersQueue%", "--json", `{"id": 42}`)
	if code != ExitOK || !strings.Contains(out, "base64") {
		t.Fatalf("send exit %d: %s %s", code, out, errs)
	}
	write(t, dir, "msg.json", `{"id": 43}`)
	if code, _, errs = run(t, dir, registry(), env, "send", "--queue", queue, "--file", "msg.json", "--encoding", "none"); code != ExitOK {
		t.Fatalf("send --file: %s", errs)
	}
	code, out, errs = run(t, dir, registry(), env, "peek", "--queue", queue, "-n", "5", "--output", "json")
	if code != ExitOK {
		t.Fatalf("peek exit %d: %s", code, errs)
	}
	var rows []peeked
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Text != base64.StdEncoding.EncodeToString([]byte(`{"id": 42}`)) ||
		rows[0].Payload != `{"id": 42}` || rows[1].Text != `{"id": 43}` || rows[1].DecodeError == "" {
		t.Errorf("peek: %+v", rows)
	}
	code, _, errs = run(t, dir, registry(), env, "peek", "--queue", "no-such-queue-here")
	if code != ExitFailed || !strings.Contains(errs, "does not exist") {
		t.Errorf("peek missing queue: exit %d %s", code, errs)
	}
}

// `run` starts the host and a stop signal (context end) stops it cleanly.
func TestRunProcessesAndStops(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	got := make(chan order, 1)
	reg := &functions.Registry{}
	functions.Add(reg, "ProcessOrder", functions.QueueTrigger(queue),
		func(ctx context.Context, o order, msg *triggers.Message) error { got <- o; return nil })
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	if code, _, errs := run(t, t.TempDir(), reg, env, "send", "--queue", queue, "--json", `{"id": 7}`); code != ExitOK {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- Run(ctx, Env{Args: []string{"run"}, Stdout: &bytes.Buffer{}, Stderr: &errb,
			Environ: env, Registry: reg})
	}()
	select {
	case o := <-got:
		if o.ID != 7 {
			t.Errorf("got %+v", o)
		}
	case code := <-done:
		t.Fatalf("run exited %d: %s", code, errb.String())
	case <-time.After(20 * time.Second):
		t.Fatal("message not processed")
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("run exit %d", code)
	}
}

// send works on a subscription URL through the driver's Publisher, and the
// host picks the message up from that broker.
func TestSendToURLTrigger(t *testing.T) {
	serverURL := rabbittest.Require(t)
	queue := rabbittest.DeclareQueue(t, false, nil)
	got := make(chan order, 1)
	reg := &functions.Registry{}
	functions.Add(reg, "ProcessOrder", functions.SubscriptionTrigger("%OrdersSubscription%"),
		func(ctx context.Context, o order, msg *triggers.Message) error { got <- o; return nil })
	env := []string{"RABBIT_SERVER_URL=" + serverURL, "OrdersSubscription=rabbit://" + queue}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, Env{Args: []string{"run"}, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Environ: env, Registry: reg})
	}()
	code, out, errs := run(t, t.TempDir(), reg, env, "send", "--queue", "%OrdersSubscription%", "--json", `{"id": 9}`)
	if code != ExitOK || !strings.Contains(out, "rabbit://"+queue) || !strings.Contains(out, "none") {
		t.Fatalf("send exit %d: %s %s", code, out, errs)
	}
	select {
	case o := <-got:
		if o.ID != 9 {
			t.Errorf("got %+v", o)
		}
	case code := <-done:
		t.Fatalf("run exited %d", code)
	case <-time.After(20 * time.Second):
		t.Fatal("not processed")
	}
	cancel()
	<-done
	if code, _, errs := run(t, t.TempDir(), reg, env, "peek", "--queue", "%OrdersSubscription%"); code != ExitUsage || !strings.Contains(errs, "Storage Queues only") {
		t.Errorf("peek on a URL: exit %d %s", code, errs)
	}
}

// TestSendInProcessRefused: mem:// and memqueue:// queues live inside one
// process, so a send from the CLI could only be lost; it is refused.
func TestSendInProcessRefused(t *testing.T) {
	for _, u := range []string{"mem://orders", "memqueue://orders"} {
		code, _, errs := run(t, t.TempDir(), &functions.Registry{}, nil, "send", "--queue", u, "--json", `{"id": 9}`)
		if code != ExitUsage || !strings.Contains(errs, "inside one process") {
			t.Errorf("send to %s: exit %d, %q; want a usage error saying the queue is in-process", u, code, errs)
		}
	}
}

// TestFunctionsShowRetry: the listing shows the retry policy in force and
// the attempts it gives, in the table and in JSON.
func TestFunctionsShowRetry(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "host.json", `{"version": "2.0",
	  "retry": {"strategy": "exponentialBackoff", "maxRetryCount": 3, "minimumInterval": "00:00:02", "maximumInterval": "00:05:00"}}`)
	reg := registry()
	functions.Add(reg, "Fixed", functions.QueueTrigger("fixed"),
		func(ctx context.Context, o order, msg *triggers.Message) error { return nil },
		functions.Retry(functions.FixedDelay(-1, 10*time.Second)), functions.MaxDequeueCount(7))
	code, out, errs := run(t, dir, reg, []string{devStorage}, "functions", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("%v:\n%s", err, out)
	}
	byName := map[string]map[string]any{}
	for _, r := range rows {
		byName[r["name"].(string)] = r
	}
	want := map[string]string{
		"ProcessOrder": `{"maxRetryCount":3,"maximumInterval":"00:05:00","minimumInterval":"00:00:02","strategy":"exponentialBackoff"} 4`,
		"Fixed":        `{"delayInterval":"00:00:10","maxRetryCount":-1,"strategy":"fixedDelay"} 7`,
	}
	for name, w := range want {
		retry, _ := json.Marshal(byName[name]["retry"])
		if got := fmt.Sprintf("%s %v", retry, byName[name]["attempts"]); got != w {
			t.Errorf("%s: retry and attempts %s, want %s", name, got, w)
		}
	}
	code, out, _ = run(t, dir, reg, []string{devStorage}, "functions")
	for _, want := range []string{"RETRY", "ATTEMPTS", "exponential 00:00:02..00:05:00", "fixed 00:00:10"} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("table lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	write(t, dir, "host.json", `{"version": "2.0"}`)
	code, out, _ = run(t, dir, registry(), []string{devStorage}, "functions", "--output", "json")
	if code != ExitOK || !strings.Contains(out, `"retry": null`) || !strings.Contains(out, `"attempts": 5`) {
		t.Errorf("no policy: exit %d\n%s", code, out)
	}
}

// TestValidateEveryFunctionDisabled: run exits 1 when every function is
// disabled, and validate says so the same way instead of "ok".
func TestValidateEveryFunctionDisabled(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "host.json", `{"version": "2.0", "jobhost": {"functions": {"ProcessOrder": {"disabled": true}}}}`)
	code, out, errs := run(t, dir, registry(), []string{devStorage}, "validate")
	if code != ExitFailed || strings.Contains(out, "ok") || !strings.Contains(errs, "every function is disabled") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q; want exit 1 saying every function is disabled", code, out, errs)
	}
	code, _, errs = run(t, dir, registry(), []string{devStorage}, "run")
	if code != ExitFailed || !strings.Contains(errs, "every function is disabled") {
		t.Errorf("run: exit %d, stderr %q", code, errs)
	}
	write(t, dir, "host.json", `{"version": "2.0"}`)
	if code, out, errs := run(t, dir, registry(), []string{devStorage}, "validate"); code != ExitOK || !strings.HasPrefix(out, "ok:") {
		t.Errorf("enabled: exit %d %q %q", code, out, errs)
	}
}
