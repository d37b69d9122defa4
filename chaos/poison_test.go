package chaos

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// Kinds of message in the poison flood.
const (
	kindGood = iota
	kindFail
	kindBadJSON
	kindBadBase64
)

// floodKind spreads the kinds over n: 10% always fail, 5% bad JSON, 5% bad
// base64, the rest good.
func floodKind(i int) int {
	switch i % 20 {
	case 0, 1:
		return kindFail
	case 2:
		return kindBadJSON
	case 3:
		return kindBadBase64
	}
	return kindGood
}

// floodBody is the exact text enqueued for message i.
func floodBody(i int) string {
	switch floodKind(i) {
	case kindFail:
		return b64(jobBody(i, true))
	case kindBadJSON:
		// Valid base64 of JSON cut short, in a few shapes.
		return b64([]string{
			fmt.Sprintf(`{"n":%d,"fail":`, i),
			fmt.Sprintf(`{"n":"%d"}`, i), // wrong type
			fmt.Sprintf("[%d]", i),       // not an object
			fmt.Sprintf(`{"n":%d} trailing`, i),
		}[i/20%4])
	case kindBadBase64:
		// Text a producer forgot to encode, byte for byte as sent.
		return []string{
			fmt.Sprintf(`{"n":%d}`, i),
			fmt.Sprintf("  {\"n\": %d, \"note\": \"plain JSON — Zoë ü\"}\n", i),
			fmt.Sprintf("eyJuIjo%d!!", i),
			fmt.Sprintf("%s=%s", b64(jobBody(i, false)), "extra"),
		}[i/20%4]
	}
	return b64(jobBody(i, false))
}

// rawFloodBody is the exact body sent for message i to a broker whose bodies
// are raw bytes (Redis, PostgreSQL): there is no base64 layer, so the 5%
// that are bad base64 on Azure queues are bad JSON of other shapes here
// (rawFloodKind), bytes that are not UTF-8 among them.
func rawFloodBody(i int) string {
	switch floodKind(i) {
	case kindFail:
		return jobBody(i, true)
	case kindBadJSON:
		return []string{
			fmt.Sprintf(`{"n":%d,"fail":`, i),
			fmt.Sprintf(`{"n":"%d"}`, i),
			fmt.Sprintf("[%d]", i),
			fmt.Sprintf(`{"n":%d} trailing`, i),
		}[i/20%4]
	case kindBadBase64:
		return []string{
			fmt.Sprintf("plain text %d — Zoë ü", i),
			fmt.Sprintf("\xff\xfe%d\x00\x80 not UTF-8", i),
			b64(jobBody(i, false)), // base64 where raw JSON is expected
			fmt.Sprintf("  {\"n\": %d, \"note\": 12\n", i),
		}[i/20%4]
	}
	return jobBody(i, false)
}

// rawFloodKind is what message i of rawFloodBody is: bad JSON in the slots
// that are bad base64 on Azure queues.
func rawFloodKind(i int) int {
	if k := floodKind(i); k != kindBadBase64 {
		return k
	}
	return kindBadJSON
}

// Case 3: a flood of messages of which 10% always fail, 5% are bad JSON and
// 5% bad base64 (on Redis and PostgreSQL, whose bodies are raw bytes: 10%
// bad JSON). Every message ends processed or poisoned; poison bodies are
// byte-identical to what was sent; undecodable ones are poisoned on their
// first delivery without running the function.
func TestPoisonFlood(t *testing.T) {
	t.Run("azurite", func(t *testing.T) {
		srv := azuritetest.Shared(t)
		queue := srv.NewQueue(t)
		svc := srv.ServiceClient(t)
		qc, poisonQC := svc.NewQueueClient(queue), svc.NewQueueClient(queue+"-poison")
		runFlood(t, floodBody, floodKind, brokerQueue{
			env:   map[string]string{"AzureWebJobsStorage": srv.ConnectionString, "ChaosQueue": queue},
			send:  func(texts []string) []string { return enqueue(t, qc, texts) },
			count: func() int { return approxCount(t, qc) },
			poison: func() []string {
				var out []string
				for _, m := range drain(t, poisonQC) {
					out = append(out, *m.MessageText)
				}
				return out
			},
		})
	})
	t.Run("redis", func(t *testing.T) {
		q, _ := redisQueue(t, false)
		runFlood(t, rawFloodBody, rawFloodKind, q)
	})
	t.Run("postgres", func(t *testing.T) {
		q, _ := postgresQueue(t, false)
		runFlood(t, rawFloodBody, rawFloodKind, q)
	})
}

