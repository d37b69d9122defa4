// Package deploy tests what the Dockerfile builds and how it runs, short of
// a container engine: the Dockerfile's own go build line, the binary it
// makes (static, stripped, version stamped), and that binary as a
// container runs it, PID 1 of its own PID namespace as UID 65532 in an
// empty, read-only working directory with only environment configuration,
// draining on SIGTERM and exiting at once on a second signal.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobhost/jobhost/internal/linewait"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// nonroot is the Dockerfile's USER, distroless's nonroot.
const nonroot = 65532

// dockerfileBuild returns the Dockerfile's go build command (the RUN
// instruction holding it, without its --mount options), with its output
// path replaced by out.
func dockerfileBuild(t *testing.T, out string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(moduleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines into instructions.
	var instrs []string
	var cur strings.Builder
	for line := range strings.SplitSeq(string(text), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		instrs = append(instrs, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	var found []string
	for _, in := range instrs {
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, " go build ") {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one RUN with go build in the Dockerfile, found %d: %q", len(found), found)
	}
	var cmd []string
	for _, f := range strings.Fields(strings.TrimPrefix(found[0], "RUN ")) {
		if !strings.HasPrefix(f, "--mount=") {
			cmd = append(cmd, f)
		}
	}
	line := strings.Join(cmd, " ")
	const dst = "-o /out/app/jobhost "
	if !strings.Contains(line, dst) {
		t.Fatalf("the Dockerfile's go build does not write %q: %s", dst, line)
	}
	return strings.Replace(line, dst, "-o "+strconv.Quote(out)+" ", 1)
}

// buildLikeDockerfile runs the Dockerfile's go build line for the main
// package in the module root, as the build stage does, and returns the
// binary (in a directory any user may read).
func buildLikeDockerfile(t *testing.T, main string) string {
	t.Helper()
	dir := publicDir(t)
	bin := filepath.Join(dir, "jobhost")
	line := dockerfileBuild(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "MAIN="+main, "TARGETOS=linux", "TARGETARCH="+goruntime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s (MAIN=%s): %v\n%s", line, main, err, out)
	}
	return bin
}

// The image's binary is static (no interpreter, no dynamic section, so it
// runs on distroless static or scratch), stripped, trimmed, built without
// cgo with tzdata inside, and says which commit it is: `jobhost version`
// prints the revision go build stamped from git.
func TestDockerfileBuildsStaticVersionedBinary(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("the Dockerfile builds a Linux binary; this test inspects it on Linux")
	}
	bin := buildLikeDockerfile(t, "./cmd/jobhost")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary imports %v", libs)
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("binary has section %s: not stripped (-ldflags \"-s -w\")", s.Name)
		}
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "-tags": "timetzdata", "GOOS": "linux", "vcs": "git"} {
		if settings[k] != want {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
		}
	}
	head := gitHead(t)

	// `jobhost version` as the non-root user, in an empty directory.
	out, errs, code := runAs(t, bin, publicDir(t), nil, "version", "--output", "json")
	if code != 0 {
		t.Fatalf("jobhost version exited %d: %s", code, errs)
	}
	var v struct{ Module, Version, Commit, GoVersion string }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("jobhost version --output json: %v: %q", err, out)
	}
	if v.Module != "github.com/jobhost/jobhost" || v.Version == "" || v.Version == "(devel)" ||
		strings.TrimSuffix(v.Commit, "-dirty") != head || v.GoVersion != goruntime.Version() {
		t.Errorf("jobhost version = %+v, want the module's stamped version and commit %s", v, head)
	}
	t.Logf("jobhost version: %s, commit %s, %s", v.Version, v.Commit, v.GoVersion)
}

