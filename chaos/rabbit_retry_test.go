package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/internal/tcpproxy"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// envRabbitRestart set to 1 lets TestRabbitDelayedRetryOutage stop and
// restart the RabbitMQ broker itself (rabbitmqctl stop_app, start_app),
// which breaks every other test using the broker meanwhile.
const envRabbitRestart = "JOBHOST_CHAOS_RABBIT_RESTART"

// Case 6: RabbitMQ goes away while every message waits in the delay queue
// for its next attempt, and stays away past the delay, so that each retry
// falls due during the outage. Every message always fails: each must run
// exactly maxDequeueCount times, with DequeueCount 1, 2, 3, and then be
// poisoned exactly once; none is lost on its way back from the delay queue.
// The link is cut through the proxy; with JOBHOST_CHAOS_RABBIT_RESTART=1 the
// broker itself is stopped and started again as well (a classic delay queue
// loses every message then). It needs a local broker and rabbitmqctl.
func TestRabbitDelayedRetryOutage(t *testing.T) {
	t.Run("connection-cut", func(t *testing.T) { runRabbitRetryOutage(t, false) })
	t.Run("broker-restart", func(t *testing.T) {
		if os.Getenv(envRabbitRestart) != "1" {
			t.Skipf("set %s=1 to stop and restart the broker (rabbitmqctl stop_app/start_app): other tests using it fail meanwhile", envRabbitRestart)
		}
		runRabbitRetryOutage(t, true)
	})
}

