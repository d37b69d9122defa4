package pgstore_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/pgstore"
)

func TestMigrateIsIdempotent(t *testing.T) {
	dsn := require(t)
	ctx := ctxT(t)
	table := newTable(t)
	s := openStore(t, pgstore.Options{Table: table})
	// The migration is a plain CREATE TABLE: running it again would fail.
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
	}
	again, err := pgstore.Open(ctx, dsn, pgstore.Options{Table: table, Migrate: true})
	if err != nil {
		t.Fatalf("Open with Migrate on a migrated table: %v", err)
	}
	again.Close()
	plain, err := pgstore.Open(ctx, dsn, pgstore.Options{Table: table})
	if err != nil {
		t.Fatalf("Open without Migrate on a migrated table: %v", err)
	}
	plain.Close()

	conn := admin(t)
	var n, version int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM jobhost_migrations WHERE table_name = $1", table).Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	if n != 1 || version != pgstore.SchemaVersion() {
		t.Fatalf("migration records: %d rows, version %d; want 1 row, version %d", n, version, pgstore.SchemaVersion())
	}

	// The derived state column follows the status.
	for _, st := range operations.Statuses {
		id := fmt.Sprintf("state-%d", st)
		if _, err := s.Create(ctx, &operations.Record{ID: id, Name: "f", Status: st}); err != nil {
			t.Fatal(err)
		}
		var state int
		if err := conn.QueryRow(ctx, "SELECT state FROM "+table+" WHERE id = $1", id).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if operations.State(state) != st.State() {
			t.Errorf("state of %s = %d, want %d", st, state, st.State())
		}
	}

	// A migration record left by a dropped table does not stop Migrate.
	if _, err := conn.Exec(ctx, "DROP TABLE "+table); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "x"); !errors.Is(err, pgstore.ErrNotMigrated) {
		t.Fatalf("Get on a dropped table: %v, want ErrNotMigrated", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after the table was dropped: %v", err)
	}
	if _, err := s.Create(ctx, &operations.Record{ID: "x", Name: "f"}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenWithoutMigration(t *testing.T) {
	dsn := require(t)
	ctx := ctxT(t)
	table := newTable(t)
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{Table: table})
	if err == nil {
		s.Close()
		t.Fatal("Open on a missing table succeeded")
	}
	if !errors.Is(err, pgstore.ErrNotMigrated) || !strings.Contains(err.Error(), "jobhost operations migrate") || !strings.Contains(err.Error(), table) {
		t.Fatalf("Open on a missing table: %v; want ErrNotMigrated naming the table and the migrate command", err)
	}
	t.Logf("the error: %v", err)

	// A table made by hand, without the migration record, is not taken.
	conn := admin(t)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS jobhost_migrations (table_name text NOT NULL, version integer NOT NULL, name text NOT NULL, applied_on timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, version))"); err != nil {
		t.Fatal(err)
	}
	if _, err = pgstore.Open(ctx, dsn, pgstore.Options{Table: table}); !errors.Is(err, pgstore.ErrNotMigrated) || !strings.Contains(err.Error(), "schema version 0") {
		t.Fatalf("Open on an unmigrated table: %v; want ErrNotMigrated at version 0", err)
	}
}

