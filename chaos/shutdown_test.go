package chaos

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// Case 5: SIGTERM to a worker with 16 functions in flight, each working
// until its context ends or 3 s pass. With a shutdown timeout longer than
// the work they finish and their messages are deleted; with a shorter one
// they are cancelled and their messages stay in the queue, visible again
// after their lease. The worker exits 0 either way and nothing is lost.
func TestSIGTERMWithFunctionsInFlight(t *testing.T) {
	const inFlight, work, lease = 16, 3 * time.Second, 2 * time.Second
	for _, tc := range []struct {
		name     string
		shutdown string
		finish   bool
	}{
		{"timeout-longer-than-work", "00:00:10", true},
		{"timeout-shorter-than-work", "00:00:01", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := azuritetest.Shared(t)
			queue := srv.NewQueue(t)
			qc := srv.ServiceClient(t).NewQueueClient(queue)
			record := filepath.Join(t.TempDir(), "record")
			bodies := make([]string, inFlight)
			for i := range bodies {
				bodies[i] = b64(jobBody(i, false))
			}
			ids := enqueue(t, qc, bodies)
			c := startChild(t, "worker", worker{
				hostJSON: hostJSON(map[string]any{
					"batchSize": inFlight, "newBatchThreshold": 0, "leaseDuration": "00:00:02",
					"maxPollingInterval": "00:00:00.500",
				}, tc.shutdown),
				env: map[string]string{"AzureWebJobsStorage": srv.ConnectionString, "ChaosQueue": queue,
					envRecord: record, envWork: work.String()},
			})
			c.await(t, "16 functions in flight", inFlight, 20*time.Second, msgIs("chaos start"))
			signalled := time.Now()
			code := c.term(t, 30*time.Second)
			exitAfter := time.Since(signalled)
			if code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0; log:\n%s", code, c.logs.tail(60))
			}
			succeeded := len(c.logs.matching(outcome("succeeded")))
			cancelled := len(c.logs.matching(outcome("cancelled")))
			events := map[string]int{}
			for _, ev := range readRecord(t, record) {
				events[ev.kind]++
			}
			left := approxCount(t, qc)
			if tc.finish {
				if succeeded != inFlight || cancelled != 0 || events["done"] != inFlight {
					t.Errorf("succeeded %d, cancelled %d, finished %d; want all %d to finish", succeeded, cancelled, events["done"], inFlight)
				}
				if left != 0 {
					t.Errorf("queue holds %d messages, want 0: finished functions' messages must be deleted", left)
				}
				if exitAfter < work-time.Second {
					t.Errorf("exited %s after SIGTERM: the functions were cut short", exitAfter)
				}
				summary(t, "16 in flight, shutdownTimeout %s: %d finished and deleted, exit %d after %s, queue %d",
					tc.shutdown, succeeded, code, exitAfter.Round(100*time.Millisecond), left)
				return
			}
			if cancelled != inFlight || succeeded != 0 || events["cancel"] != inFlight {
				t.Errorf("succeeded %d, cancelled %d (function saw cancellation %d); want all %d cancelled", succeeded, cancelled, events["cancel"], inFlight)
			}
			if exitAfter < 900*time.Millisecond {
				t.Errorf("exited %s after SIGTERM: functions were cancelled before the 1 s shutdown timeout", exitAfter)
			}
			if left != inFlight {
				t.Errorf("queue holds %d messages right after exit, want %d: cancelled messages must stay", left, inFlight)
			}
			// They reappear when the lease ends, unchanged: poll the queue
			// (an external resource) until all are visible again.
			visible, wait := awaitVisible(t, qc, inFlight, lease+10*time.Second)
			var gotIDs []string
			for _, m := range visible {
				gotIDs = append(gotIDs, *m.MessageID)
				if *m.DequeueCount != 1 {
					t.Errorf("message %s has dequeueCount %d, want 1", *m.MessageID, *m.DequeueCount)
				}
			}
			want := slices.Clone(ids)
			slices.Sort(gotIDs)
			slices.Sort(want)
			if !slices.Equal(gotIDs, want) {
				t.Errorf("visible again: %v, want %v", gotIDs, want)
			}
			summary(t, "16 in flight, shutdownTimeout %s: %d cancelled, exit %d after %s, %d left in the queue, all visible again %s after exit",
				tc.shutdown, cancelled, code, exitAfter.Round(100*time.Millisecond), left, wait.Round(100*time.Millisecond))
		})
	}
}

// awaitVisible peeks at qc until n messages are visible, failing after
// within; it returns them and how long that took.
func awaitVisible(t *testing.T, qc *azqueue.QueueClient, n int, within time.Duration) ([]*azqueue.PeekedMessage, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		k := int32(32)
		resp, err := qc.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &k})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Messages) >= n {
			return resp.Messages, time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%d of %d messages visible after %s", len(resp.Messages), n, within)
		}
		time.Sleep(100 * time.Millisecond) // polling an external resource, not synchronising
	}
}
