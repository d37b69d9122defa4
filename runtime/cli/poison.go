package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

const poisonHelp = `usage: %[1]s poison <list|requeue|purge> --queue Q [flags]

Poison messages are those a function gave up on. Q is the SOURCE queue (the
function's trigger): a Storage Queue name or a subscription URL, and may use
%%Setting%%. Its poison destination is found as the host finds it:

  Storage Queue Q      the queue Q-poison
  rabbit://Q           the queue Q-poison (or poison=...; not deadletter=native)
  nats://S?stream=T    the subject S-poison (or poison=...), in the stream that
                       captures it (T_POISON when jobhost created it)
  redis://S            the stream S-poison (or poison=...)
  postgres://Q         the rows of Q-poison (or poison=...) in the poison table
                       (jobhost_queue_poison)
  azuresb://Q          the entity's dead-letter queue
  kafka://T            the topic T-poison (or poison=...), read by offset
  gcppubsub://...      the subscription <poison topic>-jobhost (or
                       poisonsubscription=...) of the poison topic
  awssqs://...         the poison queue

  %[1]s poison list --queue Q [-n N] [--output table|json]
      show the poison messages, payload decoded per the queue's messageEncoding.
      Storage Queues: peeked (at most 32). RabbitMQ: received and released, so
      listing marks them redelivered. NATS: read from the stream, untouched.
      Redis: read from the poison stream, untouched. PostgreSQL: read from the
      poison table, untouched. Service Bus: peeked. Kafka: read by offset,
      untouched. Pub/Sub and SQS: received and given back at once, which
      counts a delivery on the poison copy.
  %[1]s poison requeue --queue Q (--all | --id ID) [--yes] [--output table|json]
      move poison messages back to Q: each is first published to Q unchanged
      (minus jobhost's attempt/reason headers, so its attempt count starts
      afresh), and only then deleted from the poison destination; an
      interruption can duplicate a message, never lose one. --all asks first
      unless --yes.
  %[1]s poison purge --queue Q [--yes] [--output table|json]
      delete every poison message; asks first unless --yes.

Each driver brings its poison tools (a driver capability). mem:// and
memqueue:// queues live inside one process, out of the CLI's reach.
`

// poisonCommands are "poison list|requeue|purge".
var poisonCommands = commandTable{name: "poison", help: poisonHelp, subs: []subcommand{
	{"list", (*command).poisonList},
	{"requeue", (*command).poisonRequeue},
	{"purge", (*command).poisonPurge},
}}

// poisonFlags are the flags every poison subcommand has.
type poisonFlags struct {
	queue, connection string
}

func (p *poisonFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&p.queue, "queue", "", "the SOURCE queue: Storage Queue name or subscription URL (may use %Setting%)")
	fs.StringVar(&p.connection, "connection", "", "connection name (default: the function's, else Storage for queues, the driver's variable for URLs)")
}

// openPoison resolves --queue as openQueue does (settings, %Setting%, the
// function bound to it for encoding, connection and poison name) and opens
// its backend. The int is the exit status when ok is false.
func (c *command) openPoison(ctx context.Context, p *poisonFlags, encFlag string) (*poisonTarget, int) {
	fail := func(format string, args ...any) (*poisonTarget, int) {
		fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, redactText(fmt.Sprintf(format, args...)))
		return nil, ExitUsage
	}
	if p.queue == "" {
		return fail("--queue is required")
	}
	cfg, settings, ok := c.load()
	if !ok {
		return nil, ExitUsage
	}
	settings = settings.WithDefaults(c.Registry.SettingDefaults())
	name, err := settings.Expand(p.queue)
	if err != nil {
		return fail("--queue: %v", err)
	}
	var u *url.URL
	if strings.Contains(name, "://") {
		if u, err = url.Parse(name); err != nil {
			return fail("--queue: not a valid URL")
		}
	} else if name = strings.ToLower(name); azurequeue.ValidateQueueName(name) != nil {
		return fail("--queue: %v", azurequeue.ValidateQueueName(name))
	}
	enc := cfg.Queues.MessageEncoding
	if u != nil {
		enc = cfg.PubSub.MessageEncoding
	}
	conn, poisonName := p.connection, ""
	if funcs, _, err := runtime.ResolveFunctions(cfg, c.Registry, settings); err == nil {
		for _, fc := range funcs {
			if fc.Queue == name || (u != nil && fc.URL != nil && fc.URL.String() == u.String()) {
				enc, poisonName = fc.Queues.MessageEncoding, fc.Poison
				if conn == "" {
					conn = fc.Connection
				}
			}
		}
	}
	if encFlag != "" {
		if enc, err = bindings.ParseEncoding(encFlag); err != nil {
			return fail("--encoding: %v", err)
		}
	}
	t := &poisonTarget{enc: enc, storage: u == nil}
	if u == nil {
		if conn == "" {
			conn = azurequeue.DefaultConnection
		}
		svc, err := azurequeue.NewServiceClient(conn, settings.Lookup)
		if err != nil {
			return fail("%v", err)
		}
		t.PoisonAdmin, err = azurequeue.OpenPoison(svc, name)
		if err != nil {
			return fail("%v", err)
		}
		return t, ExitOK
	}
	if u.Scheme == memqueue.Scheme {
		return fail("--queue: memqueue:// queues live inside one process; the CLI, another process, cannot reach them")
	}
	if t.PoisonAdmin, err = runtime.OpenPoison(ctx, u, conn, poisonName, settings); err != nil {
		return fail("%v", err)
	}
	return t, ExitOK
}

