// Package azuritetest starts a real Azurite queue service (Start, Shared),
// table service (StartTable, SharedTable) or blob service (StartBlob,
// SharedBlob) for tests.
//
// Azurite comes from the module's node_modules (npm ci installs it; make
// test does that). Without it tests are skipped with a loud message, or fail
// when JOBHOST_REQUIRE_AZURITE=1. Setting JOBHOST_AZURITE_CONNECTION to a
// connection string (UseDevelopmentStorage=true works) uses that service
// instead of starting one.
//
// A package that uses Shared, SharedTable or SharedBlob must stop the
// shared servers from TestMain:
//
//	func TestMain(m *testing.M) { azuritetest.Main(m) }
package azuritetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/internal/servertest"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

const (
	// EnvConnection names the environment variable that points tests at an
	// already running Azurite (or storage account) instead of starting one.
	EnvConnection = "JOBHOST_AZURITE_CONNECTION"
	// EnvRequire names the environment variable that, set to 1, turns a
	// missing Azurite into a test failure instead of a skip.
	EnvRequire = "JOBHOST_REQUIRE_AZURITE"

	// Azurite's well-known account and its public development key.
	accountName = "devstoreaccount1"
	accountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
)

// Options configures a server started by Start.
type Options struct {
	// Location is the directory Azurite persists to. Empty means in-memory
	// (nothing survives Stop or Restart).
	Location string
}

// Server is a running Azurite queue or table service (or an external one
// named by JOBHOST_AZURITE_CONNECTION).
type Server struct {
	// ConnectionString is a shared-key connection string for the server.
	ConnectionString string
	// Port is the server's TCP port on 127.0.0.1 (0 when external and
	// unknown).
	Port int

	opts     Options
	kind     service // the zero value is the queue service
	bin      string
	external bool

	mu   sync.Mutex
	proc *process // nil when stopped
	dir  string   // working directory of an in-memory server
}

// errUnavailable means Azurite is not installed.
var errUnavailable = errors.New("azurite not available")

// Start starts an Azurite queue service on a free 127.0.0.1 port and stops
// it when the test ends. See the package comment for skips and
// JOBHOST_AZURITE_CONNECTION.
func Start(t testing.TB, opts Options) *Server { return start(t, queueService, opts) }

// Shared returns the test binary's one in-memory Azurite, starting it on
// first use. Main stops it. Do not Stop or Restart it.
func Shared(t testing.TB) *Server { return shared(t, queueService) }

// Main runs the tests, stops the shared servers (if any) and exits with the
// tests' status. Use it as TestMain in every package that calls Shared,
// SharedTable or SharedBlob.
func Main(m *testing.M) {
	code := m.Run()
	stopShared()
	os.Exit(code)
}

// handleLaunchError fails t for an Azurite that would not start, and skips
// it (fails it, with JOBHOST_REQUIRE_AZURITE=1) for one not installed.
func handleLaunchError(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, errUnavailable) {
		t.Fatalf("azuritetest: %v", err)
	}
	servertest.Unavailable(t, "AZURITE", EnvRequire, fmt.Sprintf("AZURITE NOT AVAILABLE: run 'npm ci' (make test does) in the module root, or set %s; %v. Set %s=1 to fail instead of skipping.", EnvConnection, err, EnvRequire))
}

// launch starts a server of a kind (or adopts the external one) without a
// test.
func launch(kind service, opts Options) (*Server, error) {
	if cs := strings.TrimSpace(os.Getenv(EnvConnection)); cs != "" {
		cs, err := kind.external(cs)
		if err != nil {
			return nil, err
		}
		return &Server{ConnectionString: cs, Port: portOf(cs, kind.endpointKey()), opts: opts, kind: kind, external: true}, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "node_modules", ".bin", kind.binary())
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %s not found", errUnavailable, bin)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("%w: node is not on PATH", errUnavailable)
	}
	if opts.Location != "" {
		if err := os.MkdirAll(opts.Location, 0o755); err != nil {
			return nil, fmt.Errorf("azurite location: %w", err)
		}
	}
	s := &Server{opts: opts, kind: kind, bin: bin}
	// A free port can be taken between our probe and Azurite's bind:
	// try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		if err = s.start(); err == nil {
			break
		}
		if attempt == 2 {
			return nil, err
		}
	}
	s.ConnectionString = fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;%s=http://127.0.0.1:%d/%s",
		accountName, accountKey, kind.endpointKey(), s.Port, accountName)
	return s, nil
}

