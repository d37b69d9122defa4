package harness

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// ---- h) Redis and i) PostgreSQL: jobhost against the peers on their own server ----

// dbSystem is one system of scenario h or i.
type dbSystem struct {
	key, label string
	// spec is the child's spec for queue, its connection (server URL or
	// DSN) set to conn.
	spec func(queue, conn string) proto.Spec
	// setup runs before each run (may be nil); prefill fills queue with
	// ids [0,n); send enqueues one message stamped now; left counts what
	// is still to be processed; cleanup removes what the run made.
	setup   func(ctx context.Context, queue string) error
	prefill func(ctx context.Context, queue string, n int64) error
	send    func(ctx context.Context, queue string, id int64) error
	left    func(ctx context.Context, queue string) (int64, error)
	cleanup func(queue string)
	// parts lists the parts (1 burn-down, 2 open loop, 3 idle) the system
	// runs in; "" means all. refN > 0 runs it in part 1 once, outside the
	// paired rounds, over refN messages (a configuration too slow for n).
	parts string
	refN  int64
	// quickParts, when set, are the parts it runs in with -quick (a
	// reference row is left out to keep bench-quick short).
	quickParts *string
}

func (s dbSystem) in(part string) bool { return s.parts == "" || strings.Contains(s.parts, part) }

// inMode is in for the mode: quickParts instead of parts with -quick.
func (b *bench) inMode(s dbSystem, part string) bool {
	if b.quick && s.quickParts != nil {
		return strings.Contains(*s.quickParts, part)
	}
	return s.in(part)
}

// dbServer is the server of scenario h or i.
type dbServer struct {
	id    string // "h" or "i"
	name  string // "Redis", "PostgreSQL"
	conn  string // server URL or DSN
	addr  string // host:port, for the counting proxy
	meter func() *meter
	// calls counts the server's commands or transactions so far (every
	// client); callsName names them in the JSON.
	calls     func(ctx context.Context) (int64, error)
	callsName string
	parse     func(r *bufio.Reader, count func(string)) error
	// unit names what the proxy counts ("commands", "statements").
	unit string
	// counters reads server-wide counters for the burn-down and open-loop
	// windows (per 1,000 messages in Extra); nil for none.
	counters func(ctx context.Context) (map[string]int64, error)
	// queue makes a fresh queue name.
	queue func() string
}

// dbScenario runs the three parts of h or i: a burn-down of n pre-filled
// messages in paired rounds (ratio jobhost / peer, target 1), an open loop
// (p50/p99 enqueue→start) and the idle cost (CPU and calls of an idle
// worker, then the pickup of one message).
func (b *bench) dbScenario(srv dbServer, systems []dbSystem, jobhostKey, peerKey, peerName string, n int64) []*Scenario {
	t1 := &Scenario{ID: srv.id + "1", Title: fmt.Sprintf("%s burn-down: %d messages pre-filled into a fresh queue per run, concurrency 16", srv.name, n)}
	t2 := &Scenario{ID: srv.id + "2", Title: fmt.Sprintf("%s latency, open loop: %d msg/s for %v, enqueue→start (timestamp in the body)", srv.name, b.n.dbRate, b.n.dbOpenLoop)}
	t3 := &Scenario{ID: srv.id + "3", Title: fmt.Sprintf("%s idle cost: each worker idle for %v (after %v settling), all at once, each through a counting proxy in front of %s; then the pickup of one message", srv.name, b.n.dbIdle, b.dbSettle(), srv.name)}
	var out []*Scenario
	all := !b.someParts(srv.id)
	if all || b.only[t1.ID] {
		out = append(out, b.dbThroughput(t1, srv, systems, jobhostKey, peerKey, peerName, n))
	}
	if all || b.only[t2.ID] {
		for _, sys := range systems {
			if b.inMode(sys, "2") {
				t2.Rows = append(t2.Rows, b.dbOpenLoop(srv, sys))
			}
		}
		out = append(out, t2)
	}
	if all || b.only[t3.ID] {
		var idle []dbSystem
		for _, sys := range systems {
			if b.inMode(sys, "3") {
				idle = append(idle, sys)
			}
		}
		rows, server := b.dbIdle(srv, idle)
		t3.Rows = rows
		what := ", commands inside scripts not seen"
		if srv.unit == "statements" {
			what = "; statements are simple queries and extended-protocol executes, round trips simple queries and syncs"
		}
		t3.Notes = append(t3.Notes,
			"CPU % core is the worker's own CPU over the idle window (childCpuMsPerMin the same in ms per minute).",
			fmt.Sprintf("%sPerSec counts what the worker sent through its own proxy (its connections only)%s.", srv.unit, what),
			"p50 is the pickup of one message sent after the idle window: enqueue→start.",
			server+".")
		out = append(out, t3)
	}
	return out
}

