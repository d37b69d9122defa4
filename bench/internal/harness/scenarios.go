package harness

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

const conc = 16 // the same concurrency everywhere

// jobhostSpec is jobhost's spec for a broker ("azure", "mem", "rabbit",
// "nats"): batchSize and newBatchThreshold chosen so that at most 16
// messages are in flight.
func (b *bench) jobhostSpec(system, broker string) proto.Spec {
	bt := b.bt[broker]
	return proto.Spec{System: system, Concurrency: conc, BatchSize: bt[0], Threshold: bt[1]}
}

// burnDown runs one child over a pre-filled queue until it has processed n.
func (b *bench) burnDown(label string, spec proto.Spec, n int64, m *meter) *Row {
	spec.Target, spec.MaxID = n, n
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
	c.start()
	doneErr := c.waitDone(10 * time.Minute)
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
	r.Limit = limit(r, m)
	return r
}

// quiet waits for the machine to be quiet before a measured window.
func (b *bench) quiet() {
	if b.quick {
		waitQuiet(2 * time.Second)
	} else {
		waitQuiet(20 * time.Second)
	}
}

// runCase is one system of a throughput scenario.
type runCase struct {
	key string // identifies the system in ratios
	run func() *Row
}

// rounds runs every case b.reps times, rotating the order each round so
// that no system always goes first, and keeps each case's median run (by
// msg/s); every run's msg/s is kept in Extra["runsMsgPerSec"].
func (b *bench) rounds(cases []runCase) (rows []*Row, byKey map[string]*Row) {
	return b.roundsN(cases, b.reps)
}

// roundsN is rounds with reps runs per case.
func (b *bench) roundsN(cases []runCase, reps int) (rows []*Row, byKey map[string]*Row) {
	runs := make([][]*Row, len(cases))
	for r := range reps {
		for j := range cases {
			i := (j + r) % len(cases)
			runs[i] = append(runs[i], cases[i].run())
		}
	}
	byKey = map[string]*Row{}
	for i, rs := range runs {
		var ok []*Row
		var rates []float64
		for _, r := range rs {
			if r.Error == "" {
				ok = append(ok, r)
				rates = append(rates, round1(r.MsgPerS))
			}
		}
		var pick *Row
		if len(ok) == 0 {
			pick = rs[0]
		} else {
			slices.SortFunc(ok, func(a, b *Row) int { return cmp.Compare(a.MsgPerS, b.MsgPerS) })
			pick = ok[(len(ok)-1)/2]
			if len(rs) > 1 {
				if pick.Extra == nil {
					pick.Extra = map[string]any{}
				}
				pick.Extra["runsMsgPerSec"] = rates
				if len(ok) < len(rs) {
					pick.Extra["failedRuns"] = len(rs) - len(ok)
				}
			}
		}
		rows = append(rows, pick)
		if _, dup := byKey[cases[i].key]; !dup {
			byKey[cases[i].key] = pick
		}
	}
	return rows, byKey
}

// ---- a) Azurite burn-down ----

func (b *bench) scenarioAzurite() []*Scenario {
	n := b.n.azure
	s := &Scenario{ID: "a", Title: fmt.Sprintf("Azurite burn-down: %d pre-enqueued base64 JSON messages, concurrency 16, fresh in-memory Azurite per system", n)}
	var cases []runCase
	for _, sys := range []struct {
		system, label string
		batch         int
	}{
		{proto.JobhostAzure, "jobhost (azurequeue driver, batchSize 16, newBatchThreshold 0)", 0},
		{proto.JobhostAzure, "jobhost batch function, maxBatchSize 32 (same driver and settings)", 32},
		{proto.PlainAzqueue, "plain azqueue loop, batch 16 (ceiling)", 0},
	} {
		key := sys.system
		if sys.batch > 0 {
			key += "-batch"
		}
		cases = append(cases, runCase{key, func() *Row { return b.azureBurnDown(sys.label, sys.system, n, sys.batch) }})
	}
	var rows map[string]*Row
	s.Rows, rows = b.rounds(cases)
	ratio(s, "jobhost / plain azqueue loop (msg/s)", rows[proto.JobhostAzure], rows[proto.PlainAzqueue], 0.95)
	ratio(s, "jobhost batch of 32 / jobhost single dispatch (msg/s)", rows[proto.JobhostAzure+"-batch"], rows[proto.JobhostAzure], 0)
	s.Notes = append(s.Notes, "Azurite slows as a queue deepens (its dequeue scans the queue): the burn-down rate is a property of Azurite, compare only within one run.")
	return []*Scenario{s}
}

