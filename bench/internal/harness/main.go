// Package harness is the bench binary's parent side: it starts the servers
// and child processes, feeds the queues, measures and reports.
package harness

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// bench holds one run's settings and results.
type bench struct {
	quick       bool
	root        string // the jobhost module (node_modules lives there)
	rabbitURL   string
	natsURL     string
	redisURL    string
	postgresURL string
	profileDir  string
	only        map[string]bool
	// reps is how often each throughput case runs (the median is kept).
	reps int
	// bt is jobhost's [batchSize, newBatchThreshold] per broker.
	bt map[string][2]int

	n counts

	report *Report
}

// counts are the workload sizes of a mode.
type counts struct {
	azure, mem, rabbit, nats int64
	rate                     int // open-loop messages per second
	openLoop, idle           time.Duration
	hosts                    []int
	scaleRabbit, scaleAzure  int64
	scaleNATS                int64
	natsHosts                []int // NATS scale-out (f3)
	opsMem, opsAzure         int64 // g: operations (and plain sends) per run
	redis, postgres          int64 // h, i: burn-down messages per run
	dbRate                   int   // h, i: open-loop messages per second
	dbOpenLoop, dbIdle       time.Duration
}

// defaultBT keeps every jobhost host at 16 messages in flight: a poll asks
// for batchSize and the next poll is made when in-flight work is at or below
// newBatchThreshold, so at most batchSize + newBatchThreshold run; drivers
// whose Receive returns one message (mem://) reach 16 with threshold 15. For
// RabbitMQ the broker-side bound (prefetch) is batchSize + newBatchThreshold
// as well; the NATS driver keeps to it with its own pull requests (its
// consumer's MaxAckPending is consumer-wide). Among the splits of 16 a sweep
// (16/0, 8/8, 4/12, 1/15; docs/performance.md) found 4/12 best on RabbitMQ
// and, since its driver pulls ahead, on NATS too (16/0 waits for the
// slowest acknowledgement of each batch; small polls keep 16 in flight).
var defaultBT = map[string][2]int{"azure": {16, 0}, "mem": {16, 15}, "memqueue": {8, 8}, "rabbit": {4, 12}, "nats": {4, 12},
	"redis": {8, 8}, "postgres": {8, 8}}

var (
	full = counts{azure: 2000, mem: 200_000, rabbit: 50_000, nats: 50_000, rate: 50, openLoop: 30 * time.Second, idle: 20 * time.Second, hosts: []int{1, 2, 4, 8}, scaleRabbit: 20_000, scaleAzure: 2000, scaleNATS: 50_000, natsHosts: []int{1, 2, 4, 8}, opsMem: 50_000, opsAzure: 1000,
		redis: 50_000, postgres: 20_000, dbRate: 100, dbOpenLoop: 20 * time.Second, dbIdle: 20 * time.Second}
	quick = counts{azure: 500, mem: 50_000, rabbit: 10_000, nats: 10_000, rate: 50, openLoop: 10 * time.Second, idle: 5 * time.Second, hosts: []int{1, 2, 4, 8}, scaleRabbit: 5000, scaleAzure: 500, scaleNATS: 10_000, natsHosts: []int{1, 2, 4, 8}, opsMem: 20_000, opsAzure: 300,
		redis: 5000, postgres: 3000, dbRate: 100, dbOpenLoop: 2 * time.Second, dbIdle: 2 * time.Second}
)

