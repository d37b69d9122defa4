package cli

import (
	"context"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/tracing"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	_ "github.com/jobhost/jobhost/triggers/postgres"
	_ "github.com/jobhost/jobhost/triggers/rabbitmq"
	_ "github.com/jobhost/jobhost/triggers/redis"
	_ "github.com/jobhost/jobhost/triggers/servicebus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/kubernetes")

// brokerRegistry has a function on a Storage Queue, a RabbitMQ queue, a
// NATS JetStream consumer, a Service Bus queue and a topic subscription.
func brokerRegistry() *functions.Registry {
	r := &functions.Registry{}
	h := func(ctx context.Context, o order, msg *triggers.Message) error { return nil }
	r.SettingDefault("OrdersQueue", "orders")
	functions.Add(r, "ProcessOrder", functions.QueueTrigger("%OrdersQueue%"), h, functions.WithOutput("audit", "nats://audit"))
	functions.Add(r, "ShipOrder", functions.SubscriptionTrigger("rabbit://shipments"), h)
	functions.Add(r, "BillOrder", functions.SubscriptionTrigger("nats://orders.billing?stream=ORDERS"), h)
	functions.Add(r, "RefundOrder", functions.SubscriptionTrigger("azuresb://refunds").WithConnection("RefundsBus"), h)
	functions.Add(r, "NotifyCustomer", functions.SubscriptionTrigger("azuresb://order-events?subscription=notify"), h)
	return r
}

// allRegistry adds Redis and PostgreSQL functions and one on mem:// (no
// scaler) to brokerRegistry.
func allRegistry() *functions.Registry {
	r := brokerRegistry()
	h := func(ctx context.Context, o order, msg *triggers.Message) error { return nil }
	functions.Add(r, "IndexOrder", functions.SubscriptionTrigger("redis://orders-index?group=indexers"), h)
	functions.Add(r, "ArchiveOrder", functions.SubscriptionTrigger("postgres://archive?schema=jobs"), h)
	functions.Add(r, "LocalStep", functions.SubscriptionTrigger("mem://local"), h)
	return r
}

// The golden files: `go test ./runtime/cli -run TestKubernetesGolden -update`
// rewrites them.
func TestKubernetesGolden(t *testing.T) {
	secret := "AccountKey=c2VjcmV0LWtleS1UT1BTRUNSRVQ="
	environ := []string{"AzureWebJobsStorage=DefaultEndpointsProtocol=https;AccountName=acct;" + secret,
		"RABBIT_SERVER_URL=amqp://app:TOPSECRETPW@rabbit:5672/prod", "JOBHOST_CALLBACK_SECRET=whsec_dG9wc2VjcmV0dG9wc2VjcmV0dG9wc2VjcmV0"}
	tests := []struct {
		golden, hostJSON string
		reg              *functions.Registry
		args             []string
	}{
		{"brokers.yaml", `{"version": "2.0"}`, brokerRegistry(), nil},
		{"brokers.json", `{"version": "2.0"}`, brokerRegistry(), []string{"--output", "json"}},
		{"flags.yaml", `{"version": "2.0", "jobhost": {"shutdownTimeout": "00:02:00", "http": {"listen": "127.0.0.1:8080"},
			"functions": {"NotifyCustomer": {"disabled": true}}, "operations": {"store": "postgres"}}}`, allRegistry(),
			[]string{"--name", "orders", "--namespace", "shop", "--secret", "orders-env", "--command", "/app/orders-worker",
				"--replicas-min", "1", "--replicas-max", "20", "--polling-interval", "10", "--cooldown-period", "600",
				"--queue-length", "10", "--queue-length", "shiporder=2", "--activation-queue-length", "BillOrder=3",
				"--nats-monitoring", "nats.messaging:8222", "--nats-account", "ORDERS", "--rabbitmq-vhost", "prod",
				"--cpu", "250m", "--memory", "256Mi", "--cpu-limit", "2", "--memory-limit", "1Gi"}},
		{"listen-all.yaml", `{"version": "2.0", "jobhost": {"http": {"listen": "0.0.0.0:9090"}}}`, brokerRegistry(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "host.json", tc.hostJSON)
			args := append([]string{"kubernetes", "manifests", "--image", "registry.example.com/orders-worker:1.4.2"}, tc.args...)
			code, out, errOut := run(t, dir, tc.reg, environ, args...)
			if code != ExitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut)
			}
			for _, s := range []string{"c2VjcmV0LWtleS1UT1BTRUNSRVQ", "TOPSECRETPW", "dG9wc2VjcmV0"} {
				if strings.Contains(out+errOut, s) {
					t.Errorf("the output holds the secret %q from the environment", s)
				}
			}
			golden := filepath.Join("testdata", "kubernetes", tc.golden)
			got := out
			if errOut != "" {
				got += "# stderr:\n# " + strings.ReplaceAll(strings.TrimSuffix(errOut, "\n"), "\n", "\n# ") + "\n"
			}
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update to accept it):\n%s", golden, got)
			}
		})
	}
}

