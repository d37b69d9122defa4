package tablestore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// open returns a store on a fresh table of the shared Azurite.
func open(t *testing.T, o tablestore.Options) (*tablestore.Store, context.Context) {
	t.Helper()
	srv := azuritetest.SharedTable(t)
	o.Table = srv.NewTableName(t)
	s, err := tablestore.FromConnectionString(srv.ConnectionString, o)
	if err != nil {
		t.Fatalf("FromConnectionString: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return s, ctx
}

func record(name string) *operations.Record {
	return &operations.Record{ID: operations.NewID(), Name: name, Input: json.RawMessage(`{"n": 1}`)}
}

func TestCreateGetContract(t *testing.T) {
	t.Parallel()
	c := newClock()
	s, ctx := open(t, tablestore.Options{Now: c.Now, TimeToLive: time.Hour})
	in := record("f")
	in.RunAs, in.CallbackURL, in.IdempotencyKey = "alice", "https://example.com/cb?x=1", "key-1"
	in.Progress = json.RawMessage(`  {"b":2, "a":1}  `)
	got, err := s.Create(ctx, in)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	now := c.Now().Truncate(100 * time.Nanosecond)
	if !got.CreatedOn.Equal(now) || !got.LastUpdated.Equal(now) || !got.ExpiresOn.Equal(now.Add(time.Hour)) {
		t.Errorf("times = %v, %v, %v; want %v and an hour later", got.CreatedOn, got.LastUpdated, got.ExpiresOn, now)
	}
	if got.Version == "" {
		t.Error("Create returned no Version")
	}
	read, err := s.Get(ctx, in.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if fmt.Sprintf("%+v", read) != fmt.Sprintf("%+v", got) {
		t.Errorf("Get = %+v\nwant   %+v", read, got)
	}
	if read.Output != nil || read.StartTime.Location() != time.UTC {
		t.Errorf("Output = %q (want nil), StartTime zone %v", read.Output, read.StartTime.Location())
	}

	// Taken: the stored record and ErrExists; nothing changes.
	again := record("other")
	again.ID = in.ID
	dup, err := s.Create(ctx, again)
	if !errors.Is(err, operations.ErrExists) || dup == nil || dup.Name != "f" {
		t.Fatalf("second Create = %v, %v; want the stored record and ErrExists", dup, err)
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "bad/id"); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get(bad/id) = %v, want ErrNotFound", err)
	}
	if _, err := s.Create(ctx, &operations.Record{ID: "bad/id"}); err == nil {
		t.Error("Create(bad/id) succeeded")
	}

	// Expired: not found, not listed, purged, and its id free again.
	c.Advance(time.Hour + time.Second)
	if _, err := s.Get(ctx, in.ID); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get(expired) = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, in.ID, operations.Cancel(c.Now())); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update(expired) = %v, want ErrNotFound", err)
	}
	if p, err := s.List(ctx, operations.Query{}); err != nil || len(p.Records) != 0 {
		t.Errorf("List after expiry = %v, %v; want nothing", p, err)
	}
	fresh, err := s.Create(ctx, again)
	if err != nil || fresh.Name != "other" {
		t.Fatalf("Create over an expired record = %v, %v; want it replaced", fresh, err)
	}
	old := record("old")
	old.ExpiresOn = c.Now().Add(-time.Minute)
	if _, err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(ctx, c.Now(), 10); err != nil || n != 1 {
		t.Errorf("Purge = %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, fresh.ID); err != nil {
		t.Errorf("the live record was purged: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, fresh.ID); !errors.Is(err, tablestore.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s, ctx := open(t, tablestore.Options{})
	r, err := s.Create(ctx, record("f"))
	if err != nil {
		t.Fatal(err)
	}
	up, err := s.Update(ctx, r.ID, operations.Started(1, time.Now()))
	if err != nil || up.Status != operations.InProgress || up.Version == r.Version || !up.LastUpdated.After(r.LastUpdated) {
		t.Fatalf("Update = %+v, %v", up, err)
	}
	same, err := s.Update(ctx, r.ID, operations.Started(1, time.Now()))
	if err != nil || same.Version != up.Version {
		t.Errorf("no-op Update = %+v, %v; want the record unchanged", same, err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, r.ID, func(*operations.Record) (bool, error) { return true, boom }); err != boom {
		t.Errorf("Update with a failing change = %v, want it as it is", err)
	}
	if _, err := s.Update(ctx, operations.NewID(), operations.Cancel(time.Now())); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update(unknown) = %v, want ErrNotFound", err)
	}
}

// TestConcurrentUpdates: many writers on one record lose no update.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	s, ctx := open(t, tablestore.Options{})
	r, err := s.Create(ctx, record("f"))
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 12, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				_, err := s.Update(ctx, r.ID, func(r *operations.Record) (bool, error) {
					r.Attempt++
					return true, nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update: %v", err)
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil || got.Attempt != writers*each {
		t.Errorf("Attempt = %d, %v; want %d", got.Attempt, err, writers*each)
	}
}

// bigJSON returns n bytes of JSON text: a string of mixed characters,
// including quotes, backslashes, HTML characters and non-ASCII ones.
func bigJSON(n int) json.RawMessage {
	const alphabet = `abc \"x\" <&> é€𝄞 \\ 0123456789`
	var b bytes.Buffer
	b.WriteByte('"')
	for b.Len() < n-1-len(alphabet) {
		b.WriteString(alphabet)
	}
	for b.Len() < n-1 {
		b.WriteByte('z')
	}
	b.WriteByte('"')
	return b.Bytes()
}

func TestBigValues(t *testing.T) {
	t.Parallel()
	s, ctx := open(t, tablestore.Options{})
	in := record("big")
	in.Input = bigJSON(operations.MaxInput)
	in.ErrorMessage = strings.Repeat("a long message ", 5000) // over one string property
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatalf("Create with a MaxInput input: %v", err)
	}
	got, err := s.Get(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Input, in.Input) || got.ErrorMessage != in.ErrorMessage || !bytes.Equal(created.Input, in.Input) {
		t.Errorf("Input: read back %d bytes, want %d; ErrorMessage %d bytes, want %d", len(got.Input), len(in.Input), len(got.ErrorMessage), len(in.ErrorMessage))
	}

	// Bytes that are not UTF-8 come back as they are too.
	odd := record("odd")
	odd.Input = json.RawMessage("\"\xff\xfe\"")
	odd.Progress = json.RawMessage{}
	if _, err := s.Create(ctx, odd); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, odd.ID); err != nil || !bytes.Equal(got.Input, odd.Input) || len(got.Progress) != 0 {
		t.Errorf("Get = %q, %q, %v; want the bytes as written and no progress", got.Input, got.Progress, err)
	}

	// A MaxOutput output beside that input does not fit: the record keeps
	// its status and says why the output is missing.
	if _, err := s.Update(ctx, in.ID, operations.Started(1, time.Now())); err != nil {
		t.Fatal(err)
	}
	out, err := s.Update(ctx, in.ID, operations.Succeed(bigJSON(operations.MaxOutput), time.Now()))
	if err != nil || out.Status != operations.Succeeded || out.Output != nil || out.ErrorCode != "OutputTooLarge" {
		t.Fatalf("Succeed with a big output = %v, %v; want Succeeded without the output", out, err)
	}
	// So does an error message that would not fit: it is cut.
	msg := record("msg")
	msg.Input = bigJSON(operations.MaxInput)
	if _, err := s.Create(ctx, msg); err != nil {
		t.Fatal(err)
	}
	failed, err := s.Update(ctx, msg.ID, operations.Fail("Boom", strings.Repeat("é", 400<<10), time.Now()))
	if err != nil || failed.Status != operations.Failed || len(failed.ErrorMessage) > 20<<10 || !strings.HasPrefix(failed.ErrorMessage, "éé") {
		t.Fatalf("Fail with a 800 KiB message = %v, %v; want it Failed with the message cut", failed, err)
	}
	if got, err := s.Get(ctx, msg.ID); err != nil || got.ErrorMessage != failed.ErrorMessage || !bytes.Equal(got.Input, msg.Input) {
		t.Errorf("Get after the cut = %v, %v", got, err)
	}

	// Too large from the start: refused.
	huge := record("huge")
	huge.Input = bigJSON(operations.MaxInput)
	huge.CallbackURL = string(bigJSON(operations.MaxInput))
	if _, err := s.Create(ctx, huge); !errors.Is(err, tablestore.ErrTooLarge) {
		t.Errorf("Create of a 1 MiB record = %v, want ErrTooLarge", err)
	}
	long := record(strings.Repeat("n", 40000))
	if _, err := s.Create(ctx, long); !errors.Is(err, tablestore.ErrTooLarge) {
		t.Errorf("Create with a 40000-character name = %v, want ErrTooLarge", err)
	}
}

func listAll(ctx context.Context, t *testing.T, s *tablestore.Store, q operations.Query) []string {
	t.Helper()
	var ids []string
	for {
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatalf("List(%+v): %v", q, err)
		}
		for _, r := range p.Records {
			ids = append(ids, r.ID)
		}
		if p.Next == "" {
			return ids
		}
		if len(p.Records) != q.PageSize() {
			t.Errorf("a page before the last has %d records, want %d", len(p.Records), q.PageSize())
		}
		q.Cursor = p.Next
	}
}

// TestListFilters covers the filter's escaping: values with quotes and
// what would be OData if it were not escaped.
func TestListFilters(t *testing.T) {
	t.Parallel()
	s, ctx := open(t, tablestore.Options{})
	names := []string{"o'brien", "plain", "x' or Name ne 'y", "''", "a'", "a&b=c%20#+ü?$top=1"}
	admin, alice, quoted := "", "alice", "al'ice"
	byName := map[string][]string{}
	byRunAs := map[string][]string{}
	var all []string
	for i := range 18 {
		r := record(names[i%len(names)])
		r.RunAs = []string{admin, alice, quoted}[i%3]
		if _, err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if _, err := s.Update(ctx, r.ID, operations.Started(1, time.Now())); err != nil {
				t.Fatal(err)
			}
		}
		byName[r.Name] = append(byName[r.Name], r.ID)
		byRunAs[r.RunAs] = append(byRunAs[r.RunAs], r.ID)
		all = append(all, r.ID)
	}
	for _, name := range names {
		if got := listAll(ctx, t, s, operations.Query{Name: name, Limit: 2}); fmt.Sprint(got) != fmt.Sprint(byName[name]) {
			t.Errorf("Name %q: %v, want %v", name, got, byName[name])
		}
	}
	for _, who := range []string{admin, alice, quoted} {
		if got := listAll(ctx, t, s, operations.Query{RunAs: &who}); fmt.Sprint(got) != fmt.Sprint(byRunAs[who]) {
			t.Errorf("RunAs %q: %v, want %v", who, got, byRunAs[who])
		}
	}
	if got := listAll(ctx, t, s, operations.Query{Limit: 4}); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Errorf("all, by 4: %v, want %v", got, all)
	}
	running := listAll(ctx, t, s, operations.Query{Status: []operations.Status{operations.InProgress, operations.Canceling}})
	if len(running) != 5 {
		t.Errorf("InProgress or Canceling: %d records, want 5", len(running))
	}
	if got := listAll(ctx, t, s, operations.Query{Since: time.Now().Add(time.Hour)}); len(got) != 0 {
		t.Errorf("Since an hour ahead: %v, want none", got)
	}
	for _, bad := range []string{"garbage!", "Zm9v", strings.Repeat("A", 7)} {
		if _, err := s.List(ctx, operations.Query{Cursor: bad}); !errors.Is(err, tablestore.ErrBadCursor) {
			t.Errorf("List(cursor %q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

// TestOutage stops the table service under a store: calls fail promptly
// under their deadline, and work again once it is back.
func TestOutage(t *testing.T) {
	t.Parallel()
	srv := azuritetest.StartTable(t, azuritetest.Options{Location: t.TempDir()})
	table := srv.NewTableName(t)
	quick, err := tablestore.FromConnectionString(srv.ConnectionString, tablestore.Options{
		Table: table,
		ClientOptions: &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{
			Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: 100 * time.Millisecond},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The SDK's default retries (about 6 s of back-off) give way to the
	// caller's deadline.
	patient, err := tablestore.FromConnectionString(srv.ConnectionString, tablestore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := quick.Create(ctx, record("f"))
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := quick.Get(ctx, r.ID); return err }},
		{"Create", func(ctx context.Context) error { _, err := quick.Create(ctx, record("f")); return err }},
		{"Update", func(ctx context.Context) error {
			_, err := quick.Update(ctx, r.ID, operations.Cancel(time.Now()))
			return err
		}},
		{"List", func(ctx context.Context) error { _, err := quick.List(ctx, operations.Query{}); return err }},
		{"Purge", func(ctx context.Context) error { _, err := quick.Purge(ctx, time.Now(), 10); return err }},
		{"Get with default retries", func(ctx context.Context) error { _, err := patient.Get(ctx, r.ID); return err }},
	}
	for _, c := range calls {
		short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		start := time.Now()
		err := c.call(short)
		cancel()
		if err == nil {
			t.Errorf("%s with the server down succeeded", c.name)
			continue
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s took %v to fail: %v", c.name, took, err)
		}
		if errors.Is(err, operations.ErrNotFound) || strings.Contains(err.Error(), "Eby8vdM02") {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	srv.Restart(t)
	got, err := quick.Get(ctx, r.ID)
	if err != nil || got.Version != r.Version {
		t.Fatalf("Get after the restart = %v, %v; want the record", got, err)
	}
	if _, err := patient.Update(ctx, r.ID, operations.Cancel(time.Now())); err != nil {
		t.Errorf("Update after the restart: %v", err)
	}
}

// TestTableRecreated: a table that vanishes (an in-memory Azurite
// restarted) is created again.
func TestTableRecreated(t *testing.T) {
	t.Parallel()
	srv := azuritetest.StartTable(t, azuritetest.Options{})
	s, err := tablestore.FromConnectionString(srv.ConnectionString, tablestore.Options{Table: srv.NewTableName(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := s.Create(ctx, record("f"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get after the restart = %v, want ErrNotFound (the data was in memory)", err)
	}
	if _, err := s.Create(ctx, r); err != nil {
		t.Errorf("Create after the restart: %v", err)
	}
	if p, err := s.List(ctx, operations.Query{}); err != nil || len(p.Records) != 1 {
		t.Errorf("List after the restart = %v, %v; want the new record", p, err)
	}
}

// TestOpenStore opens the store through the operations registry, on the
// AzureWebJobsStorage setting.
func TestOpenStore(t *testing.T) {
	t.Parallel()
	srv := azuritetest.SharedTable(t)
	table := srv.NewTableName(t)
	st, err := operations.OpenStore(context.Background(), "table", operations.OpenOptions{
		Lookup: func(name string) (string, bool) {
			if name == "AzureWebJobsStorage" {
				return srv.ConnectionString, true
			}
			return "", false
		},
		Table: table,
	})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := st.Create(ctx, record("f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if got := st.(*tablestore.Store).Table(); got != table {
		t.Errorf("Table() = %q, want %q", got, table)
	}
}

func TestCreateIfMissingFalse(t *testing.T) {
	t.Parallel()
	s, ctx := open(t, tablestore.Options{CreateIfMissing: new(false)})
	_, err := s.Create(ctx, record("f"))
	if err == nil || errors.Is(err, operations.ErrNotFound) || !strings.Contains(err.Error(), "TableNotFound") {
		t.Errorf("Create without the table = %v, want TableNotFound", err)
	}
}