func (b *bench) azureBurnDown(label, system string, n int64, batch int) *Row {
	az, err := startAzurite(b.root)
	if err != nil {
		return errRow(label, system, err)
	}
	defer az.stop()
	queue := "bench-a"
	q, err := azCreate(bg, az.Conn, queue)
	if err != nil {
		return errRow(label, system, err)
	}
	if err := azPrefill(bg, q, n); err != nil {
		return errRow(label, system, fmt.Errorf("prefill: %w", err))
	}
	spec := b.jobhostSpec(system, "azure")
	spec.Batch = batch
	if system == proto.PlainAzqueue {
		spec = proto.Spec{System: system, Concurrency: conc, BatchSize: 16, EmptySleep: 100 * time.Millisecond}
	}
	spec.AzureConn, spec.Queue, spec.CPUProfile = az.Conn, queue, b.profile("a", system)
	r := b.burnDown(label, spec, n, newMeter("Azurite", true, az.cpu))
	if props, err := q.GetProperties(bg, nil); err == nil && props.ApproximateMessagesCount != nil {
		r.Extra = map[string]any{"leftInQueue": *props.ApproximateMessagesCount, "azuritePeakRssMB": int(az.rssMB())}
	}
	return r
}

// ---- b) in memory ----

func (b *bench) scenarioMemory() []*Scenario {
	n := b.n.mem
	s := &Scenario{ID: "b", Title: fmt.Sprintf("In memory: %d messages pre-filled in the child, concurrency 16", n)}
	var runs []runCase
	cases := []struct {
		system, label, logLevel string
	}{
		{proto.JobhostMemQueue, fmt.Sprintf("jobhost (memqueue://, its in-process queue, batchSize %d, newBatchThreshold %d)", b.bt["memqueue"][0], b.bt["memqueue"][1]), ""},
		{proto.JobhostMemQueue, "jobhost memqueue://, Function logs at Warning (no completion line; for reference)", "Warning"},
		{proto.JobhostMem, "jobhost (mem://, over gocloud mempubsub, batchSize 16, newBatchThreshold 15)", ""},
		{proto.WatermillGoChan, "Watermill router over GoChannel (16 handlers × 16 topics)", ""},
		{proto.GocloudMem, "plain gocloud mempubsub Receive loop (16 goroutines)", ""},
		{proto.BareDecode, "bare decode loop, no messaging (floor)", ""},
	}
	for _, c := range cases {
		spec := proto.Spec{System: c.system, Concurrency: conc}
		switch c.system {
		case proto.JobhostMem:
			spec = b.jobhostSpec(c.system, "mem")
		case proto.JobhostMemQueue:
			spec = b.jobhostSpec(c.system, "memqueue")
		}
		spec.LogLevel = c.logLevel
		spec.Prefill = n
		key := c.system
		if c.logLevel != "" {
			key += "-" + c.logLevel
		}
		spec.CPUProfile = b.profile("b", key)
		runs = append(runs, runCase{key, func() *Row { return b.burnDown(c.label, spec, n, nil) }})
	}
	// In-memory runs last about a second each and vary more than the
	// others: the full bench takes the median of at least five.
	reps := b.reps
	if !b.quick {
		reps = max(reps, 5)
	}
	var rows map[string]*Row
	s.Rows, rows = b.roundsN(runs, reps)
	ratio(s, "jobhost memqueue:// / Watermill GoChannel (msg/s)", rows[proto.JobhostMemQueue], rows[proto.WatermillGoChan], 2)
	ratio(s, "jobhost memqueue:// / bare decode loop (msg/s)", rows[proto.JobhostMemQueue], rows[proto.BareDecode], 0.6)
	ratio(s, "jobhost mem:// (gocloud) / Watermill GoChannel (msg/s)", rows[proto.JobhostMem], rows[proto.WatermillGoChan], 0)
	s.Notes = append(s.Notes, "CPU total (pre-fill included) is in the JSON; CPU s/1k covers only the measured window.")
	return []*Scenario{s}
}

// ---- c) RabbitMQ ----