// In a container: PID 1, UID 65532, a working directory it cannot write
// with no host.json or local.settings.json, configuration from the
// environment only. SIGTERM drains: the functions running finish, their
// messages are deleted and their outputs sent, and the host exits 0. A
// second signal during the drain exits at once with 143, the running
// function's message staying in the queue.
func TestBinaryAsContainerProcess(t *testing.T) {
	requireContainerLike(t)
	srv := azuritetest.Shared(t)
	bin := buildLikeDockerfile(t, "./examples/sitemodify/worker")

	t.Run("sigterm-drains", func(t *testing.T) {
		const n, work = 3, 2500 * time.Millisecond
		requests, results := srv.NewQueue(t), srv.NewQueue(t)
		svc := srv.ServiceClient(t)
		rq, resq := svc.NewQueueClient(requests), svc.NewQueueClient(results)
		p := startContainerLike(t, bin, srv.ConnectionString, requests, results, "00:00:20")
		for i := range n {
			enqueue(t, rq, fmt.Sprintf(`{"siteUrl":"https://contoso.sharepoint.com/sites/n%d","workMs":%d}`, i, work.Milliseconds()))
		}
		p.logs.Await(t, `"msg":"modifying site"`, n, 30*time.Second)
		signalled := time.Now()
		if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code := p.wait(t, 30*time.Second)
		took := time.Since(signalled)
		if code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0; log:\n%s", code, p.logs)
		}
		if got := p.logs.Count(`"outcome":"succeeded"`); got != n {
			t.Errorf("%d invocations succeeded, want the %d in flight; log:\n%s", got, n, p.logs)
		}
		if took < work/2 || took > work+5*time.Second {
			t.Errorf("exited %s after SIGTERM with %s of work in flight: the functions were not waited for", took, work)
		}
		if left := count(t, rq); left != 0 {
			t.Errorf("request queue holds %d messages after the drain, want 0", left)
		}
		if got := count(t, resq); got != n {
			t.Errorf("results queue holds %d results, want %d", got, n)
		}
		t.Logf("SIGTERM with %d in flight: exit %d after %s", n, code, took.Round(100*time.Millisecond))
	})

	t.Run("second-signal-exits-at-once", func(t *testing.T) {
		requests, results := srv.NewQueue(t), srv.NewQueue(t)
		rq := srv.ServiceClient(t).NewQueueClient(requests)
		p := startContainerLike(t, bin, srv.ConnectionString, requests, results, "00:01:00")
		enqueue(t, rq, `{"siteUrl":"https://contoso.sharepoint.com/sites/long","workMs":120000}`)
		p.logs.Await(t, `"msg":"modifying site"`, 1, 30*time.Second)
		if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		p.logs.Await(t, "host stopping", 1, 10*time.Second)
		second := time.Now()
		if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code := p.wait(t, 10*time.Second)
		took := time.Since(second)
		if code != 143 {
			t.Errorf("exit status %d after a second SIGTERM, want 143; log:\n%s", code, p.logs)
		}
		if took > 2*time.Second {
			t.Errorf("exited %s after the second SIGTERM: not at once", took)
		}
		if p.logs.Count("second stop signal (terminated): exiting at once") != 1 {
			t.Errorf("stderr does not say why it exited:\n%s", p.logs)
		}
		if left := count(t, rq); left != 1 {
			t.Errorf("request queue holds %d messages, want the interrupted one (1)", left)
		}
		t.Logf("second SIGTERM during the drain: exit %d after %s", code, took.Round(10*time.Millisecond))
	})
}

// requireContainerLike skips unless the test can start a process as a
// container engine would (Linux, root: unshare for the PID namespace,
// setpriv for the user).
func requireContainerLike(t *testing.T) {
	t.Helper()
	if goruntime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("needs Linux and root to run the binary as PID 1 of a PID namespace and as UID 65532 (unshare, setpriv)")
	}
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux)", tool)
		}
	}
}

// proc is the worker started as a container would start it.
type proc struct {
	cmd    *exec.Cmd
	pid    int // the worker's PID outside its namespace
	logs   *linewait.Lines
	exited chan struct{}
}

// startContainerLike starts bin run as PID 1 of a new PID namespace, as
// UID/GID 65532 with no supplementary groups, in an empty directory it
// cannot write, with only the given configuration in its environment, and
// waits for `host started`.
func startContainerLike(t *testing.T, bin, storage, requests, results, shutdown string) *proc {
	t.Helper()
	id := strconv.Itoa(nonroot)
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child",
		"setpriv", "--reuid="+id, "--regid="+id, "--clear-groups", "--", bin, "run")
	cmd.Dir = publicDir(t)
	cmd.Env = []string{
		"AzureWebJobsStorage=" + storage,
		"SiteModifyQueue=" + requests,
		"SiteModifyResultsQueue=" + results,
		"AzureFunctionsJobHost__jobhost__shutdownTimeout=" + shutdown,
		"AzureFunctionsJobHost__extensions__queues__maxPollingInterval=00:00:00.500",
	}
	p := &proc{cmd: cmd, logs: linewait.New(), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill() // --kill-child takes the worker along
			<-p.exited
		}
	})
	p.logs.Await(t, `"msg":"host started"`, 1, 30*time.Second)
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if p.pid, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		t.Fatalf("unshare's child: %q: %v", children, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields[k] = strings.Fields(v)
	}
	if uid := fields["Uid"]; len(uid) == 0 || uid[0] != id {
		t.Fatalf("worker runs as UID %v, want %s", uid, id)
	}
	if ns := fields["NSpid"]; len(ns) < 2 || ns[len(ns)-1] != "1" {
		t.Fatalf("worker's PIDs %v: not PID 1 of its namespace", ns)
	}
	return p
}

// wait waits for the process to exit and returns its exit status (unshare
// passes the worker's on).
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("still running %s after the signal; log:\n%s", within, p.logs)
	}
	return p.cmd.ProcessState.ExitCode()
}

// runAs runs bin with args as UID 65532 (when root) in dir with only env,
// and returns its stdout, stderr and exit status.
func runAs(t *testing.T, bin, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
	}
	cmd.Dir, cmd.Env = dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// publicDir is an empty directory that every user can read and enter and
// only root can write, removed when the test ends.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jobhost-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func gitHead(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", moduleRoot(t), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// enqueue sends text base64-encoded, the sitemodify example's
// messageEncoding default.
func enqueue(t *testing.T, qc *azqueue.QueueClient, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := qc.EnqueueMessage(ctx, base64.StdEncoding.EncodeToString([]byte(text)), nil); err != nil {
		t.Fatal(err)
	}
}

// count is the queue's approximate message count, invisible ones
// included.
func count(t *testing.T, qc *azqueue.QueueClient) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	props, err := qc.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return int(*props.ApproximateMessagesCount)
}
