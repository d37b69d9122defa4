// Package webjob tests the App Service continuous WebJob zip that
// build.sh makes, run the way the WebJobs runner runs it.
package webjob

import (
	"archive/zip"
	"context"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jobhost/jobhost/internal/linewait"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// The zip of the sitemodify worker, unpacked without file modes (as App
// Service unpacks it) and started as the runner starts a continuous job:
// run.sh from the job's folder with the WEBJOBS_* variables. Six requests
// are in flight when the runner creates the shutdown file: the host says
// so in one line, stops polling, finishes the six (each result sent once,
// each request deleted), leaves the three requests queued after the stop
// untouched, and exits 0 well within settings.job's stopping_wait_time.
func TestContinuousWebJobDrainsOnShutdownFile(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("the WebJob zip is for App Service on Linux")
	}
	for _, tool := range []string{"bash", "zip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	srv := azuritetest.Shared(t)
	jobDir := unpack(t, buildZip(t))

	var settings struct {
		IsSingleton      *bool `json:"is_singleton"`
		StoppingWaitTime int   `json:"stopping_wait_time"`
	}
	readJSON(t, filepath.Join(jobDir, "settings.job"), &settings)
	if settings.IsSingleton == nil || *settings.IsSingleton || settings.StoppingWaitTime != 60 {
		t.Errorf("settings.job = is_singleton %v, stopping_wait_time %d; want false and 60", settings.IsSingleton, settings.StoppingWaitTime)
	}
	static(t, filepath.Join(jobDir, "jobhost"))

	requests, results := srv.NewQueue(t), srv.NewQueue(t)
	svc := srv.ServiceClient(t)
	rq, resq := svc.NewQueueClient(requests), svc.NewQueueClient(results)
	shutdownFile := filepath.Join(t.TempDir(), "shutdown")
	cmd := exec.Command("bash", "run.sh")
	cmd.Dir = jobDir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"WEBJOBS_SHUTDOWN_FILE=" + shutdownFile,
		"WEBJOBS_PATH=" + jobDir,
		"WEBJOBS_NAME=sitemodify",
		"WEBJOBS_TYPE=continuous",
		"WEBSITE_SITE_NAME=jobhost-webjob-test",
		"AzureWebJobsStorage=" + srv.ConnectionString,
		"SiteModifyQueue=" + requests,
		"SiteModifyResultsQueue=" + results,
		// The zip's host.json listens on 127.0.0.1:7071; a test takes a
		// free port.
		"AzureFunctionsJobHost__jobhost__http__listen=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"AzureFunctionsJobHost__extensions__queues__maxPollingInterval=00:00:00.500",
	}
	logs := linewait.New()
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	logs.Await(t, `"msg":"host started"`, 1, 30*time.Second)
	logs.Await(t, "watching for the WebJobs shutdown file", 1, time.Second)
	// run.sh execs: the process the runner started is the host itself,
	// so the runner's signals and kill reach it.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err != nil || exe != filepath.Join(jobDir, "jobhost") {
		t.Errorf("the runner's process runs %q (%v), want the job's jobhost: run.sh must exec it", exe, err)
	}

	const inFlight, late, work = 6, 3, 2 * time.Second
	for i := range inFlight {
		enqueue(t, rq, fmt.Sprintf(`{"siteUrl":"https://contoso.sharepoint.com/sites/n%d","workMs":%d}`, i, work.Milliseconds()))
	}
	logs.Await(t, `"msg":"modifying site"`, inFlight, 30*time.Second)
	stopAsked := time.Now()
	if err := os.WriteFile(shutdownFile, nil, 0o644); err != nil { // what the runner does to stop the job
		t.Fatal(err)
	}
	logs.Await(t, "WebJobs shutdown file appeared", 1, 5*time.Second)
	logs.Await(t, "host stopping", 1, 5*time.Second)
	for i := range late {
		enqueue(t, rq, fmt.Sprintf(`{"siteUrl":"https://contoso.sharepoint.com/sites/late%d","workMs":0}`, i))
	}
	select {
	case <-exited:
	case <-time.After(time.Duration(settings.StoppingWaitTime) * time.Second):
		t.Fatalf("still running %ds (stopping_wait_time) after the shutdown file: the runner would kill it; log:\n%s", settings.StoppingWaitTime, logs)
	}
	took := time.Since(stopAsked)
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after the shutdown file, want 0; log:\n%s", code, logs)
	}
	if n := logs.Count("WebJobs shutdown file appeared"); n != 1 {
		t.Errorf("%d shutdown-file lines, want 1", n)
	}
	if n := logs.Count(`"outcome":"succeeded"`); n != inFlight {
		t.Errorf("%d invocations succeeded, want the %d in flight; log:\n%s", n, inFlight, logs)
	}
	if n := logs.Count(`"outcome":`) - logs.Count(`"outcome":"succeeded"`); n != 0 {
		t.Errorf("%d invocations did not succeed; log:\n%s", n, logs)
	}

	// Every request processed exactly once or still queued untouched.
	var got []string
	for _, m := range drain(t, resq) {
		var r struct{ SiteURL, Status string }
		if err := json.Unmarshal(m, &r); err != nil {
			t.Fatalf("result %q: %v", m, err)
		}
		got = append(got, r.SiteURL)
	}
	var want []string
	for i := range inFlight {
		want = append(want, fmt.Sprintf("https://contoso.sharepoint.com/sites/n%d", i))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want one for each request in flight %q", got, want)
	}
	k := int32(32)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peeked, err := rq.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &k})
	if err != nil {
		t.Fatal(err)
	}
	if len(peeked.Messages) != late {
		t.Errorf("request queue holds %d messages, want the %d queued after the stop", len(peeked.Messages), late)
	}
	for _, m := range peeked.Messages {
		if *m.DequeueCount != 0 {
			t.Errorf("message %s queued after the stop was dequeued %d times", *m.MessageID, *m.DequeueCount)
		}
	}
	if took > work+5*time.Second {
		t.Errorf("exited %s after the shutdown file with %s of work in flight", took, work)
	}
	t.Logf("shutdown file with %d in flight: %d results, %d left queued, exit 0 after %s (stopping_wait_time %ds)",
		inFlight, len(got), len(peeked.Messages), took.Round(100*time.Millisecond), settings.StoppingWaitTime)
}

