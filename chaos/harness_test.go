package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/queueerror"
	"go.uber.org/zap"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime/cli"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// The test binary is also the worker: started with envChild=1 it runs the
// jobhost command line with the chaos function compiled in, so the host is a
// real child process that can be sent SIGKILL and SIGTERM.
const (
	envChild       = "JOBHOST_CHAOS_CHILD"
	envRecord      = "CHAOS_RECORD"      // append-only file the function records events to
	envWork        = "CHAOS_WORK"        // how long one invocation works (Go duration)
	envIncarnation = "CHAOS_INCARNATION" // which worker process this is, for the record
	envTimer       = "CHAOS_TIMER"       // a schedule: the worker runs a timer function instead
	functionName   = "Chaos"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		workerMain() // exits
	}
	azuritetest.Main(m)
}

// full reports whether the full counts and outage lengths run (make chaos).
func full() bool { return os.Getenv("JOBHOST_CHAOS") == "full" }

// pick returns the full value under JOBHOST_CHAOS=full, else the bounded one.
func pick[T any](bounded, fullValue T) T {
	if full() {
		return fullValue
	}
	return bounded
}

// job is the chaos function's argument.
type job struct {
	N    int  `json:"n"`
	Fail bool `json:"fail"`
}

// workerMain is the child process: the jobhost CLI (cli.Main, as a user's
// worker calls it) with one function. The function records every event with
// a single O_APPEND write, which survives SIGKILL of the process.
func workerMain() {
	work, _ := time.ParseDuration(os.Getenv(envWork))
	inc := os.Getenv(envIncarnation)
	if inc == "" {
		inc = "-"
	}
	var rec *os.File
	if p := os.Getenv(envRecord); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos worker:", err)
			os.Exit(3)
		}
		rec = f
	}
	record := func(event string, j job, msg *triggers.Message) {
		if rec == nil {
			return
		}
		// One write per line: O_APPEND makes it atomic with respect to the
		// other invocations and to a kill.
		line := fmt.Sprintf("%s %d %s %d %s\n", event, j.N, msg.ID, msg.DequeueCount, inc)
		if _, err := rec.WriteString(line); err != nil {
			fmt.Fprintln(os.Stderr, "chaos worker: record:", err)
			os.Exit(3)
		}
	}
	if sched := os.Getenv(envTimer); sched != "" {
		// The timer worker: one timer function recording each occurrence
		// it runs, as "tick <unix second> <occurrence> 1 <incarnation>".
		functions.RegisterTimer(functionName, functions.TimerTrigger(sched), func(ctx context.Context, info functions.TimerInfo) error {
			record("tick", job{N: int(info.Next.Unix())}, &triggers.Message{ID: info.Next.UTC().Format(time.RFC3339), DequeueCount: 1})
			return nil
		})
		cli.Main()
		return
	}
	functions.Register(functionName, functions.QueueTrigger("%ChaosQueue%"),
		func(ctx context.Context, j job, msg *triggers.Message) error {
			log := functions.Logger(ctx).With(zap.Int("n", j.N), zap.String("messageId", msg.ID),
				zap.Int64("dequeueCount", msg.DequeueCount))
			record("start", j, msg)
			log.Info("chaos start")
			if j.Fail {
				record("fail", j, msg)
				return errors.New("chaos: this message always fails")
			}
			if work > 0 {
				t := time.NewTimer(work)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					record("cancel", j, msg)
					log.Info("chaos cancelled")
					return ctx.Err()
				}
			}
			record("done", j, msg)
			log.Info("chaos done")
			return nil
		})
	cli.Main()
}

// entry is one JSON log line of a child, stamped when it arrived.
type entry struct {
	at time.Time
	f  map[string]any
}

func (e entry) str(k string) string { s, _ := e.f[k].(string); return s }

func (e entry) num(k string) int64 { n, _ := e.f[k].(float64); return int64(n) }

// sink collects a child's stderr (JSON log lines) so tests can await events.
type sink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	entries []entry
	other   []string // lines that are not JSON
	changed chan struct{}
	tap     func(entry) // called for every entry, under mu
}

func newSink(tap func(entry)) *sink { return &sink{changed: make(chan struct{}), tap: tap} }

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.buf.Write(p)
	for {
		line, err := s.buf.ReadBytes('\n')
		if err != nil {
			s.buf.Write(line) // keep the partial line
			break
		}
		var f map[string]any
		if json.Unmarshal(line, &f) != nil {
			s.other = append(s.other, strings.TrimSpace(string(line)))
			continue
		}
		e := entry{at: now, f: f}
		s.entries = append(s.entries, e)
		if s.tap != nil {
			s.tap(e)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *sink) matching(f func(entry) bool) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []entry
	for _, e := range s.entries {
		if f(e) {
			out = append(out, e)
		}
	}
	return out
}