// someParts reports whether only some parts of scenario id (h or i) were
// asked for (-scenarios h1,h3).
func (b *bench) someParts(id string) bool {
	return b.only[id+"1"] || b.only[id+"2"] || b.only[id+"3"]
}

// dbThroughput is part 1 of h or i: the burn-down in paired rounds.
func (b *bench) dbThroughput(t1 *Scenario, srv dbServer, systems []dbSystem, jobhostKey, peerKey, peerName string, n int64) *Scenario {
	var cases []runCase
	var refs []dbSystem
	for _, sys := range systems {
		switch {
		case !b.inMode(sys, "1"):
		case sys.refN > 0:
			refs = append(refs, sys)
		default:
			cases = append(cases, runCase{sys.key, func() *Row { return b.dbBurnDown(srv, sys, n) }})
		}
	}
	var rows map[string]*Row
	t1.Rows, rows = b.rounds(cases)
	for _, sys := range refs {
		r := b.dbBurnDown(srv, sys, sys.refN)
		t1.Rows = append(t1.Rows, r)
		t1.Notes = append(t1.Notes, fmt.Sprintf("%s: one run over %d messages (for reference, outside the rounds).", sys.label, sys.refN))
	}
	ratio(t1, "jobhost / "+peerName+" (msg/s)", rows[jobhostKey], rows[peerKey], 1)
	for _, r := range t1.Rows {
		setTotalCPU(r)
	}
	if jh, peer := rows[jobhostKey], rows[peerKey]; jh != nil && peer != nil && jh.Error == "" && peer.Error == "" {
		a, _ := jh.Extra["clientPlusServerCpuSecPer1k"].(float64)
		c, _ := peer.Extra["clientPlusServerCpuSecPer1k"].(float64)
		if a > 0 && c > 0 {
			t1.Notes = append(t1.Notes, fmt.Sprintf("CPU per message, client + %s (median runs): jobhost %.3f s/1k, %s %.3f s/1k: %.2f× %s's", srv.name, a, peerName, c, a/c, peerName))
		}
	}
	return t1
}

// dbSettle is how long an idle worker runs before its idle window starts
// (connections, start-up queries and registrations out of the window):
// 1 s, half of it in quick mode.
func (b *bench) dbSettle() time.Duration {
	if b.quick {
		return 500 * time.Millisecond
	}
	return time.Second
}

func (b *bench) dbBurnDown(srv dbServer, sys dbSystem, n int64) *Row {
	queue := srv.queue()
	defer sys.cleanup(queue)
	if sys.setup != nil {
		if err := sys.setup(bg, queue); err != nil {
			return errRow(sys.label, sys.key, err)
		}
	}
	t := time.Now()
	if err := sys.prefill(bg, queue, n); err != nil {
		return errRow(sys.label, sys.key, fmt.Errorf("prefill: %w", err))
	}
	prefill := time.Since(t)
	spec := sys.spec(queue, srv.conn)
	spec.CPUProfile = b.profile(srv.id+"1", sys.key)
	m := b.countingMeter(srv)
	r := b.burnDown(sys.label, spec, n, m)
	if r.Extra == nil {
		r.Extra = map[string]any{}
	}
	perK(r, m)
	r.Extra["prefillSeconds"] = round1(prefill.Seconds())
	if sys.left != nil {
		if left, err := sys.left(bg, queue); err == nil {
			r.Extra["leftInQueue"] = left
		}
	}
	return r
}