// Main runs the benchmark; it returns the exit status.
func Main(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	q := fs.Bool("quick", false, "reduced counts (make bench-quick)")
	scen := fs.String("scenarios", "a,b,c,d,e,f,g,h,i", "scenarios to run (comma-separated: a..i; f3 alone is f's NATS part, g1 or g2 one half of g, h1..h3 and i1..i3 one part of h or i)")
	out := fs.String("out", "results/latest.json", "where to write the JSON results (a .md table goes beside it)")
	root := fs.String("root", "", "the jobhost module root (default: the nearest parent of the working directory with node_modules/.bin/azurite-queue)")
	rabbitURL := fs.String("rabbit", envOr("RABBIT_SERVER_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ server URL")
	natsURL := fs.String("nats", envOr("NATS_SERVER_URL", "nats://127.0.0.1:4222"), "NATS server URL")
	redisURL := fs.String("redis", envOr("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"), "Redis server URL; its database (the path) must hold nothing but the bench's keys (scenario h)")
	pgURL := fs.String("postgres", envOr("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL DSN (scenario i)")
	prof := fs.String("profile", "", "write a pprof CPU profile of every child's measured window into this directory")
	reps := fs.Int("reps", 0, "runs per system in the throughput scenarios a-d, h1 and i1, and per host count in f; the median is reported (default 3, quick 1)")
	jh := fs.String("jobhost", "", "override jobhost's batchSize/newBatchThreshold per broker, e.g. rabbit=8/8,nats=16/0")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	b := &bench{quick: *q, rabbitURL: *rabbitURL, natsURL: *natsURL, redisURL: *redisURL, postgresURL: *pgURL, profileDir: *prof, only: map[string]bool{}, n: full,
		bt: maps.Clone(defaultBT)}
	if *jh != "" {
		for _, kv := range strings.Split(*jh, ",") {
			var broker string
			var bs, th int
			k, v, _ := strings.Cut(kv, "=")
			broker = strings.TrimSpace(k)
			if _, err := fmt.Sscanf(v, "%d/%d", &bs, &th); err != nil || b.bt[broker] == [2]int{} {
				fmt.Fprintf(os.Stderr, "bench: -jobhost %q: want broker=batch/threshold with broker one of azure, mem, memqueue, rabbit, nats, redis, postgres\n", kv)
				return 2
			}
			b.bt[broker] = [2]int{bs, th}
		}
	}
	b.reps = 3
	if b.quick {
		b.n = quick
		b.reps = 1
	}
	if *reps > 0 {
		b.reps = *reps
	}
	for _, s := range strings.Split(*scen, ",") {
		b.only[strings.TrimSpace(s)] = true
	}
	b.root = *root
	if b.root == "" {
		var err error
		if b.root, err = findRoot(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	}
	if b.profileDir != "" {
		if err := os.MkdirAll(b.profileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	}
	mode := "full"
	if b.quick {
		mode = "quick"
	}
	b.report = &Report{Mode: mode, Started: time.Now().UTC(), Command: "go run ./cmd/bench " + strings.Join(args, " "),
		Machine: machine(), Versions: versions(b.root)}
	b.probeBrokers()
	m := b.report.Machine
	fmt.Printf("jobhost bench (%s) — %s, %d cores, %.1f GiB, %s, %s\n", mode, m.CPU, m.Cores, m.MemoryGB, m.OS, m.Go)
	fmt.Printf("versions: %s\n", fmtVersions(b.report.Versions))

	start := time.Now()
	steps := []struct {
		id string
		fn func() []*Scenario
	}{
		{"a", b.scenarioAzurite},
		{"b", b.scenarioMemory},
		{"c", b.scenarioRabbit},
		{"d", b.scenarioNATS},
		{"e", b.scenarioLatency},
		{"f", func() []*Scenario { return append(b.scenarioScaleOut(), b.scenarioScaleOutNATS()) }},
		{"f3", func() []*Scenario { return []*Scenario{b.scenarioScaleOutNATS()} }},
		{"g", b.scenarioOps},
		{"h", b.scenarioRedis},
		{"i", b.scenarioPostgres},
	}
	for _, st := range steps {
		if st.id == "g" && (b.only["g1"] || b.only["g2"]) {
			b.only["g"] = true
		}
		if (st.id == "h" || st.id == "i") && b.someParts(st.id) {
			b.only[st.id] = true
		}
		if !b.only[st.id] || st.id == "f3" && b.only["f"] {
			continue
		}
		t := time.Now()
		for _, s := range st.fn() {
			b.report.Scenarios = append(b.report.Scenarios, s)
			printScenario(os.Stdout, s)
		}
		fmt.Printf("(scenario %s took %.0f s)\n", st.id, time.Since(t).Seconds())
	}
	b.report.Seconds = time.Since(start).Seconds()
	fmt.Printf("\nbench finished in %.0f s\n", b.report.Seconds)
	if err := b.write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	fmt.Printf("wrote %s\n", *out)
	return 0
}

func (b *bench) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(b.report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return err
	}
	md, err := os.Create(strings.TrimSuffix(path, filepath.Ext(path)) + ".md")
	if err != nil {
		return err
	}
	defer md.Close()
	m := b.report.Machine
	fmt.Fprintf(md, "jobhost bench (%s), %s — %s, %d cores, %.1f GiB, %s (kernel %s), %s; %.0f s\n\nversions: %s\n",
		b.report.Mode, b.report.Started.Format(time.RFC3339), m.CPU, m.Cores, m.MemoryGB, m.OS, m.Kernel, m.Go,
		b.report.Seconds, fmtVersions(b.report.Versions))
	for _, s := range b.report.Scenarios {
		printScenario(md, s)
	}
	return nil
}

func fmtVersions(v map[string]string) string {
	keys := []string{"jobhost", "github.com/ThreeDotsLabs/watermill", "github.com/ThreeDotsLabs/watermill-amqp/v3",
		"github.com/ThreeDotsLabs/watermill-nats/v2", "gocloud.dev", "gocloud.dev/pubsub/rabbitpubsub",
		"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue", "github.com/rabbitmq/amqp091-go", "github.com/nats-io/nats.go",
		"github.com/hibiken/asynq", "github.com/riverqueue/river", "github.com/riverqueue/river/riverdriver/riverpgxv5",
		"github.com/redis/go-redis/v9", "github.com/jackc/pgx/v5",
		"azurite", "node", "rabbitmq-server", "nats-server", "redis-server", "postgresql"}
	var parts []string
	for _, k := range keys {
		if v[k] != "" {
			parts = append(parts, strings.TrimPrefix(k, "github.com/")+" "+v[k])
		}
	}
	return strings.Join(parts, ", ")
}

// probeBrokers records the broker versions (and complains early).
func (b *bench) probeBrokers() {
	if r, err := dialRabbit(b.rabbitURL); err == nil {
		b.report.Versions["rabbitmq-server"] = r.version()
		r.close()
	} else {
		b.report.Versions["rabbitmq-server"] = "unreachable: " + err.Error()
	}
	if b.only["h"] {
		if r, err := dialRedis(b.redisURL); err == nil {
			b.report.Versions["redis-server"] = r.version()
			r.close()
		} else {
			b.report.Versions["redis-server"] = "unreachable: " + err.Error()
		}
	}
	if b.only["i"] {
		if p, err := dialPG(b.postgresURL); err == nil {
			b.report.Versions["postgresql"] = p.version()
			p.close()
		} else {
			b.report.Versions["postgresql"] = "unreachable: " + err.Error()
		}
	}
	if n, err := dialNATS(b.natsURL); err == nil {
		b.report.Versions["nats-server"] = n.nc.ConnectedServerVersion()
		n.close()
	} else {
		b.report.Versions["nats-server"] = "unreachable: " + err.Error()
	}
}

func (b *bench) profile(scenario, system string) string {
	if b.profileDir == "" {
		return ""
	}
	p, _ := filepath.Abs(filepath.Join(b.profileDir, scenario+"-"+system+".pprof"))
	return p
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "node_modules", ".bin", "azurite-queue")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	// No Azurite installed: the root is the parent module.
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/jobhost/jobhost\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("cannot find the jobhost module above %s (use -root)", dir)
		}
	}
}

var bg = context.Background()
