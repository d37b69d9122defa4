package harness

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// ---- g) background operations against plain sends ----

// scenarioOps is g: N operations submitted over the host's HTTP API and
// run to Succeeded, against the same N messages sent with client.Send, on
// one broker and store pair each (g1: memqueue:// and memstore, in
// process; g2: Azurite's queue service and the table store on Azurite's
// table service). The child generates the load itself after GO, 16
// requests at a time, into a host that is already running with its API
// and (counted) store; both cases run the same host, function and store.
func (b *bench) scenarioOps() []*Scenario {
	g1 := &Scenario{ID: "g1", Title: fmt.Sprintf("Operations vs plain sends, in process: %d operations POSTed to the host's API → Succeeded, against %d messages sent with client.Send; memqueue:// + memstore, 16 requests and 16 messages in flight", b.n.opsMem, b.n.opsMem)}
	g2 := &Scenario{ID: "g2", Title: fmt.Sprintf("Operations vs plain sends on Azurite: %d operations POSTed to the host's API → Succeeded, against %d messages sent with client.Send; Storage Queue + table store (Azurite queue and table services, fresh per run), 16 requests and 16 messages in flight", b.n.opsAzure, b.n.opsAzure)}

	all := !b.only["g1"] && !b.only["g2"]
	var out []*Scenario
	if all || b.only["g1"] {
		out = append(out, b.opsMemory(g1))
	}
	if all || b.only["g2"] {
		out = append(out, b.opsAzurite(g2))
	}
	return out
}

// opsMemory runs g1.
func (b *bench) opsMemory(g1 *Scenario) *Scenario {
	mqLabel := fmt.Sprintf("batchSize %d, newBatchThreshold %d", b.bt["memqueue"][0], b.bt["memqueue"][1])
	var mem []runCase
	for _, c := range []struct{ load, label string }{
		{proto.LoadSubmit, "ops-submit: POST /api/operations/Bench → record Succeeded (memqueue://, memstore, " + mqLabel + ")"},
		{proto.LoadSend, "plain-send: client.Send → function (memqueue://, " + mqLabel + ")"},
	} {
		mem = append(mem, runCase{c.load, func() *Row {
			spec := b.jobhostSpec(proto.JobhostMemQueue, "memqueue")
			spec.Load, spec.CPUProfile = c.load, b.profile("g1", c.load)
			return b.loadRun(c.label, spec, b.n.opsMem, nil, nil)
		}})
	}
	// In-memory runs are short and vary more: at least five in the full
	// bench, as in b.
	reps := b.reps
	if !b.quick {
		reps = max(reps, 5)
	}
	var rows map[string]*Row
	g1.Rows, rows = b.roundsN(mem, reps)
	opsNotes(g1, rows, b.n.opsMem)
	g1.Notes = append(g1.Notes,
		"Both rows run the same host (HTTP listener, counted memstore, function); they differ only in how messages arrive. The load generator runs in the child (16 goroutines), so CPU includes the HTTP client and server for ops-submit and client.Send for plain-send.")

	return g1
}

// opsAzurite runs g2.
func (b *bench) opsAzurite(g2 *Scenario) *Scenario {
	var az []runCase
	for _, c := range []struct{ load, label string }{
		{proto.LoadSubmit, "ops-submit: POST /api/operations/Bench → record Succeeded (Storage Queue, table store, batchSize 16, newBatchThreshold 0)"},
		{proto.LoadSend, "plain-send: client.Send → function (Storage Queue, batchSize 16, newBatchThreshold 0)"},
	} {
		az = append(az, runCase{c.load, func() *Row { return b.opsAzure(c.label, c.load) }})
	}
	var rows map[string]*Row
	g2.Rows, rows = b.rounds(az)
	opsNotes(g2, rows, b.n.opsAzure)
	g2.Notes = append(g2.Notes,
		"maxPollingInterval 100 ms for both rows (the minimum): the host is already running when the load starts, and a plain client.Send from another client does not wake it (the host's own API does), so with the default 1 min the first plain sends would wait out the idle backoff.",
		"broker CPU is both Azurite processes (queue + table), each single-threaded; azuriteQueuePct and azuriteTablePct split it.")
	return g2
}

// opsAzure runs one g2 case on a fresh Azurite queue and table service.
func (b *bench) opsAzure(label, load string) *Row {
	system := proto.JobhostAzure
	aq, err := startAzurite(b.root)
	if err != nil {
		return errRow(label, system, err)
	}
	defer aq.stop()
	at, err := startAzuriteTable(b.root)
	if err != nil {
		return errRow(label, system, err)
	}
	defer at.stop()
	queue := "bench-g"
	if _, err := azCreate(bg, aq.Conn, queue); err != nil {
		return errRow(label, system, err)
	}
	spec := b.jobhostSpec(system, "azure")
	spec.Load, spec.MaxPolling = load, 100*time.Millisecond
	spec.AzureConn, spec.Queue, spec.TableConn, spec.CPUProfile = aq.Conn, queue, at.Conn, b.profile("g2", load)
	m := newMeter("Azurite", false, func() float64 { return aq.cpu() + at.cpu() })
	parts := []*meter{newMeter("Azurite queue", true, aq.cpu), newMeter("Azurite table", true, at.cpu)}
	r := b.loadRun(label, spec, b.n.opsAzure, m, parts)
	if r.Error == "" {
		r.Extra["azuritePeakRssMB"] = []int{int(aq.rssMB()), int(at.rssMB())}
	}
	return r
}