func (b *bench) dbOpenLoop(srv dbServer, sys dbSystem) *Row {
	queue := srv.queue()
	defer sys.cleanup(queue)
	if sys.setup != nil {
		if err := sys.setup(bg, queue); err != nil {
			return errRow(sys.label, sys.key, err)
		}
	}
	spec := sys.spec(queue, srv.conn)
	send := func(ctx context.Context, id int64) error { return sys.send(ctx, queue, id) }
	m := b.countingMeter(srv)
	r := b.openLoopAt(sys.label, spec, send, m, b.n.dbRate, b.n.dbOpenLoop)
	perK(r, m)
	return r
}

// countingMeter is the server's CPU meter with its counters.
func (b *bench) countingMeter(srv dbServer) *meter {
	m := srv.meter()
	if m != nil && srv.counters != nil {
		m.counts = func() map[string]int64 {
			c, err := srv.counters(bg)
			if err != nil {
				return nil
			}
			return c
		}
	}
	return m
}

// perK puts the server counters' deltas, from the window's start to
// after the child ended, per 1,000 messages processed, in r.Extra (as
// "<counter>Per1k").
func perK(r *Row, m *meter) {
	if m == nil || m.counts == nil || m.k0 == nil || r.Messages == 0 || r.Error != "" {
		return
	}
	time.Sleep(300 * time.Millisecond) // the child's backends have exited and reported
	if m.k1 = m.counts(); m.k1 == nil {
		return
	}
	if r.Extra == nil {
		r.Extra = map[string]any{}
	}
	for k, v1 := range m.k1 {
		if v0, ok := m.k0[k]; ok {
			r.Extra[k+"Per1k"] = round1(float64(v1-v0) / float64(r.Messages) * 1000)
		}
	}
}

// idler is one worker of part 3.
type idler struct {
	sys      dbSystem
	queue    string
	px       *wireProxy
	spec     proto.Spec
	c        *child
	row      *Row // set when it failed
	cpu0     float64
	px0, px1 map[string]int64
	cpu1     float64
	sendErr  error
}