// poisonTarget is an opened poison destination with how its payloads are
// encoded.
type poisonTarget struct {
	triggers.PoisonAdmin
	enc     bindings.Encoding
	storage bool // a Storage Queue's (List peeks at most 32)
}

// opFailed reports an operational error (exit status 1).
func (c *command) opFailed(err error) int {
	fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, redactText(err.Error()))
	return ExitFailed
}

// poisonRow is one row of `poison list --output json`.
type poisonRow struct {
	ID            string            `json:"id"`
	Sequence      uint64            `json:"sequence,omitempty"`
	DequeueCount  int64             `json:"dequeueCount"`
	InsertionTime string            `json:"insertionTime,omitempty"`
	Text          string            `json:"text"`
	Payload       string            `json:"payload,omitempty"`
	DecodeError   string            `json:"decodeError,omitempty"`
	Reason        string            `json:"reason,omitempty"`
	Properties    map[string]string `json:"properties,omitempty"`
}

// reasonHeaders are where the drivers put why a message was poisoned.
var reasonHeaders = []string{"x-jobhost-reason", "jobhost-reason"}

func (c *command) poisonList(ctx context.Context) int {
	var p poisonFlags
	var encFlag string
	n := 32
	if !c.parse(func(fs *flag.FlagSet) {
		p.add(fs)
		fs.StringVar(&encFlag, "encoding", "", "base64 or none, to decode payloads (default: the queue's function setting, else host.json)")
		fs.IntVar(&n, "n", 32, "most messages to show (Storage Queues: 1..32; brokers: 1..1000)")
		c.outputFlag(fs)
	}) {
		return ExitUsage
	}
	if n < 1 || n > maxList {
		fmt.Fprintf(c.Stderr, "jobhost %s: -n must be from 1 to %d, got %d\n", c.name, maxList, n)
		return ExitUsage
	}
	b, code := c.openPoison(ctx, &p, encFlag)
	if b == nil {
		return code
	}
	defer b.Close()
	enc := b.enc
	if b.storage && n > azurequeue.MaxBatch {
		fmt.Fprintf(c.Stderr, "jobhost %s: -n: a Storage Queue shows at most %d messages, got %d\n", c.name, azurequeue.MaxBatch, n)
		return ExitUsage
	}
	count, exists, err := b.Count(ctx)
	if err != nil {
		return c.opFailed(err)
	}
	var msgs []*triggers.PoisonMessage
	if exists { // even at count 0: a Storage Queue's count is approximate
		if msgs, err = b.List(ctx, n); err != nil {
			return c.opFailed(err)
		}
	}
	rows := make([]poisonRow, 0, len(msgs))
	for _, m := range msgs {
		r := poisonRow{ID: m.ID, Sequence: m.Sequence, DequeueCount: m.DequeueCount, Text: string(m.Body), Reason: m.Reason}
		if !m.InsertionTime.IsZero() {
			r.InsertionTime = m.InsertionTime.UTC().Format(time.RFC3339)
		}
		if pl, err := enc.Decode(m.Body); err != nil {
			r.DecodeError = err.Error()
		} else if enc != bindings.None {
			r.Payload = string(pl)
		}
		for k, v := range m.Properties {
			if r.Reason == "" && isReasonHeader(k) {
				r.Reason = v
			}
		}
		if len(m.Properties) > 0 {
			r.Properties = m.Properties
		}
		rows = append(rows, r)
	}
	if c.output == "json" {
		c.printJSON(rows)
		return ExitOK
	}
	switch {
	case !exists:
		fmt.Fprintf(c.Stdout, "%s does not exist: nothing from %s has been poisoned\n", b.Poison(), b.Source())
		return ExitOK
	case len(rows) == 0:
		fmt.Fprintf(c.Stdout, "%s is empty\n", b.Poison())
		return ExitOK
	}
	fmt.Fprintf(c.Stdout, "%s: %d message(s) (showing %d; source %s)\n", b.Poison(), max(count, len(rows)), len(rows), b.Source())
	for _, r := range rows {
		line := r.ID
		if r.Sequence != 0 {
			line += fmt.Sprintf("  sequence=%d", r.Sequence)
		}
		line += fmt.Sprintf("  dequeueCount=%d", r.DequeueCount)
		if r.InsertionTime != "" {
			line += "  inserted=" + r.InsertionTime
		}
		fmt.Fprintf(c.Stdout, "\n%s\n", line)
		switch {
		case r.DecodeError != "":
			fmt.Fprintf(c.Stdout, "  %s\n  (shown as stored: %s)\n", r.Text, r.DecodeError)
		case r.Payload != "":
			fmt.Fprintf(c.Stdout, "  %s\n", r.Payload)
		default:
			fmt.Fprintf(c.Stdout, "  %s\n", r.Text)
		}
		if r.Reason != "" {
			fmt.Fprintf(c.Stdout, "  reason: %s\n", r.Reason)
		}
	}
	return ExitOK
}

