package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/postgres"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// open returns a driver on queue in schema, closed when the test ends.
func open(t testing.TB, schema, queue string, o postgres.Options) *postgres.Driver {
	t.Helper()
	o.Schema = schema
	d, err := postgres.Open(ctxT(t), pgtest.Require(t), queue, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func publisher(t testing.TB, schema, queue string) *postgres.Publisher {
	t.Helper()
	p, err := postgres.OpenPublisher(ctxT(t), pgtest.Require(t), queue, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// receiveOne receives until it has one message, failing after 10 s.
func receiveOne(t testing.TB, d triggers.Driver, lease time.Duration) *triggers.Message {
	t.Helper()
	ctx := ctxT(t)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ms, err := d.Receive(ctx, 1, lease)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 1 {
			return ms[0]
		}
	}
	t.Fatal("no message within 10 s")
	return nil
}

// TestCompetingConsumers runs two drivers (two workers) on one queue:
// every message is processed exactly once, and both take part.
func TestCompetingConsumers(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	const n = 400
	pub := publisher(t, schema, queue)
	ctx := ctxT(t)
	for i := range n {
		if _, err := pub.Publish(ctx, fmt.Appendf(nil, "m%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	per := [2]int{}
	var wg sync.WaitGroup
	for w := range 2 {
		d := open(t, schema, queue, postgres.Options{ReceiveWait: 200 * time.Millisecond})
		wg.Go(func() {
			for {
				ms, err := d.Receive(ctx, 8, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ms) == 0 {
					return // drained: the wait found nothing more
				}
				for _, m := range ms {
					if m.DequeueCount != 1 {
						t.Errorf("%s: DequeueCount %d, want 1", m.Body, m.DequeueCount)
					}
					if err := d.Complete(ctx, m); err != nil {
						t.Error(err)
					}
					mu.Lock()
					seen[string(m.Body)]++
					per[w]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d distinct messages processed, want %d", len(seen), n)
	}
	for b, c := range seen {
		if c != 1 {
			t.Errorf("%s processed %d times", b, c)
		}
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("one consumer got nothing: %v", per)
	}
	t.Logf("consumers took %d and %d messages", per[0], per[1])
}

// TestLeaseExpiryRedelivers: a message whose holder dies (never settles)
// is claimable again when its lease ends, by another driver, with
// attempts 2; the old holder has lost it. The waiting Receive wakes when
// the lease ends (no polling by the test).
func TestLeaseExpiryRedelivers(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	ctx := ctxT(t)
	if err := pgtest.Enqueue(ctx, t, schema, queue, []byte("crash"), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	dead := open(t, schema, queue, postgres.Options{})
	const lease = 700 * time.Millisecond
	first := receiveOne(t, dead, lease)
	leased := time.Now()
	if first.DequeueCount != 1 {
		t.Fatalf("first DequeueCount %d", first.DequeueCount)
	}
	other := open(t, schema, queue, postgres.Options{ReceiveWait: 5 * time.Second})
	second := receiveOne(t, other, time.Minute)
	el := time.Since(leased)
	if second.ID != first.ID || second.DequeueCount != 2 || string(second.Body) != "crash" || second.Properties["k"] != "v" {
		t.Errorf("redelivered %s count %d body %q props %v; want %s, 2, crash", second.ID, second.DequeueCount, second.Body, second.Properties, first.ID)
	}
	if el < lease-50*time.Millisecond || el > lease+time.Second {
		t.Errorf("redelivered %v after the lease began, want just after the %v lease", el, lease)
	}
	t.Logf("redelivered %v after a %v lease began", el.Round(time.Millisecond), lease)
	if err := dead.Complete(ctx, first); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("old holder's Complete: %v, want ErrLeaseLost", err)
	}
	if err := dead.ExtendLease(ctx, first, time.Minute); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("old holder's ExtendLease: %v, want ErrLeaseLost", err)
	}
	if err := other.Complete(ctx, second); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyWakesReceive: a Receive waiting on an empty queue returns as
// soon as a message is published (LISTEN/NOTIFY), not when its wait ends;
// it measures the latency.
func TestNotifyWakesReceive(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	ctx := ctxT(t)
	d := open(t, schema, queue, postgres.Options{ReceiveWait: 30 * time.Second})
	waiting := make(chan bool, 1)
	postgres.SetWaitHook(d, func(listening bool) { waiting <- listening })
	pub := publisher(t, schema, queue)
	const rounds = 20
	var lat []time.Duration
	for i := range rounds {
		type result struct {
			ms  []*triggers.Message
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			ms, err := d.Receive(ctx, 1, time.Minute)
			done <- result{ms, err, time.Now()}
		}()
		// Until the listener is up a waiting Receive polls; wait for one
		// that listens.
		for !<-waiting {
		}
		body := fmt.Sprintf("wake %d", i)
		if _, err := pub.Publish(ctx, []byte(body), nil); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting Receive did not return within 10 s of a publish")
		}
		if r.err != nil || len(r.ms) != 1 || string(r.ms[0].Body) != body {
			t.Fatalf("Receive = %v, %v; want %q", r.ms, r.err, body)
		}
		lat = append(lat, r.at.Sub(sent))
		if err := d.Complete(ctx, r.ms[0]); err != nil {
			t.Fatal(err)
		}
		// Drain a wake-up signal of a Receive that ran its claim again.
		select {
		case <-waiting:
		default:
		}
	}
	slices.Sort(lat)
	med, worst := lat[len(lat)/2], lat[len(lat)-1]
	t.Logf("publish to Receive return, %d rounds: median %v, max %v", rounds, med, worst)
	// Without the notification the Receive would wait its 30 s.
	if med > 250*time.Millisecond {
		t.Errorf("median wake-up latency %v, want well under the 500 ms poll of a Receive that is not listening", med)
	}
}

// TestEnqueueTx: a message enqueued in the caller's transaction exists
// only if it commits; the typed client's Prepare gives the body.
func TestEnqueueTx(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	dsn := pgtest.Require(t)
	ctx := ctxT(t)
	d := open(t, schema, queue, postgres.Options{ReceiveWait: -1})

	c, err := client.New(client.Options{Lookup: pgtest.Lookup(dsn), URLEncoding: bindings.None})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	target, err := client.ParseTarget(pgtest.URL(queue, schema).String(), "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Prepare(target, []byte(`{"id":"A-1","total":12.5}`))
	if err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, "orders"}.Sanitize()+" (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	order := func(id string, commit bool) string {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, "orders"}.Sanitize()+" VALUES ($1)", id); err != nil {
			t.Fatal(err)
		}
		mid, err := postgres.Schema(schema).EnqueueTx(ctx, tx, queue, p.Body(), map[string]string{"order": id}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return mid
	}

	order("rolled-back", false)
	if ms, err := d.Receive(ctx, 10, time.Minute); err != nil || len(ms) != 0 {
		t.Fatalf("after a rollback Receive = %d messages, %v; want none", len(ms), err)
	}
	id := order("committed", true)
	m := receiveOne(t, d, time.Minute)
	if m.ID != id || string(m.Body) != string(p.Body()) || m.Properties["order"] != "committed" || m.DequeueCount != 1 {
		t.Errorf("received %s %q %v count %d; want %s %q order=committed 1", m.ID, m.Body, m.Properties, m.DequeueCount, id, p.Body())
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, postgres.MessagesTable}.Sanitize()).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows left in the messages table: %d, %v; want 0 (the rolled-back one never existed, the completed one is deleted)", n, err)
	}

	// Missing tables: an error naming the migrations, inside the tx.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	_, err = postgres.Schema(pgtest.SchemaName(t)).EnqueueTx(ctx, tx, queue, []byte("x"), nil, 0)
	if !errors.Is(err, postgres.ErrNotMigrated) || !strings.Contains(err.Error(), postgres.Hint) {
		t.Errorf("EnqueueTx without tables: %v; want ErrNotMigrated and the hint", err)
	}
}

// TestRelease gives a delivery back without counting it.
func TestRelease(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	ctx := ctxT(t)
	d := open(t, schema, queue, postgres.Options{})
	if err := pgtest.Enqueue(ctx, t, schema, queue, []byte("r"), nil); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, d, time.Minute)
	if err := d.Retry(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	m = receiveOne(t, d, time.Minute)
	if m.DequeueCount != 2 {
		t.Fatalf("after Retry DequeueCount %d, want 2", m.DequeueCount)
	}
	if err := d.Release(ctx, m); err != nil {
		t.Fatal(err)
	}
	again := receiveOne(t, d, time.Minute)
	if again.ID != m.ID || again.DequeueCount != 2 {
		t.Errorf("after Release: %s count %d, want %s and 2", again.ID, again.DequeueCount, m.ID)
	}
	if err := d.Release(ctx, m); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("stale Release: %v, want ErrLeaseLost", err)
	}
	if err := d.Complete(ctx, again); err != nil {
		t.Fatal(err)
	}
}

// TestGiveBack: a claim whose reply was lost is undone by its token: the
// message is visible at once with its count unchanged.
func TestGiveBack(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	ctx := ctxT(t)
	d := open(t, schema, queue, postgres.Options{})
	if err := pgtest.Enqueue(ctx, t, schema, queue, []byte("g"), nil); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, d, time.Hour)
	postgres.GiveBack(d, m)
	again := receiveOne(t, d, time.Minute)
	if again.ID != m.ID || again.DequeueCount != 1 {
		t.Errorf("after give-back: %s count %d, want %s and 1", again.ID, again.DequeueCount, m.ID)
	}
}

// TestMissingTables: without the migrations, Receive, Publish and the
// poison tools say what to do; with CreateIfMissing the driver applies
// them.
func TestMissingTables(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Require(t)
	ctx := ctxT(t)
	schema := pgtest.SchemaName(t)
	u := pgtest.URL("orders", schema)
	d, err := postgres.OpenURL(ctx, u, triggers.OpenOptions{Lookup: pgtest.Lookup(dsn)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Receive(ctx, 1, time.Minute)
	for _, want := range []error{triggers.ErrNotFound, postgres.ErrNotMigrated} {
		if !errors.Is(err, want) {
			t.Errorf("Receive without tables: %v; want it to wrap %v", err, want)
		}
	}
	if err == nil || !strings.Contains(err.Error(), postgres.Hint) || !strings.Contains(err.Error(), schema+"."+postgres.MessagesTable) {
		t.Errorf("Receive without tables: %v; want the table and %q", err, postgres.Hint)
	}
	t.Logf("the error: %v", err)
	pub, err := postgres.OpenPublisherURL(ctx, u, triggers.OpenOptions{Lookup: pgtest.Lookup(dsn)})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := pub.Publish(ctx, []byte("x"), nil); !errors.Is(err, postgres.ErrNotMigrated) {
		t.Errorf("Publish without tables: %v, want ErrNotMigrated", err)
	}
	pa, err := postgres.OpenPoisonURL(ctx, u, triggers.OpenOptions{Lookup: pgtest.Lookup(dsn)})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	if n, exists, err := pa.Count(ctx); n != 0 || exists || err != nil {
		t.Errorf("poison Count without tables = %d, %v, %v; want 0, false, nil", n, exists, err)
	}

	// createQueues: the first use migrates.
	c, err := postgres.OpenURL(ctx, u, triggers.OpenOptions{Lookup: pgtest.Lookup(dsn), CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ms, err := c.Receive(ctx, 1, time.Minute); err != nil || len(ms) != 0 {
		t.Fatalf("Receive with CreateIfMissing = %v, %v; want none, nil", ms, err)
	}
	// The other drivers of the pool now find the tables too.
	if _, err := pub.Publish(ctx, []byte("x"), nil); err != nil {
		t.Fatalf("Publish after the migration: %v", err)
	}
	if m := receiveOne(t, d, time.Minute); string(m.Body) != "x" {
		t.Errorf("got %q", m.Body)
	}
	// Migrating again changes nothing.
	if err := postgres.Migrate(ctx, dsn, schema); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateConcurrent: hosts starting together migrate once.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Require(t)
	schema := pgtest.SchemaName(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := postgres.Migrate(ctxT(t), dsn, schema); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var n int
	err := pgtest.Admin(t).QueryRow(ctxT(t), "SELECT count(*) FROM "+pgx.Identifier{schema, "jobhost_migrations"}.Sanitize()+" WHERE table_name = $1", postgres.MessagesTable).Scan(&n)
	if err != nil || n != postgres.SchemaVersion() {
		t.Errorf("migration records: %d, %v; want %d", n, err, postgres.SchemaVersion())
	}
}

// TestSharedPool: the drivers, publishers and poison tools of one DSN
// share one pool.
func TestSharedPool(t *testing.T) {
	t.Parallel()
	schema := pgtest.NewSchema(t)
	a := open(t, schema, "a", postgres.Options{})
	b := open(t, schema, "b", postgres.Options{})
	p := publisher(t, schema, "a")
	pa, err := postgres.OpenPoison(ctxT(t), pgtest.Require(t), "a", postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	for _, o := range []any{b, p, pa} {
		if !postgres.SamePool(a, o) {
			t.Errorf("%T does not share the driver's pool", o)
		}
	}
}

// TestForeignRows: rows inserted with SQL of the application's own (no
// notification, a numeric property) are received, within ReceiveWait.
func TestForeignRows(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	ctx := ctxT(t)
	d := open(t, schema, queue, postgres.Options{})
	_, err := pgtest.Admin(t).Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, postgres.MessagesTable}.Sanitize()+
		` (queue, body, props) VALUES ($1, 'from sql', '{"n": 5, "s": "x"}')`, queue)
	if err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, d, time.Minute)
	if string(m.Body) != "from sql" || m.Properties["n"] != "5" || m.Properties["s"] != "x" {
		t.Errorf("got %q %v", m.Body, m.Properties)
	}
	// The channel a producer's SQL notifies, computed in SQL.
	var ch string
	if err := pgtest.Admin(t).QueryRow(ctx, `SELECT 'jobhost_queue_' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16)`, queue).Scan(&ch); err != nil || ch != postgres.Channel(queue) {
		t.Errorf("SQL channel %q, %v; want %q", ch, err, postgres.Channel(queue))
	}
}

// TestURL checks URL parsing and connection settings.
func TestURL(t *testing.T) {
	lookup := func(k string) (string, bool) {
		switch k {
		case postgres.EnvURL:
			return "postgres://u:sekrit@127.0.0.1:1/db", true
		case "Other":
			return "postgres://u:sekrit@127.0.0.1:2/db", true
		}
		return "", false
	}
	ctx := context.Background()
	for _, tc := range []struct {
		url, conn, poison string
		want              string // error substring; "" for success
	}{
		{url: "postgres://orders", want: ""},
		{url: "postgres://orders?schema=jobs&poison=bad", want: ""},
		{url: "postgres://orders", conn: "Other", want: ""},
		{url: "postgres://orders", conn: "Missing", want: `app setting "Missing" is not set`},
		{url: "postgres://user:pw@db.example:5432/test", want: "names a server"},
		{url: "postgres://", want: "names no queue"},
		{url: "postgres://orders?sslmode=disable", want: "unknown query parameter(s) sslmode"},
		{url: "postgres://orders?schema=Bad-Name", want: "invalid schema name"},
		{url: "postgres://orders?poison=", want: "empty poison queue name"},
		{url: "rabbit://orders", want: "scheme"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		d, err := postgres.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Connection: tc.conn, PoisonName: tc.poison})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.url, err)
				continue
			}
			d.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") || err != nil && strings.Contains(err.Error(), ":pw@") {
			t.Errorf("%s: the error quotes a password: %v", tc.url, err)
		}
	}
	u, _ := url.Parse("postgres://orders?poison=p1")
	d, err := postgres.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, PoisonName: "p2"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.PoisonDestination(); !strings.Contains(got, "queue p2 ") {
		t.Errorf("PoisonDestination = %q, want the PoisonName p2", got)
	}
	s, err := triggers.Lookup(postgres.Scheme)
	if err != nil || s.Publisher == nil || s.Poison == nil {
		t.Errorf("registered scheme: %+v, %v", s, err)
	}
}

// TestNoDSNInErrors: neither an unparsable DSN nor an unreachable server
// puts the password in an error.
func TestNoDSNInErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := postgres.Open(ctx, "postgres://u:sekrit@127.0.0.1:5432/db?sslmode=bogus&x=%zz", "q", postgres.Options{}); err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("unparsable DSN: %v", err)
	}
	// Nothing listens on port 1.
	d, err := postgres.Open(ctx, "postgres://u:sekrit@127.0.0.1:1/db?connect_timeout=2", "q", postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Receive(ctx, 1, time.Minute)
	if err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("unreachable server: %v", err)
	}
	t.Logf("unreachable: %v", err)
	if _, err := d.Publish(ctx, []byte("x"), nil); err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("unreachable server, Publish: %v", err)
	}
}

