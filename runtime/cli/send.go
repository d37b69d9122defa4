package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// queueFlags are the flags of send and peek.
type queueFlags struct {
	queue, connection, encoding string
}

func (q *queueFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&q.queue, "queue", "", "Storage Queue name or subscription URL (may use %Setting%)")
	fs.StringVar(&q.connection, "connection", "", "connection name (default: Storage for queues, the driver's variable for URLs)")
	fs.StringVar(&q.encoding, "encoding", "", "base64 or none (default: the queue's function setting, else host.json)")
}

// expandQueue resolves --queue's %Setting% expressions and refuses the
// in-process schemes, which another process cannot reach.
func (c *command) expandQueue(q *queueFlags, settings *runtime.AppSettings) (string, bool) {
	name, err := bindings.ExpandSettings(q.queue, settings.Lookup)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue: %v\n", c.name, err)
		return "", false
	}
	if scheme, _, ok := strings.Cut(name, "://"); ok && (scheme == "mem" || scheme == memqueue.Scheme) {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue: %s:// queues live inside one process; the CLI, another process, cannot reach them (send from the worker itself)\n", c.name, scheme)
		return "", false
	}
	return name, true
}

// peekTarget is the Storage Queue peek looks at.
type peekTarget struct {
	azure *azurequeue.Driver
	enc   bindings.Encoding
}

// openQueue resolves peek's Storage Queue and its encoding (the function
// bound to it decides, else host.json), and opens its driver.
func (c *command) openQueue(q *queueFlags) (*peekTarget, bool) {
	if q.queue == "" {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue is required\n", c.name)
		return nil, false
	}
	cfg, settings, ok := c.load()
	if !ok {
		return nil, false
	}
	settings = settings.WithDefaults(c.Registry.SettingDefaults())
	name, ok := c.expandQueue(q, settings)
	if !ok {
		return nil, false
	}
	if strings.Contains(name, "://") {
		u, err := url.Parse(name)
		if err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: --queue: not a valid URL\n", c.name)
			return nil, false
		}
		fmt.Fprintf(c.Stderr, "jobhost %s: %s: peek works on Storage Queues only; brokers dequeue to look\n", c.name, redact.DisplayURL(u))
		return nil, false
	}
	if name = strings.ToLower(name); azurequeue.ValidateQueueName(name) != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue: %v\n", c.name, azurequeue.ValidateQueueName(name))
		return nil, false
	}
	t := &peekTarget{enc: cfg.Queues.MessageEncoding}
	if funcs, _, err := runtime.ResolveFunctions(cfg, c.Registry, settings); err == nil {
		for _, fc := range funcs {
			if fc.StorageQueue() && fc.Queue == name {
				t.enc = fc.Queues.MessageEncoding
			}
		}
	}
	if q.encoding != "" {
		var err error
		if t.enc, err = bindings.ParseEncoding(q.encoding); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: --encoding: %v\n", c.name, err)
			return nil, false
		}
	}
	conn := q.connection
	if conn == "" {
		conn = "Storage"
	}
	svc, err := azurequeue.NewServiceClient(conn, settings.Lookup)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, redactText(err.Error()))
		return nil, false
	}
	t.azure = azurequeue.New(svc, name, azurequeue.Options{})
	return t, true
}

const sendHelp = `usage: %s send --queue Q (--json TEXT | --file F) [--encoding base64|none] [--connection NAME] [--delay D]

Enqueues one message. Q is a Storage Queue name or a subscription URL
(rabbit://, nats://, redis://, postgres://, azuresb://, ...) and may use
%%Setting%%. The payload is encoded as the queue's messageEncoding says (the
function bound to Q, else host.json) unless --encoding says otherwise. The
message goes out through the same client as the host's output bindings and
web apps (package client), with the same checks.

A missing destination is created, as a function's outputs create theirs,
whatever extensions.queues/pubsub createQueues says: a Storage Queue, a
RabbitMQ queue (durable quorum queue), a NATS stream (file-backed work
queue), a Redis stream and its consumer group, PostgreSQL's queue tables
(migrated). Service Bus entities and the gocloud brokers' topics must
exist.

A Storage Queue message is XML text: under --encoding none a payload that
is not valid UTF-8, or holds characters XML cannot carry, is refused (exit
2; send it base64). Brokers carry the bytes exactly. A Storage Queue
message is at most 64 KiB after encoding; a larger one is refused (exit 2)
before anything is sent.

--delay D (30s, 5m, 2h) keeps the message invisible to receivers for D: a
Storage Queue's visibility timeout (at most 7 days), Service Bus's
scheduled enqueue time, RabbitMQ's delay queue (about 49 days), Redis's
delayed set (kept by Redis, moved into the stream by a worker's receive),
PostgreSQL's run_at (no limit). Brokers
that cannot delay a message (NATS JetStream, the gocloud brokers) refuse
it (exit 2).

flags:
`

