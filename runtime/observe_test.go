package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/tcpproxy"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/redis/redistest"
)

// observedHost is a running host with its HTTP listener.
type observedHost struct {
	h      *Host
	base   string
	logs   *logSink
	cancel context.CancelFunc
	done   chan error
}

func runObservedHost(t *testing.T, reg *functions.Registry, settings map[string]string, cfgf func(*Config)) *observedHost {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Queues.MaxPollingInterval = 300 * time.Millisecond
	cfg.PubSub.MaxPollingInterval = 300 * time.Millisecond
	cfg.Queues.MaxDequeueCount, cfg.PubSub.MaxDequeueCount = 2, 2
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	if cfgf != nil {
		cfgf(cfg)
	}
	sink := newLogSink()
	logs, err := NewLogs(LogOptions{Format: "json", Levels: map[string]string{"default": "Debug"}, Output: sink})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Registry: reg, Config: cfg, Settings: NewAppSettings(settings), Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &observedHost{h: h, logs: sink, cancel: cancel, done: make(chan error, 1)}
	go func() { o.done <- h.Run(ctx) }()
	sink.await(t, "the HTTP listener", 1, 30*time.Second, msgContains("HTTP listener started"))
	o.base = "http://" + h.HTTPAddr()
	t.Cleanup(func() {
		cancel()
		select {
		case <-o.done:
		case <-time.After(40 * time.Second):
			t.Error("host did not stop")
		}
	})
	return o
}

func (o *observedHost) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(o.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// awaitStatus polls path until it answers code.
func (o *observedHost) awaitStatus(t *testing.T, path string, code int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, body := o.get(t, path)
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s; want %d within %s", path, got, body, code, within)
		}
		time.Sleep(50 * time.Millisecond) // polling an HTTP endpoint: not synchronisation
	}
}

// scrape reads /metrics as Prometheus does.
func (o *observedHost) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := o.get(t, MetricsPath)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value returns the value of the series of name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// On Azurite: invocations by outcome, poison moves, durations, the
// wait from enqueue, the depth sample, the listener state, build info and
// the Go collector are on /metrics; the dashboard source sees the same.
func TestMetricsOnAzurite(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	reg := &functions.Registry{}
	functions.Add(reg, "Orders", functions.QueueTrigger("%Q%"), func(ctx context.Context, in struct{ OK bool }, _ *triggers.Message) error {
		if !in.OK {
			return errors.New("order refused")
		}
		return nil
	})
	o := runObservedHost(t, reg, map[string]string{"AzureWebJobsStorage": srv.ConnectionString, "Q": queue},
		func(c *Config) { c.Queues.MessageEncoding = "none" })
	qc := srv.ServiceClient(t).NewQueueClient(queue)
	for _, body := range []string{`{"OK":true}`, `{"OK":true}`, `{"OK":true}`, `{"OK":false}`} {
		if _, err := qc.EnqueueMessage(context.Background(), body, nil); err != nil {
			t.Fatal(err)
		}
	}
	o.logs.await(t, "three successes", 3, 30*time.Second, outcome(OutcomeSucceeded))
	o.logs.await(t, "the poison move", 1, 30*time.Second, outcome(OutcomePoisoned))

	fams := o.scrape(t)
	fn := map[string]string{"function": "Orders", "queue": queue, "broker": "azurequeue"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for a, b := range fn {
			m[a] = b
		}
		return m
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"jobhost_invocations_total", with("outcome", "succeeded"), 3},
		{"jobhost_invocations_total", with("outcome", "failed"), 1},
		{"jobhost_invocations_total", with("outcome", "poisoned"), 1},
		{"jobhost_poison_moves_total", fn, 1},
		{"jobhost_messages_received_total", fn, 5},
		{"jobhost_invocation_duration_seconds", fn, 5},
		{"jobhost_message_delivery_attempts", fn, 5},
		{"jobhost_message_wait_seconds", fn, 4}, // first attempts only
		{"jobhost_listener_up", fn, 1},
		{"jobhost_concurrency_limit", fn, float64(o.h.Functions()[0].Queues.BatchSize + o.h.Functions()[0].Queues.NewBatchThreshold)},
		{"jobhost_build_info", map[string]string{"goversion": Version().GoVersion}, 1},
	} {
		got, ok := value(t, fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v); want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(t, fams, "jobhost_queue_depth_messages", fn); !ok {
		t.Error("no jobhost_queue_depth_messages for a Storage Queue (sampled at start)")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}

	// The dashboard on the same listener shows the function.
	if code, body := o.get(t, "/"); code != http.StatusOK || !strings.Contains(body, "Orders") || !strings.Contains(body, queue) {
		t.Errorf("GET /: %d, the overview does not name the function and its queue", code)
	}

	src := o.h.Status()
	fs := src.Functions()
	if len(fs) != 1 || fs[0].Succeeded != 3 || fs[0].Poisoned != 1 || fs[0].State != status.Listening ||
		!strings.Contains(fs[0].LastError, "order refused") || fs[0].Poison != queue+"-poison" {
		t.Fatalf("Functions() = %+v", fs)
	}
	if inv := src.Invocations(status.Filter{Outcome: OutcomePoisoned}); len(inv) != 1 || inv[0].DequeueCount != 2 {
		t.Fatalf("poisoned invocations: %+v", inv)
	}
	if inv := src.Invocations(status.Filter{Function: "Orders"}); len(inv) != 5 {
		t.Fatalf("%d invocations kept; want 5", len(inv))
	}
	adm, err := src.OpenPoison(context.Background(), "Orders")
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if n, ok, err := adm.Count(context.Background()); err != nil || !ok || n != 1 {
		t.Fatalf("poison count %d %v %v; want 1", n, ok, err)
	}
}

