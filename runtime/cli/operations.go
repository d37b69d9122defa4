package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/runtime"
)

const operationsHelp = `usage: %[1]s operations <list|show|cancel|purge|migrate> [flags]

Background operation records: what callers submitted to functions and what
became of it, kept in the store host.json names:

  {"jobhost": {"operations": {"store": "table" | "postgres",
                              "connection": "SETTING", "table": "NAME"}}}

Without jobhost.operations.store the host keeps records in Table Storage on
the Storage connection when a function reads a Storage Queue, and nowhere
otherwise. "memory" records live inside the host's process, out of the CLI's
reach. The postgres store must be linked into the program
(import _ "github.com/jobhost/jobhost/operations/pgstore").

  %[1]s operations list [--function F] [--status S[,S]] [--state T[,T]]
        [--since TIME|DURATION] [--limit N] [--cursor C] [--all] [--output table|json]
      list records in id order (creation order, but for ids made from an
      idempotency key), one page of --limit (default 50,
      at most 1000); when there are more it says the --cursor of the next
      page; --all follows every page (at most 100000 records). --status takes
      names or codes (WaitingForResources 0, InProgress 20, Canceling 22,
      Succeeded 30, Failed 31, Canceled 32), --state Ready, Locked or
      Completed; a record must match both. --since is an RFC 3339 time or a
      duration back from now (90m, 24h, 7d). The JSON leaves input and output
      out: show has them.
  %[1]s operations show ID [--output table|json]
      the whole record: input, output and progress (pretty-printed in the
      table form), errors, times.
  %[1]s operations cancel ID [--output table|json]
      cancel it: one still queued is Canceled at once and will never run; a
      running one goes to Canceling, and the host running it stops it within
      a few seconds. A succeeded or failed one cannot be (exit status 1).
  %[1]s operations purge [--before TIME] [--yes] [--output table|json]
      delete the records that expired before --before (RFC 3339; default
      now), as the host's hourly sweep does; asks first unless --yes.
  %[1]s operations migrate [--output table|json]
      create the store's table, or apply the PostgreSQL schema migrations the
      table lacks; running it again changes nothing.

Exit status: 0 done; 1 the operation is not found or already completed, or
the store failed; 2 bad arguments, host.json or settings (no store named).
`

// operationsCommands are "operations list|show|cancel|purge|migrate".
var operationsCommands = commandTable{name: "operations", help: operationsHelp, subs: []subcommand{
	{"list", (*command).opsList},
	{"show", (*command).opsShow},
	{"cancel", (*command).opsCancel},
	{"purge", (*command).opsPurge},
	{"migrate", (*command).opsMigrate},
}}

// opsParse declares the common flags, --output and add's, and parses,
// taking at most one positional argument (the operation id) before, after
// or among the flags. It returns opsParsed, or the exit status when the
// command ends here (a usage error, or --help).
func (c *command) opsParse(add func(fs *flag.FlagSet), wantID bool) (string, int) {
	c.declare(func(fs *flag.FlagSet) {
		c.outputFlag(fs)
		if add != nil {
			add(fs)
		}
	})
	var args []string
	rest := c.Args[1:]
	for {
		if err := c.fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", ExitOK // the help was asked for, and printed
			}
			return "", ExitUsage
		}
		if c.fs.NArg() == 0 {
			break
		}
		args = append(args, c.fs.Arg(0))
		rest = c.fs.Args()[1:]
	}
	switch {
	case !wantID && len(args) > 0:
		fmt.Fprintf(c.Stderr, "jobhost %s: unexpected argument %q\n", c.name, args[0])
		return "", ExitUsage
	case wantID && len(args) == 0:
		fmt.Fprintf(c.Stderr, "jobhost %s: the operation id is required: %s ID\n", c.name, c.name)
		return "", ExitUsage
	case len(args) > 1:
		fmt.Fprintf(c.Stderr, "jobhost %s: unexpected argument %q (one operation id at a time)\n", c.name, args[1])
		return "", ExitUsage
	}
	if !c.outputOK() {
		return "", ExitUsage
	}
	if !wantID {
		return "", opsParsed
	}
	// Ids are UUIDs (operations.NewID, IdempotentID), stored in canonical
	// form: read any spelling of one as that.
	u, err := uuid.Parse(args[0])
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: %q is not an operation id (a UUID such as 0190b6a2-7c1e-7d3a-9f00-2b4c6d8e0a1f)\n", c.name, opsSanitize(args[0]))
		return "", ExitUsage
	}
	return u.String(), opsParsed
}