func (c *command) send(ctx context.Context) int {
	var q queueFlags
	var text, file string
	var delay time.Duration
	if !c.parse(func(fs *flag.FlagSet) {
		q.add(fs)
		fs.StringVar(&text, "json", "", "the message, as JSON text")
		fs.StringVar(&file, "file", "", "a file holding the message")
		fs.DurationVar(&delay, "delay", 0, "keep the message invisible for this long (30s, 5m); brokers that cannot delay refuse")
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), sendHelp, "jobhost")
			fs.PrintDefaults()
		}
	}) {
		return ExitUsage
	}
	var payload []byte
	switch {
	case (text == "") == (file == ""):
		fmt.Fprintln(c.Stderr, "jobhost send: give exactly one of --json TEXT or --file F")
		return ExitUsage
	case delay < 0:
		fmt.Fprintf(c.Stderr, "jobhost send: --delay must not be negative, got %s\n", delay)
		return ExitUsage
	case text != "":
		if !json.Valid([]byte(text)) {
			fmt.Fprintln(c.Stderr, "jobhost send: --json is not valid JSON (use --file to send other text)")
			return ExitUsage
		}
		payload = []byte(text)
	default:
		b, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(c.Stderr, "jobhost send: --file: %v\n", err)
			return ExitUsage
		}
		payload = b
	}
	if q.queue == "" {
		fmt.Fprintln(c.Stderr, "jobhost send: --queue is required")
		return ExitUsage
	}
	cfg, settings, ok := c.load()
	if !ok {
		return ExitUsage
	}
	settings = settings.WithDefaults(c.Registry.SettingDefaults())
	name, ok := c.expandQueue(&q, settings)
	if !ok {
		return ExitUsage
	}
	var opts []client.SendOption
	var enc bindings.Encoding
	if q.encoding != "" {
		var err error
		if enc, err = bindings.ParseEncoding(q.encoding); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost send: --encoding: %v\n", err)
			return ExitUsage
		}
		opts = append(opts, client.Encoding(enc))
	}
	if delay > 0 {
		opts = append(opts, client.Delay(delay))
	}
	// The functions bound to the queue decide its encoding; a registry with
	// problems still sends, by host.json's rule.
	copts, err := runtime.ClientOptions(cfg, settings, c.Registry)
	if err != nil {
		copts, _ = runtime.ClientOptions(cfg, settings, &functions.Registry{})
	}
	cl, err := client.New(copts)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost send: %s\n", redactText(err.Error()))
		return ExitUsage
	}
	defer cl.Close()
	t, err := client.ParseTarget(name, q.connection)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost send: --queue: %s\n", redactText(err.Error()))
		return ExitUsage
	}
	if err := cl.Open(ctx, t); err != nil {
		fmt.Fprintf(c.Stderr, "jobhost send: %s\n", redactText(err.Error()))
		return ExitUsage
	}
	p, err := cl.Prepare(t, payload, opts...)
	var notXML *client.NotXMLError
	var tooLarge *client.TooLargeError
	switch {
	case errors.As(err, &notXML):
		fmt.Fprintf(c.Stderr, "jobhost send: the message cannot go to a Storage Queue as it is (messageEncoding none): %s; a queue message is XML text, which would not keep these bytes: send it with --encoding base64\n", notXML.Reason)
		return ExitUsage
	case errors.As(err, &tooLarge):
		fmt.Fprintf(c.Stderr, "jobhost send: the message is %d bytes after %s encoding; a Storage Queue message is at most %d\n", tooLarge.Size, cmp.Or(enc, cl.EncodingFor(t)), tooLarge.Limit)
		return ExitUsage
	case err != nil:
		fmt.Fprintf(c.Stderr, "jobhost send: %s\n", redactText(err.Error()))
		return ExitUsage
	}
	ids, err := cl.SendPrepared(ctx, p)
	switch {
	case errors.Is(err, client.ErrDelayUnsupported) || errors.Is(err, triggers.ErrDelayTooLong):
		fmt.Fprintf(c.Stderr, "jobhost send: --delay: %s\n", redactText(err.Error()))
		return ExitUsage
	case err != nil:
		fmt.Fprintf(c.Stderr, "jobhost send: %s\n", redactText(err.Error()))
		return ExitFailed
	}
	id := ids[0]
	if id == "" {
		id = "a message"
	}
	if delay > 0 {
		fmt.Fprintf(c.Stdout, "sent %s to %s (%d bytes, %s, invisible for %s)\n", id, t, p.Size(), p.Encoding(), delay)
	} else {
		fmt.Fprintf(c.Stdout, "sent %s to %s (%d bytes, %s)\n", id, t, p.Size(), p.Encoding())
	}
	return ExitOK
}

