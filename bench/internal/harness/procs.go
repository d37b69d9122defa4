package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// child is one running system in a child process of this binary.
type child struct {
	spec   proto.Spec
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *capBuffer

	ready    chan struct{}
	done     chan struct{} // DONE seen
	result   chan proto.ChildResult
	exited   chan struct{}
	progress atomic.Int64
	goAt     time.Time
	once     sync.Once
}

// startChild starts `bench child` for spec. Children die with the bench
// (Pdeathsig).
func startChild(spec proto.Spec) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(spec)
	cmd := exec.Command(self, "child")
	cmd.Env = append(os.Environ(), proto.EnvSpec+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{spec: spec, cmd: cmd, stderr: &capBuffer{},
		ready: make(chan struct{}), done: make(chan struct{}), result: make(chan proto.ChildResult, 1),
		exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	c.stdin, err = cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := sc.Text()
			word, rest, _ := strings.Cut(line, " ")
			switch word {
			case proto.Ready:
				close(c.ready)
			case proto.Progress:
				n, _ := strconv.ParseInt(rest, 10, 64)
				c.progress.Store(n)
			case proto.Done:
				close(c.done)
			case proto.Result:
				var r proto.ChildResult
				if err := json.Unmarshal([]byte(rest), &r); err != nil {
					r.Error = "bad result: " + err.Error()
				}
				c.result <- r
			}
		}
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) waitReady(timeout time.Duration) error {
	select {
	case <-c.ready:
		return nil
	case r := <-c.result:
		return fmt.Errorf("%s: %s %s", c.spec.System, r.Error, c.stderr.tail())
	case <-c.exited:
		return fmt.Errorf("%s exited before READY: %s", c.spec.System, c.stderr.tail())
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s not READY within %v: %s", c.spec.System, timeout, c.stderr.tail())
	}
}

// start sends GO.
func (c *child) start() {
	c.goAt = time.Now()
	fmt.Fprintln(c.stdin, proto.Go)
}

// stop sends STOP (once).
func (c *child) stop() {
	c.once.Do(func() { fmt.Fprintln(c.stdin, proto.Stop) })
}

func (c *child) kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// waitDone waits for DONE (the child recorded its target).
func (c *child) waitDone(timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-c.exited:
		return fmt.Errorf("%s exited before DONE: %s", c.spec.System, c.stderr.tail())
	case <-time.After(timeout):
		return fmt.Errorf("%s: not done within %v (%d of %d processed)", c.spec.System, timeout, c.progress.Load(), c.spec.Target)
	}
}

// finish stops the child if needed and returns its result and rusage.
func (c *child) finish(timeout time.Duration) (proto.ChildResult, *syscall.Rusage, error) {
	c.stop()
	var r proto.ChildResult
	select {
	case r = <-c.result:
	case <-c.exited:
		select {
		case r = <-c.result:
		default:
			return r, nil, fmt.Errorf("%s exited without a result: %s", c.spec.System, c.stderr.tail())
		}
	case <-time.After(timeout):
		c.kill()
		<-c.exited
		return r, nil, fmt.Errorf("%s: no result within %v: %s", c.spec.System, timeout, c.stderr.tail())
	}
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.kill()
		<-c.exited
	}
	var ru *syscall.Rusage
	if c.cmd.ProcessState != nil {
		ru, _ = c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	}
	if r.Error != "" {
		return r, ru, fmt.Errorf("%s: %s", c.spec.System, r.Error)
	}
	return r, ru, nil
}

// capBuffer keeps the last 8 KiB written.
type capBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b = append(c.b, p...)
	if len(c.b) > 8<<10 {
		c.b = c.b[len(c.b)-8<<10:]
	}
	return len(p), nil
}

func (c *capBuffer) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(string(c.b))
}

// azurite is a fresh in-memory Azurite queue (or table) service on a free
// port.
type azurite struct {
	Port int
	Conn string
	cmd  *exec.Cmd
	dir  string
	out  *capBuffer
	done chan struct{}
}

const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

func azuriteConn(port int) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=http://127.0.0.1:%d/%s",
		azuriteAccount, azuriteKey, port, azuriteAccount)
}

func azuriteTableConn(port int) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;TableEndpoint=http://127.0.0.1:%d/%s",
		azuriteAccount, azuriteKey, port, azuriteAccount)
}

func startAzurite(root string) (*azurite, error) { return startAzuriteService(root, "queue") }

// startAzuriteTable starts a fresh in-memory Azurite table service on a
// free port; its Conn names the TableEndpoint.
func startAzuriteTable(root string) (*azurite, error) { return startAzuriteService(root, "table") }

// startAzuriteService starts azurite-<service> ("queue" or "table").
func startAzuriteService(root, service string) (*azurite, error) {
	bin := filepath.Join(root, "node_modules", ".bin", "azurite-"+service)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("azurite not installed (%s): run npm ci in %s (make bench does)", bin, root)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-azurite-")
	if err != nil {
		return nil, err
	}
	a := &azurite{Port: port, Conn: azuriteConn(port), dir: dir, out: &capBuffer{}, done: make(chan struct{})}
	if service == "table" {
		a.Conn = azuriteTableConn(port)
	}
	a.cmd = exec.Command(bin, "--"+service+"Host", "127.0.0.1", "--"+service+"Port", strconv.Itoa(port),
		"--inMemoryPersistence", "--disableTelemetry", "--silent")
	a.cmd.Dir = dir
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 500*time.Millisecond)
		if err == nil {
			c.Close()
			return a, nil
		}
		select {
		case <-a.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("azurite exited on start: %s", a.out.tail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, errors.New("azurite did not listen within 30 s")
		}
	}
}

// cpu returns Azurite's CPU seconds so far.
func (a *azurite) cpu() float64 { return procCPU(a.cmd.Process.Pid) }

func (a *azurite) rssMB() float64 { return procRSSMB(a.cmd.Process.Pid) }

func (a *azurite) stop() {
	if a == nil || a.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
	os.RemoveAll(a.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procCPU reads utime+stime (seconds) of pid from /proc; -1 if unknown.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// Fields after the command name (which is in parentheses).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck
}

const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux

func procRSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return -1
}

// findProc returns the pid of the first process whose comm is name, or 0.
func findProc(name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return pid
		}
	}
	return 0
}