func (s *sink) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// tail returns the last n lines, for failure messages.
func (s *sink) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.other {
		b.WriteString(l + "\n")
	}
	es := s.entries
	if len(es) > n {
		fmt.Fprintf(&b, "… %d earlier lines …\n", len(es)-n)
		es = es[len(es)-n:]
	}
	for _, e := range es {
		j, _ := json.Marshal(e.f)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// Predicates over log entries.
func outcome(o string) func(entry) bool {
	return func(e entry) bool { return e.str("outcome") == o }
}

func msgIs(m string) func(entry) bool { return func(e entry) bool { return e.str("msg") == m } }

func msgHas(s string) func(entry) bool {
	return func(e entry) bool { return strings.Contains(e.str("msg"), s) }
}

func after(t time.Time, f func(entry) bool) func(entry) bool {
	return func(e entry) bool { return !e.at.Before(t) && f(e) }
}

func isWarn(e entry) bool { l := e.str("level"); return l == "warn" || l == "error" }

// child is a worker process running `run`.
type child struct {
	name    string
	cmd     *exec.Cmd
	logs    *sink
	exited  chan struct{}
	waitErr error
}

// worker describes a child to start.
type worker struct {
	hostJSON map[string]any
	env      map[string]string // app settings and chaos variables
	tap      func(entry)
}

// hostJSON returns a host.json with the listener at Debug (lease renewals,
// every failed poll) and the given extensions.queues / pubsub settings.
func hostJSON(queues map[string]any, shutdown string) map[string]any {
	return map[string]any{
		"version": "2.0",
		"logging": map[string]any{"logLevel": map[string]any{"default": "Information", "Host.Triggers.Queues": "Debug"}},
		"extensions": map[string]any{
			"queues": queues,
			"pubsub": queues,
		},
		"jobhost": map[string]any{"shutdownTimeout": shutdown},
	}
}

// startChild starts a worker process and waits until its host has started.
func startChild(t *testing.T, name string, w worker) *child {
	t.Helper()
	c := launchChild(t, name, w)
	c.await(t, "host started", 1, 30*time.Second, msgIs("host started"))
	return c
}

// launchChild starts a worker process without waiting for its host to
// start, so that several can start at once (await "host started" on each).
func launchChild(t *testing.T, name string, w worker) *child {
	t.Helper()
	dir := t.TempDir()
	hj, err := json.MarshalIndent(w.hostJSON, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	hostPath := filepath.Join(dir, "host.json")
	if err := os.WriteFile(hostPath, hj, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--host-json", hostPath) // no local.settings.json in dir: settings come from env
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envChild+"=1")
	keys := make([]string, 0, len(w.env))
	for k := range w.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+w.env[k])
	}
	c := &child{name: name, cmd: cmd, logs: newSink(w.tap), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker %s: %v", name, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-c.exited
		}
	})
	return c
}

// await waits for n log entries matching f; it fails at once if the child
// exits, or after within.
func (c *child) await(t *testing.T, what string, n int, within time.Duration, f func(entry) bool) []entry {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		ch := c.logs.wait()
		if got := c.logs.matching(f); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-c.exited:
			if got := c.logs.matching(f); len(got) >= n {
				return got
			}
			t.Fatalf("worker %s exited (%v) while waiting for %d× %s; log:\n%s", c.name, c.waitErr, n, what, c.logs.tail(150))
		case <-deadline.C:
			t.Fatalf("worker %s: timed out after %s waiting for %d× %s (have %d); log:\n%s",
				c.name, within, n, what, len(c.logs.matching(f)), c.logs.tail(150))
		}
	}
}

// alive fails the test if the child has exited.
func (c *child) alive(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
		t.Fatalf("worker %s exited (%v); log:\n%s", c.name, c.waitErr, c.logs.tail(150))
	default:
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker %s: %v", c.name, err)
	}
	<-c.exited
}

// term sends SIGTERM and returns the exit status, failing after within.
func (c *child) term(t *testing.T, within time.Duration) int {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM worker %s: %v", c.name, err)
	}
	select {
	case <-c.exited:
	case <-time.After(within):
		t.Fatalf("worker %s did not exit within %s of SIGTERM; log:\n%s", c.name, within, c.logs.tail(150))
	}
	return c.cmd.ProcessState.ExitCode()
}

// progress follows, across worker incarnations, which messages are settled
// for good: done (the function succeeded) or poisoned.
type progress struct {
	mu       sync.Mutex
	idToN    map[string]int
	done     map[int]bool
	poisoned map[int]bool
	changed  chan struct{}
}

func newProgress() *progress {
	return &progress{idToN: map[string]int{}, done: map[int]bool{}, poisoned: map[int]bool{}, changed: make(chan struct{})}
}

func (p *progress) tap(e entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case e.str("msg") == "chaos done":
		p.done[int(e.num("n"))] = true
	case e.str("outcome") == "poisoned":
		if n, ok := p.idToN[e.str("messageId")]; ok {
			p.poisoned[n] = true
		}
	default:
		return
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *progress) settled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.done)
	for k := range p.poisoned {
		if !p.done[k] {
			n++
		}
	}
	return n
}

// stall is how long a run may go without settling a message before the
// test calls the rest lost: far more than a lease (2 s) and a polling
// interval (at most 2 s) after a fault.
const stall = 20 * time.Second