// opsParsed is what opsParse returns when the command goes on.
const opsParsed = -1

// opsStore is an opened store and what it is, for messages.
type opsStore struct {
	operations.Store
	kind  string
	table string // "" when the store does not say
}

// String describes the store: `table store (table "jobhostoperations")`.
func (s *opsStore) String() string {
	if s.table == "" {
		return s.kind + " store"
	}
	return fmt.Sprintf("%s store (table %q)", s.kind, s.table)
}

// openOps loads the configuration and opens the operations store it
// names, as the host would. The int is the exit status when the store is
// nil.
func (c *command) openOps(ctx context.Context, migrate bool) (*opsStore, int) {
	cfg, settings, ok := c.load()
	if !ok {
		return nil, ExitUsage
	}
	funcs, _, err := runtime.ResolveFunctions(cfg, c.Registry, settings)
	if err != nil {
		// Which store, and on which connection, may follow from the
		// functions: the host would not start either.
		c.problems(err)
		return nil, ExitUsage
	}
	kind := cfg.Operations.Store
	if kind == "memory" {
		fmt.Fprintf(c.Stderr, "jobhost %s: jobhost.operations.store is \"memory\": those records live inside the host's process; the CLI, another process, cannot reach them (use \"table\" or \"postgres\")\n", c.name)
		return nil, ExitUsage
	}
	if kind == "postgres" {
		// The store reads its URL from an app setting: a missing one is a
		// settings problem, not a failure to connect.
		setting := cfg.Operations.Connection
		if setting == "" {
			setting = "JOBHOST_POSTGRES_URL"
		}
		if v, ok := settings.Lookup(setting); !ok || strings.TrimSpace(v) == "" {
			fmt.Fprintf(c.Stderr, "jobhost %s: the app setting %s holding the PostgreSQL connection URL (jobhost.operations.connection) is not set\n", c.name, setting)
			return nil, ExitUsage
		}
	}
	s, err := runtime.OpenOperationsStore(ctx, cfg, funcs, settings, migrate)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, redactText(err.Error()))
		if kind == "" || kind == "table" {
			return nil, ExitUsage // opening a table store sends no request: its settings are wrong
		}
		return nil, ExitFailed
	}
	if s == nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: no operations store is configured: set jobhost.operations.store in host.json, "+
			`for example {"jobhost": {"operations": {"store": "table"}}} ("table" or "postgres"; the host uses "table" by itself only when a function reads a Storage Queue)`+"\n", c.name)
		return nil, ExitUsage
	}
	if kind == "" {
		kind = "table" // the host's default, with a function on a Storage Queue
	}
	out := &opsStore{Store: s, kind: kind}
	if t, ok := s.(interface{ Table() string }); ok {
		out.table = t.Table()
	}
	return out, ExitOK
}

// opsFailed reports a store error (exit status 1).
func (c *command) opsFailed(err error) int {
	fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, redactText(err.Error()))
	return ExitFailed
}

// opsRecord is a record as --output json shows it: operations.Record's
// JSON with the state and the names of both codes.
type opsRecord struct {
	*operations.Record
	State      operations.State `json:"state"`
	StateName  string           `json:"stateName"`
	StatusName string           `json:"statusName"`
}

// opsView returns rec as JSON shows it; withData keeps input and output (a
// listing leaves them out: a page of 1000 could hold half a gigabyte).
func opsView(rec *operations.Record, withData bool) opsRecord {
	r := rec.Clone()
	r.CallbackURL = opsCallbackURL(r.CallbackURL)
	r.Progress = opsRawJSON(r.Progress)
	if withData {
		r.Input, r.Output = opsRawJSON(r.Input), opsRawJSON(r.Output)
	} else {
		r.Input, r.Output = nil, nil
	}
	return opsRecord{Record: r, State: r.State(), StateName: r.State().String(), StatusName: r.Status.String()}
}

