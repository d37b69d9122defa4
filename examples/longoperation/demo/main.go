// Command demo shows the bot pattern on the host's operations API. A bot
// cannot keep its user waiting while a long operation runs, so it POSTs the
// operation to the host's API with Prefer: respond-async, callback;
// url="…" naming its own callback endpoint, and answers its user at once
// with the operation's id. It then shows the three ways to follow an
// operation — polling its record (GET, with the progress RunLongOperation
// reports), waiting for it (Prefer: wait=N) and the completion callback,
// which the bot verifies (Standard Webhooks signature, webhook.VerifyRequest)
// — and cancels one (DELETE).
//
// For the demo the host runs in this process, with a signing secret made
// for the occasion (JOBHOST_CALLBACK_SECRET, webhook.NewSecret); the bot
// talks to it over HTTP only, as it would to a worker elsewhere. It needs
// Azurite (queues on 127.0.0.1:10001, tables on 10002); make
// run-longoperation starts it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jobhost/jobhost/examples/longoperation"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Environ(), options{hostJSON: "host.json"}, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", runtime.Redact(err.Error()))
		os.Exit(1)
	}
}

// options are what the tests change.
type options struct {
	hostJSON string
	// listen overrides jobhost.http.listen ("127.0.0.1:0": a free port).
	listen string
	// store overrides the operations store host.json names.
	store operations.Store
	// pollEvery is the bot's polling interval (default 200 ms; the API
	// advises Retry-After: 5, too slow for a demo).
	pollEvery time.Duration
}