func TestTableNames(t *testing.T) {
	dsn := require(t)
	ctx := ctxT(t)
	for _, bad := range []string{"a;drop table x", "a.b.c", "1abc", "a-b", `"quoted"`, strings.Repeat("a", 49), ".a", "a."} {
		if s, err := pgstore.Open(ctx, dsn, pgstore.Options{Table: bad}); err == nil || !strings.Contains(err.Error(), "invalid table name") {
			if s != nil {
				s.Close()
			}
			t.Errorf("table %q: %v, want an invalid table name error", bad, err)
		}
	}

	// Schema-qualified, and folded to lower case; "order" needs quoting.
	schema := fmt.Sprintf("jhtest_schema_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	conn := admin(t)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	s := openStore(t, pgstore.Options{Table: strings.ToUpper(schema) + ".Order"})
	if s.Table() != schema+".order" {
		t.Errorf("Table() = %q", s.Table())
	}
	if _, err := s.Create(ctx, &operations.Record{ID: "a", Name: "f"}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+schema+`."order"`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows in %s.order: %d, %v", schema, n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.jobhost_migrations WHERE table_name = $1`, schema+".order").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration records beside it: %d, %v", n, err)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := ctxT(t)
	clk := newClock()
	s := openStore(t, pgstore.Options{Now: clk.Now, TimeToLive: time.Hour})
	local := time.FixedZone("X", 5*3600)
	in := &operations.Record{
		ID:             operations.NewID(),
		Name:           "resize",
		Status:         operations.InProgress,
		Input:          json.RawMessage(`{"b": 1,   "a" :[ 2 ,3], "b": "dup", "u": "\u00e9é"}`),
		Output:         json.RawMessage{},
		Progress:       json.RawMessage("  42\n"),
		StartTime:      time.Date(2030, 1, 2, 3, 4, 5, 999999999, local),
		Attempt:        3,
		ErrorCode:      "AttemptFailed",
		ErrorMessage:   "boom \x00 'quoted' \"double\" \xff",
		RunAs:          "key-1",
		CallbackURL:    "https://example.com/cb?x=1",
		IdempotencyKey: "idem",
		Version:        "999",
		CreatedOn:      time.Unix(1, 0), // ignored: Create sets it
	}
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now().UTC().Truncate(time.Microsecond)
	if !created.CreatedOn.Equal(now) || !created.LastUpdated.Equal(now) || !created.ExpiresOn.Equal(now.Add(time.Hour)) {
		t.Errorf("times: created %v updated %v expires %v, want %v and +1h", created.CreatedOn, created.LastUpdated, created.ExpiresOn, now)
	}
	if want := in.StartTime.UTC().Truncate(time.Microsecond); !created.StartTime.Equal(want) || created.StartTime.Location() != time.UTC {
		t.Errorf("start time %v, want %v in UTC", created.StartTime, want)
	}
	if created.Version != "1" {
		t.Errorf("version %q, want 1", created.Version)
	}
	got, err := s.Get(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, created) {
		t.Errorf("Get:\n got %+v\nwant %+v", got, created)
	}
	if want := "boom \uFFFD 'quoted' \"double\" \uFFFD"; got.ErrorMessage != want {
		t.Errorf("error message %q, want %q (NUL and invalid UTF-8 replaced)", got.ErrorMessage, want)
	}
	if string(got.Input) != string(in.Input) || string(got.Progress) != string(in.Progress) {
		t.Errorf("bytes changed: input %q progress %q", got.Input, got.Progress)
	}
	if got.Output != nil {
		t.Errorf("empty output came back as %#v, want nil", got.Output)
	}
	if !got.EndTime.IsZero() {
		t.Errorf("end time %v, want zero", got.EndTime)
	}

	// A nil input stays nil; the caller's record is not changed.
	bare, err := s.Create(ctx, &operations.Record{ID: "bare", Name: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if bare.Input != nil || bare.Output != nil || bare.Progress != nil {
		t.Errorf("nil JSON came back as %#v %#v %#v", bare.Input, bare.Output, bare.Progress)
	}
	if in.Version != "999" || !in.CreatedOn.Equal(time.Unix(1, 0)) {
		t.Error("Create changed the caller's record")
	}
	if _, err := s.Create(ctx, &operations.Record{Name: "f"}); err == nil {
		t.Error("Create without an id succeeded")
	}
	if _, err := s.Create(ctx, &operations.Record{ID: "nul\x00", Name: "f"}); err == nil {
		t.Error("Create of an id PostgreSQL cannot keep succeeded")
	}
	for _, id := range []string{"nul\x00", "\xff", "nope"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, operations.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", id, err)
		}
	}
}

func TestCreateExists(t *testing.T) {
	ctx := ctxT(t)
	clk := newClock()
	s := openStore(t, pgstore.Options{Now: clk.Now, TimeToLive: time.Hour})
	first, err := s.Create(ctx, &operations.Record{ID: "a", Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	stored, err := s.Create(ctx, &operations.Record{ID: "a", Name: "second"})
	if !errors.Is(err, operations.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if !reflect.DeepEqual(stored, first) {
		t.Errorf("second Create returned %+v, want the stored %+v", stored, first)
	}
	if got, _ := s.Get(ctx, "a"); got.Name != "first" {
		t.Errorf("the record changed: %+v", got)
	}

	// Concurrent Creates of one id: one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Go(func() {
			_, err := s.Create(ctx, &operations.Record{ID: "race", Name: fmt.Sprint(i)})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, operations.ErrExists) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d Creates of one id succeeded", wins)
	}
}

func TestExpiryAndPurge(t *testing.T) {
	ctx := ctxT(t)
	clk := newClock()
	s := openStore(t, pgstore.Options{Now: clk.Now, TimeToLive: time.Hour})
	for i := range 5 {
		if _, err := s.Create(ctx, &operations.Record{ID: fmt.Sprint("old-", i), Name: "f"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(30 * time.Minute)
	if _, err := s.Create(ctx, &operations.Record{ID: "new", Name: "f"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(31 * time.Minute) // the old ones expired, "new" has not

	if _, err := s.Get(ctx, "old-0"); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get expired: %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, "old-0", operations.SetProgress(json.RawMessage("1"))); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update expired: %v, want ErrNotFound", err)
	}
	page, err := s.List(ctx, operations.Query{})
	if err != nil || len(page.Records) != 1 || page.Records[0].ID != "new" {
		t.Fatalf("List: %+v, %v; want only new", page, err)
	}
	// An expired id not purged yet can be created again.
	again, err := s.Create(ctx, &operations.Record{ID: "old-4", Name: "g"})
	if err != nil || again.Name != "g" {
		t.Fatalf("Create over an expired record: %+v, %v", again, err)
	}

	n, err := s.Purge(ctx, clk.Now(), 3)
	if err != nil || n != 3 {
		t.Fatalf("Purge 3: %d, %v", n, err)
	}
	n, err = s.Purge(ctx, clk.Now(), 3)
	if err != nil || n != 1 {
		t.Fatalf("second Purge: %d, %v; want the last expired one", n, err)
	}
	if n, err = s.Purge(ctx, clk.Now(), 0); err == nil || n != 0 {
		t.Fatalf("Purge 0: %d, %v; want an error", n, err)
	}
	clk.Advance(24 * time.Hour)
	if n, err = s.Purge(ctx, clk.Now(), 100); err != nil || n != 2 {
		t.Fatalf("final Purge: %d, %v; want new and old-4", n, err)
	}
}

func TestUpdate(t *testing.T) {
	ctx := ctxT(t)
	clk := newClock()
	s := openStore(t, pgstore.Options{Now: clk.Now})
	if _, err := s.Update(ctx, "missing", operations.Cancel(clk.Now())); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update missing: %v", err)
	}
	created, err := s.Create(ctx, &operations.Record{ID: "a", Name: "f"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	r, err := s.Update(ctx, "a", operations.Started(1, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != operations.InProgress || r.Version != "2" || !r.LastUpdated.Equal(clk.Now().Truncate(time.Microsecond)) || !r.CreatedOn.Equal(created.CreatedOn) {
		t.Errorf("after Started: %+v", r)
	}
	got, _ := s.Get(ctx, "a")
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Get after Update:\n got %+v\nwant %+v", got, r)
	}
	// A change that changes nothing writes nothing.
	clk.Advance(time.Second)
	same, err := s.Update(ctx, "a", operations.Started(1, clk.Now()))
	if err != nil || !reflect.DeepEqual(same, r) {
		t.Errorf("no-op Update: %+v, %v; want %+v", same, err, r)
	}
	// The change's error comes back as it is; a change cannot rename.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, "a", func(*operations.Record) (bool, error) { return false, boom }); err != boom {
		t.Errorf("change error: %v", err)
	}
	r, err = s.Update(ctx, "a", func(r *operations.Record) (bool, error) { r.ID, r.Version = "b", "77"; return true, nil })
	if err != nil || r.ID != "a" || r.Version != "3" {
		t.Errorf("renaming change: %+v, %v", r, err)
	}
	if _, err := s.Update(ctx, "a", operations.Fail("X", "y", clk.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "a", operations.Cancel(clk.Now())); !errors.Is(err, operations.ErrCompleted) {
		t.Errorf("cancel failed: %v", err)
	}
}

// TestConcurrentUpdates has many goroutines increment one record: no
// increment may be lost.
func TestConcurrentUpdates(t *testing.T) {
	ctx := ctxT(t)
	s := openStore(t, pgstore.Options{})
	if _, err := s.Create(ctx, &operations.Record{ID: "hot", Name: "f"}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 25
	var calls sync.Map
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				n := 0
				_, err := s.Update(ctx, "hot", func(r *operations.Record) (bool, error) {
					n++
					r.Attempt++
					r.Progress = json.RawMessage(fmt.Sprint(w))
					return true, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				v, _ := calls.LoadOrStore(w, new([2]int))
				c := v.(*[2]int)
				c[0] += n
				c[1] = max(c[1], n)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	got, err := s.Get(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempt != workers*each || got.Version != fmt.Sprint(workers*each+1) {
		t.Fatalf("attempt %d version %s; want %d and %d (lost updates)", got.Attempt, got.Version, workers*each, workers*each+1)
	}
	total, most := 0, 0
	calls.Range(func(_, v any) bool { c := v.(*[2]int); total += c[0]; most = max(most, c[1]); return true })
	t.Logf("%d updates by %d goroutines in %v (%.0f/s); change called %d times (%d retries, at most %d calls for one update)",
		workers*each, workers, elapsed, float64(workers*each)/elapsed.Seconds(), total, total-workers*each, most)
}

func TestList(t *testing.T) {
	ctx := ctxT(t)
	clk := newClock()
	s := openStore(t, pgstore.Options{Now: clk.Now})
	var ids []string
	alice := "alice"
	for i := range 23 {
		r := &operations.Record{ID: fmt.Sprintf("op-%02d", 22-i), Name: []string{"a", "b"}[i%2], Status: operations.Statuses[i%len(operations.Statuses)]}
		if i%3 == 0 {
			r.RunAs = alice
		}
		if _, err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append([]string{r.ID}, ids...)
		clk.Advance(time.Second)
	}
	var seen []string
	cursor, pages := "", 0
	for {
		p, err := s.List(ctx, operations.Query{Limit: 5, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Records {
			seen = append(seen, r.ID)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if !reflect.DeepEqual(seen, ids) || pages != 5 {
		t.Fatalf("pages %d, ids %v; want 5 pages of %v", pages, seen, ids)
	}
	count := func(q operations.Query) int {
		t.Helper()
		q.Limit = operations.MaxPage
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Records {
			q.Since = q.Since.Truncate(time.Microsecond) // the precision kept
			if !q.Matches(r) {
				t.Errorf("%+v does not match %+v", r, q)
			}
		}
		return len(p.Records)
	}
	nobody := ""
	for _, c := range []struct {
		q    operations.Query
		want int
	}{
		{operations.Query{Name: "a"}, 12},
		{operations.Query{Status: []operations.Status{operations.Succeeded, operations.Failed}}, 8},
		{operations.Query{RunAs: &alice}, 8},
		{operations.Query{RunAs: &nobody}, 15},
		{operations.Query{Since: clk.Now().Add(-3 * time.Second).Truncate(time.Microsecond)}, 3},
		{operations.Query{Since: clk.Now().Add(-3 * time.Second)}, 3},
		{operations.Query{Name: "b", RunAs: &alice}, 4},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("List %+v: %d records, want %d", c.q, got, c.want)
		}
	}
	for _, bad := range []string{"garbage!", "Zm9v", encodeRaw("pg1:")} {
		if _, err := s.List(ctx, operations.Query{Cursor: bad}); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
	if p, err := s.List(ctx, operations.Query{Name: "none"}); err != nil || p.Records == nil || len(p.Records) != 0 || p.Next != "" {
		t.Errorf("empty List: %+v, %v", p, err)
	}
}

func TestRegistry(t *testing.T) {
	dsn := require(t)
	ctx := ctxT(t)
	table := newTable(t)
	settings := map[string]string{"PG": dsn}
	lookup := func(k string) (string, bool) { v, ok := settings[k]; return v, ok }
	st, err := operations.OpenStore(ctx, "postgres", operations.OpenOptions{Lookup: lookup, Connection: "PG", Table: table, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Create(ctx, &operations.Record{ID: "a", Name: "f"}); err != nil {
		t.Fatal(err)
	}
	_, err = operations.OpenStore(ctx, "postgres", operations.OpenOptions{Lookup: lookup, Table: table})
	if err == nil || !strings.Contains(err.Error(), pgstore.EnvURL) {
		t.Errorf("without the setting: %v", err)
	}
}

func encodeRaw(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