// loadRun runs one child that generates its own n requests after GO (a
// Load spec) and measures from the first request to the last message
// processed (plain-send) or the last record made Succeeded (ops-submit).
// parts are single-process meters whose shares go into Extra (and name
// the limit when one of them is saturated).
func (b *bench) loadRun(label string, spec proto.Spec, n int64, m *meter, parts []*meter) *Row {
	spec.Target, spec.MaxID, spec.Latency, spec.ProgressEvery = n, n, true, 200*time.Millisecond
	c, err := startChild(spec)
	if err != nil {
		return errRow(label, spec.System, err)
	}
	defer c.kill()
	if err := c.waitReady(3 * time.Minute); err != nil {
		return errRow(label, spec.System, err)
	}
	b.quiet()
	var mm machineMeter
	mm.begin()
	m.begin()
	for _, p := range parts {
		p.begin()
	}
	c.start()
	doneErr := c.waitDone(5 * time.Minute)
	for _, p := range parts {
		p.end()
	}
	m.end()
	mm.end()
	res, ru, err := c.finish(time.Minute)
	r := rowFrom(label, spec, n, res, ru)
	m.apply(r, res.Processed)
	mm.other(r)
	if err == nil {
		err = doneErr
	}
	if err != nil {
		r.Error = err.Error()
	}
	r.Config["load"] = spec.Load
	r.Config["store"] = "memstore"
	if spec.TableConn != "" {
		r.Config["store"] = "tablestore (Azurite table service)"
	}
	r.Config["http.listen"] = "127.0.0.1:0"
	r.Extra = map[string]any{}
	if o := res.Ops; o != nil {
		writes := o.Creates + o.Updates
		reads := o.Gets + o.Lists + o.UpdateReads
		r.Extra["storeWritesPerOp"] = round3(float64(writes) / float64(n))
		r.Extra["storeReadsPerOp"] = round3(float64(reads) / float64(n))
		r.Extra["storeWrites"] = fmt.Sprintf("create %d + update %d (succeeded %d)", o.Creates, o.Updates, o.Succeeded)
		r.Extra["storeReads"] = fmt.Sprintf("get %d + list %d + read by update %d (updates %d)", o.Gets, o.Lists, o.UpdateReads, o.UpdateCalls)
		if o.SendErrors > 0 {
			r.Extra["sendErrors"], r.Extra["firstSendError"] = o.SendErrors, o.FirstSendError
		}
		if p50, p99, ok := percentiles(o.CreatedToSucceeded); ok {
			r.Extra["createdToSucceededMs"] = fmt.Sprintf("p50 %s, p99 %s", f1(p50), f1(p99))
		}
	}
	var hot *meter
	var hotPct float64
	for _, p := range parts {
		if p.c0 < 0 || p.c1 < 0 || p.t1.IsZero() {
			continue
		}
		pct := (p.c1 - p.c0) / p.t1.Sub(p.t0).Seconds() * 100
		switch p.name {
		case "Azurite queue":
			r.Extra["azuriteQueuePct"] = math.Round(pct)
		case "Azurite table":
			r.Extra["azuriteTablePct"] = math.Round(pct)
		}
		if pct > hotPct {
			hot, hotPct = p, pct
		}
	}
	r.Limit = limit(r, m)
	if hot != nil && hotPct >= 85 && r.Error == "" {
		r.Limit = fmt.Sprintf("%s CPU (single-threaded: %.0f%% of a core)", hot.name, hotPct)
	}
	return r
}

// opsNotes adds the ratio of a g scenario and its store figures.
func opsNotes(s *Scenario, rows map[string]*Row, n int64) {
	sub, plain := rows[proto.LoadSubmit], rows[proto.LoadSend]
	ratio(s, "ops-submit / plain-send (msg/s)", sub, plain, 0)
	if sub != nil && sub.Error == "" {
		if w, ok := sub.Extra["storeWritesPerOp"].(float64); ok {
			met := "MET"
			if w > 3.0 {
				met = "NOT MET"
			}
			s.Notes = append(s.Notes, fmt.Sprintf("store writes per operation (ops-submit, median run): %.3f (target ≤ 3.0: Create at submit, Started, Succeeded) %s; store reads per operation: %v", w, met, sub.Extra["storeReadsPerOp"]))
		}
	}
	if plain != nil && plain.Error == "" {
		s.Notes = append(s.Notes, fmt.Sprintf("plain-send store calls: writes/op %v, reads/op %v (a message without an operation costs the store nothing)", plain.Extra["storeWritesPerOp"], plain.Extra["storeReadsPerOp"]))
	}
	s.Notes = append(s.Notes,
		fmt.Sprintf("msg/s: %d distinct ids processed over first request → last record Succeeded (ops-submit) or → last message processed (plain-send); p50/p99: request stamp (in the body, just before the POST or Send) → invocation; createdToSucceededMs: record CreatedOn → EndTime.", n),
		"store reads count Get and List calls and every record an Update read to apply its change (one per Update without conflicts).")
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// percentiles returns p50 and p99 (ms) of ns values.
func percentiles(ns []int64) (p50, p99 float64, ok bool) {
	if len(ns) == 0 {
		return 0, 0, false
	}
	s := slices.Sorted(slices.Values(ns))
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return float64(s[max(0, min(i, len(s)-1))]) / 1e6
	}
	return at(0.5), at(0.99), true
}