// opsPage is `operations list --output json`, as the HTTP API answers.
type opsPage struct {
	Records []opsRecord `json:"records"`
	// Next is the cursor of the next page, "" on the last.
	Next string `json:"next"`
}

// opsListMax bounds how many records list --all reads.
var opsListMax = 100000

func (c *command) opsList(ctx context.Context) int {
	var function, status, state, since, cursor string
	var limit int
	var all bool
	if _, code := c.opsParse(func(fs *flag.FlagSet) {
		fs.StringVar(&function, "function", "", "only this function's records (its exact name)")
		fs.StringVar(&status, "status", "", "only records in these statuses: names or codes, comma-separated")
		fs.StringVar(&state, "state", "", "only records in these states: Ready, Locked or Completed (or 0, 2, 3), comma-separated")
		fs.StringVar(&since, "since", "", "only records created since: an RFC 3339 time or a duration back from now (24h, 7d)")
		fs.IntVar(&limit, "limit", 0, fmt.Sprintf("page size, 1..%d (default %d; with --all %d)", operations.MaxPage, operations.DefaultPage, operations.MaxPage))
		fs.StringVar(&cursor, "cursor", "", "continue from the page that printed it")
		fs.BoolVar(&all, "all", false, fmt.Sprintf("follow every page (at most %d records)", opsListMax))
	}, false); code != opsParsed {
		return code
	}
	usageErr := func(format string, args ...any) int {
		fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, fmt.Sprintf(format, args...))
		return ExitUsage
	}
	q := operations.Query{Name: function, Cursor: cursor}
	if c.explicit("limit") && (limit < 1 || limit > operations.MaxPage) {
		return usageErr("--limit must be from 1 to %d, got %d", operations.MaxPage, limit)
	}
	q.Limit = limit
	if all && limit == 0 {
		q.Limit = operations.MaxPage
	}
	statuses, none, err := opsStatusFilter(status, state)
	if err != nil {
		return usageErr("%v", err)
	}
	q.Status = statuses
	if since != "" {
		if q.Since, err = opsParseSince(since, time.Now()); err != nil {
			return usageErr("--since: %v", err)
		}
	}
	s, code := c.openOps(ctx, false)
	if s == nil {
		return code
	}
	defer s.Close()
	var recs []*operations.Record
	next := ""
	if !none {
		for {
			page, err := s.List(ctx, q)
			if err != nil {
				// What was read so far is not printed: a partial listing
				// would read as a complete one.
				return c.opsFailed(err)
			}
			recs = append(recs, page.Records...)
			next = page.Next
			if !all || next == "" || len(recs) >= opsListMax {
				break
			}
			if next == q.Cursor {
				return c.opsFailed(fmt.Errorf("the store returned the cursor it was given: listing stopped after %d record(s)", len(recs)))
			}
			q.Cursor = next
		}
	}
	if c.output == "json" {
		out := opsPage{Records: make([]opsRecord, 0, len(recs)), Next: next}
		for _, r := range recs {
			out.Records = append(out.Records, opsView(r, false))
		}
		c.printJSON(out)
		return ExitOK
	}
	if len(recs) == 0 {
		fmt.Fprintf(c.Stdout, "no operation records match (%s)\n", s)
	} else {
		tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tFUNCTION\tSTATUS\tATTEMPT\tCREATED\tLAST UPDATED\tERROR")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, opsSanitize(r.Name), r.Status, r.Attempt,
				opsTime(r.CreatedOn), opsTime(r.LastUpdated), opsTruncate(opsSanitize(r.ErrorMessage), opsErrorWidth))
		}
		_ = tw.Flush()
	}
	if next != "" {
		if all {
			fmt.Fprintf(c.Stdout, "\nstopped after %d records; the rest: --cursor %s\n", len(recs), next)
		} else {
			fmt.Fprintf(c.Stdout, "\nmore: --cursor %s (or --all)\n", next)
		}
	}
	return ExitOK
}

// opsErrorWidth is how much of an error message the listing shows.
const opsErrorWidth = 60

