// Package cli is jobhost's command line: run, functions, validate, send and
// peek. cmd/jobhost is this package over the default registry; a worker of
// your own gets the same commands with one call from main:
//
//	func main() { cli.Main() }
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/jobhost/jobhost/internal/redact"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// Exit statuses.
const (
	ExitOK     = 0
	ExitFailed = 1 // the command ran and failed
	ExitUsage  = 2 // bad arguments, host.json or settings
)

// Main runs the command line over functions.Default and exits. Call it from
// your worker's main.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	os.Exit(Run(ctx, Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()}))
}

// Env is what one command line run sees.
type Env struct {
	Args           []string
	Stdout, Stderr io.Writer
	Environ        []string
	// Registry holds the functions (default functions.Default).
	Registry *functions.Registry
	// Open overrides how triggers are opened (tests).
	Open runtime.OpenFunc
	// Stdin answers confirmation prompts (poison purge, poison requeue
	// --all); nil reads as no answer, which aborts.
	Stdin io.Reader
}

const usage = `usage: %s <command> [flags]

commands:
  run         start the host with the functions compiled in (Ctrl-C stops it)
  functions   list the functions with their resolved queues and effective settings
  validate    check host.json, app settings and functions without connecting
  send        enqueue a message:  send --queue Q (--json TEXT | --file F)
  peek        show messages without dequeuing them:  peek --queue Q [-n N]
  queues      list the account's Storage Queues with message counts, poison queues marked
  poison      poison messages:  poison list|requeue|purge --queue Q  (see poison --help)

common flags (after the command):
  --host-json F   host.json to read (default host.json; missing means defaults)
  --settings F    local.settings.json to read app settings from (default local.settings.json)
  --dev           human-readable console logs (also AZURE_FUNCTIONS_ENVIRONMENT=Development)
`