// await waits until n messages are settled while c runs. It returns an
// error when c exits, when nothing is settled for stall, or after within.
func (p *progress) await(c *child, n int, within time.Duration) error {
	return awaitProgress(p, n, within, c.exited,
		func(struct{}, int) error {
			return fmt.Errorf("worker %s exited (%v) at %d/%d settled; log:\n%s", c.name, c.waitErr, p.settled(), n, c.logs.tail(150))
		},
		func(got int) error {
			return fmt.Errorf("worker %s: nothing settled for %s, at %d/%d: the rest look lost; log:\n%s", c.name, stall, got, n, c.logs.tail(60))
		},
		func(got int) error {
			return fmt.Errorf("worker %s: timed out after %s at %d/%d settled; log:\n%s", c.name, within, got, n, c.logs.tail(150))
		})
}

// awaitProgress waits until n messages are settled, and returns nil. It
// returns ended's error when ended delivers (a process exited),
// stalled's when nothing is settled for stall, and late's after within;
// those get the count settled so far.
func awaitProgress[T any](p *progress, n int, within time.Duration, ended <-chan T,
	endedErr func(T, int) error, stalled, late func(got int) error) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	idle := time.NewTimer(stall)
	defer idle.Stop()
	last := -1
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		got := p.settled()
		if got >= n {
			return nil
		}
		if got != last {
			last = got
			idle.Reset(stall)
		}
		select {
		case <-ch:
		case v := <-ended:
			return endedErr(v, p.settled())
		case <-idle.C:
			return stalled(p.settled())
		case <-deadline.C:
			return late(p.settled())
		}
	}
}

// event is one line of the record file.
type event struct {
	kind         string // start, done, fail, cancel
	n            int
	id           string
	dequeueCount int
	incarnation  string
}

// readRecord parses the record file the workers appended to.
func readRecord(t *testing.T, path string) []event {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Fields(sc.Text())
		if len(p) != 5 {
			t.Fatalf("record %s: malformed line %q", path, sc.Text())
		}
		n, err1 := strconv.Atoi(p[1])
		dc, err2 := strconv.Atoi(p[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("record %s: malformed line %q", path, sc.Text())
		}
		out = append(out, event{kind: p[0], n: n, id: p[2], dequeueCount: dc, incarnation: p[4]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func jobBody(n int, fail bool) string {
	if fail {
		return fmt.Sprintf(`{"n":%d,"fail":true}`, n)
	}
	return fmt.Sprintf(`{"n":%d}`, n)
}

// enqueue sends texts (as they are) to qc with a few concurrent senders and
// returns the message ids, in order.
func enqueue(t *testing.T, qc *azqueue.QueueClient, texts []string) []string {
	t.Helper()
	ids := make([]string, len(texts))
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(texts); i += 4 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := qc.EnqueueMessage(ctx, texts[i], nil)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("enqueue message %d: %w", i, err)
					return
				}
				ids[i] = *resp.Messages[0].MessageID
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// approxCount is the queue's message count, visible or not.
func approxCount(t *testing.T, qc *azqueue.QueueClient) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := qc.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return int(*p.ApproximateMessagesCount)
}

// drain dequeues every message of qc (hiding each for 10 minutes) and
// returns them; a missing queue holds none.
func drain(t *testing.T, qc *azqueue.QueueClient) []*azqueue.DequeuedMessage {
	t.Helper()
	var out []*azqueue.DequeuedMessage
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, vis := int32(32), int32(600)
		resp, err := qc.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n, VisibilityTimeout: &vis})
		cancel()
		if err != nil {
			if queueerror.HasCode(err, queueerror.QueueNotFound) {
				return out
			}
			t.Fatal(err)
		}
		if len(resp.Messages) == 0 {
			return out
		}
		out = append(out, resp.Messages...)
	}
}

// summary logs one measured figure; make chaos (go test -v) shows them.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("CHAOS %s: "+format, append([]any{t.Name()}, args...)...)
}

// awaitEmpty polls count (a broker's message count: an external resource)
// until it is 0 while c runs, so that messages done but not deleted before a
// fault have been delivered again and settled.
func (c *child) awaitEmpty(t *testing.T, what string, count func() int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := count()
		if n == 0 {
			return
		}
		c.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("%s still holds %d messages after %s; log:\n%s", what, n, within, c.logs.tail(100))
		}
		time.Sleep(100 * time.Millisecond) // polling an external resource, not synchronising
	}
}

// running is how many invocations c has started whose function has not
// returned, as its log shows.
func (c *child) running() int {
	return len(c.logs.matching(msgIs("chaos start"))) - len(c.logs.matching(msgIs("chaos done")))
}

// awaitRunning waits until at least n functions are running in c and
// returns how many are; after within it returns the count it has.
func (c *child) awaitRunning(t *testing.T, n int, within time.Duration) int {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		ch := c.logs.wait()
		if k := c.running(); k >= n {
			return k
		}
		select {
		case <-ch:
		case <-c.exited:
			t.Fatalf("worker %s exited (%v); log:\n%s", c.name, c.waitErr, c.logs.tail(100))
		case <-deadline.C:
			return c.running()
		}
	}
}
