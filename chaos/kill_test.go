package chaos

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// Case 1: the worker is SIGKILLed three times during a run on Azurite
// (persisting to disk), on Redis and on PostgreSQL (which keep running) —
// twice with at least batchSize functions running, once as functions
// return — and started again each time. Every message is
// processed at least once or poisoned, none is lost, and the messages
// processed again are no more than were in flight at the kills: at most
// batchSize + newBatchThreshold per kill, each attributed to the killed
// process that ran it first.
func TestSIGKILLDuringRun(t *testing.T) {
	t.Run("azurite", func(t *testing.T) {
		srv := azuritetest.Start(t, azuritetest.Options{Location: t.TempDir()})
		queue := srv.NewQueue(t)
		svc := srv.ServiceClient(t)
		qc := svc.NewQueueClient(queue)
		runKill(t, "Azurite persisting to disk", b64, base64.StdEncoding.DecodeString, brokerQueue{
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
	// Redis and PostgreSQL keep running: only the worker dies. Bodies are
	// raw JSON.
	raw := func(s string) string { return s }
	rawBytes := func(s string) ([]byte, error) { return []byte(s), nil }
	t.Run("redis", func(t *testing.T) {
		q, _ := redisQueue(t, false)
		runKill(t, "Redis", raw, rawBytes, q)
	})
	t.Run("postgres", func(t *testing.T) {
		q, _ := postgresQueue(t, false)
		runKill(t, "PostgreSQL", raw, rawBytes, q)
	})
}

// runKill is case 1 on one broker: encode makes a queue text of a JSON
// body, decode reads one back from the poison queue.
func runKill(t *testing.T, what string, encode func(string) string, decode func(string) ([]byte, error), q brokerQueue) {
	const batch, threshold, kills = 16, 8, 3
	const maxInFlight = batch + threshold
	total := pick(300, 2000)
	within := pick(2*time.Minute, 5*time.Minute)

	bodies := make([]string, total)
	for i := range bodies {
		bodies[i] = encode(jobBody(i, false))
	}
	prog := newProgress()
	for i, id := range q.send(bodies) {
		prog.idToN[id] = i
	}
	record := filepath.Join(t.TempDir(), "record")
	env := maps.Clone(q.env)
	env[envRecord], env[envWork] = record, "200ms"
	hj := hostJSON(map[string]any{
		"batchSize": batch, "newBatchThreshold": threshold, "maxDequeueCount": 5,
		"leaseDuration": "00:00:02", "maxPollingInterval": "00:00:01", "visibilityTimeout": "00:00:00",
	}, "00:00:05")

	start := time.Now()
	var killedAt []int
	var when []string
	for k := 0; k <= kills; k++ {
		e := maps.Clone(env)
		e[envIncarnation] = strconv.Itoa(k)
		c := startChild(t, fmt.Sprintf("incarnation-%d", k), worker{hostJSON: hj, env: e, tap: prog.tap})
		if k < kills {
			if err := prog.await(c, total*(k+1)/(kills+1), within); err != nil {
				t.Fatal(err)
			}
			// Kills 1 and 3 land mid-function, with at least batchSize
			// functions running (each works 200 ms, far longer than its
			// log line takes to arrive); kill 2 lands as functions return,
			// between a function and the delete of its message.
			how := "right after a function returned"
			if k != 1 {
				how = fmt.Sprintf("with %d functions running", c.awaitRunning(t, batch, 10*time.Second))
			}
			c.kill(t)
			when = append(when, how)
			killedAt = append(killedAt, prog.settled())
			continue
		}
		if err := prog.await(c, total, within); err != nil {
			// Go on to name the lost messages.
			t.Error(err)
			c.kill(t)
			break
		}
		// Messages done but not deleted by a killed worker come back when
		// their lease ends: the run is over when the queue is empty.
		c.awaitEmpty(t, "the queue", q.count, 30*time.Second)
		if code := c.term(t, 30*time.Second); code != 0 {
			t.Errorf("last worker exit status %d after SIGTERM, want 0", code)
		}
	}
	elapsed := time.Since(start)

	// What reached the poison queue (over maxDequeueCount after kills).
	poisoned := map[int]bool{}
	for _, text := range q.poison() {
		raw, err := decode(text)
		var j job
		if err != nil || json.Unmarshal(raw, &j) != nil {
			t.Fatalf("poison queue holds a body that was not sent: %q", text)
		}
		poisoned[j.N] = true
	}

	// starts[n] lists the incarnations that started n, in order.
	starts := map[int][]string{}
	done := map[int]bool{}
	doneIn := map[string]map[int]bool{}
	maxDequeue := 0
	for _, ev := range readRecord(t, record) {
		switch ev.kind {
		case "start":
			starts[ev.n] = append(starts[ev.n], ev.incarnation)
			maxDequeue = max(maxDequeue, ev.dequeueCount)
		case "done":
			done[ev.n] = true
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
	// Every start but the last of a message was cut off by a kill, or its
	// delete was: a duplicate, attributed to the incarnation that ran it.
	dupsIn := map[string]int{}
	interruptedIn := map[string]int{} // started, killed before it returned
	duplicates := 0
	for n, incs := range starts {
		for _, inc := range incs[:len(incs)-1] {
			dupsIn[inc]++
			duplicates++
			if !doneIn[inc][n] {
				interruptedIn[inc]++
			}
		}
	}
	var perKill []string
	for k := 0; k <= kills; k++ {
		inc := strconv.Itoa(k)
		if k == kills {
			if dupsIn[inc] > 0 {
				t.Errorf("%d messages ran twice in the last worker, which was never killed: a lease was lost", dupsIn[inc])
			}
			continue
		}
		if dupsIn[inc] > maxInFlight {
			t.Errorf("kill %d: %d messages ran again, more than the %d that can be in flight (batchSize %d + newBatchThreshold %d)",
				k+1, dupsIn[inc], maxInFlight, batch, threshold)
		}
		perKill = append(perKill, fmt.Sprintf("kill %d at %d/%d settled, %s: %d ran again (%d cut off mid-function, %d done but not yet deleted)",
			k+1, killedAt[k], total, when[k], dupsIn[inc], interruptedIn[inc], dupsIn[inc]-interruptedIn[inc]))
	}
	if n := q.count(); n != 0 {
		t.Errorf("queue still holds %d messages", n)
	}
	summary(t, "%d messages, %d SIGKILLs, %s: processed %d, poisoned %d, lost %d, duplicates %d (bound %d = %d kills × %d), max dequeueCount %d, %s total",
		total, kills, what, len(done), len(poisoned), lost, duplicates, kills*maxInFlight, kills, maxInFlight, maxDequeue, elapsed.Round(100*time.Millisecond))
	for _, s := range perKill {
		summary(t, "%s", s)
	}
}
