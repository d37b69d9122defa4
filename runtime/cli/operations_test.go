package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/pgstore"
	"github.com/jobhost/jobhost/operations/tablestore"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

// opsEnv is a directory whose host.json names a table store on Azurite,
// the app settings reaching it, and the same store opened for the test.
type opsEnv struct {
	dir     string
	environ []string
	store   operations.Store
}

// newOpsEnv makes an opsEnv on a fresh table of the shared Azurite table
// service.
func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	srv := azuritetest.SharedTable(t)
	table := srv.NewTableName(t)
	dir := t.TempDir()
	write(t, dir, "host.json", fmt.Sprintf(`{"jobhost": {"operations": {"store": "table", "connection": "OpsStorage", "table": %q}}}`, table))
	s, err := tablestore.FromConnectionString(srv.ConnectionString, tablestore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &opsEnv{dir: dir, environ: []string{"OpsStorage=" + srv.ConnectionString}, store: s}
}

// run runs the CLI in the environment's directory with no stdin.
func (e *opsEnv) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runIn(t, e.dir, &functions.Registry{}, e.environ, nil, args...)
}

// create stores a record of function name, brought to status by the
// changes the host applies, and returns it as stored.
func (e *opsEnv) create(t *testing.T, name string, status operations.Status, input string) *operations.Record {
	t.Helper()
	ctx := context.Background()
	rec, err := e.store.Create(ctx, &operations.Record{ID: operations.NewID(), Name: name, Status: operations.WaitingForResources, Input: json.RawMessage(input)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var changes []operations.Change
	switch status {
	case operations.WaitingForResources:
	case operations.InProgress:
		changes = []operations.Change{operations.Started(1, now)}
	case operations.Succeeded:
		changes = []operations.Change{operations.Started(1, now), operations.Succeed(json.RawMessage(`{"width":640,"tags":["a","b"]}`), now)}
	case operations.Failed:
		changes = []operations.Change{operations.Started(1, now), operations.AttemptFailed(1, "first try broke"),
			operations.Started(2, now), operations.Fail("Poisoned", "the blob is gone\nfor good: "+strings.Repeat("x", 100), now)}
	case operations.Canceled:
		changes = []operations.Change{operations.Cancel(now)}
	default:
		t.Fatalf("create: status %s", status)
	}
	for _, ch := range changes {
		if rec, err = e.store.Update(ctx, rec.ID, ch); err != nil {
			t.Fatal(err)
		}
	}
	if rec.Status != status {
		t.Fatalf("seeded %s, want %s", rec.Status, status)
	}
	return rec
}

func (e *opsEnv) status(t *testing.T, id string) operations.Status {
	t.Helper()
	rec, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Status
}

// listJSON runs operations list --output json with args and decodes it.
func (e *opsEnv) listJSON(t *testing.T, args ...string) opsPageOut {
	t.Helper()
	code, out, errs := e.run(t, append([]string{"operations", "list", "--output", "json"}, args...)...)
	if code != ExitOK {
		t.Fatalf("list %v: exit %d\n%s", args, code, errs)
	}
	var p opsPageOut
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("list %v: %v\n%s", args, err, out)
	}
	return p
}

// opsPageOut is list's JSON as a client reads it.
type opsPageOut struct {
	Records []map[string]any `json:"records"`
	Next    *string          `json:"next"`
}

func (p opsPageOut) ids() []string {
	var out []string
	for _, r := range p.Records {
		out = append(out, r["id"].(string))
	}
	return out
}

func ids(recs ...*operations.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

// List filters by function, status, state and creation time, and shows
// each record in the table with its status and truncated error.
func TestOperationsListFilters(t *testing.T) {
	e := newOpsEnv(t)
	queued := e.create(t, "resize", operations.WaitingForResources, `{"blob":"a.png"}`)
	running := e.create(t, "resize", operations.InProgress, `{"blob":"b.png"}`)
	done := e.create(t, "resize", operations.Succeeded, `{"blob":"c.png"}`)
	failed := e.create(t, "thumbnail", operations.Failed, `{"blob":"d.png"}`)
	canceled := e.create(t, "thumbnail", operations.Canceled, `{}`)

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, ids(queued, running, done, failed, canceled)},
		{[]string{"--function", "thumbnail"}, ids(failed, canceled)},
		{[]string{"--status", "Succeeded,31"}, ids(done, failed)},
		{[]string{"--status", "inprogress"}, ids(running)},
		{[]string{"--state", "Completed"}, ids(done, failed, canceled)},
		{[]string{"--state", "Ready,Locked"}, ids(queued, running)},
		{[]string{"--state", "Completed", "--status", "Failed,InProgress"}, ids(failed)},
		{[]string{"--state", "Completed", "--status", "InProgress"}, nil},
		{[]string{"--function", "resize", "--state", "3"}, ids(done)},
		{[]string{"--since", "1h"}, ids(queued, running, done, failed, canceled)},
		{[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil},
		{[]string{"--function", "nothing"}, nil},
	} {
		p := e.listJSON(t, tc.args...)
		if got := p.ids(); !slices.Equal(got, tc.want) {
			t.Errorf("list %v: got %v, want %v", tc.args, got, tc.want)
		}
		if p.Records == nil || p.Next == nil || *p.Next != "" {
			t.Errorf("list %v: want records [] and next \"\", got %+v", tc.args, p)
		}
	}

	// JSON: the record's own fields, the names of its codes, no input.
	p := e.listJSON(t, "--status", "Failed")
	r := p.Records[0]
	if r["name"] != "thumbnail" || r["status"] != float64(31) || r["statusName"] != "Failed" || r["state"] != float64(3) ||
		r["stateName"] != "Completed" || r["attempt"] != float64(2) || r["errorCode"] != "Poisoned" || r["createdOn"] == nil {
		t.Errorf("failed record's JSON: %v", r)
	}
	if _, ok := r["input"]; ok {
		t.Errorf("a listing holds no input: %v", r)
	}

	// The table: one row a record, the error on one line and cut short.
	code, out, errs := e.run(t, "operations", "list")
	if code != ExitOK {
		t.Fatalf("list: exit %d\n%s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "LAST UPDATED") {
		t.Fatalf("want a header and 5 rows:\n%s", out)
	}
	for _, rec := range []*operations.Record{queued, running, done, failed, canceled} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, rec.ID+" ") })
		if i < 0 {
			t.Fatalf("no row for %s:\n%s", rec.ID, out)
		}
		f := strings.Fields(lines[i])
		if f[1] != rec.Name || f[2] != rec.Status.String() || f[3] != fmt.Sprint(rec.Attempt) || f[4] != rec.CreatedOn.UTC().Format(time.RFC3339) {
			t.Errorf("row for %s %s: %q", rec.Name, rec.Status, lines[i])
		}
		if rec == failed {
			if !strings.Contains(lines[i], "the blob is gone for good: xxx") || !strings.HasSuffix(lines[i], "…") ||
				len([]rune(lines[i][strings.Index(lines[i], "the blob"):])) != opsErrorWidth {
				t.Errorf("error not shown on one line, cut to %d: %q", opsErrorWidth, lines[i])
			}
		}
	}
	if code, out, _ := e.run(t, "operations", "list", "--function", "nothing"); code != ExitOK || !strings.Contains(out, "no operation records match") {
		t.Errorf("empty list: exit %d, %q", code, out)
	}
}