// start runs Azurite on s.Port and waits until it accepts connections.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	args := append(s.kind.listenArgs(s.Port), "--disableTelemetry", "--silent")
	dir := s.opts.Location
	if dir == "" {
		// Azurite may still write small files to its location (the
		// working directory): keep them out of the source tree.
		d, err := os.MkdirTemp("", "azuritetest-")
		if err != nil {
			return err
		}
		s.dir, dir = d, d
		args = append(args, "--inMemoryPersistence")
	} else {
		args = append(args, "--location", dir)
	}
	p, err := startProcess(s.bin, args, dir)
	if err != nil {
		s.removeDir()
		return err
	}
	p.interrupt = s.kind.stopsOnInterrupt()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			s.proc = p
			return nil
		}
		select {
		case <-p.done:
			s.removeDir()
			return fmt.Errorf("azurite exited on start (port %d): %v: %s", s.Port, p.err, p.output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop(false)
			s.removeDir()
			return fmt.Errorf("azurite did not listen on %s within %v: %s", addr, startTimeout, p.output())
		}
	}
}

// Stop stops the server and waits for it (and its process group) to exit.
// A server with a Location is stopped gracefully so it saves its data. Stop
// is idempotent and does nothing for an external server.
func (s *Server) Stop() {
	if s == nil || s.external {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.stop(s.opts.Location != "")
	s.proc = nil
	s.removeDir()
}

// Restart stops the server and starts it again on the same port with the
// same Location, for outage tests. With an in-memory server, all queues (or
// tables) are gone afterwards. It skips the test for an external server.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.external {
		t.Skipf("azuritetest: cannot restart the external Azurite from %s", EnvConnection)
	}
	s.Stop()
	var err error
	for deadline := time.Now().Add(startTimeout); ; {
		// The port can stay busy for a moment after the old process exits.
		if err = s.start(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("azuritetest: restart on port %d: %v", s.Port, err)
	}
}

// ServiceClient returns a client for the server, built the way the host
// builds one (azurequeue.NewServiceClient).
func (s *Server) ServiceClient(t testing.TB) *azqueue.ServiceClient {
	t.Helper()
	c, err := azurequeue.NewServiceClient("Storage", func(name string) (string, bool) {
		if name == "AzureWebJobsStorage" {
			return s.ConnectionString, true
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("azuritetest: service client: %v", err)
	}
	return c
}

var queueSeq atomic.Int64

// NewQueue creates a new, uniquely named queue and returns its name. When
// the test ends the queue and its "-poison" queue are deleted (errors
// ignored).
func (s *Server) NewQueue(t testing.TB) string {
	t.Helper()
	name := UniqueQueueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.ServiceClient(t).CreateQueue(ctx, name, nil); err != nil {
		t.Fatalf("azuritetest: create queue %q: %v", name, err)
	}
	t.Cleanup(func() {
		// No retries: the server may be down in an outage test.
		c, err := azqueue.NewServiceClientFromConnectionString(s.ConnectionString, &azqueue.ClientOptions{
			ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}},
		})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.DeleteQueue(ctx, name, nil)
		if p := azurequeue.PoisonQueueName(name); p != "" {
			_, _ = c.DeleteQueue(ctx, p, nil)
		}
	})
	return name
}

// UniqueQueueName returns a valid queue name, unique across processes, that
// hints at the test's name. It leaves room for a "-poison" suffix.
func UniqueQueueName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	hint := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default:
			return '-'
		}
	}, t.Name())
	for strings.Contains(hint, "--") {
		hint = strings.ReplaceAll(hint, "--", "-")
	}
	if len(hint) > 24 {
		hint = hint[len(hint)-24:]
	}
	hint = strings.Trim(hint, "-")
	return fmt.Sprintf("t-%s-%s%d", hint, hex.EncodeToString(b[:]), queueSeq.Add(1))
}

func (s *Server) removeDir() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
	}
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no go.mod above the working directory", errUnavailable)
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portOf extracts the port of a connection string's endpoint setting
// (QueueEndpoint, TableEndpoint), or 0.
func portOf(cs, endpointKey string) int {
	for _, part := range strings.Split(cs, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), endpointKey) {
			if u, err := url.Parse(strings.TrimSpace(v)); err == nil {
				p, _ := strconv.Atoi(u.Port())
				return p
			}
		}
	}
	return 0
}

// process is a started Azurite process group.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
	out  *lockedBuffer

	interrupt bool // stop gracefully with SIGINT rather than SIGTERM
}

func startProcess(bin string, args []string, dir string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start azurite: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop signals the process group (gracefully first if asked) and waits.
func (p *process) stop(graceful bool) {
	if graceful {
		if p.interrupt {
			interruptGroup(p.cmd)
		} else {
			terminateGroup(p.cmd)
		}
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
		}
	}
	killGroup(p.cmd)
	<-p.done
}

func (p *process) output() string {
	s := strings.TrimSpace(p.out.String())
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<16 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
