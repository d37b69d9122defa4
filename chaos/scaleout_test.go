package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// envSeed fixes the random schedule of TestScaleOutUnderFaults (which hosts
// are killed, at what progress, when new ones join); each run logs its seed.
const envSeed = "JOBHOST_CHAOS_SEED"

// scaleHosts are the numbers of host processes the scale-out case starts
// with, on each broker.
var scaleHosts = []int{1, 2, 4, 8}

// Case 7: scale-out under faults. 1, 2, 4 and 8 host processes share one
// queue on Azurite, RabbitMQ and NATS JetStream; during the run hosts are
// SIGKILLed at random (a random host, at a random point of the run, with
// functions running) and new hosts join. Nothing is lost, every message run
// twice was first started by a host that was killed (so no lease was lost
// among the hosts that lived), each killed host ran again at most what it
// can hold (batchSize + newBatchThreshold), and each host's share of the
// completions is reported. In the bounded run the three brokers run side
// by side (most of a run is waiting: for leases to end, for the hosts' last
// polls at SIGTERM); the host counts of one broker run one after the other.
func TestScaleOutUnderFaults(t *testing.T) {
	raw := func(s string) string { return s }
	rawBytes := func(s string) ([]byte, error) { return []byte(s), nil }
	azurite := func(t *testing.T) {
		for _, hosts := range scaleHosts {
			t.Run(fmt.Sprintf("hosts=%d", hosts), func(t *testing.T) {
				// Only hosts die here: the server keeps running, in
				// memory, one per host count (Azurite slows down as it
				// holds more: its dequeue scans the queue).
				srv := azuritetest.Start(t, azuritetest.Options{})
				svc := srv.ServiceClient(t)
				queue := srv.NewQueue(t)
				qc := svc.NewQueueClient(queue)
				runScaleOut(t, "Azurite", hosts, b64, base64.StdEncoding.DecodeString, brokerQueue{
					env:   map[string]string{"AzureWebJobsStorage": srv.ConnectionString, "ChaosQueue": queue},
					send:  func(texts []string) []string { return enqueue(t, qc, texts) },
					count: func() int { return approxCount(t, qc) },
					poison: func() []string {
						var out []string
						for _, m := range drain(t, svc.NewQueueClient(queue+"-poison")) {
							out = append(out, *m.MessageText)
						}
						return out
					},
				})
			})
		}
	}
	rabbit := func(t *testing.T) {
		server := rabbittest.Require(t)
		pub := rabbittest.NewPublisher(t)
		conn := rabbittest.Dial(t)
		for _, hosts := range scaleHosts {
			t.Run(fmt.Sprintf("hosts=%d", hosts), func(t *testing.T) {
				queue := rabbittest.DeclareQueue(t, true, nil)
				runScaleOut(t, "RabbitMQ (quorum queue)", hosts, raw, rawBytes, brokerQueue{
					env: map[string]string{"RABBIT_SERVER_URL": server, "ChaosQueue": "rabbit://" + queue},
					send: func(bodies []string) []string {
						return parallelSend(t, bodies, func(ctx context.Context, b string) (string, error) {
							return "", pub.Send(ctx, queue, []byte(b), nil)
						})
					},
					// Ready messages: what the hosts hold comes back when
					// they are gone, so the count is checked again after the
					// last host has exited.
					count: func() int { return rabbittest.QueueDepth(t, conn, queue) },
					poison: func() []string {
						var out []string
						for {
							d, ok := rabbittest.Get(t, conn, queue+"-poison")
							if !ok {
								return out
							}
							out = append(out, string(d.Body))
						}
					},
				})
			})
		}
	}
	natsJS := func(t *testing.T) {
		jstest.Require(t)
		for _, hosts := range scaleHosts {
			t.Run(fmt.Sprintf("hosts=%d", hosts), func(t *testing.T) {
				ctx := context.Background()
				f := jstest.NewFixture(ctx, t)
				runScaleOut(t, "NATS JetStream (one durable pull consumer)", hosts, raw, rawBytes, brokerQueue{
					env: map[string]string{jetstream.ServerURLSetting: jstest.URL(), "ChaosQueue": f.URL().String()},
					send: func(bodies []string) []string {
						// The driver's message id is the stream sequence.
						return parallelSend(t, bodies, func(ctx context.Context, b string) (string, error) {
							ack, err := f.JS.PublishMsg(ctx, &nats.Msg{Subject: f.Subject, Data: []byte(b)})
							if err != nil {
								return "", err
							}
							return strconv.FormatUint(ack.Sequence, 10), nil
						})
					},
					// A work-queue stream keeps a message until it is acked.
					count: func() int {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						s, err := f.JS.Stream(ctx, f.Stream)
						if err != nil {
							t.Fatalf("stream %s: %v", f.Stream, err)
						}
						info, err := s.Info(ctx)
						if err != nil {
							t.Fatalf("stream %s info: %v", f.Stream, err)
						}
						return int(info.State.Msgs)
					},
					poison: func() []string {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						ms, err := f.PoisonMessages(ctx)
						if err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
							t.Fatalf("poison stream: %v", err)
						}
						var out []string
						for _, m := range ms {
							out = append(out, string(m.Data))
						}
						return out
					},
				})
			})
		}
	}
	// Bounded, the brokers run side by side (not t.Parallel: go test runs
	// only GOMAXPROCS, 2 here, parallel tests at once); full, one after
	// the other, so that each has the machine to itself.
	var wg sync.WaitGroup
	for _, b := range []struct {
		name string
		run  func(*testing.T)
	}{{"azurite", azurite}, {"rabbitmq", rabbit}, {"nats", natsJS}} {
		if full() {
			t.Run(b.name, b.run)
			continue
		}
		wg.Go(func() { t.Run(b.name, b.run) })
	}
	wg.Wait()
}

