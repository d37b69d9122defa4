package harness

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// ---- f) scale-out ----
//
// f1 (RabbitMQ), f2 (Azurite) and f3 (NATS JetStream, scaleout_nats.go):
// 1, 2, 4 and 8 jobhost processes share one pre-filled queue (a fresh one
// per run). Each host count is a case of paired rounds (b.reps of them, the
// order rotated each round): the median run is reported, and each count's
// msg/s against one process is the median of the per-round ratios. On this
// 2-core machine the rows beyond two processes measure the broker and the
// CPU, not a cluster: every host, the broker and the bench share two cores.

// scaleOutNote is said under every scale-out table.
const scaleOutNote = "Two cores: past 2 processes every host, the broker and the bench share them, so the larger rows measure the broker and the machine, not what N machines would do. perHostMsgPerSec = msg/s ÷ N; perProcess = messages each process completed; sharePct = each as % of the run."

// scaleOutRounds runs one scale-out case per host count in paired rounds
// and fills s with the median rows and the ratios to one process.
func (b *bench) scaleOutRounds(s *Scenario, hosts []int, run func(k int) *Row) {
	var cases []runCase
	for _, k := range hosts {
		cases = append(cases, runCase{strconv.Itoa(k), func() *Row {
			r := run(k)
			r.Label = fmt.Sprintf("jobhost × %d processes", k)
			return r
		}})
	}
	var byKey map[string]*Row
	s.Rows, byKey = b.rounds(cases)
	for _, k := range hosts {
		if k == 1 {
			continue
		}
		ratio(s, fmt.Sprintf("× %d processes / × 1 (msg/s)", k), byKey[strconv.Itoa(k)], byKey["1"], 0)
	}
	s.Notes = append(s.Notes,
		"lost = ids never processed; dup = processings beyond one per id, summed over all processes (delivery is at least once). CPU is summed over the processes; peak RSS is the largest one.",
		scaleOutNote)
}

func (b *bench) scenarioScaleOut() []*Scenario {
	sr := &Scenario{ID: "f1", Title: fmt.Sprintf("Scale-out on RabbitMQ: %d messages, one queue, N jobhost processes (16 in flight each)", b.n.scaleRabbit)}
	sa := &Scenario{ID: "f2", Title: fmt.Sprintf("Scale-out on Azurite: %d messages, one queue, N jobhost processes (16 in flight each)", b.n.scaleAzure)}
	rb, err := dialRabbit(b.rabbitURL)
	if err != nil {
		sr.Error = "RabbitMQ: " + err.Error()
	} else {
		defer rb.close()
		b.scaleOutRounds(sr, b.n.hosts, func(k int) *Row {
			queue := "bench-f-" + randSuffix()
			defer rb.deleteQueues(queue)
			if err := rb.declare(queue); err != nil {
				return errRow("", proto.JobhostRabbit, err)
			}
			if err := rb.prefill(bg, queue, b.n.scaleRabbit); err != nil {
				return errRow("", proto.JobhostRabbit, err)
			}
			spec := b.jobhostSpec(proto.JobhostRabbit, "rabbit")
			spec.RabbitURL, spec.Queue = b.rabbitURL, queue
			return b.scaleOut("", spec, k, b.n.scaleRabbit, pidMeter("RabbitMQ", "beam.smp"), "f1")
		})
	}
	b.scaleOutRounds(sa, b.n.hosts, func(k int) *Row {
		az, err := startAzurite(b.root)
		if err != nil {
			return errRow("", proto.JobhostAzure, err)
		}
		defer az.stop()
		q, err := azCreate(bg, az.Conn, "bench-f")
		if err != nil {
			return errRow("", proto.JobhostAzure, err)
		}
		if err := azPrefill(bg, q, b.n.scaleAzure); err != nil {
			return errRow("", proto.JobhostAzure, err)
		}
		spec := b.jobhostSpec(proto.JobhostAzure, "azure")
		spec.AzureConn, spec.Queue = az.Conn, "bench-f"
		r := b.scaleOut("", spec, k, b.n.scaleAzure, newMeter("Azurite", true, az.cpu), "f2")
		// A Storage Queue message costs the host a dequeue (batches of
		// batchSize) and a delete: for the projection to Azure's targets.
		if r.Error == "" && r.MsgPerS > 0 {
			bs := float64(b.bt["azure"][0])
			r.Extra["requestsPerSec"] = math.Round(r.MsgPerS * (1 + 1/bs))
		}
		return r
	})
	sa.Notes = append(sa.Notes, "requestsPerSec = msg/s × (1 delete + 1/batchSize dequeue): what the run asked of the queue (renewals: none at this speed, a message is held far less than half its lease).")
	return []*Scenario{sr, sa}
}