// dbIdle runs every worker of part 3 at once (idle workers do not disturb
// each other), each through a counting proxy of its own: after the
// settling time, the idle window, then one message to each.
func (b *bench) dbIdle(srv dbServer, systems []dbSystem) ([]*Row, string) {
	var ids []*idler
	defer func() {
		for _, id := range ids {
			if id.c != nil {
				id.c.kill()
			}
			if id.px != nil {
				id.px.close()
			}
			id.sys.cleanup(id.queue)
		}
	}()
	for _, sys := range systems {
		id := &idler{sys: sys, queue: srv.queue()}
		ids = append(ids, id)
		if sys.setup != nil {
			if err := sys.setup(bg, id.queue); err != nil {
				id.row = errRow(sys.label, sys.key, err)
				continue
			}
		}
		var err error
		if id.px, err = startWireProxy(srv.addr, srv.parse); err != nil {
			id.row = errRow(sys.label, sys.key, err)
			continue
		}
		conn, err := withHostPort(srv.conn, id.px.Port)
		if err != nil {
			id.row = errRow(sys.label, sys.key, err)
			continue
		}
		id.spec = sys.spec(id.queue, conn)
		id.spec.Target, id.spec.Latency, id.spec.MaxID, id.spec.ProgressEvery = 0, true, 1, 250*time.Millisecond
		if id.c, err = startChild(id.spec); err == nil {
			err = id.c.waitReady(3 * time.Minute)
		}
		if err != nil {
			id.row = errRow(sys.label, sys.key, err)
		}
	}
	live := func(f func(id *idler)) {
		for _, id := range ids {
			if id.row == nil {
				f(id)
			}
		}
	}
	b.quiet()
	live(func(id *idler) { id.c.start() })
	time.Sleep(b.dbSettle())
	m := srv.meter()
	t0 := time.Now()
	live(func(id *idler) { id.cpu0, id.px0 = procCPU(id.c.cmd.Process.Pid), id.px.snapshot() })
	calls0, callsErr := srv.calls(bg)
	m.begin()
	time.Sleep(b.n.dbIdle)
	m.end()
	live(func(id *idler) { id.cpu1, id.px1 = procCPU(id.c.cmd.Process.Pid), id.px.snapshot() })
	calls1, err := srv.calls(bg)
	if callsErr == nil {
		callsErr = err
	}
	window := time.Since(t0).Seconds()

	var wg sync.WaitGroup
	live(func(id *idler) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			id.sendErr = id.sys.send(ctx, id.queue, 0)
		})
	})
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	var rows []*Row
	for _, id := range ids {
		if id.row != nil {
			rows = append(rows, id.row)
			continue
		}
		for id.sendErr == nil && id.c.progress.Load() < 1 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		res, ru, err := id.c.finish(time.Minute)
		r := rowFrom(id.sys.label, id.spec, 1, res, ru)
		if err == nil {
			err = id.sendErr
		}
		if err != nil {
			r.Error = err.Error()
		}
		r.MsgPerS, r.CPUPer1k = 0, -1
		r.P99Ms, r.MaxMs = nil, nil
		if id.cpu0 >= 0 && id.cpu1 >= 0 {
			r.CPUPct = (id.cpu1 - id.cpu0) / window * 100
		}
		d := countDelta(id.px0, id.px1)
		r.Extra = map[string]any{
			"idleSeconds":       round1(window),
			srv.unit + "PerSec": round2(float64(proxyTotal(srv, d)) / window),
			srv.unit + "ByKind": topCounts(d, 8),
			"childCpuMsPerMin":  round1((id.cpu1 - id.cpu0) * 1000 / window * 60),
		}
		if srv.unit == "statements" {
			r.Extra["roundTripsPerSec"] = round2(float64(d[pgQuery]+d[pgSync]) / window)
		}
		if len(res.Latencies) == 1 && res.Latencies[0] >= 0 {
			r.Extra["pickupMs"] = round1(float64(res.Latencies[0]) / 1e6)
		}
		r.Limit = "idle"
		rows = append(rows, r)
	}
	// The server's own figures cover every worker at once (and anyone
	// else using the server).
	server := fmt.Sprintf("over the idle window, with the %d workers idle at once: ", len(ids))
	if m != nil && m.c0 >= 0 && m.c1 >= 0 {
		server += fmt.Sprintf("%s CPU %.1f%% of a core, ", srv.name, (m.c1-m.c0)/m.t1.Sub(m.t0).Seconds()*100)
	}
	if callsErr != nil {
		server += srv.callsName + " unavailable: " + callsErr.Error()
	} else {
		server += fmt.Sprintf("%s %.2f/s (the server's own counter: every client, the bench's and anyone else's on the machine)", srv.callsName, float64(calls1-calls0)/window)
	}
	return rows, server
}

// proxyTotal is what the proxy counted as the unit of the server:
// commands for Redis, statements (simple queries and executes) for
// PostgreSQL.
func proxyTotal(srv dbServer, d map[string]int64) int64 {
	if srv.unit == "statements" {
		return d[pgQuery] + d[pgExecute]
	}
	return sumCounts(d)
}

// topCounts formats the largest counts, "NAME n, …".
func topCounts(d map[string]int64, k int) string {
	type kv struct {
		k string
		v int64
	}
	var s []kv
	for name, v := range d {
		s = append(s, kv{name, v})
	}
	slices.SortFunc(s, func(a, b kv) int {
		if c := cmp.Compare(b.v, a.v); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i, e := range s {
		if i == k {
			parts = append(parts, fmt.Sprintf("… %d kinds", len(s)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// setTotalCPU puts client + server CPU per 1,000 messages in Extra.
func setTotalCPU(r *Row) {
	if r == nil || r.Error != "" || r.BrokerCPUPer1k == nil {
		return
	}
	if r.Extra == nil {
		r.Extra = map[string]any{}
	}
	r.Extra["clientPlusServerCpuSecPer1k"] = round3(r.CPUPer1k + *r.BrokerCPUPer1k)
}