// member is one host process of a scale-out run.
type member struct {
	name     string
	c        *child
	joinedAt int  // messages settled when it was started (-1: one of the first)
	killedAt int  // messages settled when it was killed (-1: not killed)
	running  int  // functions running in it when it was killed
	alive    bool // started and neither killed nor stopped
	expected atomic.Bool
}

// cluster is the hosts of one scale-out run, started and killed by the test.
type cluster struct {
	t       *testing.T
	hj      map[string]any
	env     map[string]string
	prog    *progress
	members []*member
	exits   chan *member // hosts that exited without being killed or stopped
}

// launch starts k hosts, named after the count of members so far, all at
// once; with wait it waits until each has started. A host that exits
// without being killed or stopped is reported on cl.exits.
func (cl *cluster) launch(k, settled int, wait bool) []*member {
	cl.t.Helper()
	var ms []*member
	for range k {
		name := "h" + strconv.Itoa(len(cl.members))
		e := maps.Clone(cl.env)
		e[envIncarnation] = name
		m := &member{name: name, joinedAt: settled, killedAt: -1, alive: true}
		m.c = launchChild(cl.t, name, worker{hostJSON: cl.hj, env: e, tap: cl.prog.tap})
		go func() {
			<-m.c.exited
			if !m.expected.Load() {
				select {
				case cl.exits <- m:
				default:
				}
			}
		}()
		cl.members = append(cl.members, m)
		ms = append(ms, m)
	}
	if wait {
		t0 := time.Now()
		for _, m := range ms {
			m.started(cl.t)
		}
		debugf(cl.t, "%d hosts started in %s", k, time.Since(t0))
	}
	return ms
}

// started waits until m's host has started.
func (m *member) started(t *testing.T) {
	t.Helper()
	m.c.await(t, "host started", 1, 30*time.Second, msgIs("host started"))
}

