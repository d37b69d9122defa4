package runtime

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

type result struct {
	Site   string `json:"site"`
	Status string `json:"status"`
}

func decoded(t *testing.T, texts []string) []string {
	t.Helper()
	var out []string
	for _, s := range texts {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("output %q is not base64: %v", s, err)
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

// A return value goes to its output queue (created when missing), named
// with a binding expression, JSON and base64 encoded.
func TestReturnValueOutput(t *testing.T) {
	srv := azuritetest.Shared(t)
	out := azuritetest.UniqueQueueName(t)
	reg := &functions.Registry{}
	functions.AddResult(reg, "F", functions.QueueTrigger("%TestQueue%"), "%OutQueue%-{region}",
		func(ctx context.Context, in struct{ Site, Region string }, m *triggers.Message) (result, error) {
			return result{Site: in.Site, Status: "done"}, nil
		})
	h := startHost(t, reg, hostSetup{srv: srv, settings: map[string]string{"OutQueue": out}})
	oq := srv.ServiceClient(t).NewQueueClient(out + "-eu")
	t.Cleanup(func() { oq.Delete(context.Background(), nil) })
	h.send(t, b64(`{"site": "contoso", "region": "EU"}`))
	h.logs.await(t, "success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	h.stop(t)
	if got := decoded(t, peekAll(t, oq)); fmt.Sprint(got) != `[{"site":"contoso","status":"done"}]` {
		t.Errorf("output queue holds %q", got)
	}
}

// Collector items are sent only when the function succeeds: a failed
// attempt that is retried sends nothing.
func TestCollectorSendsOnlyAfterSuccess(t *testing.T) {
	srv := azuritetest.Shared(t)
	out := srv.NewQueue(t)
	reg := &functions.Registry{}
	var attempts atomic.Int32
	functions.Add(reg, "F", functions.QueueTrigger("%TestQueue%"), func(ctx context.Context, s string, m *triggers.Message) error {
		c := functions.Collect[result](ctx, "results")
		for i := range 3 {
			if err := c.Add(result{Site: fmt.Sprint(i), Status: fmt.Sprint("attempt-", m.DequeueCount)}); err != nil {
				return err
			}
		}
		if err := functions.Collect[string](ctx, "undeclared").Add("x"); err == nil {
			return errors.New("an undeclared output must be refused")
		}
		if attempts.Add(1) == 1 {
			return errors.New("first attempt fails after collecting")
		}
		return nil
	}, functions.WithOutput("results", out))
	h := startHost(t, reg, hostSetup{srv: srv})
	h.send(t, b64("go"))
	h.logs.await(t, "success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	h.stop(t)
	got := decoded(t, peekAll(t, srv.ServiceClient(t).NewQueueClient(out)))
	if len(got) != 3 || !strings.Contains(got[0], "attempt-2") {
		t.Errorf("output queue holds %q; want the 3 items of the successful second attempt only", got)
	}
}

// An output over 64 KiB fails the invocation with a clear error before
// anything is sent.
func TestOversizedOutputFailsBeforeSending(t *testing.T) {
	srv := azuritetest.Shared(t)
	out := srv.NewQueue(t)
	reg := &functions.Registry{}
	functions.Add(reg, "Big", functions.QueueTrigger("%TestQueue%"), func(ctx context.Context, s string, m *triggers.Message) error {
		c := functions.Collect[string](ctx, "results")
		c.Add("small")
		return c.Add(strings.Repeat("x", 50*1024)) // 68 KiB in base64
	}, functions.WithOutput("results", out), functions.MaxDequeueCount(1))
	h := startHost(t, reg, hostSetup{srv: srv})
	h.send(t, b64("go"))
	l := h.logs.await(t, "poisoned", 1, 20*time.Second, outcome(OutcomePoisoned))[0]
	h.stop(t)
	msg := fmt.Sprint(l["error"])
	for _, want := range []string{"function Big", "output results", "68268 bytes", "at most 65536"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if got := peekAll(t, srv.ServiceClient(t).NewQueueClient(out)); len(got) != 0 {
		t.Errorf("sent %d messages although the invocation failed", len(got))
	}
}

// Static output names are checked at start; bad dynamic ones fail the
// invocation naming the output.
func TestOutputNameErrors(t *testing.T) {
	reg := &functions.Registry{}
	h := func(ctx context.Context, s string, m *triggers.Message) error { return nil }
	functions.Add(reg, "A", functions.QueueTrigger("input"), h, functions.WithOutput("o", "Bad--Name"))
	functions.Add(reg, "B", functions.QueueTrigger("input"), h, functions.WithOutput("o", "%Nope%"))
	functions.Add(reg, "C", functions.QueueTrigger("input"), h, functions.WithOutput("o", "gopher://x"))
	functions.Add(reg, "D", functions.QueueTrigger("input"), h, functions.WithOutput("o", "out-{unclosed"))
	_, _, err := ResolveFunctions(DefaultConfig(), reg, NewAppSettings(nil))
	got := problems(t, err)
	if len(got) != 4 {
		t.Fatalf("got %q", got)
	}
	for i, want := range []string{"bad--name", "Nope", "gopher", "unclosed"} {
		if !strings.Contains(got[i], "output o") || !strings.Contains(got[i], want) {
			t.Errorf("problem %d = %q, want output o and %q", i, got[i], want)
		}
	}

	srv := azuritetest.Shared(t)
	reg = &functions.Registry{}
	functions.AddResult(reg, "F", functions.QueueTrigger("%TestQueue%"), "out-{missing}",
		func(ctx context.Context, s string, m *triggers.Message) (string, error) { return "r", nil }, functions.MaxDequeueCount(1))
	th := startHost(t, reg, hostSetup{srv: srv})
	th.send(t, b64(`{"present": 1}`))
	l := th.logs.await(t, "poisoned", 1, 20*time.Second, outcome(OutcomePoisoned))[0]
	if e := fmt.Sprint(l["error"]); !strings.Contains(e, "output $return") || !strings.Contains(e, `no property "missing"`) {
		t.Errorf("error %q", e)
	}
}

// A pipeline in one host: the first function's output wakes the second
// function's listener, which then does not wait out its polling backoff.
func TestFastWakePipeline(t *testing.T) {
	srv := azuritetest.Shared(t)
	second := srv.NewQueue(t)
	reg := &functions.Registry{}
	functions.AddResult(reg, "First", functions.QueueTrigger("%TestQueue%"), second,
		func(ctx context.Context, s string, m *triggers.Message) (string, error) { return "next:" + s, nil })
	got := make(chan string, 1)
	functions.Add(reg, "Second", functions.QueueTrigger(second), func(ctx context.Context, s string, m *triggers.Message) error {
		got <- s
		return nil
	})
	h := startHost(t, reg, hostSetup{srv: srv, queues: func(q *QueueSettings) { q.MaxPollingInterval = time.Minute }})
	h.send(t, b64("step"))
	select {
	case s := <-got:
		if s != "next:step" {
			t.Errorf("second got %q", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second function never ran")
	}
	h.logs.await(t, "the second listener woken", 1, 5*time.Second, func(e map[string]any) bool {
		return e["queue"] == second && strings.Contains(fmt.Sprint(e["msg"]), "woken")
	})
}

// Outputs reach a broker too: an Azure-triggered function writes to a
// RabbitMQ queue (created when missing), JSON with no base64.
func TestOutputToRabbitMQ(t *testing.T) {
	serverURL := rabbittest.Require(t)
	q := rabbittest.UniqueName(t)
	t.Cleanup(func() { rabbittest.DeleteQueues(serverURL, q) })
	reg := &functions.Registry{}
	functions.AddResult(reg, "F", functions.QueueTrigger("%TestQueue%"), "rabbit://"+q,
		func(ctx context.Context, in struct{ Site string }, m *triggers.Message) (result, error) {
			return result{Site: in.Site, Status: "queued on rabbit"}, nil
		})
	h := startHost(t, reg, hostSetup{settings: map[string]string{"RABBIT_SERVER_URL": serverURL}})
	h.send(t, b64(`{"Site": "fabrikam"}`))
	h.logs.await(t, "success", 1, 20*time.Second, outcome(OutcomeSucceeded))
	h.stop(t)
	conn := rabbittest.Dial(t)
	d, ok := rabbittest.Get(t, conn, q)
	if !ok || string(d.Body) != `{"site":"fabrikam","status":"queued on rabbit"}` {
		t.Errorf("rabbit queue gave %q (ok=%v)", d.Body, ok)
	}
}