// maxList is the most messages poison list shows from a broker.
const maxList = 1000

func isReasonHeader(k string) bool {
	for _, h := range reasonHeaders {
		if strings.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// openPoisonCounted opens the poison destination as openPoison does and
// counts its messages. It returns a nil target, closed, with the exit
// status when the command ends here.
func (c *command) openPoisonCounted(ctx context.Context, p *poisonFlags) (b *poisonTarget, count int, exists bool, code int) {
	b, code = c.openPoison(ctx, p, "")
	if b == nil {
		return nil, 0, false, code
	}
	count, exists, err := b.Count(ctx)
	if err != nil {
		b.Close()
		return nil, 0, false, c.opFailed(err)
	}
	return b, count, exists, ExitOK
}

// requeueResult is `poison requeue --output json`.
type requeueResult struct {
	Requeued int `json:"requeued"`
	Failed   int `json:"failed"`
}

func (c *command) poisonRequeue(ctx context.Context) int {
	var p poisonFlags
	var all, yes bool
	var id string
	if !c.parse(func(fs *flag.FlagSet) {
		p.add(fs)
		fs.BoolVar(&all, "all", false, "requeue every poison message")
		fs.StringVar(&id, "id", "", "requeue only the message with this id")
		fs.BoolVar(&yes, "yes", false, "do not ask before requeueing --all")
		c.outputFlag(fs)
	}) {
		return ExitUsage
	}
	if all == (id != "") {
		fmt.Fprintf(c.Stderr, "jobhost %s: give exactly one of --all or --id ID\n", c.name)
		return ExitUsage
	}
	b, count, exists, code := c.openPoisonCounted(ctx, &p)
	if b == nil {
		return code
	}
	defer b.Close()
	var res requeueResult
	if !exists || count == 0 {
		if id != "" {
			fmt.Fprintf(c.Stderr, "jobhost %s: message %s is not in %s: it is empty\n", c.name, id, b.Poison())
			return c.requeueSummary(b, res, false)
		}
		return c.requeueSummary(b, res, true)
	}
	if all && !yes && !c.confirm(fmt.Sprintf("Requeue %d message(s) from %s to %s?", count, b.Poison(), b.Source())) {
		fmt.Fprintf(c.Stderr, "jobhost %s: aborted\n", c.name)
		return ExitFailed
	}
	total := count
	if id != "" {
		total = 1
	}
	bar := c.progress(total)
	found, err := b.Requeue(ctx, id, count, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			res.Failed++
			bar.clear()
			fmt.Fprintf(c.Stderr, "jobhost %s: message %s: %s\n", c.name, m.ID, redactText(err.Error()))
		} else {
			res.Requeued++
		}
		bar.set(res.Requeued + res.Failed)
	})
	bar.done()
	ok := err == nil
	if err != nil {
		// What was not reached stays in poison.
		fmt.Fprintf(c.Stderr, "jobhost %s: stopped: %s\n", c.name, redactText(err.Error()))
	} else if id != "" && !found {
		fmt.Fprintf(c.Stderr, "jobhost %s: message %s is not in %s\n", c.name, id, b.Poison())
		ok = false
	}
	return c.requeueSummary(b, res, ok)
}

