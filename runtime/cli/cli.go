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
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobhost/jobhost/tracing"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers/azurequeue"
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
	// SIGINT or SIGTERM drains; a second one exits at once (signals.go).
	ctx, release := signalContext(context.Background(), os.Stderr, os.Exit)
	code := Run(ctx, Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()})
	release()
	os.Exit(code)
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
              (creates a missing Storage Queue, RabbitMQ queue, NATS stream,
              Redis stream or PostgreSQL queue tables, as outputs do, whatever
              createQueues says)
  peek        show messages without dequeuing them:  peek --queue Q [-n N]
  queues      list the account's Storage Queues with message counts, poison queues marked
  poison      poison messages:  poison list|requeue|purge --queue Q  (see poison --help)
  operations  background operation records:  operations list|show ID|cancel ID|purge|migrate
              (see operations --help)
  kubernetes  Deployment, Secret and KEDA ScaledObject:  kubernetes manifests --image I
              (see kubernetes --help)
  version     the build's version, commit and Go version [--output json]

common flags (after the command):
  --host-json F   host.json to read (default host.json; missing means defaults)
  --settings F    local.settings.json to read app settings from (default local.settings.json)
  --dev           human-readable console logs (also AZURE_FUNCTIONS_ENVIRONMENT=Development)
`

// commands are the program's commands.
var commands = commandTable{help: usage, subs: []subcommand{
	{"run", (*command).run},
	{"functions", func(c *command, _ context.Context) int { return c.functions() }},
	{"validate", func(c *command, _ context.Context) int { return c.validate() }},
	{"send", (*command).send},
	{"peek", (*command).peek},
	{"queues", (*command).queues},
	{"poison", func(c *command, ctx context.Context) int { return poisonCommands.dispatch(ctx, c.Env, c.Args[1:]) }},
	{"operations", func(c *command, ctx context.Context) int { return operationsCommands.dispatch(ctx, c.Env, c.Args[1:]) }},
	{"kubernetes", func(c *command, ctx context.Context) int { return kubernetesCommands.dispatch(ctx, c.Env, c.Args[1:]) }},
	{"version", func(c *command, _ context.Context) int { return c.version() }},
}}

// Run runs one command and returns its exit status.
func Run(ctx context.Context, e Env) int {
	if e.Registry == nil {
		e.Registry = functions.Default
	}
	return commands.dispatch(ctx, e, e.Args)
}

// subcommand is one row of a command table: the name typed and the method
// that runs it.
type subcommand struct {
	name string
	run  func(c *command, ctx context.Context) int
}

// commandTable is the program's commands (name "") or a command's
// subcommands ("poison" list, requeue and purge).
type commandTable struct {
	name string // "poison"; "" for the program's commands
	// help is printed for help and usage errors: a format of the program
	// name, "jobhost". A subcommand's --help prints it too, then the
	// subcommand's flags.
	help string
	subs []subcommand
}

// dispatch runs the (sub)command that args[0] names, args being its name
// and arguments. With no name it prints the help and returns ExitUsage;
// with -h, --help or help it prints the help and returns ExitOK; an
// unknown name is a usage error.
func (t *commandTable) dispatch(ctx context.Context, e Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(e.Stderr, t.help, "jobhost")
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, sub := range t.subs {
		if sub.name != args[0] {
			continue
		}
		e.Args = args
		c := &command{Env: e, name: args[0]}
		if t.name != "" {
			c.name, c.help = t.name+" "+args[0], t.help
		}
		return sub.run(c, ctx)
	}
	if t.name == "" {
		fmt.Fprintf(e.Stderr, "jobhost: unknown command %q\n", args[0])
		fmt.Fprintf(e.Stderr, t.help, "jobhost")
		return ExitUsage
	}
	fmt.Fprintf(e.Stderr, "jobhost %s: unknown subcommand %q (%s)\n", t.name, args[0], t.names())
	return ExitUsage
}

// names lists the subcommands: "list, requeue or purge".
func (t *commandTable) names() string {
	names := make([]string, len(t.subs))
	for i, sub := range t.subs {
		names[i] = sub.name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

type command struct {
	Env
	name     string
	help     string // the command's help, for a subcommand's --help
	fs       *flag.FlagSet
	hostJSON string
	local    string
	dev      bool
	output   string
}

// declare makes c's flag set with the common flags and add's. A
// subcommand's usage (--help, a bad flag) prints its command's help, then
// its own flags.
func (c *command) declare(add func(fs *flag.FlagSet)) {
	c.fs = flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.fs.SetOutput(c.Stderr)
	c.fs.StringVar(&c.hostJSON, "host-json", "host.json", "host.json to read")
	c.fs.StringVar(&c.local, "settings", "local.settings.json", "local.settings.json to read")
	c.fs.BoolVar(&c.dev, "dev", false, "human-readable console logs")
	if c.help != "" {
		fs := c.fs
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), c.help, "jobhost")
			fmt.Fprintf(fs.Output(), "\nflags of %s:\n", c.name)
			fs.PrintDefaults()
		}
	}
	if add != nil {
		add(c.fs)
	}
}

// outputFlag declares --output (table or json) on fs.
func (c *command) outputFlag(fs *flag.FlagSet) {
	fs.StringVar(&c.output, "output", "table", "table or json")
}

// outputOK reports whether --output, if the command has it, is table or
// json, and says so when it is not.
func (c *command) outputOK() bool {
	if c.fs.Lookup("output") != nil && c.output != "table" && c.output != "json" {
		fmt.Fprintf(c.Stderr, "jobhost %s: --output must be table or json, got %q\n", c.name, c.output)
		return false
	}
	return true
}

// parse declares the common flags, lets add declare more, and parses,
// taking no positional argument.
func (c *command) parse(add func(fs *flag.FlagSet)) bool {
	c.declare(add)
	if err := c.fs.Parse(c.Args[1:]); err != nil {
		return false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.Stderr, "jobhost %s: unexpected argument %q\n", c.name, c.fs.Arg(0))
		return false
	}
	return c.outputOK()
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
			fmt.Fprintln(c.Stderr, "jobhost: "+redactText(p.String()))
		}
		return
	}
	fmt.Fprintln(c.Stderr, "jobhost: "+redactText(err.Error()))
}

// placeholderURL is the placeholder server URL of the drivers' hints
// ("it should hold amqp://user:password@host:port/vhost"): its password is
// no secret, and the literal port "port" makes it no real address.
var placeholderURL = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://(?:user|<user>):(?:password|<password>)@(?:host:port|<host>:<port>)`)