// victim picks a random live host among those whose host has started (a
// host still starting when none has).
func (cl *cluster) victim(rng *rand.Rand) *member {
	live := cl.alive()
	var up []*member
	for _, m := range live {
		if len(m.c.logs.matching(msgIs("host started"))) > 0 {
			up = append(up, m)
		}
	}
	if len(up) == 0 {
		up = live
	}
	return up[rng.IntN(len(up))]
}

func (cl *cluster) alive() []*member {
	var out []*member
	for _, m := range cl.members {
		if m.alive {
			out = append(out, m)
		}
	}
	return out
}

// awaitSettled waits until n messages are settled (done or poisoned, in any
// host). It returns an error when a host exits unasked, when nothing is
// settled for stall, or after within.
func (cl *cluster) awaitSettled(n int, within time.Duration) error {
	return awaitProgress(cl.prog, n, within, cl.exits,
		func(m *member, got int) error {
			return fmt.Errorf("host %s exited unasked (%v) at %d/%d settled; log:\n%s", m.name, m.c.waitErr, got, n, m.c.logs.tail(100))
		},
		func(got int) error {
			return fmt.Errorf("nothing settled for %s, at %d/%d with %d hosts alive: the rest look lost", stall, got, n, len(cl.alive()))
		},
		func(got int) error { return fmt.Errorf("timed out after %s at %d/%d settled", within, got, n) })
}

// kill SIGKILLs m once at least one function runs in it (or after a
// second without one: a host that has just joined may not have any yet).
func (cl *cluster) kill(m *member) {
	cl.t.Helper()
	t0 := time.Now()
	m.running = m.c.awaitRunning(cl.t, 1, time.Second)
	debugf(cl.t, "kill %s waited %s for a running function", m.name, time.Since(t0))
	m.killedAt = cl.prog.settled()
	m.expected.Store(true)
	m.alive = false
	m.c.kill(cl.t)
}

// stopAll sends SIGTERM to every live host at once and checks each exits 0.
func (cl *cluster) stopAll(within time.Duration) {
	cl.t.Helper()
	live := cl.alive()
	for _, m := range live {
		m.expected.Store(true)
		m.alive = false
		if err := m.c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			cl.t.Fatalf("SIGTERM host %s: %v", m.name, err)
		}
	}
	deadline := time.After(within)
	for _, m := range live {
		select {
		case <-m.c.exited:
			if code := m.c.cmd.ProcessState.ExitCode(); code != 0 {
				cl.t.Errorf("host %s: exit status %d after SIGTERM, want 0; log:\n%s", m.name, code, m.c.logs.tail(60))
			}
		case <-deadline:
			cl.t.Fatalf("host %s did not exit within %s of SIGTERM; log:\n%s", m.name, within, m.c.logs.tail(100))
		}
	}
}

// fault is one step of a run's schedule: at settled messages, kill a
// random live host or start a new one.
type fault struct {
	at   int
	kill bool
}

// schedule draws kills kills (between 15% and 70% of the run) and kills+1
// joins (between 5% and 75%): one new host for each killed one and one
// more, so the run ends with one host more than it started with.
func schedule(rng *rand.Rand, kills, total int) []fault {
	var out []fault
	at := func(lo, hi float64) int { return int((lo + rng.Float64()*(hi-lo)) * float64(total)) }
	for range kills {
		out = append(out, fault{at: at(0.15, 0.70), kill: true})
	}
	for range kills + 1 {
		out = append(out, fault{at: at(0.05, 0.75)})
	}
	slices.SortStableFunc(out, func(a, b fault) int { return a.at - b.at })
	return out
}

// debugf logs only with CHAOS_DEBUG set.
func debugf(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CHAOS_DEBUG") != "" {
		t.Logf("debug: "+format, args...)
	}
}