// runFlood is case 3 on one broker: bodyFor(i) is the exact text sent for
// message i, kindFor(i) what it is.
func runFlood(t *testing.T, bodyFor func(int) string, kindFor func(int) int, q brokerQueue) {
	const maxDequeue = 3
	total := pick(200, 1000)

	bodies := make([]string, total)
	for i := range bodies {
		bodies[i] = bodyFor(i)
	}
	ids := q.send(bodies)
	kindOf := map[string]int{}
	bodyOf := map[string]string{}
	for i, id := range ids {
		kindOf[id], bodyOf[id] = kindFor(i), bodies[i]
	}

	prog := newProgress()
	for i, id := range ids {
		prog.idToN[id] = i
	}
	record := filepath.Join(t.TempDir(), "record")
	env := maps.Clone(q.env)
	env[envRecord] = record
	start := time.Now()
	c := startChild(t, "flood", worker{
		hostJSON: hostJSON(map[string]any{
			"batchSize": 16, "newBatchThreshold": 8, "maxDequeueCount": maxDequeue,
			"maxPollingInterval": "00:00:00.500", "visibilityTimeout": "00:00:00",
		}, "00:00:05"),
		env: env, tap: prog.tap,
	})
	if err := prog.await(c, total, pick(2*time.Minute, 5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if code := c.term(t, 30*time.Second); code != 0 {
		t.Errorf("worker exit status %d, want 0", code)
	}

	// Completion lines: exactly one final outcome per message, the right one.
	final := map[string]entry{}
	failed := map[string][]int64{}
	for _, e := range c.logs.matching(func(e entry) bool { return e.str("outcome") != "" }) {
		id := e.str("messageId")
		if _, ok := kindOf[id]; !ok {
			t.Errorf("completion line for a message not sent: %v", e.f)
			continue
		}
		switch o := e.str("outcome"); o {
		case "failed":
			failed[id] = append(failed[id], e.num("dequeueCount"))
		case "succeeded", "poisoned":
			if prev, dup := final[id]; dup {
				t.Errorf("message %s settled twice: %v then %v", id, prev.f, e.f)
			}
			final[id] = e
		default:
			t.Errorf("unexpected outcome %q: %v", o, e.f)
		}
	}
	var processed, poisoned, counts [4]int
	for id, kind := range kindOf {
		counts[kind]++
		e, ok := final[id]
		if !ok {
			t.Errorf("message %s (kind %d) has no final outcome: lost", id, kind)
			continue
		}
		switch kind {
		case kindGood:
			if e.str("outcome") != "succeeded" || e.num("dequeueCount") != 1 || len(failed[id]) > 0 {
				t.Errorf("good message %s: %v (failed attempts %v)", id, e.f, failed[id])
			}
		case kindFail:
			if e.str("outcome") != "poisoned" || e.num("dequeueCount") != maxDequeue || !slices.Equal(failed[id], []int64{1, 2}) {
				t.Errorf("failing message %s: final %v, failed attempts at dequeueCount %v; want poisoned at %d after [1 2]",
					id, e.f, failed[id], maxDequeue)
			}
		case kindBadJSON, kindBadBase64:
			if e.str("outcome") != "poisoned" || e.num("dequeueCount") != 1 || len(failed[id]) > 0 {
				t.Errorf("undecodable message %s (%q): %v (failed attempts %v); want poisoned on the first delivery",
					id, bodyOf[id], e.f, failed[id])
			}
			// The reason is logged: the decoding step that refused it.
			if reason := map[int]string{kindBadJSON: "cannot be bound", kindBadBase64: "base64"}[kind]; !strings.Contains(e.str("error"), reason) {
				t.Errorf("undecodable message %s (%q) poisoned with reason %q, want one mentioning %q", id, bodyOf[id], e.str("error"), reason)
			}
		}
		if e.str("outcome") == "succeeded" {
			processed[kind]++
		} else {
			poisoned[kind]++
		}
	}
	sum := func(a [4]int) int { return a[0] + a[1] + a[2] + a[3] }
	if sum(processed)+sum(poisoned) != total {
		t.Errorf("processed %d + poisoned %d = %d, sent %d", sum(processed), sum(poisoned), sum(processed)+sum(poisoned), total)
	}

	// The function never ran for undecodable messages, and ran the others
	// once per delivery.
	runs := map[string]int{}
	for _, ev := range readRecord(t, record) {
		if ev.kind == "start" {
			runs[ev.id]++
		}
	}
	for id, kind := range kindOf {
		want := map[int]int{kindGood: 1, kindFail: maxDequeue}[kind]
		if runs[id] != want {
			t.Errorf("message %s (kind %d) ran %d times, want %d", id, kind, runs[id], want)
		}
	}

	// The poison queue holds exactly the poisoned bodies, byte for byte.
	var want, got []string
	for id, kind := range kindOf {
		if kind != kindGood {
			want = append(want, bodyOf[id])
		}
	}
	got = append(got, q.poison()...)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("poison queue holds %d bodies, want the %d sent bodies unchanged", len(got), len(want))
		for _, s := range got {
			if _, found := slices.BinarySearch(want, s); !found {
				t.Errorf("  poison body not sent: %q", s)
			}
		}
		for _, s := range want {
			if _, found := slices.BinarySearch(got, s); !found {
				t.Errorf("  sent body missing from poison: %q", s)
			}
		}
	}
	if n := q.count(); n != 0 {
		t.Errorf("source queue still holds %d messages", n)
	}
	summary(t, "sent %d (good %d, always-fail %d, bad JSON %d, bad base64 %d): processed %d + poisoned %d in %s; poison queue %d bodies, all byte-identical=%v",
		total, counts[kindGood], counts[kindFail], counts[kindBadJSON], counts[kindBadBase64],
		sum(processed), sum(poisoned), elapsed.Round(100*time.Millisecond), len(got), slices.Equal(got, want))
}
