package chaos

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/internal/tcpproxy"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// outage is one broker whose outage a run survives.
type outage struct {
	env     map[string]string     // app settings pointing the worker at the broker
	send    func(bodies []string) // enqueue the run's messages (JSON bodies)
	count   func() int            // messages in the queue (for rabbitmq: ready ones)
	cut     func()                // take the broker away
	restore func()                // bring it back
}

// Case 2: the broker goes away in the middle of a run and comes back. The
// worker stays up, logs the outage with backoff (a warning for the first
// failed poll, then one per maxPollingInterval), resumes within a few
// seconds of the broker's return, and loses nothing.
func TestBrokerOutage(t *testing.T) {
	t.Run("azurite", func(t *testing.T) {
		srv := azuritetest.Start(t, azuritetest.Options{Location: t.TempDir()})
		queue := srv.NewQueue(t)
		qc := srv.ServiceClient(t).NewQueueClient(queue)
		runOutage(t, outage{
			env: map[string]string{"AzureWebJobsStorage": srv.ConnectionString, "ChaosQueue": queue},
			send: func(bodies []string) {
				for i := range bodies {
					bodies[i] = b64(bodies[i])
				}
				enqueue(t, qc, bodies)
			},
			count:   func() int { return approxCount(t, qc) },
			cut:     srv.Stop,
			restore: func() { srv.Restart(t) },
		})
	})
	t.Run("rabbitmq", func(t *testing.T) {
		server := rabbittest.Require(t)
		queue := rabbittest.DeclareQueue(t, true, nil)
		u, err := url.Parse(server)
		if err != nil {
			t.Fatal(err)
		}
		p := tcpproxy.New(t, u.Host)
		u.Host = p.Addr()
		pub := rabbittest.NewPublisher(t) // straight to the broker, not through the proxy
		conn := rabbittest.Dial(t)
		runOutage(t, outage{
			env: map[string]string{"RABBIT_SERVER_URL": u.String(), "ChaosQueue": "rabbit://" + queue},
			send: func(bodies []string) {
				for _, b := range bodies {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					err := pub.Send(ctx, queue, []byte(b), nil)
					cancel()
					if err != nil {
						t.Fatal(err)
					}
				}
			},
			count:   func() int { return rabbittest.QueueDepth(t, conn, queue) },
			cut:     p.Cut,
			restore: func() { p.Restore(t) },
		})
	})
	// Redis and PostgreSQL: the worker's connections are cut through the
	// proxy and new ones refused; the servers keep running (the machine's
	// Redis keeps nothing across a restart, and both are shared), so
	// nothing may be lost on either.
	for _, b := range []struct {
		name string
		open func(*testing.T, bool) (brokerQueue, *tcpproxy.Proxy)
	}{{"redis", redisQueue}, {"postgres", postgresQueue}} {
		t.Run(b.name, func(t *testing.T) {
			q, p := b.open(t, true)
			runOutage(t, outage{
				env:     q.env,
				send:    func(bodies []string) { q.send(bodies) },
				count:   q.count,
				cut:     p.Cut,
				restore: func() { p.Restore(t) },
			})
		})
	}
}