// On Redis through a proxy: /readyz turns 503 when the broker goes away
// and 200 when it is back, while /livez stays 200; once the shutdown
// begins /readyz is 503 while the listener serves the drain.
func TestHealthThroughOutageAndShutdown(t *testing.T) {
	serverURL := redistest.Require(t)
	stream := redistest.UniqueStream(t)
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	p := tcpproxy.New(t, u.Host)
	u.Host = p.Addr()
	proxied := u.String()
	reg := &functions.Registry{}
	started, release := make(chan struct{}, 1), make(chan struct{})
	functions.Add(reg, "Slow", functions.SubscriptionTrigger("redis:///"+stream), func(ctx context.Context, _ []byte, _ *triggers.Message) error {
		started <- struct{}{}
		<-release
		return nil
	})
	o := runObservedHost(t, reg, map[string]string{"REDIS_SERVER_URL": proxied}, func(c *Config) { c.PubSub.CreateQueues = true })

	body := o.awaitStatus(t, ReadyzPath, http.StatusOK, 20*time.Second)
	var a healthAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Status != "ok" || len(a.Checks) != 1 || a.Checks[0].Function != "Slow" {
		t.Fatalf("/readyz: %s (%v)", body, err)
	}

	p.Cut()
	body = o.awaitStatus(t, ReadyzPath, http.StatusServiceUnavailable, 30*time.Second)
	if !strings.Contains(body, `"failing"`) || strings.Contains(body, p.Addr()+"@") {
		t.Errorf("/readyz during the outage: %s", body)
	}
	if code, body := o.get(t, LivezPath); code != http.StatusOK {
		t.Errorf("/livez during the outage: %d %s; want 200 (the process is alive)", code, body)
	}
	p.Restore(t)
	o.awaitStatus(t, ReadyzPath, http.StatusOK, 30*time.Second)

	c := redistest.Client(t)
	if _, err := redistest.Send(context.Background(), c, stream, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	<-started
	o.cancel() // the shutdown begins; the function holds the drain
	body = o.awaitStatus(t, ReadyzPath, http.StatusServiceUnavailable, 10*time.Second)
	if !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping: %s", body)
	}
	if code, body := o.get(t, LivezPath); code != http.StatusOK {
		t.Errorf("/livez while draining: %d %s", code, body)
	}
	close(release)
	select {
	case err := <-o.done:
		if err != nil {
			t.Fatal(err)
		}
		o.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("host did not stop")
	}
	if _, err := http.Get(o.base + ReadyzPath); err == nil {
		t.Error("the HTTP listener still answers after Run returned")
	}
}