// Run runs one command and returns its exit status.
func Run(ctx context.Context, e Env) int {
	if e.Registry == nil {
		e.Registry = functions.Default
	}
	prog := "jobhost"
	if len(e.Args) == 0 || e.Args[0] == "-h" || e.Args[0] == "--help" || e.Args[0] == "help" {
		fmt.Fprintf(e.Stderr, usage, prog)
		if len(e.Args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	c := &command{Env: e, name: e.Args[0]}
	switch c.name {
	case "run":
		return c.run(ctx)
	case "functions":
		return c.functions()
	case "validate":
		return c.validate()
	case "send":
		return c.send(ctx)
	case "peek":
		return c.peek(ctx)
	case "queues":
		return c.queues(ctx)
	case "poison":
		return c.poison(ctx)
	}
	fmt.Fprintf(e.Stderr, "jobhost: unknown command %q\n", c.name)
	fmt.Fprintf(e.Stderr, usage, prog)
	return ExitUsage
}

type command struct {
	Env
	name     string
	fs       *flag.FlagSet
	hostJSON string
	local    string
	dev      bool
	output   string
}

// parse declares the common flags, lets add declare more, and parses.
func (c *command) parse(add func(fs *flag.FlagSet)) bool {
	c.fs = flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.fs.SetOutput(c.Stderr)
	c.fs.StringVar(&c.hostJSON, "host-json", "host.json", "host.json to read")
	c.fs.StringVar(&c.local, "settings", "local.settings.json", "local.settings.json to read")
	c.fs.BoolVar(&c.dev, "dev", false, "human-readable console logs")
	if add != nil {
		add(c.fs)
	}
	if err := c.fs.Parse(c.Args[1:]); err != nil {
		return false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.Stderr, "jobhost %s: unexpected argument %q\n", c.name, c.fs.Arg(0))
		return false
	}
	if c.fs.Lookup("output") != nil && c.output != "table" && c.output != "json" {
		fmt.Fprintf(c.Stderr, "jobhost %s: --output must be table or json, got %q\n", c.name, c.output)
		return false
	}
	return true
}

// printJSON writes v to stdout as indented JSON (--output json).
func (c *command) printJSON(v any) {
	enc := json.NewEncoder(c.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (c *command) explicit(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// load reads settings and host.json; problems are printed one per line.
func (c *command) load() (*runtime.Config, *runtime.AppSettings, bool) {
	settings, err := runtime.LoadAppSettings(c.Environ, c.local, c.explicit("settings"))
	if err != nil {
		c.problems(err)
		return nil, nil, false
	}
	cfg, err := runtime.LoadConfig(c.hostJSON, c.explicit("host-json"), settings)
	if err != nil {
		c.problems(err)
		return nil, nil, false
	}
	if env, _ := settings.Lookup("AZURE_FUNCTIONS_ENVIRONMENT"); c.dev || strings.EqualFold(env, "Development") {
		cfg.LogFormat = "console"
	}
	return cfg, settings, true
}

func (c *command) problems(err error) {
	var ce *runtime.ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintln(c.Stderr, "jobhost: "+runtime.Redact(p.String()))
		}
		return
	}
	fmt.Fprintln(c.Stderr, "jobhost: "+runtime.Redact(err.Error()))
}

func (c *command) host(cfg *runtime.Config, settings *runtime.AppSettings) (*runtime.Host, *runtime.Logs, bool) {
	logs, err := runtime.NewLogs(runtime.LogOptions{Format: cfg.LogFormat, Levels: cfg.LogLevels, Output: writeSyncer(c.Stderr)})
	if err != nil {
		c.problems(err)
		return nil, nil, false
	}
	h, err := runtime.New(runtime.Options{Registry: c.Registry, Config: cfg, Settings: settings, Logs: logs, Open: c.Open})
	if err != nil {
		c.problems(err)
		return nil, nil, false
	}
	return h, logs, true
}

// setup parses the flags, loads the configuration and builds the host.
func (c *command) setup(add func(fs *flag.FlagSet)) (*runtime.Host, *runtime.Config, *runtime.Logs, bool) {
	if !c.parse(add) {
		return nil, nil, nil, false
	}
	cfg, settings, ok := c.load()
	if !ok {
		return nil, nil, nil, false
	}
	h, logs, ok := c.host(cfg, settings)
	return h, cfg, logs, ok
}

func (c *command) run(ctx context.Context) int {
	h, _, logs, ok := c.setup(nil)
	if !ok {
		return ExitUsage
	}
	defer logs.Sync()
	if err := h.Run(ctx); err != nil {
		logs.Category(runtime.CategoryHost).Error("host failed: " + err.Error())
		return ExitFailed
	}
	return ExitOK
}

func (c *command) validate() int {
	h, _, _, ok := c.setup(nil)
	if !ok {
		return ExitUsage
	}
	for _, w := range h.Warnings() {
		fmt.Fprintln(c.Stderr, "warning: "+w)
	}
	fmt.Fprintf(c.Stdout, "ok: %d function(s), host.json and settings valid\n", len(h.Functions()))
	return ExitOK
}

// functionInfo is one row of `functions --output json`.
type functionInfo struct {
	Name               string `json:"name"`
	Queue              string `json:"queue"`
	QueueExpression    string `json:"queueExpression"`
	Connection         string `json:"connection"`
	ArgType            string `json:"argType"`
	BatchSize          int    `json:"batchSize"`
	NewBatchThreshold  int    `json:"newBatchThreshold"`
	MaxDequeueCount    int    `json:"maxDequeueCount"`
	MaxPollingInterval string `json:"maxPollingInterval"`
	VisibilityTimeout  string `json:"visibilityTimeout"`
	LeaseDuration      string `json:"leaseDuration"`
	MessageEncoding    string `json:"messageEncoding"`
	FunctionTimeout    string `json:"functionTimeout"`
	PoisonQueue        string `json:"poisonQueue"`
	Disabled           bool   `json:"disabled"`
}

func (c *command) functions() int {
	h, _, _, ok := c.setup(func(fs *flag.FlagSet) { fs.StringVar(&c.output, "output", "table", "table or json") })
	if !ok {
		return ExitUsage
	}
	var rows []functionInfo
	for _, fc := range h.Functions() {
		q := fc.Queues
		timeout := "none"
		if fc.FunctionTimeout > 0 {
			timeout = runtime.FormatTimeSpan(fc.FunctionTimeout)
		}
		rows = append(rows, functionInfo{
			Name: fc.Name(), Queue: fc.Queue, QueueExpression: fc.Definition.Trigger.Queue, Connection: fc.Connection,
			ArgType: fc.Definition.ArgType, BatchSize: q.BatchSize, NewBatchThreshold: q.NewBatchThreshold,
			MaxDequeueCount: q.MaxDequeueCount, MaxPollingInterval: runtime.FormatTimeSpan(q.MaxPollingInterval),
			VisibilityTimeout: runtime.FormatTimeSpan(q.VisibilityTimeout), LeaseDuration: runtime.FormatTimeSpan(q.LeaseDuration),
			MessageEncoding: string(q.MessageEncoding), FunctionTimeout: timeout,
			PoisonQueue: poisonName(fc), Disabled: fc.Disabled,
		})
	}
	if c.output == "json" {
		if rows == nil {
			rows = []functionInfo{}
		}
		c.printJSON(rows)
		return ExitOK
	}
	if len(rows) == 0 {
		fmt.Fprintln(c.Stdout, "no functions are registered in this binary (build your own worker that calls cli.Main; see README)")
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tQUEUE\tARGUMENT\tBATCH\tTHRESHOLD\tMAX DEQUEUE\tLEASE\tVISIBILITY\tENCODING\tTIMEOUT")
	for _, r := range rows {
		name := r.Name
		if r.Disabled {
			name += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", name, r.Queue, r.ArgType, r.BatchSize,
			r.NewBatchThreshold, r.MaxDequeueCount, r.LeaseDuration, r.VisibilityTimeout, r.MessageEncoding, r.FunctionTimeout)
	}
	_ = tw.Flush()
	return ExitOK
}

// poisonName is where fc's poison messages go, as far as it is known
// without opening the driver.
func poisonName(fc *runtime.FunctionConfig) string {
	switch {
	case fc.URL == nil:
		return azurequeue.PoisonQueueName(fc.Queue)
	case fc.Poison != "":
		return fc.Poison
	case fc.URL.Scheme == "azuresb":
		return "the entity's dead-letter queue"
	}
	return "the driver's default (<name>-poison)"
}

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
			fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, runtime.Redact(err.Error()))
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
		fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, runtime.Redact(err.Error()))
		return nil, false
	}
	t.azure = azurequeue.New(svc, name, azurequeue.Options{})
	t.pub = t.azure
	return t, true
}