func runOutage(t *testing.T, o outage) {
	const batch, threshold = 16, 8
	const maxInFlight = batch + threshold
	const maxPolling = 2 * time.Second
	total := pick(150, 600)
	down := pick(4*time.Second, 15*time.Second)
	within := pick(2*time.Minute, 5*time.Minute)

	bodies := make([]string, total)
	for i := range bodies {
		bodies[i] = jobBody(i, false)
	}
	o.send(bodies)
	prog := newProgress()
	record := filepath.Join(t.TempDir(), "record")
	env := maps.Clone(o.env)
	env[envRecord], env[envWork] = record, "30ms"
	c := startChild(t, "worker", worker{
		hostJSON: hostJSON(map[string]any{
			"batchSize": batch, "newBatchThreshold": threshold, "maxDequeueCount": 5,
			"leaseDuration": "00:00:02", "maxPollingInterval": "00:00:02", "visibilityTimeout": "00:00:00",
		}, "00:00:05"),
		env: env, tap: prog.tap,
	})
	start := time.Now()

	if err := prog.await(c, total/3, within); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	before := prog.settled()
	o.cut()
	cutDone := time.Now()
	// The outage itself: a fault of fixed length, not a synchronisation.
	time.Sleep(down - time.Since(cutAt))
	c.alive(t)
	o.restore()
	restoredAt := time.Now()
	actualDown := restoredAt.Sub(cutAt)

	// Resumed: a function starts on a message received after the return.
	resumed := c.await(t, "a function started after the broker returned", 1, 60*time.Second, after(restoredAt, msgIs("chaos start")))[0].at
	resume := resumed.Sub(restoredAt)
	reachable := "not logged (no poll failed)"
	if r := c.logs.matching(after(cutAt, msgHas("reachable again"))); len(r) > 0 {
		reachable = "+" + r[0].at.Sub(restoredAt).Round(10*time.Millisecond).String()
	}
	// The broker was really away: nothing was received while it was.
	if s := c.logs.matching(func(e entry) bool {
		return e.str("msg") == "chaos start" && e.at.After(cutDone.Add(500*time.Millisecond)) && e.at.Before(restoredAt)
	}); len(s) > 0 {
		t.Errorf("%d functions started while the broker was down: the outage was not real", len(s))
	}
	if err := prog.await(c, total, within); err != nil {
		// Go on to name the lost messages.
		t.Error(err)
		c.kill(t)
	} else {
		// Messages done but not deleted during the outage come back: the
		// run is over when the queue is empty.
		c.awaitEmpty(t, "the queue", o.count, 30*time.Second)
		if code := c.term(t, 30*time.Second); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
		if n := o.count(); n != 0 {
			t.Errorf("the queue holds %d messages after the worker stopped", n)
		}
	}
	elapsed := time.Since(start)
	if os.Getenv("CHAOS_DEBUG") != "" {
		for _, e := range c.logs.matching(func(e entry) bool {
			return !e.at.Before(cutAt.Add(-time.Second)) && e.at.Before(resumed.Add(time.Second))
		}) {
			t.Logf("+%6.3fs %s %s %v %v %v", e.at.Sub(cutAt).Seconds(), e.str("level"), e.str("msg"), e.f["messageId"], e.f["outcome"], e.f["error"])
		}
		t.Logf("restored at +%.3fs", restoredAt.Sub(cutAt).Seconds())
	}

	// Nothing lost; duplicates within what was in flight at the cut.
	starts := map[int]int{}
	done := map[int]bool{}
	for _, ev := range readRecord(t, record) {
		switch ev.kind {
		case "start":
			starts[ev.n]++
		case "done":
			done[ev.n] = true
		}
	}
	duplicates := 0
	for n := range total {
		if !done[n] {
			t.Errorf("message %d lost (started %d times, never completed)", n, starts[n])
		}
		duplicates += max(starts[n]-1, 0)
	}
	if duplicates > maxInFlight {
		t.Errorf("%d messages ran twice, more than the %d in flight at the cut", duplicates, maxInFlight)
	}

	// Backoff: failed polls and warnings during the outage are bounded by
	// its length over maxPollingInterval; the per-message warnings (a
	// delete or renewal that failed) by what was in flight.
	window := func(e entry) bool { return !e.at.Before(cutAt) && e.at.Before(resumed) }
	failedPolls := c.logs.matching(func(e entry) bool { return window(e) && e.str("msg") == "polling the queue failed" })
	warns := c.logs.matching(func(e entry) bool { return window(e) && isWarn(e) })
	byMsg := map[string]int{}
	pollWarns := 0
	for _, e := range warns {
		byMsg[e.str("msg")]++
		if e.str("msg") == "polling the queue failed" {
			pollWarns++
		}
	}
	pollBound := 2 + int(actualDown/maxPolling)
	if pollWarns > pollBound {
		t.Errorf("%d poll-failure warnings in a %s outage, want at most %d (one per maxPollingInterval %s): the log floods",
			pollWarns, actualDown.Round(100*time.Millisecond), pollBound, maxPolling)
	}
	if len(failedPolls) > 3*pollBound+10 {
		t.Errorf("%d failed polls in a %s outage: no backoff", len(failedPolls), actualDown.Round(100*time.Millisecond))
	}
	if other := len(warns) - pollWarns; other > 2*maxInFlight {
		t.Errorf("%d other warnings during the outage, more than 2 per message in flight (%d): %v", other, maxInFlight, byMsg)
	}
	kinds := slices.Sorted(maps.Keys(byMsg))
	var lines []string
	for _, k := range kinds {
		lines = append(lines, fmt.Sprintf("%q×%d", k, byMsg[k]))
	}
	summary(t, "%d messages, outage %s at %d settled: worker stayed up; %d failed polls, %d warn/error lines (%s); resumed %s after the broker returned (queue reachable again: %s); processed %d, lost %d, duplicates %d (bound %d); %s total",
		total, actualDown.Round(100*time.Millisecond), before, len(failedPolls), len(warns), strings.Join(lines, ", "),
		resume.Round(10*time.Millisecond), reachable, len(done), total-len(done), duplicates, maxInFlight,
		elapsed.Round(100*time.Millisecond))
}