// Bad flags: exit 2, one line per problem, each naming its flag.
func TestKubernetesBadFlags(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, dir, brokerRegistry(), nil, "kubernetes", "manifests", "--name", "Bad_Name",
		"--namespace", "-x", "--output", "xml", "--replicas-min", "5", "--replicas-max", "2", "--polling-interval", "0",
		"--cooldown-period", "-1", "--queue-length", "0", "--queue-length", "NoSuchFunction=3",
		"--activation-queue-length", "ShipOrder=-1", "--memory", "lots", "--nats-monitoring", "nats", "--secret", "S")
	if code != ExitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q; want 2 and nothing", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	for _, flagName := range []string{"name", "namespace", "image", "output", "replicas-max", "polling-interval", "cooldown-period",
		"queue-length", "activation-queue-length", "memory", "nats-monitoring", "secret"} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, "jobhost kubernetes manifests: --"+flagName+": ")
		}
		if !found {
			t.Errorf("no problem line names --%s:\n%s", flagName, errOut)
		}
	}
	if !strings.Contains(errOut, `"NoSuchFunction"`) {
		t.Errorf("the unknown function is not named:\n%s", errOut)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "jobhost kubernetes manifests: --") {
			t.Errorf("line %q is not a problem naming a flag", l)
		}
	}
	// A malformed per-function value is refused by the flag parser.
	code, _, errOut = run(t, dir, brokerRegistry(), nil, "kubernetes", "manifests", "--image", "i", "--queue-length", "=3")
	if code != ExitUsage || !strings.Contains(errOut, "-queue-length") {
		t.Errorf("--queue-length =3: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, dir, brokerRegistry(), nil, "kubernetes", "nonsense")
	if code != ExitUsage || !strings.Contains(errOut, "manifests") {
		t.Errorf("kubernetes nonsense: exit %d, stderr %q", code, errOut)
	}
}

// With no function compiled in (cmd/jobhost) there is nothing to deploy.
func TestKubernetesNoFunctions(t *testing.T) {
	code, out, errOut := run(t, t.TempDir(), &functions.Registry{}, nil, "kubernetes", "manifests", "--image", "i")
	if code != ExitFailed || out != "" || !strings.Contains(errOut, "no functions are registered") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// natsNames derives what triggers/jetstream derives.
func TestNATSNamesMatchTheDriver(t *testing.T) {
	for _, raw := range []string{"nats://orders?stream=ORDERS", "nats://orders.*?stream=ORDERS&consumer=billing",
		"nats://ORDERS", "nats://ORDERS?subject=orders.new", "nats://a.>?stream=S"} {
		u, _ := url.Parse(raw)
		o, err := jetstream.OptionsFromURL(u)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if s, c := natsNames(u); s != o.Stream || c != o.Consumer {
			t.Errorf("%s: natsNames = %s, %s; the driver uses %s, %s", raw, s, c, o.Stream, o.Consumer)
		}
	}
}

// The repository's host.json loads without warnings and holds the
// defaults.
func TestTopLevelHostJSONIsTheDefaults(t *testing.T) {
	cfg, err := runtime.LoadConfig(filepath.Join("..", "..", "host.json"), true, runtime.NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
	want := runtime.DefaultConfig()
	// Written out where the defaults leave a zero meaning "the default".
	want.LogLevels = map[string]string{"default": "Information"}
	want.Dashboard.RecentInvocations = status.DefaultRingSize
	want.Tracing.LinkAfter = tracing.DefaultLinkAfter
	if cfg.Operations.TimeToLive != operations.DefaultTimeToLive || cfg.Operations.PurgeInterval != time.Hour {
		t.Errorf("operations = %+v", cfg.Operations)
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("host.json differs from DefaultConfig:\n got %+v\nwant %+v", cfg, want)
	}
	// validate accepts it (with no function compiled in, as cmd/jobhost).
	code, out, errOut := run(t, filepath.Join("..", ".."), &functions.Registry{}, nil, "validate")
	if code != ExitOK || errOut != "" || !strings.Contains(out, "ok: 0 function(s)") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
