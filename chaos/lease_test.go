package chaos

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// Case 4: a function that runs three times its lease (lease 2 s, function
// 6 s) runs once and its message is completed, even with a second worker
// polling the same queue, ready to take the message the moment its lease
// lapses.
func TestLongFunctionKeepsLease(t *testing.T) {
	const lease, work = 2 * time.Second, 6 * time.Second
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	qc := srv.ServiceClient(t).NewQueueClient(queue)
	record := filepath.Join(t.TempDir(), "record")
	w := worker{
		hostJSON: hostJSON(map[string]any{
			"batchSize": 1, "newBatchThreshold": 0, "leaseDuration": "00:00:02",
			"maxPollingInterval": "00:00:00.250", "maxDequeueCount": 5,
		}, "00:00:10"),
		env: map[string]string{"AzureWebJobsStorage": srv.ConnectionString, "ChaosQueue": queue,
			envRecord: record, envWork: work.String()},
	}
	a := startChild(t, "a", w)
	b := startChild(t, "b", w)
	id := enqueue(t, qc, []string{b64(jobBody(1, false))})[0]

	sent := time.Now()
	var winner, other *child
	deadline := time.After(10 * time.Second)
	for {
		wa, wb := a.logs.wait(), b.logs.wait()
		if len(a.logs.matching(msgIs("chaos start"))) > 0 {
			winner, other = a, b
			break
		}
		if len(b.logs.matching(msgIs("chaos start"))) > 0 {
			winner, other = b, a
			break
		}
		select {
		case <-wa:
		case <-wb:
		case <-deadline:
			t.Fatalf("no worker started the function within 10 s; logs:\n%s\n%s", a.logs.tail(50), b.logs.tail(50))
		}
	}
	done := winner.await(t, "success", 1, work+20*time.Second, outcome("succeeded"))[0]
	took := time.Since(sent)
	renewed := len(winner.logs.matching(msgIs("message lease renewed")))
	renewFailed := winner.logs.matching(msgHas("renewing the message lease failed"))
	notDeleted := winner.logs.matching(msgHas("could not be deleted"))
	for _, c := range []*child{a, b} {
		if code := c.term(t, 30*time.Second); code != 0 {
			t.Errorf("worker %s exit status %d, want 0", c.name, code)
		}
	}
	starts := 0
	for _, ev := range readRecord(t, record) {
		if ev.kind == "start" {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("the function ran %d times, want 1 (the lease lapsed and the message was delivered again)", starts)
	}
	if n := len(other.logs.matching(msgIs("chaos start"))); n != 0 {
		t.Errorf("the second worker ran the message %d times while the first held it", n)
	}
	if done.str("messageId") != id || done.num("dequeueCount") != 1 {
		t.Errorf("completion line %v, want message %s at dequeueCount 1", done.f, id)
	}
	// Renewal every half lease over a 6 s run: at least 4 (2 s lease, 1 s apart).
	if renewed < int(work/(lease/2))-2 {
		t.Errorf("lease renewed %d times over %s, want about %d", renewed, work, int(work/(lease/2)))
	}
	if len(renewFailed)+len(notDeleted) > 0 {
		t.Errorf("renewal or delete failed: %v %v", renewFailed, notDeleted)
	}
	if n := approxCount(t, qc); n != 0 {
		t.Errorf("queue holds %d messages after success, want 0 (not completed)", n)
	}
	summary(t, "lease %s, function %s: ran %d time(s), lease renewed %d times, completed %s after send, dequeueCount %d",
		lease, work, starts, renewed, took.Round(100*time.Millisecond), done.num("dequeueCount"))
}