// opsStatusFilter reads --status and --state into the statuses a record
// may be in (nil: any). none reports that the two select nothing together.
func opsStatusFilter(status, state string) (_ []operations.Status, none bool, _ error) {
	var fromStatus, fromState []operations.Status
	for v := range strings.SplitSeq(status, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		s, err := operations.ParseStatus(v)
		if err != nil {
			return nil, false, fmt.Errorf("--status: %v", err)
		}
		fromStatus = append(fromStatus, s)
	}
	for v := range strings.SplitSeq(state, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		st, err := opsParseState(v)
		if err != nil {
			return nil, false, fmt.Errorf("--state: %v", err)
		}
		for _, s := range operations.Statuses {
			if s.State() == st {
				fromState = append(fromState, s)
			}
		}
	}
	var out []operations.Status
	for _, s := range operations.Statuses { // in order, without repeats
		inStatus, inState := len(fromStatus) == 0, len(fromState) == 0
		for _, x := range fromStatus {
			inStatus = inStatus || x == s
		}
		for _, x := range fromState {
			inState = inState || x == s
		}
		if inStatus && inState {
			out = append(out, s)
		}
	}
	if len(fromStatus) == 0 && len(fromState) == 0 {
		return nil, false, nil
	}
	return out, len(out) == 0, nil
}

// opsParseState reads a state by name (any case) or code.
func opsParseState(v string) (operations.State, error) {
	for _, st := range []operations.State{operations.Ready, operations.Locked, operations.Completed} {
		if strings.EqualFold(v, st.String()) || v == strconv.Itoa(int(st)) {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown state %q (Ready, Locked or Completed, or their codes 0, 2, 3)", v)
}

// opsParseSince reads an RFC 3339 time, or a duration back from now ("24h";
// "7d" counts days).
func opsParseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	}
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2006-01-02T15:04:05Z) or a positive duration (90m, 24h, 7d), got %q", v)
	}
	return now.Add(-d).UTC(), nil
}

// opsOpenID parses the flags and the operation id of show and cancel and
// opens the store. The store is nil when the command ends here, with the
// exit status.
func (c *command) opsOpenID(ctx context.Context) (string, *opsStore, int) {
	id, code := c.opsParse(nil, true)
	if code != opsParsed {
		return "", nil, code
	}
	s, code := c.openOps(ctx, false)
	return id, s, code
}

func (c *command) opsShow(ctx context.Context) int {
	id, s, code := c.opsOpenID(ctx)
	if s == nil {
		return code
	}
	defer s.Close()
	rec, err := s.Get(ctx, id)
	if errors.Is(err, operations.ErrNotFound) {
		fmt.Fprintf(c.Stderr, "jobhost %s: operation %s not found\n", c.name, id)
		return ExitFailed
	}
	if err != nil {
		return c.opsFailed(err)
	}
	if c.output == "json" {
		c.printJSON(opsView(rec, true))
		return ExitOK
	}
	c.printRecord(rec)
	return ExitOK
}

// printRecord writes the whole record, one field a line, JSON values
// pretty-printed below their name.
func (c *command) printRecord(rec *operations.Record) {
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	field("id", rec.ID)
	field("function", opsSanitize(rec.Name))
	field("status", fmt.Sprintf("%s (%d)", rec.Status, int(rec.Status)))
	field("state", fmt.Sprintf("%s (%d)", rec.State(), int(rec.State())))
	attempt := strconv.Itoa(rec.Attempt)
	if n := rec.RetryCount(); n > 0 {
		attempt += fmt.Sprintf(" (%d %s)", n, opsPlural(n, "retry", "retries"))
	}
	field("attempt", attempt)
	field("created", opsTime(rec.CreatedOn))
	field("started", opsTime(rec.StartTime))
	field("ended", opsTime(rec.EndTime))
	field("last updated", opsTime(rec.LastUpdated))
	field("expires", opsTime(rec.ExpiresOn))
	field("run as", opsSanitize(rec.RunAs))
	field("idempotency key", opsSanitize(rec.IdempotencyKey))
	field("callback", opsSanitize(opsCallbackURL(rec.CallbackURL)))
	field("error code", opsSanitize(rec.ErrorCode))
	field("error", opsSanitize(rec.ErrorMessage))
	_ = tw.Flush()
	block := func(name string, v json.RawMessage) {
		if len(v) == 0 {
			return
		}
		fmt.Fprintf(c.Stdout, "%s:\n", name)
		opsWriteJSON(c.Stdout, v)
	}
	block("input", rec.Input)
	block("output", rec.Output)
	block("progress", rec.Progress)
}