// TestListenerReconnects: when the listening connection dies, waiting
// Receives poll until the listener has connected and LISTENs again, and
// then wake on notifications as before. Not parallel: it cuts the
// listener that the other tests of the process share.
func TestListenerReconnects(t *testing.T) {
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	ctx := ctxT(t)
	d := open(t, schema, queue, postgres.Options{ReceiveWait: 30 * time.Second})
	waiting := make(chan bool, 100)
	postgres.SetWaitHook(d, func(listening bool) { waiting <- listening })
	done := make(chan []*triggers.Message, 1)
	go func() {
		ms, err := d.Receive(ctx, 1, time.Minute)
		if err != nil {
			t.Error(err)
		}
		done <- ms
	}()
	for !<-waiting {
	}
	var killed int
	err := pgtest.Admin(t).QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'jobhost listener' AND pid <> pg_backend_pid()").Scan(&killed)
	if err != nil || killed == 0 {
		t.Fatalf("terminated %d listener connections, %v", killed, err)
	}
	// The Receive notices (it polls while the listener is down), then
	// listens again.
	for <-waiting {
	}
	for !<-waiting {
	}
	if _, err := publisher(t, schema, queue).Publish(ctx, []byte("after reconnect"), nil); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case ms := <-done:
		if len(ms) != 1 || string(ms[0].Body) != "after reconnect" {
			t.Fatalf("got %v", ms)
		}
		if el := time.Since(sent); el > 250*time.Millisecond {
			t.Errorf("woken %v after the publish, want at once (notified)", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Receive did not return after a publish")
	}
}

// TestCloseWakesReceive: Close ends a waiting Receive at once.
func TestCloseWakesReceive(t *testing.T) {
	t.Parallel()
	schema, queue := pgtest.NewSchema(t), pgtest.QueueName()
	d, err := postgres.Open(ctxT(t), pgtest.Require(t), queue, postgres.Options{Schema: schema, ReceiveWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan bool, 100)
	postgres.SetWaitHook(d, func(listening bool) { waiting <- listening })
	done := make(chan error, 1)
	go func() {
		_, err := d.Receive(ctxT(t), 1, time.Minute)
		done <- err
	}()
	<-waiting
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("Receive ended by Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Receive")
	}
}