// requeueSummary prints the outcome; the exit status is ExitFailed when a
// message failed or the run did not complete (ok false).
func (c *command) requeueSummary(b triggers.PoisonAdmin, res requeueResult, ok bool) int {
	if c.output == "json" {
		_ = json.NewEncoder(c.Stdout).Encode(res)
	} else {
		fmt.Fprintf(c.Stdout, "requeued %d message(s) from %s to %s\n", res.Requeued, b.Poison(), b.Source())
		if res.Failed > 0 {
			fmt.Fprintf(c.Stdout, "%d failed (see above); they stay in %s\n", res.Failed, b.Poison())
		}
	}
	if res.Failed > 0 || !ok {
		return ExitFailed
	}
	return ExitOK
}

// purgeResult is `poison purge --output json`.
type purgeResult struct {
	Purged int `json:"purged"`
}

func (c *command) poisonPurge(ctx context.Context) int {
	var p poisonFlags
	var yes bool
	if !c.parse(func(fs *flag.FlagSet) {
		p.add(fs)
		fs.BoolVar(&yes, "yes", false, "do not ask")
		c.outputFlag(fs)
	}) {
		return ExitUsage
	}
	b, count, exists, code := c.openPoisonCounted(ctx, &p)
	if b == nil {
		return code
	}
	defer b.Close()
	var res purgeResult
	var err error
	if exists && count > 0 {
		if !yes && !c.confirm(fmt.Sprintf("Delete %d message(s) from %s?", count, b.Poison())) {
			fmt.Fprintf(c.Stderr, "jobhost %s: aborted\n", c.name)
			return ExitFailed
		}
		res.Purged, err = b.Purge(ctx, count)
	}
	if c.output == "json" {
		_ = json.NewEncoder(c.Stdout).Encode(res)
	} else {
		fmt.Fprintf(c.Stdout, "purged %d message(s) from %s\n", res.Purged, b.Poison())
	}
	if err != nil {
		return c.opFailed(err)
	}
	return ExitOK
}

// confirm asks question on stderr and reads the answer from stdin: only y
// or yes (any case) agrees.
func (c *command) confirm(question string) bool {
	fmt.Fprintf(c.Stderr, "%s [y/N] ", question)
	if c.Stdin == nil {
		fmt.Fprintln(c.Stderr)
		return false
	}
	line, err := bufio.NewReader(c.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// progressBar draws "\r[#####     ] 120/300" on a terminal; it is silent
// for small totals and when stderr is not a terminal.
type progressBar struct {
	w     io.Writer // nil: silent
	total int
	n     int
}

// progressMin is the smallest total that gets a progress bar.
const progressMin = 50

func (c *command) progress(total int) *progressBar {
	if total <= progressMin || !isTerminal(c.Stderr) {
		return &progressBar{total: total}
	}
	return &progressBar{w: c.Stderr, total: total}
}

func (p *progressBar) set(n int) {
	p.n = n
	if p.w == nil {
		return
	}
	const width = 30
	filled := min(width, width*n/max(p.total, 1))
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), n, p.total)
}

// clear erases the bar so that a message can be printed.
func (p *progressBar) clear() {
	if p.w != nil {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func (p *progressBar) done() {
	if p.w != nil && p.n > 0 {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