func runRabbitRetryOutage(t *testing.T, restart bool) {
	const attempts = 3
	const delay = 10 * time.Second
	total := pick(30, 50)
	start := time.Now()

	// rabbitmqctl shows what the broker holds unacknowledged (AMQP does
	// not), so the outage can wait until no acknowledgement is in flight;
	// its figures for quorum queues are up to 5 s old (quorum_tick_interval),
	// hence the long delay.
	server := rabbittest.Require(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skipf("rabbitmqctl not found: %v", err)
	}
	u, err := url.Parse(server)
	if err != nil || !isLoopback(u.Hostname()) {
		t.Skipf("the broker at %s is not local: rabbitmqctl cannot reach it", redactedHost(server))
	}
	queue := rabbittest.DeclareQueue(t, true, nil)
	p := tcpproxy.New(t, u.Host)
	u.Host = p.Addr()
	pub := rabbittest.NewPublisher(t)
	for i := range total {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := pub.Send(ctx, queue, []byte(jobBody(i, true)), nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	record := filepath.Join(t.TempDir(), "record")
	c := startChild(t, "worker", worker{
		hostJSON: hostJSON(map[string]any{
			"batchSize": 16, "newBatchThreshold": 8, "maxDequeueCount": attempts,
			"visibilityTimeout": "00:00:10", "maxPollingInterval": "00:00:02",
		}, "00:00:05"),
		env: map[string]string{"RABBIT_SERVER_URL": u.String(), "ChaosQueue": "rabbit://" + queue, envRecord: record},
	})

	// Once every first attempt has failed and been retried (the result is
	// logged after Retry returned), nothing runs: all wait in the delay queue.
	first := c.await(t, "first attempts failed", total, 30*time.Second, func(e entry) bool {
		return e.str("outcome") == "failed" && e.num("dequeueCount") == 1
	})
	lastRetry := first[len(first)-1].at
	awaitHeld(t, map[string][2]int{queue: {0, 0}, queue + rabbitmq.RetrySuffix: {total, 0}}, time.Until(lastRetry.Add(delay-time.Second)))
	cutAt := time.Now()
	var brk *broker
	if restart {
		brk = stopBroker(t)
	}
	p.Cut()
	// The outage itself: a fault of fixed length, past the delay of every
	// retry, not a synchronisation.
	time.Sleep(time.Until(lastRetry.Add(delay + time.Second)))
	if restart {
		brk.start(queue)
	}
	p.Restore(t)
	restoredAt := time.Now()
	down := restoredAt.Sub(cutAt)

	poisoned := awaitCount(c, total, delay+20*time.Second, outcome("poisoned"))
	if s := c.logs.matching(func(e entry) bool {
		return e.str("msg") == "chaos start" && e.at.After(cutAt.Add(500*time.Millisecond)) && e.at.Before(restoredAt)
	}); len(s) > 0 {
		t.Errorf("%d functions started while RabbitMQ was away: the outage was not real", len(s))
	}

	// Every message ran exactly attempts times, counted 1..attempts.
	counts := map[int][]int{}
	for _, ev := range readRecord(t, record) {
		if ev.kind == "start" {
			counts[ev.n] = append(counts[ev.n], ev.dequeueCount)
		}
	}
	want := []int{1, 2, 3}
	lost, wrong := 0, 0
	for n := range total {
		got := slices.Sorted(slices.Values(counts[n]))
		if !slices.Equal(got, want) {
			if len(got) < attempts {
				lost++
			} else {
				wrong++
			}
			t.Errorf("message %d ran with DequeueCounts %v, want %v", n, got, want)
		}
	}

	// Each is in the poison queue exactly once; nothing is left elsewhere.
	conn := dialBroker(t, server)
	inPoison := map[int]int{}
	for {
		d, ok := rabbittest.Get(t, conn, queue+rabbitmq.PoisonSuffix)
		if !ok {
			break
		}
		var j job
		if err := json.Unmarshal(d.Body, &j); err != nil {
			t.Errorf("poison body %q: %v", d.Body, err)
			continue
		}
		inPoison[j.N]++
	}
	for n := range total {
		if inPoison[n] != 1 {
			t.Errorf("message %d is %d times in the poison queue, want once", n, inPoison[n])
		}
	}
	for _, name := range []string{queue, queue + rabbitmq.RetrySuffix} {
		if n := rabbittest.QueueDepth(t, conn, name); n != 0 {
			t.Errorf("queue %s holds %d messages, want 0", name, n)
		}
	}
	if code := c.term(t, 30*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if t.Failed() {
		t.Logf("worker log:\n%s", c.logs.tail(60))
	}
	what := "connection cut"
	if restart {
		what = "broker restarted"
	}
	summary(t, "%d always-failing messages, %s for %s with all in the delay queue (delay %s): %d poisoned, %d lost, %d with wrong counts; %s total",
		total, what, down.Round(100*time.Millisecond), delay, poisoned, lost, wrong, time.Since(start).Round(100*time.Millisecond))
}

// awaitCount waits until n log entries match f while c runs, or within
// passes, and returns how many match.
func awaitCount(c *child, n int, within time.Duration, f func(entry) bool) int {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		ch := c.logs.wait()
		if k := len(c.logs.matching(f)); k >= n {
			return k
		}
		select {
		case <-ch:
		case <-c.exited:
			return len(c.logs.matching(f))
		case <-deadline.C:
			return len(c.logs.matching(f))
		}
	}
}

// awaitHeld polls the broker (rabbitmqctl list_queues) until each queue of
// want holds that many messages ready and unacknowledged, failing after
// within.
func awaitHeld(t *testing.T, want map[string][2]int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out := rabbitctl(t, 30*time.Second, "list_queues", "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
		got := map[string][2]int{}
		for _, line := range strings.Split(out, "\n") {
			var name string
			var n [2]int
			if _, err := fmt.Sscan(line, &name, &n[0], &n[1]); err == nil {
				if _, ok := want[name]; ok {
					got[name] = n
				}
			}
		}
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues hold %v (ready, unacknowledged), want %v before the retries fall due", got, want)
		}
		time.Sleep(100 * time.Millisecond) // polling an external resource, not synchronising
	}
}

// rabbitctl runs rabbitmqctl with args and returns its output.
func rabbitctl(t *testing.T, within time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// broker is the local RabbitMQ, stopped by a test.
type broker struct {
	t       *testing.T
	stopped bool
}

// stopBroker stops the RabbitMQ application; the test's cleanup starts it
// again if the test ends before start does.
func stopBroker(t *testing.T) *broker {
	t.Helper()
	b := &broker{t: t, stopped: true}
	t.Cleanup(func() {
		if b.stopped {
			rabbitctl(t, 2*time.Minute, "start_app")
			rabbitctl(t, 2*time.Minute, "await_startup")
		}
	})
	rabbitctl(t, time.Minute, "stop_app")
	return b
}

// start starts the RabbitMQ application again and waits until it has
// booted and queue can be declared.
func (b *broker) start(queue string) {
	t := b.t
	t.Helper()
	rabbitctl(t, 2*time.Minute, "start_app")
	rabbitctl(t, 2*time.Minute, "await_startup")
	b.stopped = false
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := amqp.Dial(rabbittest.ServerURL())
		if err == nil {
			ch, cerr := c.Channel()
			if cerr == nil {
				_, cerr = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			}
			c.Close()
			if cerr == nil {
				return
			}
			err = cerr
		}
		if time.Now().After(deadline) {
			t.Fatalf("RabbitMQ not healthy 30 s after start_app: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // polling an external resource, not synchronising
	}
}

// dialBroker returns a new connection to the broker, closed when the test
// ends (the ones opened before a restart are gone).
func dialBroker(t *testing.T, server string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(server)
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func redactedHost(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Host
	}
	return fmt.Sprintf("(unparsable URL of %d bytes)", len(s))
}