func (b *bench) scenarioRabbit() []*Scenario {
	n := b.n.rabbit
	s := &Scenario{ID: "c", Title: fmt.Sprintf("RabbitMQ: %d persistent messages pre-filled into a fresh durable classic queue per system, concurrency 16", n)}
	r, err := dialRabbit(b.rabbitURL)
	if err != nil {
		s.Error = "RabbitMQ: " + err.Error()
		return []*Scenario{s}
	}
	defer r.close()
	var runs []runCase
	for _, c := range []struct{ system, label, query string }{
		{proto.JobhostRabbit, fmt.Sprintf("jobhost (rabbit://, batchSize %d, newBatchThreshold %d, coalesced acks)", b.bt["rabbit"][0], b.bt["rabbit"][1]), ""},
		{proto.JobhostRabbit, "jobhost rabbit://?ack_delay=0, an ack per Complete (as before; for reference)", "ack_delay=0"},
		{proto.JobhostRabbit, "jobhost batch function, maxBatchSize 32 (same driver and settings)", "batch"},
		{proto.WatermillAMQP, "Watermill router, watermill-amqp durable queue config (16 handlers, prefetch 1 each)", ""},
		{proto.GocloudRabbit, "plain gocloud rabbitpubsub loop (16 goroutines, default prefetch: unbounded)", ""},
	} {
		key := c.system
		if c.query != "" {
			key += "-" + c.query
		}
		runs = append(runs, runCase{key, func() *Row {
			queue := "bench-c-" + sanitize(c.system) + "-" + randSuffix()
			defer r.deleteQueues(queue)
			if err := r.declare(queue); err != nil {
				return errRow(c.label, c.system, err)
			}
			if err := r.prefill(bg, queue, n); err != nil {
				return errRow(c.label, c.system, fmt.Errorf("prefill: %w", err))
			}
			spec := proto.Spec{System: c.system, Concurrency: conc}
			if c.system == proto.JobhostRabbit {
				spec = b.jobhostSpec(c.system, "rabbit")
				if spec.TriggerQuery = c.query; c.query == "batch" {
					spec.TriggerQuery, spec.Batch = "", 32
				}
			}
			spec.RabbitURL, spec.Queue, spec.CPUProfile = b.rabbitURL, queue, b.profile("c", key)
			row := b.burnDown(c.label, spec, n, pidMeter("RabbitMQ", "beam.smp"))
			if d, err := r.depth(queue); err == nil {
				row.Extra = map[string]any{"leftInQueue": d}
			}
			return row
		}})
	}
	var rows map[string]*Row
	s.Rows, rows = b.rounds(runs)
	ratio(s, "jobhost / Watermill (msg/s)", rows[proto.JobhostRabbit], rows[proto.WatermillAMQP], 1.25)
	ratio(s, "jobhost, an ack per Complete / Watermill (msg/s)", rows[proto.JobhostRabbit+"-ack_delay=0"], rows[proto.WatermillAMQP], 0)
	ratio(s, "jobhost batch of 32 / jobhost single dispatch (msg/s)", rows[proto.JobhostRabbit+"-batch"], rows[proto.JobhostRabbit], 0)
	return []*Scenario{s}
}

// ---- d) NATS JetStream ----