// opsWriteJSON writes a JSON value pretty-printed, two spaces in; what is
// not JSON is written as it is, control characters escaped.
func opsWriteJSON(w io.Writer, v json.RawMessage) {
	var b bytes.Buffer
	if err := json.Indent(&b, v, "  ", "  "); err == nil {
		fmt.Fprintf(w, "  %s\n", b.String())
		return
	}
	fmt.Fprintf(w, "  %s\n", opsSanitize(string(v)))
}

func opsPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// opsCancelResult is `operations cancel --output json`.
type opsCancelResult struct {
	// Result is canceled, canceling, already canceled or already
	// canceling.
	Result string    `json:"result"`
	Record opsRecord `json:"record"`
}

func (c *command) opsCancel(ctx context.Context) int {
	id, s, code := c.opsOpenID(ctx)
	if s == nil {
		return code
	}
	defer s.Close()
	// The status the change saw: Update may call it more than once, and
	// the last call is the one written.
	var before operations.Status
	cancel := operations.Cancel(time.Now())
	rec, err := s.Update(ctx, id, func(r *operations.Record) (bool, error) {
		before = r.Status
		return cancel(r)
	})
	switch {
	case errors.Is(err, operations.ErrNotFound):
		fmt.Fprintf(c.Stderr, "jobhost %s: operation %s not found\n", c.name, id)
		return ExitFailed
	case errors.Is(err, operations.ErrCompleted):
		fmt.Fprintf(c.Stderr, "jobhost %s: operation %s already completed (%s): it cannot be canceled\n", c.name, id, before)
		return ExitFailed
	case err != nil:
		return c.opsFailed(err)
	}
	var result, note string
	switch before {
	case operations.WaitingForResources:
		result, note = "canceled", "was queued: it will never run"
	case operations.InProgress:
		result, note = "canceling", "the host running it stops it within a few seconds"
	case operations.Canceling:
		result, note = "already canceling", "the host running it stops it within a few seconds"
	default:
		result = "already " + strings.ToLower(before.String())
	}
	if c.output == "json" {
		c.printJSON(opsCancelResult{Result: result, Record: opsView(rec, false)})
		return ExitOK
	}
	if note != "" {
		result += " (" + note + ")"
	}
	fmt.Fprintf(c.Stdout, "operation %s %s: %s\n", id, opsSanitize(rec.Name), result)
	return ExitOK
}

// Purge's batches: opsPurgeBatch records a call, at most opsPurgeRounds
// calls (ten million records) a run.
var (
	opsPurgeBatch  = operations.MaxPage
	opsPurgeRounds = 10000
)

// opsPurgeResult is `operations purge --output json`.
type opsPurgeResult struct {
	Purged int    `json:"purged"`
	Before string `json:"before"`
	// More: the run stopped at its bound; more expired records may remain.
	More bool `json:"more,omitempty"`
}

func (c *command) opsPurge(ctx context.Context) int {
	var beforeFlag string
	var yes bool
	if _, code := c.opsParse(func(fs *flag.FlagSet) {
		fs.StringVar(&beforeFlag, "before", "", "delete the records that expired before this RFC 3339 time (default now)")
		fs.BoolVar(&yes, "yes", false, "do not ask")
	}, false); code != opsParsed {
		return code
	}
	now := time.Now().UTC()
	before := now
	if beforeFlag != "" {
		t, err := time.Parse(time.RFC3339, beforeFlag)
		if err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: --before: want an RFC 3339 time (2006-01-02T15:04:05Z), got %q\n", c.name, beforeFlag)
			return ExitUsage
		}
		before = t.UTC()
	}
	s, code := c.openOps(ctx, false)
	if s == nil {
		return code
	}
	defer s.Close()
	question := fmt.Sprintf("Delete the operation records in the %s that expired before %s?", s, opsTime(before))
	if before.After(now) {
		question = fmt.Sprintf("Delete the operation records in the %s that expire before %s, including ones not yet expired?", s, opsTime(before))
	}
	if !yes && !c.confirm(question) {
		fmt.Fprintf(c.Stderr, "jobhost %s: aborted\n", c.name)
		return ExitFailed
	}
	res := opsPurgeResult{Before: before.Format(time.RFC3339Nano)}
	var err error
	for round := 0; ; round++ {
		if round == opsPurgeRounds {
			res.More = true
			break
		}
		var n int
		n, err = s.Purge(ctx, before, opsPurgeBatch)
		res.Purged += n
		if err != nil || n < opsPurgeBatch {
			break
		}
	}
	if c.output == "json" {
		c.printJSON(res)
	} else {
		fmt.Fprintf(c.Stdout, "purged %d operation record(s) that expired before %s from the %s\n", res.Purged, opsTime(before), s)
		if res.More {
			fmt.Fprintf(c.Stdout, "stopped after %d batches of %d: more may remain; run it again\n", opsPurgeRounds, opsPurgeBatch)
		}
	}
	if err != nil {
		return c.opsFailed(err)
	}
	return ExitOK
}

