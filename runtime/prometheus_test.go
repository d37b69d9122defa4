package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// EnvRequirePrometheus set to 1 turns a missing prometheus binary into a
// test failure (CI sets it).
const EnvRequirePrometheus = "JOBHOST_REQUIRE_PROMETHEUS"

// A real Prometheus (Debian's package) scrapes a running host, and the
// queries docs/operations.md lists answer with the host's figures.
func TestPrometheusScrapesHost(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv(EnvRequirePrometheus) == "1" {
			t.Fatalf("prometheus is not installed (apt-get install prometheus), and %s=1", EnvRequirePrometheus)
		}
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	queue := "prom-" + fmt.Sprint(time.Now().UnixNano())
	reg := &functions.Registry{}
	functions.Add(reg, "Work", functions.SubscriptionTrigger(memqueue.Scheme+"://"+queue), func(ctx context.Context, in struct{ N int }, _ *triggers.Message) error {
		if in.N < 0 {
			return fmt.Errorf("negative")
		}
		return nil
	})
	o := runObservedHost(t, reg, nil, func(c *Config) { c.PubSub.CreateQueues = true })
	q := memqueue.Default.Queue(queue)
	for i := range 7 {
		q.Send(fmt.Appendf(nil, `{"N":%d}`, i-1), nil)
	}
	o.logs.await(t, "six successes", 6, 20*time.Second, outcome(OutcomeSucceeded))
	o.logs.await(t, "one poisoned", 1, 20*time.Second, outcome(OutcomePoisoned))

	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: jobhost\n    static_configs:\n      - targets: [%q]\n", strings.TrimPrefix(o.base, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:"+port)
	out, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait() //nolint:errcheck // killed
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	api := "http://127.0.0.1:" + port
	for _, q := range []struct {
		query string
		want  float64
	}{
		{`up{job="jobhost"}`, 1},
		{`sum(jobhost_invocations_total{function="Work",outcome="succeeded"})`, 6},
		{`sum(jobhost_invocations_total{function="Work",outcome=~"failed|poisoned"})`, 2},
		{`sum(jobhost_poison_moves_total{function="Work"})`, 1},
		{`jobhost_listener_up{function="Work"}`, 1},
		{`sum(jobhost_invocation_duration_seconds_count{function="Work"})`, 8}, // six, and two attempts of the bad one
		{`histogram_quantile(0.99, sum by (le) (jobhost_invocation_duration_seconds_bucket{function="Work"}))`, -1},
	} {
		got := promQuery(t, api, q.query, 30*time.Second, q.want)
		t.Logf("%s = %v", q.query, got)
	}
}

// promQuery runs query until it returns one sample equal to want (any
// sample when want is -1), and returns its value.
func promQuery(t *testing.T, api, query string, within time.Duration, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(query))
		if err == nil {
			var r struct {
				Status string
				Data   struct {
					Result []struct {
						Value [2]any
					}
				}
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err == nil && r.Status == "success" && len(r.Data.Result) == 1 {
				var v float64
				fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &v)
				if want == -1 || v == want {
					return v
				}
				last = fmt.Sprint(v)
			}
		}
		time.Sleep(200 * time.Millisecond) // polling Prometheus' API: not synchronisation
	}
	t.Fatalf("query %s: last %s; want %v within %s", query, last, want, within)
	return 0
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