// scaleOut runs k jobhost processes on one pre-filled queue of n messages.
func (b *bench) scaleOut(label string, spec proto.Spec, k int, n int64, m *meter, scen string) *Row {
	spec.Target, spec.IDs, spec.MaxID, spec.ProgressEvery = 0, true, n, 50*time.Millisecond
	var cs []*child
	defer func() {
		for _, c := range cs {
			c.kill()
		}
	}()
	for i := range k {
		s := spec
		if b.profileDir != "" {
			s.CPUProfile = b.profile(scen, fmt.Sprintf("%s-%dof%d", spec.System, i+1, k))
		}
		c, err := startChild(s)
		if err != nil {
			return errRow(label, spec.System, err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		if err := c.waitReady(3 * time.Minute); err != nil {
			return errRow(label, spec.System, err)
		}
	}
	b.quiet()
	var mm machineMeter
	mm.begin()
	m.begin()
	for _, c := range cs {
		c.start()
	}
	sum := func() int64 {
		var t int64
		for _, c := range cs {
			t += c.progress.Load()
		}
		return t
	}
	var waitErr error
	for deadline := time.Now().Add(10 * time.Minute); sum() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			waitErr = fmt.Errorf("only %d of %d processed within 10 min", sum(), n)
			break
		}
	}
	m.end()
	mm.end()
	time.Sleep(500 * time.Millisecond) // let a duplicate in flight land
	for _, c := range cs {
		c.stop()
	}
	r := &Row{System: spec.System, Label: label, Config: specConfig(spec)}
	seen := make([]uint64, (n+63)/64)
	var processed, goAt, lastAt, endAt int64
	var cpu float64
	var share []int64
	for _, c := range cs {
		res, ru, err := c.finish(time.Minute)
		if err != nil && waitErr == nil {
			waitErr = err
		}
		processed += res.Processed
		share = append(share, res.Processed)
		cpu += res.UserSec + res.SysSec
		if goAt == 0 || (res.GoAt > 0 && res.GoAt < goAt) {
			goAt = res.GoAt
		}
		lastAt, endAt = max(lastAt, res.LastAt), max(endAt, res.EndAt)
		for i, w := range res.Bitmap {
			if i < len(seen) {
				seen[i] |= w
			}
		}
		if ru != nil {
			r.CPUTotalSec += tvSec(ru.Utime) + tvSec(ru.Stime)
		}
		r.PeakRSSMB = max(r.PeakRSSMB, peakRSS(res, ru))
		r.Warnings = append(r.Warnings, res.Warnings...)
	}
	var unique int64
	for _, w := range seen {
		for ; w != 0; w &= w - 1 {
			unique++
		}
	}
	r.Messages, r.Dups, r.Lost = processed, processed-unique, n-unique
	if lastAt > goAt {
		r.Seconds = float64(lastAt-goAt) / 1e9
		r.MsgPerS = float64(unique) / r.Seconds
	}
	if processed > 0 {
		r.CPUPer1k = cpu / float64(processed) * 1000
	}
	if endAt > goAt {
		r.CPUPct = cpu / (float64(endAt-goAt) / 1e9) * 100
	}
	m.apply(r, processed)
	mm.other(r)
	pct := make([]float64, len(share))
	for i, v := range share {
		if processed > 0 {
			pct[i] = round1(float64(v) / float64(processed) * 100)
		}
	}
	r.Extra = map[string]any{"perProcess": share, "sharePct": pct, "perHostMsgPerSec": round1(r.MsgPerS / float64(k))}
	if waitErr != nil {
		r.Error = waitErr.Error()
	}
	r.Limit = limit(r, m)
	return r
}
