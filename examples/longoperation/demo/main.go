// Command demo shows the long-operation pattern end to end: it serves the
// caller's callback endpoint on 127.0.0.1, queues two operations with that
// endpoint as their callbackUrl (one of them invalid), runs the host with
// RunLongOperation, and prints the completion callbacks as they arrive.
//
// It needs Azurite on 127.0.0.1:10001 (make run-longoperation starts one).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/jobhost/jobhost/examples/longoperation"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Environ(), "host.json", os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", runtime.Redact(err.Error()))
		os.Exit(1)
	}
}

// run is the demo; logs go to logw, the story to out.
func run(ctx context.Context, environ []string, hostJSON string, out, logw io.Writer) error {
	settings, err := runtime.LoadAppSettings(append([]string{"AzureWebJobsStorage=UseDevelopmentStorage=true"}, environ...), "", false)
	if err != nil {
		return err
	}
	cfg, err := runtime.LoadConfig(hostJSON, true, settings)
	if err != nil {
		return err
	}
	// The caller's endpoint: where the bot would send its proactive message.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	callbacks := make(chan runtime.Completion, 2)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c runtime.Completion
		if err := json.NewDecoder(r.Body).Decode(&c); err == nil {
			callbacks <- c
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	callbackURL := "http://" + ln.Addr().String() + "/operations/completed"

	reg := &functions.Registry{}
	longoperation.Register(reg)
	logs, err := runtime.NewLogs(runtime.LogOptions{Format: "console", Levels: cfg.LogLevels, Output: zapSync{logw}})
	if err != nil {
		return err
	}
	h, err := runtime.New(runtime.Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs})
	if err != nil {
		return err
	}
	queue := h.Functions()[0].Queue
	svc, err := azurequeue.NewServiceClient("Storage", settings.Lookup)
	if err != nil {
		return err
	}
	q := azurequeue.New(svc, queue, azurequeue.Options{CreateIfMissing: true})
	for _, req := range []longoperation.Request{
		{OperationID: "provision-42", Steps: 3, StepMs: 300, CallbackURL: callbackURL},
		{Steps: 1, CallbackURL: callbackURL}, // no operationId: can never succeed
	} {
		b, _ := json.Marshal(req)
		if _, err := q.Send(ctx, base64.StdEncoding.EncodeToString(b)); err != nil {
			return fmt.Errorf("queueing: %w", err)
		}
		fmt.Fprintf(out, "queued %s, answering the caller at once; completion goes to %s\n", b, callbackURL)
	}

	hctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	defer func() { cancel(); <-done }()
	for range 2 {
		select {
		case c := <-callbacks:
			res, _ := json.Marshal(c.Output)
			fmt.Fprintf(out, "callback: %s %s after %d attempt(s), output %s, error %q\n",
				c.Status, c.MessageID, c.Attempts, res, c.Error)
		case err := <-done:
			return fmt.Errorf("host stopped: %v", err)
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no callback within 30s (is Azurite running on 127.0.0.1:10001?)")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// zapSync adapts an io.Writer to zap's WriteSyncer.
type zapSync struct{ io.Writer }

func (zapSync) Sync() error { return nil }