// run is the demo; the host's logs go to logw, the story to out.
func run(ctx context.Context, environ []string, o options, out, logw io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if o.pollEvery <= 0 {
		o.pollEvery = 200 * time.Millisecond
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	secrets, err := webhook.ParseSecrets(secret)
	if err != nil {
		return err
	}
	environ = append(append([]string{"AzureWebJobsStorage=UseDevelopmentStorage=true"}, environ...),
		runtime.DefaultCallbackSecretSetting+"="+secret)
	settings, err := runtime.LoadAppSettings(environ, "", false)
	if err != nil {
		return err
	}
	cfg, err := runtime.LoadConfig(o.hostJSON, true, settings)
	if err != nil {
		return err
	}
	if o.listen != "" {
		cfg.HTTP.Listen = o.listen
	}

	// The bot's callback endpoint, where the host tells it an operation
	// completed (the bot would then message its user proactively).
	b := &bot{secrets: secrets, out: out, poll: o.pollEvery, http: &http.Client{Timeout: 70 * time.Second},
		notices: make(chan runtime.OperationCallback, 16), seen: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(b.callback), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	b.callbackURL = "http://" + ln.Addr().String() + "/callbacks"

	// The host, with RunLongOperation and the operations API.
	reg := &functions.Registry{}
	longoperation.Register(reg)
	logs, err := runtime.NewLogs(runtime.LogOptions{Format: "console", Levels: cfg.LogLevels, Output: zapSync{logw}})
	if err != nil {
		return err
	}
	h, err := runtime.New(runtime.Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs, Operations: o.store})
	if err != nil {
		return err
	}
	hctx, stopHost := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	defer func() { stopHost(); <-done }()
	addr, err := awaitListener(ctx, h, done)
	if err != nil {
		return err
	}
	b.api = "http://" + addr + runtime.OperationsPath
	fmt.Fprintf(out, "host: operations API on %s; it signs callbacks with %s (a whsec_ secret made for this demo)\n",
		b.api, runtime.DefaultCallbackSecretSetting)
	fmt.Fprintf(out, "bot:  callback endpoint %s, allowed in jobhost.callbacks.allowedHosts\n\n", b.callbackURL)
	return b.story(ctx)
}

// awaitListener waits for the host's HTTP listener and returns its address.
func awaitListener(ctx context.Context, h *runtime.Host, done <-chan error) (string, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.HTTPAddr() == "" {
		select {
		case err := <-done:
			return "", fmt.Errorf("the host stopped: %v", err)
		case <-ctx.Done():
			return "", fmt.Errorf("the host's HTTP listener did not start: %w", ctx.Err())
		case <-t.C:
		}
	}
	return h.HTTPAddr(), nil
}

// bot is the caller: it talks to the host's API over HTTP and receives
// completion callbacks.
type bot struct {
	api, callbackURL string
	http             *http.Client
	secrets          []webhook.Secret
	poll             time.Duration
	out              io.Writer

	notices chan runtime.OperationCallback
	mu      sync.Mutex
	seen    map[string]bool // webhook-ids received: delivery is at least once
	got     []runtime.OperationCallback
}

// record is the part of an operation's JSON the bot reads.
type record struct {
	ID           string          `json:"id"`
	StatusName   string          `json:"statusName"`
	Location     string          `json:"location"`
	Progress     json.RawMessage `json:"progress"`
	Output       json.RawMessage `json:"output"`
	ErrorCode    string          `json:"errorCode"`
	ErrorMessage string          `json:"errorMessage"`
}

// callback receives completion notices: only a correctly signed one is
// taken (401 otherwise), and each webhook-id once.
func (b *bot) callback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := webhook.VerifyRequest(r, b.secrets, 1<<20, webhook.DefaultTolerance)
	if err != nil {
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var n runtime.OperationCallback
	if err := json.Unmarshal(body, &n); err != nil || n.ID == "" {
		http.Error(w, "not an operation callback", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	dup := b.seen[r.Header.Get(webhook.HeaderID)]
	b.seen[r.Header.Get(webhook.HeaderID)] = true
	b.mu.Unlock()
	if !dup {
		select {
		case b.notices <- n:
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// awaitNotice waits for the callback of operation id.
func (b *bot) awaitNotice(ctx context.Context, id string) (runtime.OperationCallback, error) {
	for {
		for _, n := range b.got {
			if n.ID == id {
				return n, nil
			}
		}
		select {
		case n := <-b.notices:
			b.got = append(b.got, n)
		case <-ctx.Done():
			return runtime.OperationCallback{}, fmt.Errorf("no callback for operation %s: %w", id, ctx.Err())
		}
	}
}

// do sends one request to the API and decodes the record it answers with.
func (b *bot) do(ctx context.Context, method, url string, body any, prefer string) (int, http.Header, record, error) {
	var rd io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, record{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, nil, record{}, err
	}
	defer resp.Body.Close()
	var rec record
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &rec); err != nil || (resp.StatusCode >= 300 && resp.StatusCode != http.StatusConflict) {
		return resp.StatusCode, resp.Header, rec, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(raw))
	}
	return resp.StatusCode, resp.Header, rec, nil
}

// submit POSTs an operation.
func (b *bot) submit(ctx context.Context, in longoperation.Request, prefer string) (int, http.Header, record, error) {
	js, _ := json.Marshal(in)
	fmt.Fprintf(b.out, "bot → POST %s/RunLongOperation %s\n       Prefer: %s\n", b.api, js, prefer)
	code, hdr, rec, err := b.do(ctx, http.MethodPost, b.api+"/RunLongOperation", in, prefer)
	if err == nil {
		fmt.Fprintf(b.out, "bot ← %d %s %s", code, http.StatusText(code), rec.StatusName)
		if loc := hdr.Get("Location"); loc != "" {
			fmt.Fprintf(b.out, ", Location: %s", loc)
		}
		fmt.Fprintln(b.out)
	}
	return code, hdr, rec, err
}

// pollUntil GETs the record every b.poll, printing each change of status or
// progress, until it is in one of the statuses.
func (b *bot) pollUntil(ctx context.Context, loc string, statuses ...string) (record, error) {
	t := time.NewTicker(b.poll)
	defer t.Stop()
	last := ""
	for {
		_, _, rec, err := b.do(ctx, http.MethodGet, loc, nil, "")
		if err != nil {
			return rec, err
		}
		if now := rec.StatusName + " " + string(rec.Progress); now != last {
			fmt.Fprintf(b.out, "bot   GET  → %s", rec.StatusName)
			if len(rec.Progress) > 0 {
				fmt.Fprintf(b.out, ", progress %s", rec.Progress)
			}
			if len(rec.Output) > 0 {
				fmt.Fprintf(b.out, ", output %s", rec.Output)
			}
			fmt.Fprintln(b.out)
			last = now
		}
		for _, s := range statuses {
			if rec.StatusName == s {
				return rec, nil
			}
		}
		select {
		case <-ctx.Done():
			return rec, fmt.Errorf("operation %s is still %s: %w", rec.ID, rec.StatusName, ctx.Err())
		case <-t.C:
		}
	}
}

// showNotice prints a verified callback.
func (b *bot) showNotice(n runtime.OperationCallback) {
	fmt.Fprintf(b.out, "bot ⇐ callback, signature verified: operation %s %s", n.ID, n.StatusName)
	if n.ErrorMessage != "" {
		fmt.Fprintf(b.out, " (%s: %s)", n.ErrorCode, n.ErrorMessage)
	}
	fmt.Fprintln(b.out)
}

// story is what the bot does.
func (b *bot) story(ctx context.Context) error {
	callback := fmt.Sprintf("respond-async, callback; url=%q", b.callbackURL)

	fmt.Fprintln(b.out, `1. user: "provision my environment" — a job of a few seconds. The bot submits it and answers at once.`)
	code, hdr, rec, err := b.submit(ctx, longoperation.Request{Steps: 4, StepMs: 400}, callback)
	if err != nil {
		return err
	}
	if code != http.StatusAccepted || hdr.Get("Location") == "" {
		return fmt.Errorf("submitting: %d without a Location, want 202 Accepted", code)
	}
	fmt.Fprintf(b.out, "bot → user: \"On it: operation %s. I'll tell you when it's done.\"\n", rec.ID)
	fmt.Fprintf(b.out, "   (polling the Location every %s to show the progress)\n", b.poll)
	final, err := b.pollUntil(ctx, hdr.Get("Location"), "Succeeded", "Failed", "Canceled")
	if err != nil {
		return err
	}
	if final.StatusName != "Succeeded" {
		return fmt.Errorf("operation %s ended %s: %s", final.ID, final.StatusName, final.ErrorMessage)
	}
	n, err := b.awaitNotice(ctx, rec.ID)
	if err != nil {
		return err
	}
	b.showNotice(n)
	if n.StatusName != "Succeeded" || n.Location != hdr.Get("Location") {
		return fmt.Errorf("the callback says %s at %q", n.StatusName, n.Location)
	}
	fmt.Fprintln(b.out, `bot → user: "Done: 4 steps."`)

	fmt.Fprintln(b.out, "\n2. A short one: Prefer: wait=10 answers 200 with the result when it is done within 10 s.")
	code, _, rec, err = b.submit(ctx, longoperation.Request{Steps: 2, StepMs: 100}, "wait=10")
	if err != nil {
		return err
	}
	if code != http.StatusOK || rec.StatusName != "Succeeded" {
		return fmt.Errorf("Prefer: wait=10 answered %d %s, want 200 Succeeded", code, rec.StatusName)
	}
	fmt.Fprintf(b.out, "      output %s\n", rec.Output)
	code, _, rec, err = b.submit(ctx, longoperation.Request{Steps: -1}, "wait=10")
	if err != nil {
		return err
	}
	if code != http.StatusOK || rec.StatusName != "Failed" {
		return fmt.Errorf("an invalid operation: %d %s, want 200 Failed", code, rec.StatusName)
	}
	fmt.Fprintf(b.out, "      %s: %s (no retries: functions.Permanent)\n", rec.ErrorCode, rec.ErrorMessage)

	fmt.Fprintln(b.out, "\n3. user: \"never mind\" — the bot cancels a long one while it runs.")
	_, hdr, rec, err = b.submit(ctx, longoperation.Request{Steps: 600, StepMs: 1000}, callback)
	if err != nil {
		return err
	}
	loc := hdr.Get("Location")
	if _, err := b.pollUntil(ctx, loc, "InProgress"); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "bot → DELETE %s\n", loc)
	code, _, del, err := b.do(ctx, http.MethodDelete, loc, nil, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "bot ← %d %s %s\n", code, http.StatusText(code), del.StatusName)
	if code != http.StatusAccepted && code != http.StatusOK {
		return fmt.Errorf("cancelling: %d %s", code, del.StatusName)
	}
	if _, err := b.pollUntil(ctx, loc, "Canceled"); err != nil {
		return err
	}
	if n, err = b.awaitNotice(ctx, rec.ID); err != nil {
		return err
	}
	b.showNotice(n)
	if n.StatusName != "Canceled" {
		return fmt.Errorf("the callback of the cancelled operation says %s", n.StatusName)
	}

	fmt.Fprintln(b.out, "\n4. Anyone can POST to the callback endpoint: the bot takes only what the host signed.")
	forged := `{"backgroundOperationId":"` + rec.ID + `","backgroundOperationStatusName":"Succeeded"}`
	resp, err := b.http.Post(b.callbackURL, "application/json", strings.NewReader(forged))
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(b.out, "a forged, unsigned callback → %d %s\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	if resp.StatusCode != http.StatusUnauthorized {
		return errors.New("the bot took an unsigned callback")
	}
	return nil
}

// zapSync adapts an io.Writer to zap's WriteSyncer.
type zapSync struct{ io.Writer }

func (zapSync) Sync() error { return nil }