// opsMigrateResult is `operations migrate --output json`.
type opsMigrateResult struct {
	Store string `json:"store"`
	Table string `json:"table,omitempty"`
	// Migrated: migrations were applied now (false: the schema was
	// current, or the store has none: a table store creates its table).
	Migrated bool   `json:"migrated"`
	Message  string `json:"message"`
}

func (c *command) opsMigrate(ctx context.Context) int {
	if _, code := c.opsParse(nil, false); code != opsParsed {
		return code
	}
	// A store whose schema is current opens without migrating: try that
	// first, to tell whether migrating changed anything. Its complaint
	// that the table is not migrated is no news here: it is kept back.
	stderr := c.Stderr
	var first bytes.Buffer
	c.Stderr = &first
	s, code := c.openOps(ctx, false)
	c.Stderr = stderr
	current := s != nil
	if s == nil {
		if code == ExitUsage {
			// The configuration is wrong: migrating will not help.
			_, _ = first.WriteTo(c.Stderr)
			return code
		}
		if s, code = c.openOps(ctx, true); s == nil {
			return code
		}
	}
	defer s.Close()
	// Touch the store: the table store creates its table on first use.
	if _, err := s.List(ctx, operations.Query{Limit: 1}); err != nil {
		return c.opsFailed(err)
	}
	res := opsMigrateResult{Store: s.kind, Table: s.table, Migrated: !current}
	switch {
	case s.kind == "table":
		res.Message = fmt.Sprintf("%s: the table exists (created now if it was missing); Table Storage has no schema to migrate", s)
	case current:
		res.Message = fmt.Sprintf("%s: the schema is current; nothing to migrate", s)
	default:
		res.Message = fmt.Sprintf("%s: migrated to the current schema", s)
	}
	// The timers' tables live in the same database when their store is
	// PostgreSQL.
	if cfg, settings, ok := c.load(); ok {
		settings = settings.WithDefaults(c.Registry.SettingDefaults())
		kind, migrated, err := runtime.MigrateTimers(ctx, cfg, c.Registry, settings)
		if err != nil {
			return c.opsFailed(err)
		}
		if migrated {
			res.Message += fmt.Sprintf("; the timers' %s tables are current", kind)
		}
	}
	if c.output == "json" {
		c.printJSON(res)
	} else {
		fmt.Fprintln(c.Stdout, res.Message)
	}
	return ExitOK
}

// opsTime writes t in RFC 3339, UTC, to the second; "" for the zero
// time.
func opsTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// opsTruncate shortens s to n runes, marking the cut.
func opsTruncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// opsSanitize makes a stored string safe for a terminal: line breaks become
// spaces and other control characters are escaped.
func opsSanitize(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// opsCallbackURL shows a callback URL without credentials and with its
// query (where a SAS token lives) masked, as the HTTP API does.
func opsCallbackURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redact.All(s)
	}
	d := redact.DisplayURL(u)
	if u.RawQuery != "" {
		d += "?" + redact.Mask
	}
	return d
}

// opsRawJSON returns b to embed as a JSON value: nil when empty, a JSON
// string when it is not valid JSON (so the output stays valid).
func opsRawJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