// peeked is one row of `peek --output json`.
type peeked struct {
	ID             string `json:"id"`
	DequeueCount   int64  `json:"dequeueCount"`
	InsertionTime  string `json:"insertionTime"`
	ExpirationTime string `json:"expirationTime"`
	Text           string `json:"text"`
	Payload        string `json:"payload,omitempty"`
	DecodeError    string `json:"decodeError,omitempty"`
}

func (c *command) peek(ctx context.Context) int {
	var q queueFlags
	n := 1
	if !c.parse(func(fs *flag.FlagSet) {
		q.add(fs)
		fs.IntVar(&n, "n", 1, "number of messages (1..32)")
		c.outputFlag(fs)
	}) {
		return ExitUsage
	}
	if n < 1 || n > 32 {
		fmt.Fprintf(c.Stderr, "jobhost peek: -n must be from 1 to 32, got %d\n", n)
		return ExitUsage
	}
	t, ok := c.openQueue(&q)
	if !ok {
		return ExitUsage
	}
	defer t.azure.Close()
	drv, enc := t.azure, t.enc
	msgs, err := drv.Peek(ctx, n)
	if err != nil {
		if errors.Is(err, triggers.ErrNotFound) {
			fmt.Fprintf(c.Stderr, "jobhost peek: queue %s does not exist\n", drv.Name())
		} else {
			fmt.Fprintf(c.Stderr, "jobhost peek: %s\n", redactText(err.Error()))
		}
		return ExitFailed
	}
	rows := make([]peeked, 0, len(msgs))
	for _, m := range msgs {
		r := peeked{ID: m.ID, DequeueCount: m.DequeueCount, InsertionTime: m.InsertionTime.UTC().Format("2006-01-02T15:04:05Z"),
			ExpirationTime: m.ExpirationTime.UTC().Format("2006-01-02T15:04:05Z"), Text: m.Text()}
		if p, err := enc.Decode(m.Body); err != nil {
			r.DecodeError = err.Error()
		} else if enc != bindings.None {
			r.Payload = string(p)
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		// Peek sees visible messages only; the count also has those leased
		// by a running host or delayed by a retry.
		note, invisible := fmt.Sprintf("queue %s is empty", drv.Name()), false
		if n, err := drv.ApproximateCount(ctx); err == nil && n > 0 {
			note = fmt.Sprintf("queue %s has no visible messages; %d message(s) are invisible (in flight or delayed)", drv.Name(), n)
			invisible = true
		}
		switch {
		case c.output != "json":
			fmt.Fprintln(c.Stdout, note)
		case invisible:
			fmt.Fprintln(c.Stderr, "jobhost peek: "+note)
		}
	}
	if c.output == "json" {
		c.printJSON(rows)
		return ExitOK
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].InsertionTime < rows[j].InsertionTime })
	for _, r := range rows {
		fmt.Fprintf(c.Stdout, "%s  dequeueCount=%d  inserted=%s\n", r.ID, r.DequeueCount, r.InsertionTime)
		switch {
		case r.DecodeError != "":
			fmt.Fprintf(c.Stdout, "  text: %s\n  (%s)\n", r.Text, r.DecodeError)
		case r.Payload != "":
			fmt.Fprintf(c.Stdout, "  %s\n", r.Payload)
		default:
			fmt.Fprintf(c.Stdout, "  %s\n", r.Text)
		}
	}
	return ExitOK
}
