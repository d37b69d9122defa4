package harness

import (
	"fmt"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// meter reads a broker's CPU seconds around a measured window.
type meter struct {
	name   string
	single bool // single-threaded (Azurite's node process)
	cpu    func() float64
	c0, c1 float64
	t0, t1 time.Time
	// counts, when set, reads server counters (commands, transactions,
	// WAL syncs): into k0 at the window's start, and into k1 by the
	// caller once the child has gone (a PostgreSQL backend reports its
	// transactions when it goes idle or exits, up to a second late).
	counts func() map[string]int64
	k0, k1 map[string]int64
}

func newMeter(name string, single bool, cpu func() float64) *meter {
	return &meter{name: name, single: single, cpu: cpu}
}

func pidMeter(name, comm string) *meter {
	pid := findProc(comm)
	if pid == 0 {
		return nil
	}
	return newMeter(name, false, func() float64 { return procCPU(pid) })
}

func (m *meter) begin() {
	if m != nil {
		if m.counts != nil {
			m.k0 = m.counts()
		}
		m.t0, m.c0 = time.Now(), m.cpu()
	}
}

func (m *meter) end() {
	if m != nil {
		m.t1, m.c1 = time.Now(), m.cpu()
	}
}

// apply sets the row's broker figures for messages processed.
func (m *meter) apply(r *Row, messages int64) {
	if m == nil || m.c0 < 0 || m.c1 < 0 || m.t1.IsZero() || messages == 0 {
		return
	}
	per := (m.c1 - m.c0) / float64(messages) * 1000
	pct := (m.c1 - m.c0) / m.t1.Sub(m.t0).Seconds() * 100
	r.BrokerCPUPer1k, r.BrokerCPUPct = &per, &pct
}

// rowFrom turns one child's result into a Row. n is the number of messages
// the run was about (for loss); throughput is measured from GO to the last
// message recorded.
func rowFrom(label string, spec proto.Spec, n int64, res proto.ChildResult, ru *syscall.Rusage) *Row {
	r := &Row{System: spec.System, Label: label, Messages: res.Processed, Warnings: res.Warnings, Config: specConfig(spec)}
	unique := res.Processed - res.Dups
	r.Dups = res.Dups
	if n > 0 {
		r.Lost = max(n-unique, 0)
	}
	if res.LastAt > res.GoAt && res.GoAt > 0 {
		r.Seconds = float64(res.LastAt-res.GoAt) / 1e9
		r.MsgPerS = float64(unique) / r.Seconds
	}
	cpu := res.UserSec + res.SysSec
	if res.Processed > 0 {
		r.CPUPer1k = cpu / float64(res.Processed) * 1000
	}
	if w := float64(res.EndAt-res.GoAt) / 1e9; w > 0 {
		r.CPUPct = cpu / w * 100
	}
	if ru != nil {
		r.CPUTotalSec = tvSec(ru.Utime) + tvSec(ru.Stime)
	}
	r.PeakRSSMB = peakRSS(res, ru)
	if len(res.Latencies) > 0 {
		setLatency(r, res.Latencies)
	}
	return r
}

// peakRSS is the child's own peak RSS (MB): VmHWM as it reported it, else
// wait4's maxrss (which may include the parent's RSS at fork time).
func peakRSS(res proto.ChildResult, ru *syscall.Rusage) float64 {
	if res.PeakRSSKB > 0 {
		return float64(res.PeakRSSKB) / 1024
	}
	if ru != nil {
		return float64(ru.Maxrss) / 1024
	}
	return 0
}

func setLatency(r *Row, lat []int64) {
	var s []int64
	for _, v := range lat {
		if v >= 0 {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return
	}
	slices.Sort(s)
	p := func(q float64) *float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		v := float64(s[max(0, min(i, len(s)-1))]) / 1e6
		return &v
	}
	r.P50Ms, r.P99Ms, r.MaxMs = p(0.50), p(0.99), p(1)
}

func tvSec(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func specConfig(s proto.Spec) map[string]any {
	c := map[string]any{"concurrency": s.Concurrency}
	switch s.System {
	case proto.JobhostAzure, proto.JobhostMem, proto.JobhostRabbit, proto.JobhostNATS, proto.JobhostRedis, proto.JobhostPostgres:
		c["batchSize"], c["newBatchThreshold"] = s.BatchSize, s.Threshold
		mp := "1m0s (default)"
		if s.MaxPolling > 0 {
			mp = s.MaxPolling.String()
		}
		c["maxPollingInterval"] = mp
		if s.LogLevel != "" {
			c["logLevel.Function"] = s.LogLevel
		} else {
			c["logLevel.Function"] = "Information (default; encoded, written to a discarding sink)"
		}
	case proto.PlainAzqueue:
		c["batchSize"] = s.BatchSize
		c["emptySleep"] = "100ms"
	}
	return c
}

// limit names what bounds a row's throughput, from where the CPU went.
func limit(r *Row, m *meter) string {
	if r.Error != "" || r.Messages == 0 {
		return ""
	}
	br := 0.0
	if r.BrokerCPUPct != nil {
		br = *r.BrokerCPUPct
	}
	switch {
	case m != nil && m.single && br >= 85:
		return fmt.Sprintf("%s CPU (single-threaded: %.0f%% of a core)", m.name, br)
	case r.CPUPct+br >= 165:
		if m != nil {
			return fmt.Sprintf("CPU: both cores busy (client %.0f%% + %s %.0f%%)", r.CPUPct, m.name, br)
		}
		return fmt.Sprintf("CPU: both cores busy (%.0f%%)", r.CPUPct)
	case m != nil:
		return fmt.Sprintf("waits (round trips, acks; client %.0f%% + %s %.0f%% of 200%%)", r.CPUPct, m.name, br)
	default:
		return fmt.Sprintf("hand-offs between goroutines (CPU %.0f%% of 200%%)", r.CPUPct)
	}
}

func ratio(s *Scenario, what string, num, den *Row, target float64) {
	if num == nil || den == nil || num.Error != "" || den.Error != "" || den.MsgPerS == 0 {
		s.Notes = append(s.Notes, "ratio "+what+": not available (a run failed)")
		return
	}
	v := num.MsgPerS / den.MsgPerS
	// Runs of one round are adjacent in time, so a machine that is slower
	// for a while slows both: the ratio is the median of the rounds'
	// ratios when every run of both succeeded.
	nr, _ := num.Extra["runsMsgPerSec"].([]float64)
	dr, _ := den.Extra["runsMsgPerSec"].([]float64)
	var per []float64
	if len(nr) > 1 && len(nr) == len(dr) {
		for i := range nr {
			if dr[i] > 0 {
				per = append(per, math.Round(nr[i]/dr[i]*100)/100)
			}
		}
	}
	if len(per) == len(nr) && len(per) > 1 {
		sorted := slices.Sorted(slices.Values(per))
		v = sorted[(len(sorted)-1)/2]
		s.Notes = append(s.Notes, fmt.Sprintf("%s by round: %v (median taken)", what, per))
	}
	s.Ratios = append(s.Ratios, Ratio{What: what, Value: math.Round(v*100) / 100, Target: target, Met: v >= target})
}

func errRow(label, system string, err error) *Row {
	return &Row{System: system, Label: label, Error: err.Error()}
}

// machineTicks returns the machine's busy and total CPU ticks (/proc/stat).
func machineTicks() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1, -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return -1, -1
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// machineMeter measures the whole machine's CPU over a window, in % of one
// core (200% = both cores).
// The harness's own CPU (the open-loop producer, progress polling) is
// taken out.
type machineMeter struct {
	b0, t0, b1, t1 float64
	s0, s1         float64 // this process's CPU seconds
	w0, w1         time.Time
}

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tvSec(ru.Utime) + tvSec(ru.Stime)
}

func (m *machineMeter) begin() { m.b0, m.t0 = machineTicks(); m.s0, m.w0 = selfCPU(), time.Now() }
func (m *machineMeter) end()   { m.b1, m.t1 = machineTicks(); m.s1, m.w1 = selfCPU(), time.Now() }
func (m *machineMeter) pct() float64 {
	if m.t1 <= m.t0 || m.t0 < 0 {
		return -1
	}
	all := (m.b1 - m.b0) / (m.t1 - m.t0) * float64(goruntime.NumCPU()) * 100
	self := (m.s1 - m.s0) / m.w1.Sub(m.w0).Seconds() * 100
	return max(all-self, 0)
}

// other sets the row's share of the machine used by neither the system
// nor its broker nor this harness (other sessions' builds and tests, and
// kernel work not charged to a process).
func (m *machineMeter) other(r *Row) {
	p := m.pct()
	if p < 0 {
		return
	}
	o := p - r.CPUPct
	if r.BrokerCPUPct != nil {
		o -= *r.BrokerCPUPct
	}
	o = max(o, 0)
	r.OtherPct = &o
	if o >= 25 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the machine was not quiet: %.0f%% of a core went to other processes (or kernel threads such as disk writeback) during this run", o))
	}
}

// waitQuiet waits (up to max) until the machine's CPU, sampled over half a
// second, is under 20% of one core, so that runs do not share the two
// cores with other work. It returns the last sample.
func waitQuiet(maxWait time.Duration) float64 {
	deadline := time.Now().Add(maxWait)
	said := false
	for {
		var m machineMeter
		m.begin()
		time.Sleep(500 * time.Millisecond)
		m.end()
		p := m.pct()
		if p < 20 || time.Now().After(deadline) {
			if said {
				fmt.Fprintf(os.Stderr, "  (machine at %.0f%% of a core; going on)\n", p)
			}
			return p
		}
		if !said {
			fmt.Fprintf(os.Stderr, "  waiting for the machine to be quiet (other processes use %.0f%% of a core)…\n", p)
			said = true
		}
	}
}