// A page says the cursor of the next; --cursor follows it; --all reads
// every page.
func TestOperationsListPages(t *testing.T) {
	e := newOpsEnv(t)
	var all []*operations.Record
	for i := range 5 {
		all = append(all, e.create(t, "resize", operations.WaitingForResources, fmt.Sprintf(`{"n":%d}`, i)))
	}
	want := ids(all...)

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("more than 3 pages of 2 for 5 records: %v", got)
		}
		args := []string{"--limit", "2"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		p := e.listJSON(t, args...)
		if len(p.Records) > 2 {
			t.Fatalf("page of %d with --limit 2", len(p.Records))
		}
		got = append(got, p.ids()...)
		if *p.Next == "" {
			break
		}
		cursor = *p.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages: got %v, want %v", got, want)
	}

	// The table says how to go on.
	code, out, _ := e.run(t, "operations", "list", "--limit", "2")
	p := e.listJSON(t, "--limit", "2")
	if code != ExitOK || !strings.Contains(out, "more: --cursor "+*p.Next) {
		t.Errorf("no cursor hint: exit %d\n%s", code, out)
	}
	code, out, _ = e.run(t, "operations", "list", "--limit", "2", "--cursor", *p.Next)
	if code != ExitOK || strings.Contains(out, want[0]) || !strings.Contains(out, want[2]) || !strings.Contains(out, want[3]) {
		t.Errorf("second page: exit %d\n%s", code, out)
	}

	// --all follows the pages, and stops at its bound.
	if p := e.listJSON(t, "--all", "--limit", "2"); !slices.Equal(p.ids(), want) || *p.Next != "" {
		t.Errorf("--all: got %v next %q, want %v", p.ids(), *p.Next, want)
	}
	defer func(n int) { opsListMax = n }(opsListMax)
	opsListMax = 3
	if p := e.listJSON(t, "--all", "--limit", "2"); !slices.Equal(p.ids(), want[:4]) || *p.Next == "" {
		t.Errorf("--all bounded at 3: got %v next %q", p.ids(), *p.Next)
	}
	if code, out, _ := e.run(t, "operations", "list", "--all", "--limit", "2"); code != ExitOK || !strings.Contains(out, "stopped after 4 records; the rest: --cursor ") {
		t.Errorf("--all bounded: exit %d\n%s", code, out)
	}
}

