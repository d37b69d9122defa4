package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

type opRequest struct {
	ID          string `json:"id"`
	Fail        bool   `json:"fail"`
	CallbackURL string `json:"callbackUrl"`
}

// The completion of a finally settled message is POSTed to the URL in the
// message: succeeded with the function's output, or poisoned with the error.
// A URL outside the allowlist is refused and logged; the message is settled
// all the same.
func TestCompletionCallbacks(t *testing.T) {
	posts := make(chan Completion, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var c Completion
		if err := json.Unmarshal(b, &c); err != nil {
			t.Errorf("callback body %s: %v", b, err)
		}
		posts <- c
	}))
	defer srv.Close()
	reg := &functions.Registry{}
	functions.AddResult(reg, "Op", functions.QueueTrigger("%TestQueue%"), "",
		func(ctx context.Context, r opRequest, m *triggers.Message) (map[string]string, error) {
			if r.Fail {
				return nil, errors.New("operation failed")
			}
			return map[string]string{"done": r.ID}, nil
		}, functions.CallbackFromField("callbackUrl"), functions.MaxDequeueCount(2))
	h := startHost(t, reg, hostSetup{cfg: func(c *Config) { c.Callbacks.AllowedHosts = []string{"127.0.0.1"} }})

	h.send(t, b64(fmt.Sprintf(`{"id": "op-1", "callbackUrl": %q}`, srv.URL+"/done?token=secret-token")))
	c := <-posts
	if c.Status != OutcomeSucceeded || c.Function != "Op" || c.Attempts != 1 || c.InvocationID == "" ||
		fmt.Sprint(c.Output) != "map[done:op-1]" || c.EndTime.Before(c.StartTime) || c.Error != "" {
		t.Errorf("succeeded callback: %+v", c)
	}

	h.send(t, b64(fmt.Sprintf(`{"id": "op-2", "fail": true, "callbackUrl": %q}`, srv.URL)))
	c = <-posts
	if c.Status != OutcomePoisoned || c.Attempts != 2 || c.Error != "operation failed" || c.Output != nil {
		t.Errorf("poisoned callback: %+v", c)
	}

	h.send(t, b64(`{"id": "op-3", "callbackUrl": "http://169.254.169.254/latest/meta-data?x=secret-token"}`))
	h.logs.await(t, "three successes and failures settled", 3, 20*time.Second, func(e map[string]any) bool {
		o := e["outcome"]
		return e["logger"] == "Function.Op" && (o == OutcomeSucceeded || o == OutcomePoisoned)
	})
	h.stop(t) // waits for callbacks under way
	select {
	case c := <-posts:
		t.Errorf("a callback outside the allowlist was sent: %+v", c)
	default:
	}
	if len(h.logs.matching(func(e map[string]any) bool { return strings.Contains(fmt.Sprint(e), "169.254.169.254") })) == 0 {
		t.Errorf("the refused callback was not logged:\n%s", h.logs.text())
	}
	if strings.Contains(h.logs.text(), "secret-token") {
		t.Errorf("a callback URL's query reached the log")
	}
	if n := count(t, h.qc); n != 0 {
		t.Errorf("queue holds %d: callbacks must not keep messages", n)
	}
}

// A fixed callback URL outside the allowlist is a configuration problem.
func TestStaticCallbackChecked(t *testing.T) {
	reg := &functions.Registry{}
	functions.Add(reg, "Op", functions.QueueTrigger("ops-queue"), func(ctx context.Context, s string, m *triggers.Message) error { return nil },
		functions.CallbackURL("%Hook%"))
	_, err := New(Options{Registry: reg, Settings: NewAppSettings(map[string]string{
		"Hook": "https://hooks.example.com/x", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}), Logs: nopLogs(t)})
	got := problems(t, err)
	if len(got) != 1 || !strings.Contains(got[0], "function Op: callback") || !strings.Contains(got[0], "allowedHosts") {
		t.Errorf("got %q", got)
	}
}

func nopLogs(t *testing.T) *Logs {
	l, err := NewLogs(LogOptions{Output: &logSink{changed: make(chan struct{})}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