// maxMessageBytes is the Storage Queue limit on a stored message.
const maxMessageBytes = 64 * 1024

func (c *command) send(ctx context.Context) int {
	var q queueFlags
	var text, file string
	if !c.parse(func(fs *flag.FlagSet) {
		q.add(fs)
		fs.StringVar(&text, "json", "", "the message, as JSON text")
		fs.StringVar(&file, "file", "", "a file holding the message")
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
		if len(body) > maxMessageBytes {
			fmt.Fprintf(c.Stderr, "jobhost send: the message is %d bytes after %s encoding; a Storage Queue message is at most %d\n", len(body), t.enc, maxMessageBytes)
			return ExitUsage
		}
		if err := t.azure.Create(ctx); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost send: creating queue %s: %s\n", t.name, runtime.Redact(err.Error()))
			return ExitFailed
		}
	}
	id, err := t.pub.Publish(ctx, body, nil)
	if err != nil {
		fmt.Fprintf(c.Stderr, "jobhost send: %s\n", runtime.Redact(err.Error()))
		return ExitFailed
	}
	if id == "" {
		id = "a message"
	}
	fmt.Fprintf(c.Stdout, "sent %s to %s (%d bytes, %s)\n", id, t.name, len(body), t.enc)
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
			fmt.Fprintf(c.Stderr, "jobhost peek: %s\n", runtime.Redact(err.Error()))
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
	if c.output == "json" {
		c.printJSON(rows)
		return ExitOK
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.Stdout, "queue %s is empty\n", drv.Name())
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