// redactText is runtime.Redact leaving placeholder URLs readable, so that
// a hint does not read "amqp://user:REDACTED@host:port".
func redactText(s string) string {
	found := placeholderURL.FindAllString(s, -1)
	if len(found) == 0 || strings.Contains(s, "\x00") {
		return runtime.Redact(s)
	}
	s = runtime.Redact(placeholderURL.ReplaceAllLiteralString(s, "\x00"))
	for _, u := range found {
		s = strings.Replace(s, "\x00", u, 1)
	}
	return s
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
	if !c.parse(nil) {
		return ExitUsage
	}
	cfg, settings, ok := c.load()
	if !ok {
		return ExitUsage
	}
	h, logs, ok := c.host(cfg, settings)
	if !ok {
		return ExitUsage
	}
	defer logs.Sync()
	// Traces, when the OTEL_* variables ask for them: the provider is the
	// process's, so the command line sets it up, not the host.
	shutdown, err := tracing.Setup(ctx, settings.Lookup)
	if err != nil {
		fmt.Fprintln(c.Stderr, "jobhost: "+redactText(err.Error()))
		return ExitUsage
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			logs.Category(runtime.CategoryHost).Warn("flushing traces failed: " + redactText(err.Error()))
		}
	}()
	cfg.Tracing.Apply()
	// In an App Service WebJob the runner asks for a stop with a file
	// (webjob.go).
	shutdownFile, _ := settings.Lookup(EnvShutdownFile)
	ctx, stopWatching := watchShutdownFile(ctx, shutdownFile, shutdownFilePoll, logs.Category(runtime.CategoryHost))
	defer stopWatching()
	if err := h.Run(ctx); err != nil {
		var ce *runtime.ConfigError
		if errors.As(err, &ce) { // found only once the triggers were opened
			c.problems(err)
			return ExitUsage
		}
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
	// run refuses to start with nothing to listen to: so does validate.
	if fcs := h.Functions(); len(fcs) > 0 && !slices.ContainsFunc(fcs, func(fc *runtime.FunctionConfig) bool { return !fc.Disabled }) {
		fmt.Fprintf(c.Stderr, "jobhost: every function is disabled (%d function(s)); run would exit 1\n", len(fcs))
		return ExitFailed
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
	// Retry is the retry policy in force (null: each retry waits
	// visibilityTimeout); Attempts is how many attempts a message gets
	// before poison, from the policy's maxRetryCount or maxDequeueCount.
	Retry    *retryInfo `json:"retry"`
	Attempts int        `json:"attempts"`
	// Batch is a batch function's batch sizes (absent for others).
	Batch *batchInfo `json:"batch,omitempty"`
}

// batchInfo is a batch function's batch sizes in `functions --output json`.
type batchInfo struct {
	MaxBatchSize int    `json:"maxBatchSize"`
	MinBatchSize int    `json:"minBatchSize"`
	MaxBatchWait string `json:"maxBatchWait"`
}

// retryInfo is a retry policy as host.json spells it.
type retryInfo struct {
	Strategy        string `json:"strategy"`
	MaxRetryCount   int    `json:"maxRetryCount"`
	DelayInterval   string `json:"delayInterval,omitempty"`
	MinimumInterval string `json:"minimumInterval,omitempty"`
	MaximumInterval string `json:"maximumInterval,omitempty"`
}

// retryOf describes q's retry policy and the attempts a message gets, as
// the host counts them.
func retryOf(q runtime.QueueSettings) (*retryInfo, int) {
	p := q.Retry
	if p == nil {
		return nil, q.Attempts()
	}
	r := &retryInfo{Strategy: p.Strategy, MaxRetryCount: p.MaxRetryCount}
	if p.Strategy == "exponentialBackoff" {
		r.MinimumInterval, r.MaximumInterval = runtime.FormatTimeSpan(p.MinimumInterval), runtime.FormatTimeSpan(p.MaximumInterval)
	} else {
		r.DelayInterval = runtime.FormatTimeSpan(p.DelayInterval)
	}
	return r, q.Attempts()
}

// String is the policy in the functions table.
func (r *retryInfo) String() string {
	switch {
	case r == nil:
		return "visibilityTimeout"
	case r.Strategy == "exponentialBackoff":
		return "exponential " + r.MinimumInterval + ".." + r.MaximumInterval
	}
	return "fixed " + r.DelayInterval
}

func (c *command) functions() int {
	h, _, _, ok := c.setup(c.outputFlag)
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
		retry, attempts := retryOf(q)
		rows = append(rows, functionInfo{
			Name: fc.Name(), Queue: fc.Queue, QueueExpression: fc.Definition.Trigger.Queue, Connection: fc.Connection,
			ArgType: fc.Definition.ArgType, BatchSize: q.BatchSize, NewBatchThreshold: q.NewBatchThreshold,
			MaxDequeueCount: q.MaxDequeueCount, MaxPollingInterval: runtime.FormatTimeSpan(q.MaxPollingInterval),
			VisibilityTimeout: runtime.FormatTimeSpan(q.VisibilityTimeout), LeaseDuration: runtime.FormatTimeSpan(q.LeaseDuration),
			MessageEncoding: string(q.MessageEncoding), FunctionTimeout: timeout,
			PoisonQueue: poisonName(fc), Disabled: fc.Disabled, Retry: retry, Attempts: attempts,
		})
		if b := fc.Batch; b != nil {
			rows[len(rows)-1].Batch = &batchInfo{MaxBatchSize: b.Max, MinBatchSize: b.Min, MaxBatchWait: runtime.FormatTimeSpan(b.MaxWait)}
		}
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
	fmt.Fprintln(tw, "FUNCTION\tQUEUE\tARGUMENT\tBATCH\tTHRESHOLD\tMAX DEQUEUE\tLEASE\tVISIBILITY\tRETRY\tATTEMPTS\tENCODING\tTIMEOUT")
	for _, r := range rows {
		name := r.Name
		if r.Disabled {
			name += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", name, r.Queue, r.ArgType, r.BatchSize,
			r.NewBatchThreshold, r.MaxDequeueCount, r.LeaseDuration, r.VisibilityTimeout, r.Retry, r.Attempts, r.MessageEncoding, r.FunctionTimeout)
	}
	_ = tw.Flush()
	return ExitOK
}

// poisonName is where fc's poison messages go, as far as it is known
// without opening the driver.
func poisonName(fc *runtime.FunctionConfig) string {
	switch {
	case fc.Timer != nil:
		return "none (a timer)"
	case fc.Poison != "":
		return fc.Poison
	case fc.URL == nil:
		return azurequeue.PoisonQueueName(fc.Queue)
	case fc.URL.Scheme == "azuresb":
		return "the entity's dead-letter queue"
	}
	return "the driver's default (<name>-poison)"
}
