package harness

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one system's figures in one scenario.
type Row struct {
	System   string  `json:"system"`
	Label    string  `json:"label"`
	Messages int64   `json:"messages"`
	Seconds  float64 `json:"seconds"`
	MsgPerS  float64 `json:"msgPerSec"`
	// Latency, enqueue→invocation, where measured (ms).
	P50Ms *float64 `json:"p50Ms,omitempty"`
	P99Ms *float64 `json:"p99Ms,omitempty"`
	MaxMs *float64 `json:"maxMs,omitempty"`
	// CPU of the system's process(es) in the measured window, per 1,000
	// messages, and as a share of one core; CPUTotalSec is the whole child
	// lifetime (start-up, pre-fill of in-memory systems, shutdown) from wait4.
	CPUPer1k    float64 `json:"cpuSecPer1k"`
	CPUPct      float64 `json:"cpuPctOfCore"`
	CPUTotalSec float64 `json:"cpuTotalSec"`
	// Broker (Azurite, RabbitMQ, NATS) CPU in the window, where measured.
	BrokerCPUPer1k *float64 `json:"brokerCpuSecPer1k,omitempty"`
	BrokerCPUPct   *float64 `json:"brokerCpuPctOfCore,omitempty"`
	// OtherPct is the CPU used during the window by everything else on
	// the machine (% of one core).
	OtherPct  *float64 `json:"otherCpuPctOfCore,omitempty"`
	PeakRSSMB float64  `json:"peakRssMB"` // VmHWM of the child (the largest child)
	Lost      int64    `json:"lost"`
	Dups      int64    `json:"duplicates"`
	// Extra holds scenario-specific figures (requests per minute, …).
	Extra    map[string]any `json:"extra,omitempty"`
	Config   map[string]any `json:"config,omitempty"`
	Limit    string         `json:"limit,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// Ratio is a target checked within one run.
type Ratio struct {
	What   string  `json:"what"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"` // 0: for reference, no target
	Met    bool    `json:"met"`
}

// Scenario is one part of the benchmark.
type Scenario struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Rows   []*Row   `json:"rows"`
	Ratios []Ratio  `json:"ratios,omitempty"`
	Notes  []string `json:"notes,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// Report is bench/results/latest.json.
type Report struct {
	Mode      string            `json:"mode"`
	Started   time.Time         `json:"started"`
	Seconds   float64           `json:"seconds"`
	Command   string            `json:"command"`
	Machine   Machine           `json:"machine"`
	Versions  map[string]string `json:"versions"`
	Scenarios []*Scenario       `json:"scenarios"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU      string  `json:"cpu"`
	Cores    int     `json:"cores"`
	MemoryGB float64 `json:"memoryGiB"`
	OS       string  `json:"os"`
	Kernel   string  `json:"kernel"`
	Go       string  `json:"go"`
}

func machine() Machine {
	m := Machine{Cores: goruntime.NumCPU(), Go: goruntime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb float64
			if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %f kB", &kb); n == 1 {
				m.MemoryGB = math.Round(kb/1024/1024*10) / 10
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// versions of jobhost (git describe of the work tree) and the peers
// compiled into this binary.
func versions(root string) map[string]string {
	v := map[string]string{}
	cmd := exec.Command("git", "describe", "--always", "--dirty", "--tags")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		v["jobhost"] = strings.TrimSpace(string(out))
	} else {
		v["jobhost"] = "unknown (" + err.Error() + ")"
	}
	want := []string{
		"github.com/ThreeDotsLabs/watermill", "github.com/ThreeDotsLabs/watermill-amqp/v3",
		"github.com/ThreeDotsLabs/watermill-nats/v2", "gocloud.dev", "gocloud.dev/pubsub/rabbitpubsub",
		"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue", "github.com/rabbitmq/amqp091-go",
		"github.com/nats-io/nats.go", "go.uber.org/zap",
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if slices.Contains(want, d.Path) {
				v[d.Path] = d.Version
			}
		}
	}
	if b, err := os.ReadFile(root + "/node_modules/azurite/package.json"); err == nil {
		var ver string
		for _, line := range strings.Split(string(b), "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), `"version": "`); ok {
				ver = strings.TrimSuffix(strings.TrimSuffix(s, ","), `"`)
				break
			}
		}
		v["azurite"] = ver
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		v["node"] = strings.TrimSpace(string(out))
	}
	return v
}

func f1(x float64) string {
	switch {
	case math.IsNaN(x) || x < 0:
		return "–"
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func fp(p *float64) string {
	if p == nil {
		return "–"
	}
	return f1(*p)
}

func fcpu(x float64) string {
	if x < 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", x)
}

func fpcpu(p *float64) string {
	if p == nil {
		return "–"
	}
	return fcpu(*p)
}

func fpct(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", *p)
}

// printScenario writes one scenario as a Markdown table.
func printScenario(w io.Writer, s *Scenario) {
	fmt.Fprintf(w, "\n### %s) %s\n\n", s.ID, s.Title)
	if s.Error != "" {
		fmt.Fprintf(w, "ERROR: %s\n\n", s.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| system\t msgs\t msg/s\t p50 ms\t p99 ms\t CPU s/1k msgs\t CPU % core\t broker CPU s/1k\t broker % core\t other % core\t peak RSS MB\t lost/dup\t limit\t")
	fmt.Fprintln(tw, "|---\t ---\t ---\t ---\t ---\t ---\t ---\t ---\t ---\t ---\t ---\t ---\t ---\t")
	for _, r := range s.Rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "| %s\t ERROR: %s\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Label, oneLine(r.Error, 140))
			continue
		}
		thr := f1(r.MsgPerS)
		if r.MsgPerS == 0 {
			thr = "–"
		}
		cpu := fcpu(r.CPUPer1k)
		if r.Messages == 0 {
			cpu = "–"
		}
		fmt.Fprintf(tw, "| %s\t %d\t %s\t %s\t %s\t %s\t %.0f%%\t %s\t %s\t %s\t %.0f\t %d/%d\t %s\t\n",
			r.Label, r.Messages, thr, fp(r.P50Ms), fp(r.P99Ms), cpu, r.CPUPct,
			fpcpu(r.BrokerCPUPer1k), fpct(r.BrokerCPUPct), fpct(r.OtherPct), r.PeakRSSMB, r.Lost, r.Dups, r.Limit)
	}
	tw.Flush()
	for _, r := range s.Rows {
		if len(r.Extra) > 0 {
			keys := make([]string, 0, len(r.Extra))
			for k := range r.Extra {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%v", k, r.Extra[k]))
			}
			fmt.Fprintf(w, "- %s: %s\n", r.Label, strings.Join(parts, ", "))
		}
		for _, wl := range r.Warnings {
			fmt.Fprintf(w, "- %s warning: %s\n", r.Label, oneLine(wl, 300))
		}
	}
	for _, rt := range s.Ratios {
		if rt.Target == 0 { // for reference: no target
			fmt.Fprintf(w, "- ratio %s: %.2f× (for reference)\n", rt.What, rt.Value)
			continue
		}
		met := "MET"
		if !rt.Met {
			met = "NOT MET"
		}
		fmt.Fprintf(w, "- ratio %s: %.2f× (target ≥ %.2f×) %s\n", rt.What, rt.Value, rt.Target, met)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