// scaleSeed is the seed of the run's random schedule: envSeed, or the clock.
func scaleSeed(t *testing.T) uint64 {
	if s := os.Getenv(envSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// runScaleOut is case 7 on one broker with hosts host processes at the
// start: encode makes a queue text of a JSON body, decode reads one back
// from the poison queue.
func runScaleOut(t *testing.T, what string, hosts int, encode func(string) string, decode func(string) ([]byte, error), q brokerQueue) {
	const batch, threshold = 16, 8
	const maxInFlight = batch + threshold
	kills := pick(2, 4)
	total := pick(map[int]int{1: 300, 2: 400, 4: 600, 8: 800}, map[int]int{1: 2000, 2: 3000, 4: 4000, 8: 6000})[hosts]
	if strings.HasPrefix(what, "Azurite") && full() {
		// Azurite's dequeue scans the queue: deeper queues slow every
		// request, and one core of node serves all the hosts.
		total = map[int]int{1: 1000, 2: 1200, 4: 1600, 8: 2000}[hosts]
	}
	within := pick(2*time.Minute, 5*time.Minute)
	seed := scaleSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	plan := schedule(rng, kills, total)

	bodies := make([]string, total)
	for i := range bodies {
		bodies[i] = encode(jobBody(i, false))
	}
	prog := newProgress()
	for i, id := range q.send(bodies) {
		if id != "" {
			prog.idToN[id] = i
		}
	}
	record := filepath.Join(t.TempDir(), "record")
	env := maps.Clone(q.env)
	env[envRecord], env[envWork] = record, "20ms"
	hj := hostJSON(map[string]any{
		"batchSize": batch, "newBatchThreshold": threshold, "maxDequeueCount": 10,
		"leaseDuration": "00:00:02", "maxPollingInterval": "00:00:01", "visibilityTimeout": "00:00:00",
	}, "00:00:10")
	// The hosts' per-poll and per-renewal lines are not needed here: 8
	// hosts at Debug would spend the machine on logging.
	hj["logging"] = map[string]any{"logLevel": map[string]any{"default": "Information"}}
	cl := &cluster{t: t, hj: hj, env: env, prog: prog, exits: make(chan *member, 64)}

	start := time.Now()
	cl.launch(hosts, -1, true)
	launched := time.Since(start)
	var failed error
	joins := 0
	for i := 0; i < len(plan); i++ {
		f := plan[i]
		if f.at < 0 {
			continue // a join taken early
		}
		if failed = cl.awaitSettled(f.at, within); failed != nil {
			break
		}
		if !f.kill {
			// Not waiting for it to start: the run goes on meanwhile.
			cl.launch(1, prog.settled(), false)
			joins++
			continue
		}
		cl.kill(cl.victim(rng))
		if len(cl.alive()) == 0 {
			// The last live host was killed: the next join comes now.
			for j := i + 1; j < len(plan); j++ {
				if !plan[j].kill && plan[j].at >= 0 {
					plan[j].at = -1
					break
				}
			}
			cl.launch(1, prog.settled(), false)
			joins++
		}
	}
	if failed == nil {
		failed = cl.awaitSettled(total, within)
	}
	debugf(t, "all settled after %s", time.Since(start))
	if failed == nil {
		// Messages done but not settled by a killed host come back when
		// their lease ends (RabbitMQ: at once): the run is over when the
		// queue is empty.
		deadline := time.Now().Add(30 * time.Second)
		for n := q.count(); n != 0; n = q.count() {
			if time.Now().After(deadline) {
				failed = fmt.Errorf("the queue still holds %d messages 30 s after every message was settled", n)
				break
			}
			select {
			case m := <-cl.exits:
				failed = fmt.Errorf("host %s exited unasked (%v); log:\n%s", m.name, m.c.waitErr, m.c.logs.tail(100))
			case <-time.After(100 * time.Millisecond): // polling an external resource, not synchronising
			}
			if failed != nil {
				break
			}
		}
	}
	if failed != nil {
		// Go on to name the lost messages.
		t.Errorf("seed %d: %v", seed, failed)
	}
	for _, m := range cl.alive() {
		m.started(t) // every host that joined and lived took part
	}
	stopping := time.Now()
	cl.stopAll(30 * time.Second)
	elapsed := time.Since(start)
	stopped := time.Since(stopping)
	if n := q.count(); n != 0 {
		t.Errorf("the queue holds %d messages after every host exited", n)
	}

	poisoned := map[int]bool{}
	for _, text := range q.poison() {
		b, err := decode(text)
		var j job
		if err != nil || json.Unmarshal(b, &j) != nil {
			t.Fatalf("poison queue holds a body that was not sent: %q", text)
		}
		poisoned[j.N] = true
	}
	starts := map[int][]string{} // the hosts that started n, in order
	done := map[int]bool{}
	doneIn := map[string]map[int]bool{}
	completions := map[string]int{}
	maxDequeue := 0
	for _, ev := range readRecord(t, record) {
		switch ev.kind {
		case "start":
			starts[ev.n] = append(starts[ev.n], ev.incarnation)
			maxDequeue = max(maxDequeue, ev.dequeueCount)
		case "done":
			done[ev.n] = true
			completions[ev.incarnation]++
			if doneIn[ev.incarnation] == nil {
				doneIn[ev.incarnation] = map[int]bool{}
			}
			doneIn[ev.incarnation][ev.n] = true
		}
	}
	lost := 0
	for n := range total {
		if !done[n] && !poisoned[n] {
			lost++
			if lost <= 10 {
				t.Errorf("message %d lost: never completed, not in the poison queue (started in %v)", n, starts[n])
			}
		}
	}
	dupsIn := map[string]int{}
	cutIn := map[string]int{} // started, killed before the function returned
	duplicates := 0
	for n, hs := range starts {
		for _, h := range hs[:len(hs)-1] {
			dupsIn[h]++
			duplicates++
			if !doneIn[h][n] {
				cutIn[h]++
			}
		}
	}
	killed := 0
	var shares []string
	for _, m := range cl.members {
		note := ""
		if m.joinedAt >= 0 {
			note += fmt.Sprintf(", joined at %d", m.joinedAt)
		}
		if m.killedAt >= 0 {
			killed++
			note += fmt.Sprintf(", killed at %d with %d running: %d ran again (%d cut off, %d done but not settled)",
				m.killedAt, m.running, dupsIn[m.name], cutIn[m.name], dupsIn[m.name]-cutIn[m.name])
			if dupsIn[m.name] > maxInFlight {
				t.Errorf("host %s (killed): %d messages ran again, more than the %d it can hold (batchSize %d + newBatchThreshold %d)",
					m.name, dupsIn[m.name], maxInFlight, batch, threshold)
			}
		} else if dupsIn[m.name] > 0 {
			t.Errorf("host %s was never killed, yet %d messages it started ran again: a lease was lost", m.name, dupsIn[m.name])
		}
		shares = append(shares, fmt.Sprintf("%s %d%s", m.name, completions[m.name], note))
	}
	if duplicates > killed*maxInFlight {
		t.Errorf("%d duplicates, more than %d kills × %d", duplicates, killed, maxInFlight)
	}
	summary(t, "%s, %d hosts at the start, %d messages, %d SIGKILLs, %d joins (%d processes in all, seed %d): processed %d, poisoned %d, lost %d, duplicates %d (bound %d = %d kills × %d), max dequeueCount %d, %s (start of the first hosts %s, SIGTERM to exit %s)",
		what, hosts, total, killed, joins, len(cl.members), seed, len(done), len(poisoned), lost, duplicates, killed*maxInFlight, killed, maxInFlight,
		maxDequeue, elapsed.Round(100*time.Millisecond), launched.Round(10*time.Millisecond), stopped.Round(10*time.Millisecond))
	summary(t, "completions per host: %s", strings.Join(shares, "; "))
}
