package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobhost/jobhost/internal/linewait"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// Without WEBJOBS_SHUTDOWN_FILE nothing is watched: the context is the
// caller's own and nothing is logged.
func TestShutdownFileUnsetWatchesNothing(t *testing.T) {
	core, logged := observer.New(zap.DebugLevel)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, stop := watchShutdownFile(parent, "", time.Millisecond, zap.New(core))
	defer stop()
	if ctx != parent {
		t.Error("an unset WEBJOBS_SHUTDOWN_FILE gave a context of its own: something watches")
	}
	if logged.Len() != 0 {
		t.Errorf("logged %d lines with nothing to watch", logged.Len())
	}
}

// The file appearing ends the context, with one log line naming it, and
// only one however long the file stays.
func TestShutdownFileAppearing(t *testing.T) {
	core, logged := observer.New(zap.InfoLevel)
	path := filepath.Join(t.TempDir(), "shutdown")
	ctx, stop := watchShutdownFile(context.Background(), path, 10*time.Millisecond, zap.New(core))
	defer stop()
	if ctx.Err() != nil {
		t.Fatal("stopped before the file existed")
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the shutdown file did not stop the host within 5 s")
	}
	if !errors.Is(context.Cause(ctx), errShutdownFile) {
		t.Errorf("cause %v, want the shutdown file", context.Cause(ctx))
	}
	appeared := logged.FilterMessageSnippet("shutdown file appeared").All()
	if len(appeared) != 1 || appeared[0].ContextMap()["path"] != path {
		t.Errorf("want one line naming %s, got %v", path, logged.All())
	}
}

// A file already there at the start stops at once, saying so.
func TestShutdownFilePresentAtStart(t *testing.T) {
	core, logged := observer.New(zap.InfoLevel)
	path := filepath.Join(t.TempDir(), "shutdown")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, stop := watchShutdownFile(context.Background(), path, time.Hour, zap.New(core))
	defer stop()
	if ctx.Err() == nil {
		t.Fatal("a shutdown file present at start did not stop the host at once")
	}
	if got := logged.FilterMessageSnippet("present at start").Len(); got != 1 || logged.Len() != 1 {
		t.Errorf("want exactly one 'present at start' line, got %v", logged.All())
	}
}

// `run` in a WebJob: the shutdown file appearing while a function runs
// drains as SIGTERM does. Polling stops, the running function finishes and
// its message is deleted, a message queued after the stop stays in the
// queue untouched, and run exits 0.
func TestRunDrainsOnShutdownFile(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	qc := srv.ServiceClient(t).NewQueueClient(queue)
	started, release := make(chan int, 4), make(chan struct{})
	var invoked sync.Map
	reg := &functions.Registry{}
	functions.Add(reg, "ProcessOrder", functions.QueueTrigger(queue),
		func(ctx context.Context, o order, msg *triggers.Message) error {
			if _, dup := invoked.LoadOrStore(o.ID, true); dup {
				t.Errorf("order %d invoked twice", o.ID)
			}
			started <- o.ID
			<-release // the drain waits for this
			return nil
		})
	shutdown := filepath.Join(t.TempDir(), "shutdown")
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString, EnvShutdownFile + "=" + shutdown,
		"AzureFunctionsJobHost__jobhost__shutdownTimeout=00:00:30"}
	dir := t.TempDir()
	write(t, dir, "host.json", `{"version": "2.0"}`)
	if code, _, errs := run(t, dir, reg, env, "send", "--queue", queue, "--json", `{"id": 1}`); code != ExitOK {
		t.Fatal(errs)
	}
	logs := linewait.New()
	done := make(chan int, 1)
	go func() {
		done <- Run(context.Background(), Env{Args: []string{"run", "--host-json", filepath.Join(dir, "host.json")},
			Stdout: &bytes.Buffer{}, Stderr: logs, Environ: env, Registry: reg})
	}()
	select {
	case <-started:
	case code := <-done:
		t.Fatalf("run exited %d: %s", code, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("message not picked up; log:\n%s", logs.String())
	}
	logs.Await(t, "watching for the WebJobs shutdown file", 1, time.Second)
	if err := os.WriteFile(shutdown, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Await(t, "WebJobs shutdown file appeared", 1, 5*time.Second)
	logs.Await(t, "host stopping", 1, 5*time.Second)
	// Queued after the stop: must not be taken.
	if code, _, errs := run(t, dir, reg, env, "send", "--queue", queue, "--json", `{"id": 2}`); code != ExitOK {
		t.Fatal(errs)
	}
	select {
	case code := <-done:
		t.Fatalf("run exited %d while a function was still running: %s", code, logs.String())
	default:
	}
	close(release)
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("run exited %d after the shutdown file, want 0; log:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not return after the drain; log:\n%s", logs.String())
	}
	if n := logs.Count("WebJobs shutdown file appeared"); n != 1 {
		t.Errorf("%d shutdown-file lines, want 1", n)
	}
	if n := logs.Count(`"outcome":"succeeded"`); n != 1 {
		t.Errorf("%d invocations succeeded, want 1 (the one in flight); log:\n%s", n, logs.String())
	}
	// Left: only order 2, never dequeued.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := int32(32)
	peeked, err := qc.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &k})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, m := range peeked.Messages {
		text, _ := base64.StdEncoding.DecodeString(*m.MessageText) // send's default messageEncoding
		left = append(left, fmt.Sprintf("%s (dequeued %d times)", text, *m.DequeueCount))
	}
	if want := `{"id": 2} (dequeued 0 times)`; len(left) != 1 || left[0] != want {
		t.Errorf("queue after the drain holds %q, want only %s", left, want)
	}
}

// The first SIGTERM ends the context (the drain starts); a second stop
// signal exits at once with 128 + its number, saying so on stderr.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	stderr := linewait.New()
	exited := make(chan int, 1)
	ctx, release := signalContext(context.Background(), stderr, func(code int) { exited <- code })
	defer release()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not end the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited %d on the first signal", code)
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 130 {
			t.Errorf("exit status %d after a second signal (SIGINT), want 130", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not exit")
	}
	if !strings.Contains(stderr.String(), "second stop signal (interrupt): exiting at once") {
		t.Errorf("stderr %q does not say why it exited", stderr.String())
	}
}