func (b *bench) scenarioNATS() []*Scenario {
	n := b.n.nats
	s := &Scenario{ID: "d", Title: fmt.Sprintf("NATS JetStream: %d messages pre-filled into a fresh file-backed work-queue stream per system, concurrency 16", n)}
	nj, err := dialNATS(b.natsURL)
	if err != nil {
		s.Error = "NATS: " + err.Error()
		return []*Scenario{s}
	}
	defer nj.close()
	var runs []runCase
	for _, c := range []struct{ system, label, query string }{
		{proto.JobhostNATS, fmt.Sprintf("jobhost (nats://, pull consumer pulling ahead, batchSize %d, newBatchThreshold %d, acks not awaited)", b.bt["nats"][0], b.bt["nats"][1]), ""},
		{proto.JobhostNATS, "jobhost nats://?ack=sync, each ack awaits its reply (as before; for reference)", "ack=sync"},
		{proto.WatermillNATS, "Watermill router, watermill-nats JetStream (16 queue subscribers, AckSync, MaxAckPending 16)", ""},
	} {
		key := c.system
		if c.query != "" {
			key += "-" + c.query
		}
		runs = append(runs, runCase{key, func() *Row {
			id := randSuffix()
			stream := "BENCH_D_" + id
			subject := "bench.d." + id
			defer nj.deleteStream(bg, stream)
			if err := nj.createStream(bg, stream, subject); err != nil {
				return errRow(c.label, c.system, err)
			}
			if err := nj.prefill(bg, subject, n); err != nil {
				return errRow(c.label, c.system, fmt.Errorf("prefill: %w", err))
			}
			spec := proto.Spec{System: c.system, Concurrency: conc}
			if c.system == proto.JobhostNATS {
				spec = b.jobhostSpec(c.system, "nats")
				spec.TriggerQuery = c.query
			}
			spec.NATSURL, spec.Stream, spec.Subject, spec.CPUProfile = b.natsURL, stream, subject, b.profile("d", key)
			row := b.burnDown(c.label, spec, n, pidMeter("nats-server", "nats-server"))
			if left, err := nj.streamMsgs(bg, stream); err == nil {
				row.Extra = map[string]any{"leftInStream": left}
			}
			return row
		}})
	}
	var rows map[string]*Row
	s.Rows, rows = b.rounds(runs)
	ratio(s, "jobhost / Watermill (msg/s)", rows[proto.JobhostNATS], rows[proto.WatermillNATS], 1.25)
	ratio(s, "jobhost, acks awaited / Watermill (msg/s)", rows[proto.JobhostNATS+"-ack=sync"], rows[proto.WatermillNATS], 0)
	return []*Scenario{s}
}

// ---- e) latency ----

// openLoop sends rate msg/s for the open-loop duration (each send in its
// own goroutine, stamped when sent) while one child consumes.
func (b *bench) openLoop(label string, spec proto.Spec, send func(ctx context.Context, id int64) error, m *meter) *Row {
	return b.openLoopAt(label, spec, send, m, b.n.rate, b.n.openLoop)
}

// openLoopAt is openLoop at rate msg/s for dur.
func (b *bench) openLoopAt(label string, spec proto.Spec, send func(ctx context.Context, id int64) error, m *meter, rate int, dur time.Duration) *Row {
	count := int64(rate) * int64(dur/time.Second)
	spec.Target, spec.Latency, spec.MaxID, spec.ProgressEvery = 0, true, count, 100*time.Millisecond
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
	c.start()
	interval := time.Second / time.Duration(rate)
	t0 := time.Now()
	var wg sync.WaitGroup
	var sendErrs atomic.Int64
	var firstErr atomic.Value
	for i := range count {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * interval)))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			if err := send(ctx, i); err != nil {
				sendErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		})
	}
	wg.Wait()
	for deadline := time.Now().Add(60 * time.Second); c.progress.Load() < count-sendErrs.Load() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond) // a last PROGRESS, and nothing else arriving
	m.end()
	mm.end()
	took := time.Since(t0)
	res, ru, err := c.finish(time.Minute)
	r := rowFrom(label, spec, count, res, ru)
	r.MsgPerS = float64(res.Processed) / took.Seconds()
	m.apply(r, res.Processed)
	mm.other(r)
	if err != nil {
		r.Error = err.Error()
	}
	r.Extra = map[string]any{}
	if n := sendErrs.Load(); n > 0 {
		r.Extra["sendErrors"], r.Extra["firstSendError"] = n, firstErr.Load()
	}
	// Which messages were slow (over 1 s), by when they were sent.
	var slow []string
	nslow := 0
	for id, l := range res.Latencies {
		if l > int64(time.Second) {
			nslow++
			if len(slow) < 12 {
				slow = append(slow, fmt.Sprintf("%.1fs:%.0fms", (time.Duration(id)*interval).Seconds(), float64(l)/1e6))
			}
		}
	}
	if nslow > 0 {
		r.Extra["over1s"], r.Extra["over1sSentAt:latency"] = nslow, slow
	}
	r.Limit = fmt.Sprintf("open loop: offered load (%d msg/s)", rate)
	return r
}

// pickupCase is one system waiting idle for one message.
type pickupCase struct {
	label      string
	spec       proto.Spec
	send       func(ctx context.Context, id int64) error
	proxyQueue string // Azurite queue behind the counting proxy
}