// Show prints the whole record, JSON values pretty-printed; an unknown id
// is exit status 1.
func TestOperationsShow(t *testing.T) {
	e := newOpsEnv(t)
	ctx := context.Background()
	rec := e.create(t, "resize", operations.Succeeded, `{"blob":"c.png","sizes":[1,2]}`)
	if _, err := e.store.Update(ctx, rec.ID, func(r *operations.Record) (bool, error) {
		r.CallbackURL = "https://hooks.example.com/done?sig=s3cr3tSAS"
		r.RunAs = "reports"
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}

	code, out, errs := e.run(t, "operations", "show", rec.ID)
	if code != ExitOK {
		t.Fatalf("show: exit %d\n%s", code, errs)
	}
	for _, want := range []string{
		"id:", rec.ID, "function:", "resize", "status:", "Succeeded (30)", "state:", "Completed (3)", "attempt:", "run as:", "reports",
		"input:\n  {\n    \"blob\": \"c.png\",\n    \"sizes\": [\n      1,\n      2\n    ]\n  }\n",
		"output:\n  {\n    \"width\": 640,",
		"callback:", "https://hooks.example.com/done?REDACTED",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cr3tSAS") {
		t.Errorf("show prints the callback's SAS:\n%s", out)
	}

	// The id may follow the flags; JSON has everything.
	code, out, errs = e.run(t, "operations", "show", "--output", "json", strings.ToUpper(rec.ID))
	if code != ExitOK {
		t.Fatalf("show json: exit %d\n%s", code, errs)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if j["id"] != rec.ID || j["statusName"] != "Succeeded" || j["stateName"] != "Completed" ||
		fmt.Sprint(j["input"]) != "map[blob:c.png sizes:[1 2]]" || fmt.Sprint(j["output"]) != "map[tags:[a b] width:640]" ||
		j["callbackUrl"] != "https://hooks.example.com/done?REDACTED" {
		t.Errorf("show json: %v", j)
	}

	missing := operations.NewID()
	code, out, errs = e.run(t, "operations", "show", missing)
	if code != ExitFailed || out != "" || !strings.Contains(errs, "operation "+missing+" not found") {
		t.Errorf("unknown id: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, args := range [][]string{
		{"operations", "show"},
		{"operations", "show", "not-an-id"},
		{"operations", "show", rec.ID, missing},
		{"operations", "show", rec.ID, "--output", "yaml"},
	} {
		if code, _, errs := e.run(t, args...); code != ExitUsage || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

// Cancel: a queued operation is Canceled, a running one Canceling, a
// completed one refused.
func TestOperationsCancel(t *testing.T) {
	e := newOpsEnv(t)
	queued := e.create(t, "resize", operations.WaitingForResources, `{}`)
	running := e.create(t, "resize", operations.InProgress, `{}`)
	done := e.create(t, "resize", operations.Succeeded, `{}`)
	failed := e.create(t, "resize", operations.Failed, `{}`)

	code, out, errs := e.run(t, "operations", "cancel", queued.ID)
	if code != ExitOK || !strings.Contains(out, "canceled (was queued: it will never run)") {
		t.Errorf("cancel queued: exit %d, %q %q", code, out, errs)
	}
	if s := e.status(t, queued.ID); s != operations.Canceled {
		t.Errorf("queued is %s after cancel, want Canceled", s)
	}

	code, out, errs = e.run(t, "operations", "cancel", running.ID)
	if code != ExitOK || !strings.Contains(out, "canceling (the host running it stops it within a few seconds)") {
		t.Errorf("cancel running: exit %d, %q %q", code, out, errs)
	}
	if s := e.status(t, running.ID); s != operations.Canceling {
		t.Errorf("running is %s after cancel, want Canceling", s)
	}

	// Again: nothing changes, and it says so.
	if code, out, _ := e.run(t, "operations", "cancel", running.ID); code != ExitOK || !strings.Contains(out, "already canceling") {
		t.Errorf("cancel canceling: exit %d, %q", code, out)
	}
	code, out, _ = e.run(t, "operations", "cancel", queued.ID, "--output", "json")
	var res struct {
		Result string         `json:"result"`
		Record map[string]any `json:"record"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != ExitOK || err != nil || res.Result != "already canceled" || res.Record["statusName"] != "Canceled" {
		t.Errorf("cancel canceled --output json: exit %d, %v\n%s", code, err, out)
	}

	for _, rec := range []*operations.Record{done, failed} {
		code, out, errs := e.run(t, "operations", "cancel", rec.ID)
		if code != ExitFailed || out != "" || !strings.Contains(errs, fmt.Sprintf("already completed (%s)", rec.Status)) {
			t.Errorf("cancel %s: exit %d, stdout %q, stderr %q", rec.Status, code, out, errs)
		}
		if s := e.status(t, rec.ID); s != rec.Status {
			t.Errorf("cancel changed %s to %s", rec.Status, s)
		}
	}

	missing := operations.NewID()
	if code, _, errs := e.run(t, "operations", "cancel", missing); code != ExitFailed || !strings.Contains(errs, "operation "+missing+" not found") {
		t.Errorf("cancel unknown: exit %d, %q", code, errs)
	}
}

// Purge deletes expired records only, after asking unless --yes.
func TestOperationsPurge(t *testing.T) {
	e := newOpsEnv(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	var expired []string
	for range 3 {
		rec, err := e.store.Create(ctx, &operations.Record{ID: operations.NewID(), Name: "resize", ExpiresOn: past})
		if err != nil {
			t.Fatal(err)
		}
		expired = append(expired, rec.ID)
	}
	live := e.create(t, "resize", operations.Succeeded, `{}`)

	// No answer, or no: nothing is deleted.
	for _, stdin := range []*string{nil, answer("n\n")} {
		code, out, errs := runIn(t, e.dir, &functions.Registry{}, e.environ, stdin, "operations", "purge")
		if code != ExitFailed || !strings.Contains(errs, "[y/N]") || !strings.Contains(errs, "aborted") || out != "" {
			t.Errorf("purge not confirmed: exit %d, stdout %q, stderr %q", code, out, errs)
		}
	}

	// Yes: the expired ones go, in batches, the live one stays.
	defer func(n, r int) { opsPurgeBatch, opsPurgeRounds = n, r }(opsPurgeBatch, opsPurgeRounds)
	opsPurgeBatch = 2
	code, out, errs := runIn(t, e.dir, &functions.Registry{}, e.environ, answer("y\n"), "operations", "purge", "--output", "json")
	var res struct {
		Purged int    `json:"purged"`
		Before string `json:"before"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != ExitOK || err != nil || res.Purged != 3 || res.Before == "" {
		t.Fatalf("purge: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}
	if _, err := e.store.Get(ctx, live.ID); err != nil {
		t.Errorf("the live record was purged: %v", err)
	}
	if n, err := e.store.Purge(ctx, time.Now(), 100); err != nil || n != 0 {
		t.Errorf("expired records left: %d, %v", n, err)
	}

	// Again: nothing to do; --yes asks nothing.
	code, out, errs = e.run(t, "operations", "purge", "--yes")
	if code != ExitOK || !strings.Contains(out, "purged 0 operation record(s)") || strings.Contains(errs, "[y/N]") {
		t.Errorf("second purge: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A run stops at its bound, and says so.
	for range 3 {
		if _, err := e.store.Create(ctx, &operations.Record{ID: operations.NewID(), Name: "resize", ExpiresOn: past}); err != nil {
			t.Fatal(err)
		}
	}
	opsPurgeRounds = 1
	code, out, errs = e.run(t, "operations", "purge", "--yes")
	if code != ExitOK || !strings.Contains(out, "purged 2 operation record(s)") || !strings.Contains(out, "more may remain") {
		t.Errorf("bounded purge: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	opsPurgeRounds = 10
	if code, out, _ := e.run(t, "operations", "purge", "--yes"); code != ExitOK || !strings.Contains(out, "purged 1 ") || strings.Contains(out, "more may remain") {
		t.Errorf("purge after the bound: exit %d, %q", code, out)
	}

	// --before a past time leaves what expired later.
	rec, err := e.store.Create(ctx, &operations.Record{ID: operations.NewID(), Name: "resize", ExpiresOn: past})
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = e.run(t, "operations", "purge", "--yes", "--before", past.Add(-time.Hour).Format(time.RFC3339))
	if code != ExitOK || !strings.Contains(out, "purged 0 ") {
		t.Errorf("purge --before earlier: exit %d, %q", code, out)
	}
	code, out, _ = e.run(t, "operations", "purge", "--yes", "--before", past.Add(time.Minute).Format(time.RFC3339))
	if code != ExitOK || !strings.Contains(out, "purged 1 ") {
		t.Errorf("purge --before later: exit %d, %q (record %s)", code, out, rec.ID)
	}
	if code, _, errs := e.run(t, "operations", "purge", "--yes", "--before", "yesterday"); code != ExitUsage || !strings.Contains(errs, "--before") {
		t.Errorf("bad --before: exit %d, %q", code, errs)
	}
}

// Migrate on a table store creates the table, and again changes nothing.
func TestOperationsMigrateTable(t *testing.T) {
	srv := azuritetest.SharedTable(t)
	table := srv.NewTableName(t)
	dir := t.TempDir()
	write(t, dir, "host.json", fmt.Sprintf(`{"jobhost": {"operations": {"store": "table", "connection": "OpsStorage", "table": %q}}}`, table))
	environ := []string{"OpsStorage=" + srv.ConnectionString}
	tableExists := func() bool {
		svc := srv.TableServiceClient(t, false)
		filter := fmt.Sprintf("TableName eq '%s'", table)
		pager := svc.NewListTablesPager(&aztables.ListTablesOptions{Filter: &filter})
		for pager.More() {
			resp, err := pager.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Tables) > 0 {
				return true
			}
		}
		return false
	}
	if tableExists() {
		t.Fatal("the table exists before migrate")
	}
	for i := range 2 {
		code, out, errs := runIn(t, dir, &functions.Registry{}, environ, nil, "operations", "migrate")
		if code != ExitOK || !strings.Contains(out, table) || !strings.Contains(out, "the table exists") {
			t.Fatalf("migrate %d: exit %d, stdout %q, stderr %q", i+1, code, out, errs)
		}
		if !tableExists() {
			t.Fatalf("migrate %d: no table", i+1)
		}
	}
}

// postgresURL returns a reachable PostgreSQL server's URL, or skips (fails
// with JOBHOST_REQUIRE_BROKERS=1), as pgtest does.
func postgresURL(t *testing.T) string {
	t.Helper()
	return pgtest.Require(t)
}

// Migrate on PostgreSQL applies the migrations once; before it the other
// commands fail saying to run it.
func TestOperationsMigratePostgres(t *testing.T) {
	dsn := postgresURL(t)
	table := fmt.Sprintf("cli_ops_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		_, _ = conn.Exec(ctx, "DELETE FROM jobhost_migrations WHERE table_name = $1", table)
	})
	dir := t.TempDir()
	write(t, dir, "host.json", fmt.Sprintf(`{"jobhost": {"operations": {"store": "postgres", "table": %q}}}`, table))
	environ := []string{pgstore.EnvURL + "=" + dsn}
	reg := &functions.Registry{}

	code, _, errs := runIn(t, dir, reg, environ, nil, "operations", "list")
	if code != ExitFailed || !strings.Contains(errs, "jobhost operations migrate") {
		t.Errorf("list before migrate: exit %d, %q", code, errs)
	}
	code, out, errs := runIn(t, dir, reg, environ, nil, "operations", "migrate")
	if code != ExitOK || !strings.Contains(out, "migrated to the current schema") || !strings.Contains(out, table) || errs != "" {
		t.Fatalf("migrate: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runIn(t, dir, reg, environ, nil, "operations", "migrate", "--output", "json")
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); code != ExitOK || err != nil || res["migrated"] != false || res["store"] != "postgres" {
		t.Fatalf("migrate again: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}

	// The store works, through the CLI and beside it.
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err := s.Create(context.Background(), &operations.Record{ID: operations.NewID(), Name: "resize"})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = runIn(t, dir, reg, environ, nil, "operations", "cancel", rec.ID)
	if code != ExitOK || !strings.Contains(out, "canceled (was queued") {
		t.Errorf("cancel on postgres: exit %d, %q %q", code, out, errs)
	}
}

// No store named: exit status 2 saying which key to set. A memory store
// is out of the CLI's reach.
func TestOperationsNoStore(t *testing.T) {
	dir := t.TempDir()
	reg := &functions.Registry{}
	for _, args := range [][]string{
		{"operations", "list"}, {"operations", "show", operations.NewID()}, {"operations", "cancel", operations.NewID()},
		{"operations", "purge", "--yes"}, {"operations", "migrate"},
	} {
		code, out, errs := runIn(t, dir, reg, nil, nil, args...)
		if code != ExitUsage || out != "" || !strings.Contains(errs, "set jobhost.operations.store") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	write(t, dir, "host.json", `{"jobhost": {"operations": {"store": "memory"}}}`)
	if code, _, errs := runIn(t, dir, reg, nil, nil, "operations", "list"); code != ExitUsage || !strings.Contains(errs, "cannot reach them") {
		t.Errorf("memory store: exit %d, %q", code, errs)
	}
	write(t, dir, "host.json", `{"jobhost": {"operations": {"store": "postgres"}}}`)
	if code, _, errs := runIn(t, dir, reg, nil, nil, "operations", "list"); code != ExitUsage || !strings.Contains(errs, "JOBHOST_POSTGRES_URL") {
		t.Errorf("postgres without its setting: exit %d, %q", code, errs)
	}
}

// Neither a table connection string nor a PostgreSQL password ever shows
// in an error.
func TestOperationsSecretsNotEchoed(t *testing.T) {
	dir := t.TempDir()
	reg := &functions.Registry{}
	write(t, dir, "host.json", `{"jobhost": {"operations": {"store": "table", "connection": "OpsStorage"}}}`)
	const key = "c2VjcmV0a2V5c2VjcmV0a2V5"
	code, out, errs := runIn(t, dir, reg, []string{"OpsStorage=DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key + ";TableEndpoint=::bad"}, nil, "operations", "list")
	if code == ExitOK || strings.Contains(out+errs, key) {
		t.Errorf("bad table connection: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	write(t, dir, "host.json", `{"jobhost": {"operations": {"store": "postgres", "connection": "OpsDB"}}}`)
	const password = "pw-s3cret-9f2"
	code, out, errs = runIn(t, dir, reg, []string{"OpsDB=postgres://admin:" + password + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2"}, nil, "operations", "list")
	if code != ExitFailed || strings.Contains(out+errs, password) || errs == "" {
		t.Errorf("unreachable postgres: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runIn(t, dir, reg, []string{"OpsDB=postgres://admin:" + password + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2"}, nil, "operations", "migrate")
	if code != ExitFailed || strings.Contains(out+errs, password) || errs == "" {
		t.Errorf("migrate unreachable postgres: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// Help for the group and each subcommand; the group in the top-level
// usage; bad usage is exit status 2.
func TestOperationsHelpAndUsage(t *testing.T) {
	dir := t.TempDir()
	reg := &functions.Registry{}
	code, _, errs := runIn(t, dir, reg, nil, nil, "--help")
	if code != ExitOK || !strings.Contains(errs, "  operations  ") {
		t.Errorf("top-level usage lacks operations:\n%s", errs)
	}
	code, _, errs = runIn(t, dir, reg, nil, nil, "operations", "--help")
	if code != ExitOK {
		t.Errorf("operations --help: exit %d", code)
	}
	for _, want := range []string{"operations list", "operations show ID", "operations cancel ID", "operations purge", "operations migrate", "jobhost.operations.store"} {
		if !strings.Contains(errs, want) {
			t.Errorf("operations --help lacks %q", want)
		}
	}
	if code, _, _ := runIn(t, dir, reg, nil, nil, "operations"); code != ExitUsage {
		t.Errorf("operations alone: exit %d, want 2", code)
	}
	for sub, flags := range map[string][]string{
		"list":    {"-function", "-status", "-state", "-since", "-limit", "-cursor", "-all", "-output"},
		"show":    {"-output"},
		"cancel":  {"-output"},
		"purge":   {"-before", "-yes", "-output"},
		"migrate": {"-output"},
	} {
		code, out, errs := runIn(t, dir, reg, nil, nil, "operations", sub, "--help")
		if code != ExitOK || out != "" || !strings.Contains(errs, "flags of operations "+sub) {
			t.Errorf("operations %s --help: exit %d\n%s", sub, code, errs)
		}
		for _, f := range flags {
			if !strings.Contains(errs, "  "+f) {
				t.Errorf("operations %s --help lacks %s", sub, f)
			}
		}
	}
	for _, args := range [][]string{
		{"operations", "frobnicate"},
		{"operations", "list", "extra"},
		{"operations", "list", "--limit", "0"},
		{"operations", "list", "--limit", "1001"},
		{"operations", "list", "--status", "Done"},
		{"operations", "list", "--state", "Running"},
		{"operations", "list", "--since", "-1h"},
		{"operations", "list", "--since", "last week"},
		{"operations", "list", "--output", "xml"},
		{"operations", "cancel"},
	} {
		if code, out, errs := runIn(t, dir, reg, nil, nil, args...); code != ExitUsage || out != "" || errs == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

func TestOperationsSinceAndStatusParsing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-02-01T10:00:00+02:00": time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC),
	} {
		if got, err := opsParseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("since %q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0s", "-2h", "d", "xd", "2026-02-01"} {
		if _, err := opsParseSince(bad, now); err == nil {
			t.Errorf("since %q: no error", bad)
		}
	}
	got, none, err := opsStatusFilter("30,Failed,succeeded", "")
	if err != nil || none || !slices.Equal(got, []operations.Status{operations.Succeeded, operations.Failed}) {
		t.Errorf("status filter: %v %v %v", got, none, err)
	}
	if got, none, err := opsStatusFilter("", ""); got != nil || none || err != nil {
		t.Errorf("no filter: %v %v %v", got, none, err)
	}
	if _, none, err := opsStatusFilter("Succeeded", "Ready"); !none || err != nil {
		t.Errorf("disjoint filters: none %v, %v", none, err)
	}
}
