package chaos

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	_ "github.com/jobhost/jobhost/timer/timerblob" // the worker (this binary) on Azure Storage
	"github.com/jobhost/jobhost/timer/timerpg"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

// Three worker processes with one timer (every second) and one host id on
// Azurite's blob service: each occurrence runs once, on the host holding
// the listener lease; when that host is SIGKILLed another fires within two
// lease periods (the lease runs out, it takes it on its next try), and no
// occurrence runs twice outside the one the killed host may have been
// running.
//
// It runs on both stores a timer can use across hosts.
func TestTimerLeaseHolderKilled(t *testing.T) {
	t.Run("azurite-blob", func(t *testing.T) {
		srv := azuritetest.SharedBlob(t)
		// 15 s: the shortest blob lease.
		timerLeaseKilled(t, 15*time.Second, map[string]any{}, map[string]string{"AzureWebJobsStorage": srv.ConnectionString})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Require(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if err := timerpg.Migrate(ctx, pool, ""); err != nil {
			t.Fatal(err)
		}
		timerLeaseKilled(t, 5*time.Second, map[string]any{"store": "postgres"}, map[string]string{"JOBHOST_POSTGRES_URL": dsn})
	})
}

func timerLeaseKilled(t *testing.T, lease time.Duration, timers map[string]any, env map[string]string) {
	record := filepath.Join(t.TempDir(), "record")
	hj := hostJSON(map[string]any{}, "00:00:05")
	hj["jobhost"].(map[string]any)["hostId"] = fmt.Sprintf("chaos-timer-%d", time.Now().UnixNano()%1e9)
	timers["leaseDuration"], timers["acquireInterval"] = fmt.Sprintf("%.0fs", lease.Seconds()), "1s"
	hj["jobhost"].(map[string]any)["timers"] = timers
	var kids []*child
	for i := range 3 {
		e := map[string]string{envTimer: "*/1 * * * * *", envRecord: record, envIncarnation: fmt.Sprint(i)}
		maps.Copy(e, env)
		kids = append(kids, launchChild(t, fmt.Sprint("timer-", i), worker{hostJSON: hj, env: e}))
	}
	for _, c := range kids {
		c.await(t, "host started", 1, 30*time.Second, msgIs("host started"))
	}
	ticks := func() []event { return readRecord(t, record) }
	waitTicks := func(n int, within time.Duration, f func(event) bool) []event {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			var got []event
			for _, e := range ticks() {
				if f(e) {
					got = append(got, e)
				}
			}
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d ticks within %s; want %d", len(got), within, n)
			}
			time.Sleep(100 * time.Millisecond) // polling the record file
		}
	}
	all := func(event) bool { return true }
	before := waitTicks(12, 60*time.Second, all)
	leader := before[len(before)-1].incarnation
	for _, e := range before {
		if e.incarnation != leader {
			t.Fatalf("occurrences ran on hosts %s and %s while one held the lease", e.incarnation, leader)
		}
	}
	var killedAt time.Time
	for _, c := range kids {
		if c.name == "timer-"+leader {
			c.kill(t)
			killedAt = time.Now()
		}
	}
	after := waitTicks(8, 3*lease, func(e event) bool { return e.incarnation != leader })
	first := time.Unix(int64(after[0].n), 0)
	took := first.Sub(killedAt)
	t.Logf("leader %s killed; host %s fired %s later (lease %s)", leader, after[0].incarnation, took.Round(time.Second), lease)
	if took > 2*lease {
		t.Errorf("another host fired %s after the kill; want within two lease periods (%s)", took, 2*lease)
	}
	for _, c := range kids {
		if c.name != "timer-"+leader {
			c.term(t, 30*time.Second)
		}
	}
	runs := map[string][]string{}
	for _, e := range ticks() {
		runs[e.id] = append(runs[e.id], e.incarnation)
	}
	var ids []string
	for id := range runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	twice := 0
	for _, id := range ids {
		if len(runs[id]) > 1 {
			twice++
			t.Logf("occurrence %s ran on %v", id, runs[id])
		}
	}
	if twice > 1 {
		t.Errorf("%d occurrences ran more than once; at most the one the killed host was running may", twice)
	}
	if len(ids) < 20 {
		t.Errorf("%d occurrences ran; want at least 20", len(ids))
	}
}
