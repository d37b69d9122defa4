package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/jobhost/jobhost/bindings"
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

// target is the queue a send or peek addresses.
type target struct {
	pub   triggers.Publisher
	azure *azurequeue.Driver // nil for a URL
	name  string
	enc   bindings.Encoding
}

// openQueue resolves the queue (a Storage Queue name or a subscription URL)
// and its encoding, and opens its publisher (a Storage Queue's driver).
func (c *command) openQueue(ctx context.Context, q *queueFlags) (*target, bool) {
	if q.queue == "" {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue is required\n", c.name)
		return nil, false
	}
	cfg, settings, ok := c.load()
	if !ok {
		return nil, false
	}
	settings = settings.WithDefaults(c.Registry.SettingDefaults())
	name, err := settings.Expand(q.queue)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue: %v\n", c.name, err)
		return nil, false
	}
	var u *url.URL
	if strings.Contains(name, "://") {
		if u, err = url.Parse(name); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: --queue: not a valid URL\n", c.name)
			return nil, false
		}
		if u.Scheme == "mem" || u.Scheme == memqueue.Scheme {
			fmt.Fprintf(c.Stderr, "jobhost %s: --queue: %s:// queues live inside one process; the CLI, another process, cannot reach them (send from the worker itself)\n", c.name, u.Scheme)
			return nil, false
		}
	} else if name = strings.ToLower(name); azurequeue.ValidateQueueName(name) != nil {
		fmt.Fprintf(c.Stderr, "jobhost %s: --queue: %v\n", c.name, azurequeue.ValidateQueueName(name))
		return nil, false
	}
	t := &target{name: name, enc: cfg.Queues.MessageEncoding}
	if u != nil {
		t.enc = cfg.PubSub.MessageEncoding
	}
	// A function bound to this queue decides how its messages are encoded.
	if funcs, _, err := runtime.ResolveFunctions(cfg, c.Registry, settings); err == nil {
		for _, fc := range funcs {
			if fc.Queue == name || (u != nil && fc.URL != nil && fc.URL.String() == u.String()) {
				t.enc = fc.Queues.MessageEncoding
			}
		}
	}
	if q.encoding != "" {
		if t.enc, err = bindings.ParseEncoding(q.encoding); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: --encoding: %v\n", c.name, err)
			return nil, false
		}
	}
	if u != nil {
		t.name = redact.DisplayURL(u)
		if c.name == "peek" {
			fmt.Fprintf(c.Stderr, "jobhost peek: %s: peek works on Storage Queues only; brokers dequeue to look\n", t.name)
			return nil, false
		}
		if t.pub, err = runtime.OpenPublisher(ctx, u, q.connection, true, settings); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, redactText(err.Error()))
			return nil, false
		}
		return t, true
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
	t.pub = t.azure
	return t, true
}

// maxMessageBytes is the Storage Queue limit on a stored message.
const maxMessageBytes = 64 * 1024

const sendHelp = `usage: %s send --queue Q (--json TEXT | --file F) [--encoding base64|none] [--connection NAME]

Enqueues one message. Q is a Storage Queue name or a subscription URL
(rabbit://, nats://, azuresb://, ...) and may use %%Setting%%. The payload
is encoded as the queue's messageEncoding says (the function bound to Q,
else host.json) unless --encoding says otherwise.

A missing destination is created, as a function's outputs create theirs,
whatever extensions.queues/pubsub createQueues says: a Storage Queue, a
RabbitMQ queue (durable quorum queue), a NATS stream (file-backed work
queue). Service Bus entities and the gocloud brokers' topics must exist.

A Storage Queue message is XML text: under --encoding none a payload that
is not valid UTF-8, or holds characters XML cannot carry, is refused (exit
2; send it base64). Brokers carry the bytes exactly.

flags:
`

func (c *command) send(ctx context.Context) int {
	var q queueFlags
	var text, file string
	if !c.parse(func(fs *flag.FlagSet) {
		q.add(fs)
		fs.StringVar(&text, "json", "", "the message, as JSON text")
		fs.StringVar(&file, "file", "", "a file holding the message")
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
	t, ok := c.openQueue(ctx, &q)
	if !ok {
		return ExitUsage
	}
	defer t.pub.Close()
	body := t.enc.Encode(payload)
	if t.azure != nil {
		if t.enc == bindings.None {
			if why := notXMLText(payload); why != "" {
				fmt.Fprintf(c.Stderr, "jobhost send: the message cannot go to a Storage Queue as it is (messageEncoding none): %s; a queue message is XML text, which would not keep these bytes: send it with --encoding base64\n", why)
				return ExitUsage
			}
		}
		if len(body) > maxMessageBytes {
			fmt.Fprintf(c.Stderr, "jobhost send: the message is %d bytes after %s encoding; a Storage Queue message is at most %d\n", len(body), t.enc, maxMessageBytes)
			return ExitUsage
		}
		if err := t.azure.Create(ctx); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost send: creating queue %s: %s\n", t.name, redactText(err.Error()))
			return ExitFailed
		}
	}
	id, err := t.pub.Publish(ctx, body, nil)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost send: %s\n", redactText(err.Error()))
		return ExitFailed
	}
	if id == "" {
		id = "a message"
	}
	fmt.Fprintf(c.Stdout, "sent %s to %s (%d bytes, %s)\n", id, t.name, len(body), t.enc)
	return ExitOK
}

// notXMLText says why p cannot travel as XML 1.0 text unchanged ("" when it
// can): it must be valid UTF-8 of characters XML allows. The Storage Queue
// client would put U+FFFD in place of the rest.
func notXMLText(p []byte) string {
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Sprintf("byte %d (0x%02X) is not valid UTF-8", i, p[i])
		}
		if !(r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000) {
			return fmt.Sprintf("character %U at byte %d is not allowed in XML", r, i)
		}
		i += n
	}
	return ""
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
		fs.StringVar(&c.output, "output", "table", "table or json")
	}) {
		return ExitUsage
	}
	if n < 1 || n > 32 {
		fmt.Fprintf(c.Stderr, "jobhost peek: -n must be from 1 to 32, got %d\n", n)
		return ExitUsage
	}
	t, ok := c.openQueue(ctx, &q)
	if !ok {
		return ExitUsage
	}
	defer t.pub.Close()
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