// pickups runs all cases at once (they are idle, so they do not disturb
// each other): start, stay idle for the idle period, send one message to
// each, measure enqueue→invocation.
func (b *bench) pickups(cases []pickupCase, proxy *countingProxy) []*Row {
	rows := make([]*Row, len(cases))
	children := make([]*child, len(cases))
	for i, pc := range cases {
		spec := pc.spec
		spec.Target, spec.Latency, spec.MaxID, spec.ProgressEvery = 0, true, 1, 20*time.Millisecond
		c, err := startChild(spec)
		if err == nil {
			err = c.waitReady(3 * time.Minute)
		}
		if err != nil {
			rows[i] = errRow(pc.label, spec.System, err)
			if c != nil {
				c.kill()
			}
			continue
		}
		children[i] = c
	}
	for _, c := range children {
		if c != nil {
			defer c.kill()
			c.start()
		}
	}
	idleFrom := time.Now()
	time.Sleep(b.n.idle)
	sentAt := make([]time.Time, len(cases))
	var wg sync.WaitGroup
	for i, c := range children {
		if c == nil {
			continue
		}
		sentAt[i] = time.Now()
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			if err := cases[i].send(ctx, 0); err != nil {
				rows[i] = errRow(cases[i].label, cases[i].spec.System, fmt.Errorf("send: %w", err))
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for i, c := range children {
		if c == nil || rows[i] != nil {
			continue
		}
		for c.progress.Load() < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		res, ru, err := c.finish(time.Minute)
		r := rowFrom(cases[i].label, c.spec, 1, res, ru)
		r.MsgPerS, r.CPUPer1k = 0, -1
		r.Limit = "polling interval / push"
		if err != nil {
			r.Error = err.Error()
		}
		r.Extra = map[string]any{"idleSeconds": b.n.idle.Seconds()}
		if len(res.Latencies) == 1 && res.Latencies[0] >= 0 {
			r.Extra["pickupMs"] = round1(float64(res.Latencies[0]) / 1e6)
			r.P99Ms, r.MaxMs = nil, nil
		}
		if proxy != nil && cases[i].proxyQueue != "" {
			idle := sentAt[i].Sub(idleFrom)
			n := proxy.count(cases[i].proxyQueue, c.goAt, sentAt[i])
			r.Extra["idleRequests"] = n
			r.Extra["idleRequestsPerMin"] = round1(float64(n) / sentAt[i].Sub(c.goAt).Minutes())
			_ = idle
		}
		rows[i] = r
	}
	return rows
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

func (b *bench) scenarioLatency() []*Scenario {
	rate, dur := b.n.rate, b.n.openLoop
	e1 := &Scenario{ID: "e1", Title: fmt.Sprintf("Latency, open loop: %d msg/s for %v, enqueue→invocation (timestamp in the body)", rate, dur)}
	e2 := &Scenario{ID: "e2", Title: fmt.Sprintf("Pickup of the first message after %v idle (one sample each; p50 column = that sample)", b.n.idle)}
	e3 := &Scenario{ID: "e3", Title: "Azurite requests an idle queue costs (counted by a proxy in front of Azurite)"}
	out := []*Scenario{e1, e2, e3}

	rb, err := dialRabbit(b.rabbitURL)
	if err != nil {
		e1.Error = "RabbitMQ: " + err.Error()
		return out
	}
	defer rb.close()

	// e1, Azurite: a fresh Azurite per system. Azurite sweeps its queues
	// every 60 s (QueueGCManager), and once a few thousand messages have
	// come and gone a sweep stalls it for seconds: a run that met one
	// would show Azurite's pause, not the system's latency.
	for _, c := range []struct {
		label   string
		maxPoll time.Duration
		plain   bool
	}{
		{"Azurite: jobhost (maxPollingInterval 1 min, default)", 0, false},
		{"Azurite: jobhost (maxPollingInterval 2 s)", 2 * time.Second, false},
		{"Azurite: plain azqueue loop (100 ms sleep when empty)", 0, true},
	} {
		e1.Rows = append(e1.Rows, func() *Row {
			system := proto.JobhostAzure
			if c.plain {
				system = proto.PlainAzqueue
			}
			az, err := startAzurite(b.root)
			if err != nil {
				return errRow(c.label, system, err)
			}
			defer az.stop()
			name := "bench-e1"
			q, err := azCreate(bg, az.Conn, name)
			if err != nil {
				return errRow(c.label, system, err)
			}
			spec := b.jobhostSpec(system, "azure")
			spec.MaxPolling = c.maxPoll
			if c.plain {
				spec = proto.Spec{System: system, Concurrency: conc, BatchSize: 16, EmptySleep: 100 * time.Millisecond}
			}
			spec.AzureConn, spec.Queue = az.Conn, name
			send := func(ctx context.Context, id int64) error { return azSend(ctx, q, id) }
			return b.openLoop(c.label, spec, send, newMeter("Azurite", true, az.cpu))
		}())
	}

	// e2 and e3 share one fresh Azurite behind the counting proxy.
	az, err := startAzurite(b.root)
	if err != nil {
		e2.Error = err.Error()
		return out
	}
	defer az.stop()
	proxy, err := startProxy(fmt.Sprintf("http://127.0.0.1:%d", az.Port))
	if err != nil {
		e2.Error = err.Error()
		return out
	}
	defer proxy.close()
	proxyConn := azuriteConn(proxy.Port)

	azQ := func(name string) (func(ctx context.Context, id int64) error, error) {
		q, err := azCreate(bg, az.Conn, name)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, id int64) error { return azSend(ctx, q, id) }, nil
	}
	rbQ := func(name string) (func(ctx context.Context, id int64) error, error) {
		if err := rb.declare(name); err != nil {
			return nil, err
		}
		return func(ctx context.Context, id int64) error { return rb.send(ctx, name, id) }, nil
	}
	var rabbitQueues []string
	defer func() {
		for _, q := range rabbitQueues {
			rb.deleteQueues(q)
		}
	}()
	jhAz := func(maxPoll time.Duration) proto.Spec {
		s := b.jobhostSpec(proto.JobhostAzure, "azure")
		s.AzureConn, s.MaxPolling = az.Conn, maxPoll
		return s
	}
	plainAz := proto.Spec{System: proto.PlainAzqueue, Concurrency: conc, BatchSize: 16, EmptySleep: 100 * time.Millisecond, AzureConn: az.Conn}
	rbSpec := func(system string) proto.Spec {
		s := proto.Spec{System: system, Concurrency: conc, RabbitURL: b.rabbitURL}
		if system == proto.JobhostRabbit {
			s = b.jobhostSpec(system, "rabbit")
			s.RabbitURL = b.rabbitURL
		}
		return s
	}

	// e2: every pickup case at once.
	var cases []pickupCase
	for _, c := range []struct {
		label string
		spec  proto.Spec
	}{
		{"Azurite: jobhost (maxPollingInterval 1 min, default)", jhAz(0)},
		{"Azurite: jobhost (maxPollingInterval 2 s)", jhAz(2 * time.Second)},
		{"Azurite: plain azqueue loop (100 ms sleep when empty)", plainAz},
	} {
		name := "bench-e2-" + randSuffix()
		send, err := azQ(name)
		if err != nil {
			e2.Rows = append(e2.Rows, errRow(c.label, c.spec.System, err))
			continue
		}
		c.spec.Queue, c.spec.AzureConn = name, proxyConn
		cases = append(cases, pickupCase{label: c.label, spec: c.spec, send: send, proxyQueue: name})
	}
	for _, c := range []struct{ system, label string }{
		{proto.JobhostRabbit, "RabbitMQ: jobhost"},
		{proto.WatermillAMQP, "RabbitMQ: Watermill (watermill-amqp)"},
		{proto.GocloudRabbit, "RabbitMQ: plain gocloud rabbitpubsub loop"},
	} {
		name := "bench-e2-" + sanitize(c.system) + "-" + randSuffix()
		rabbitQueues = append(rabbitQueues, name)
		send, err := rbQ(name)
		if err != nil {
			e2.Rows = append(e2.Rows, errRow(c.label, c.system, err))
			continue
		}
		spec := rbSpec(c.system)
		spec.Queue = name
		cases = append(cases, pickupCase{label: c.label, spec: spec, send: send})
	}
	e1.Notes = append(e1.Notes,
		"Azurite: a fresh Azurite per system. Azurite sweeps its queues every 60 s; once a few thousand messages have come and gone a sweep stalls it for several seconds (an earlier layout that ran all three on one Azurite showed p99 ≈ 6–7 s for whichever run met the sweep).",
		"On a Storage Queue, latency under light load is set by the wait after an empty poll (100 ms, the first backoff step, for jobhost; the same fixed sleep for the plain loop): p50 ≈ half of it, p99 ≈ all of it.")
	e2.Rows = append(e2.Rows, b.pickups(cases, proxy)...)
	e2.Notes = append(e2.Notes,
		"jobhost on a Storage Queue backs off after empty polls (100 ms, then ×2 with ±20% jitter up to maxPollingInterval, as WebJobs does): after a long idle spell the first message waits for the next poll, up to maxPollingInterval. Push brokers (RabbitMQ) deliver at once.",
		"idleRequestsPerMin counts every request the system made to its queue from start to the send, through the counting proxy.")

	// e3: idle jobhost hosts through the RabbitMQ open loops (they poll a
	// different broker, and an idle host polls rarely).
	type idler struct {
		label string
		queue string
		c     *child
		err   error
	}
	var idlers []*idler
	for _, c := range []struct {
		label string
		spec  proto.Spec
	}{
		{"jobhost, maxPollingInterval 1 min (default)", jhAz(0)},
		{"jobhost, maxPollingInterval 2 s", jhAz(2 * time.Second)},
	} {
		id := &idler{label: c.label, queue: "bench-e3-" + randSuffix()}
		idlers = append(idlers, id)
		if _, err := azCreate(bg, az.Conn, id.queue); err != nil {
			id.err = err
			continue
		}
		spec := c.spec
		spec.Queue, spec.AzureConn, spec.MaxID = id.queue, proxyConn, 1
		if id.c, id.err = startChild(spec); id.err == nil {
			if id.err = id.c.waitReady(time.Minute); id.err == nil {
				id.c.start()
			}
		}
	}

	// e1, RabbitMQ.
	for _, c := range []struct{ system, label string }{
		{proto.JobhostRabbit, "RabbitMQ: jobhost"},
		{proto.WatermillAMQP, "RabbitMQ: Watermill (watermill-amqp)"},
		{proto.GocloudRabbit, "RabbitMQ: plain gocloud rabbitpubsub loop"},
	} {
		name := "bench-e1-" + sanitize(c.system) + "-" + randSuffix()
		rabbitQueues = append(rabbitQueues, name)
		send, err := rbQ(name)
		if err != nil {
			e1.Rows = append(e1.Rows, errRow(c.label, c.system, err))
			continue
		}
		spec := rbSpec(c.system)
		spec.Queue = name
		e1.Rows = append(e1.Rows, b.openLoop(c.label, spec, send, pidMeter("RabbitMQ", "beam.smp")))
	}

	// e3 results.
	for _, id := range idlers {
		if id.err != nil || id.c == nil {
			if id.err == nil {
				id.err = fmt.Errorf("not started")
			}
			e3.Rows = append(e3.Rows, errRow(id.label, proto.JobhostAzure, id.err))
			continue
		}
		end := time.Now()
		res, ru, err := id.c.finish(time.Minute)
		r := rowFrom(id.label, id.c.spec, 0, res, ru)
		r.Messages = 0
		if err != nil {
			r.Error = err.Error()
		}
		window := end.Sub(id.c.goAt)
		tail := min(60*time.Second, window/2)
		n := proxy.count(id.queue, id.c.goAt, end)
		nt := proxy.count(id.queue, end.Add(-tail), end)
		gaps := proxy.gaps(id.queue, id.c.goAt, end)
		var last time.Duration
		if len(gaps) > 0 {
			last = gaps[len(gaps)-1]
		}
		r.Extra = map[string]any{
			"windowSeconds": round1(window.Seconds()), "requests": n,
			"requestsPerMinWhole": round1(float64(n) / window.Minutes()),
			"tailSeconds":         round1(tail.Seconds()), "tailRequests": nt,
			"requestsPerMinTail": round1(float64(nt) / tail.Minutes()),
			"lastGapSeconds":     round1(last.Seconds()),
		}
		r.Limit = "idle"
		e3.Rows = append(e3.Rows, r)
	}
	e3.Notes = append(e3.Notes,
		"An idle host starts polling at 100 ms and backs off; the steady state is one request per maxPollingInterval (1/min by default, 30/min at 2 s). The tail rate is measured over the last part of the window, after the ramp.",
		"The plain azqueue loop's idle cost is in e2 (idleRequestsPerMin): a fixed 100 ms sleep is 600 requests/min.")
	return out
}

// ---- f) scale-out: scaleout.go, scaleout_nats.go ----