// buildZip runs build.sh for the sitemodify worker with its host.json and
// returns the zip; it checks what the zip holds.
func buildZip(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sitemodify-webjob.zip")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "deploy/webjob/build.sh", "./examples/sitemodify/worker", out, "examples/sitemodify/host.json")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOARCH="+goruntime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	if want := []string{"host.json", "jobhost", "run.sh", "settings.job"}; !slices.Equal(names, want) {
		t.Errorf("zip holds %q, want %q at its root", names, want)
	}
	return out
}

// unpack extracts the zip into a new directory as App Service does, file
// modes dropped (run.sh must make the binary executable itself).
func unpack(t *testing.T, zipPath string) string {
	t.Helper()
	dir := t.TempDir()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Name)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// static fails unless bin is a statically linked, stripped ELF.
func static(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the zip's binary has %v: not static", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("the zip's binary is not stripped")
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// enqueue sends text base64-encoded, as the example's host.json says.
func enqueue(t *testing.T, qc *azqueue.QueueClient, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := qc.EnqueueMessage(ctx, base64.StdEncoding.EncodeToString([]byte(text)), nil); err != nil {
		t.Fatal(err)
	}
}

// drain dequeues and deletes every message of qc and returns their
// decoded bodies.
func drain(t *testing.T, qc *azqueue.QueueClient) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out [][]byte
	for {
		k := int32(32)
		resp, err := qc.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &k})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Messages) == 0 {
			return out
		}
		for _, m := range resp.Messages {
			b, err := base64.StdEncoding.DecodeString(*m.MessageText)
			if err != nil {
				b = []byte(*m.MessageText)
			}
			out = append(out, b)
			if _, err := qc.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
}
