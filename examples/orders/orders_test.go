package orders

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime/cli"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// The same worker and host.json run on each broker; only the environment
// changes.
func TestSameFunctionOnEveryBroker(t *testing.T) {
	for name, env := range map[string]func(t *testing.T) []string{
		"azurite": func(t *testing.T) []string {
			srv := azuritetest.Shared(t)
			return []string{"AzureWebJobsStorage=" + srv.ConnectionString, Setting + "=" + azuritetest.UniqueQueueName(t)}
		},
		"rabbitmq": func(t *testing.T) []string {
			url := rabbittest.Require(t)
			q := rabbittest.UniqueName(t)
			t.Cleanup(func() { rabbittest.DeleteQueues(url, q, q+"-poison", q+"-retry", q+"-retry-q") })
			return []string{"RABBIT_SERVER_URL=" + url, Setting + "=rabbit://" + q}
		},
		"nats": func(t *testing.T) []string {
			f := jstest.NewFixture(context.Background(), t) // a fresh stream, deleted afterwards
			return []string{"NATS_SERVER_URL=" + jstest.URL(), Setting + "=nats://" + f.Subject + "?stream=" + f.Stream}
		},
	} {
		t.Run(name, func(t *testing.T) {
			environ := env(t)
			reg := &functions.Registry{}
			Register(reg)
			var out bytes.Buffer
			if code := cli.Run(context.Background(), cli.Env{Args: []string{"send", "--queue", "%" + Setting + "%",
				"--json", `{"id": "A-1", "customer": "Contoso", "total": 12.5}`}, Stdout: &out, Stderr: &out,
				Environ: environ, Registry: reg}); code != cli.ExitOK {
				t.Fatalf("send: exit %d: %s", code, out.String())
			}
			ctx, cancel := context.WithCancel(context.Background())
			logs := &lineWatch{want: `"order": "A-1"`, seen: make(chan struct{})}
			done := make(chan int, 1)
			go func() {
				done <- cli.Run(ctx, cli.Env{Args: []string{"run", "--dev"}, Stdout: logs, Stderr: logs, Environ: environ, Registry: reg})
			}()
			select {
			case <-logs.seen:
			case code := <-done:
				t.Fatalf("run exited %d:\n%s", code, logs.String())
			case <-time.After(30 * time.Second):
				t.Fatalf("order not booked:\n%s", logs.String())
			}
			cancel()
			if code := <-done; code != cli.ExitOK {
				t.Errorf("run exit %d", code)
			}
			if !strings.Contains(logs.String(), "invocation succeeded") {
				t.Errorf("no completion line:\n%s", logs.String())
			}
		})
	}
}

func TestRefusesBadOrders(t *testing.T) {
	for _, o := range []Order{{}, {ID: "x", Total: -1}} {
		if err := ProcessOrder(context.Background(), o, nil); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

type lineWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
