// Package runtime is the jobhost host: it loads host.json and app settings,
// discovers the registered functions, opens one trigger driver per function
// and runs the WebJobs queue-trigger behaviour over it — polling with
// randomized exponential backoff, batch + threshold concurrency, visibility
// lease renewal, retries, poison after maxDequeueCount and graceful shutdown —
// the same for every driver.
package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/timer"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
)

// Log categories, as logging.logLevel names them.
const (
	CategoryHost     = "Host.Startup"
	CategoryListener = "Host.Triggers.Queues"
	// CategoryCallbacks logs completion callbacks.
	CategoryCallbacks = "Host.Callbacks"
	// CategoryFunction is followed by ".<Name>" for invocation results and
	// ".<Name>.User" for the logger functions get from functions.Logger.
	CategoryFunction = "Function"
)

// OpenFunc opens the trigger driver of one function.
type OpenFunc func(ctx context.Context, fc *FunctionConfig) (triggers.Driver, error)

// Options configure a Host. Zero fields take defaults.
type Options struct {
	// Registry holds the functions to run (default functions.Default).
	Registry *functions.Registry
	// Config is the loaded host.json (default DefaultConfig()).
	Config *Config
	// Settings are the app settings (default: the process environment).
	Settings *AppSettings
	// Logs receives the host's logs (default: JSON to stderr).
	Logs *Logs
	// Open opens a function's driver (default: the Azure Storage Queue of
	// the function's connection, or the registered driver of its URL).
	Open OpenFunc
	// Middleware wraps every invocation, the first outermost.
	Middleware []Middleware
	// Operations keeps the background operation records (default: the
	// store jobhost.operations names, opened on first use).
	Operations operations.Store
	// Metrics is the registry the host's metrics are registered in and
	// /metrics serves (default: a new registry with the Go and process
	// collectors). One registry serves one host.
	Metrics *prometheus.Registry
	// RecentInvocations is how many finished invocations the host keeps
	// for the dashboard (default status.DefaultRingSize).
	RecentInvocations int
}

// Host runs registered functions until its context ends.
type Host struct {
	cfg       *Config
	funcs     []*FunctionConfig
	logs      *Logs
	log       *zap.Logger
	open      OpenFunc
	warnings  []string
	outputs   *outputs
	callbacks *callbacks
	records   *records // nil: no operation records
	settings  *AppSettings
	registry  *functions.Registry
	httpAddr  atomic.Pointer[string] // set by Run when the HTTP listener started
	mws       []Middleware
	metrics   *hostMetrics
	ring      *status.Ring
	obsMu     sync.Mutex
	listeners []*listener // set by Run, for the observers
	started   atomic.Bool // every listener polls
	stopping  atomic.Bool // the shutdown began
	// wakers maps "<connection>|<queue>" of Storage Queue listeners to
	// their wake channels (fast wake).
	wakers map[string][]chan struct{}
}

// New resolves the functions and checks their connections without
// connecting. Every problem is returned at once in a *ConfigError.
func New(o Options) (*Host, error) {
	if o.Registry == nil {
		o.Registry = functions.Default
	}
	if o.Config == nil {
		o.Config = DefaultConfig()
	}
	if o.Settings == nil {
		o.Settings, _ = LoadAppSettings(os.Environ(), "", false)
	}
	if o.Logs == nil {
		l, err := NewLogs(LogOptions{Format: o.Config.LogFormat, Levels: o.Config.LogLevels})
		if err != nil {
			return nil, err
		}
		o.Logs = l
	}
	o.Settings = o.Settings.WithDefaults(o.Registry.SettingDefaults())
	funcs, warns, err := ResolveFunctions(o.Config, o.Registry, o.Settings)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: o.Config, funcs: funcs, logs: o.Logs,
		log: o.Logs.Category(CategoryHost), open: o.Open, mws: o.Middleware,
		ring: status.NewRing(cmp.Or(o.RecentInvocations, o.Config.Dashboard.RecentInvocations))}
	if o.Metrics == nil {
		o.Metrics = newRegistry()
	}
	h.metrics = newHostMetrics(h, o.Metrics)
	h.callbacks = newCallbacks(o.Config.Callbacks, o.Logs.Category(CategoryCallbacks))
	h.settings, h.registry = o.Settings, o.Registry
	h.setupRecords(o.Operations, o.Settings)
	var probs []Problem
	for _, fc := range funcs {
		if fc.CallbackURL != "" {
			if err := h.callbacks.CheckURL(fc.CallbackURL); err != nil {
				probs = append(probs, Problem{"function " + fc.Name() + ": callback", err.Error() + " (jobhost.callbacks.allowedHosts)"})
			}
		}
	}
	if len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	az := newAzureOpener(o.Settings)
	if h.outputs, err = newOutputs(o.Config, o.Settings, az, funcs, h.storageEncoding, h.wake); err != nil {
		return nil, err
	}
	if h.open == nil {
		if probs := az.check(funcs); len(probs) > 0 {
			return nil, &ConfigError{Problems: probs}
		}
		settings := o.Settings
		h.open = func(ctx context.Context, fc *FunctionConfig) (triggers.Driver, error) {
			if fc.URL != nil {
				return openURL(ctx, fc, settings)
			}
			return az.open(ctx, fc)
		}
	}
	h.warnings = append(append([]string(nil), o.Config.Warnings...), warns...)
	return h, nil
}

// storageEncoding is how messages for a Storage Queue are encoded: as the
// function of this host that reads it decodes them, else as host.json says.
func (h *Host) storageEncoding(connection, queue string) bindings.Encoding {
	for _, fc := range h.funcs {
		if fc.StorageQueue() && fc.Queue == queue && fc.Connection == connection {
			return fc.Queues.MessageEncoding
		}
	}
	return h.cfg.Queues.MessageEncoding
}

// wake makes the listeners of a Storage Queue this host just wrote to poll
// at once instead of finishing their backoff wait, as WebJobs' shared queue
// watcher does.
func (h *Host) wake(connection, queue string) {
	for _, ch := range h.wakers[connection+"|"+queue] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Warnings lists the ignored settings (unknown keys, overrides for functions
// that are not registered); Run logs them at start.
func (h *Host) Warnings() []string { return h.warnings }

// Functions returns the resolved functions.
func (h *Host) Functions() []*FunctionConfig { return h.funcs }

// Run listens for every enabled function until ctx ends (like WebJobs'
// RunAndBlock), then stops polling, lets in-flight functions finish within
// jobhost.shutdownTimeout, cancels the contexts of those still running and
// returns. A message whose function did not finish is not deleted: it
// reappears when its lease ends.
func (h *Host) Run(ctx context.Context) error {
	if len(h.funcs) == 0 {
		return errors.New("no functions are registered")
	}
	for _, w := range h.warnings {
		h.log.Warn("configuration: " + w)
	}
	// hard is cancelled when the shutdown timeout passes; functions run
	// under it, not under ctx, so a stop signal does not cut them short.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()

	var listeners []*listener
	var timers timer.Store   // opened for the first timer function
	cleanupBy := time.Time{} // set by the shutdown: when cleanup must be done
	defer func() { h.cleanup(listeners, cleanupBy) }()
	h.wakers = map[string][]chan struct{}{}
	for _, fc := range h.funcs {
		if fc.Disabled {
			h.log.Info("function disabled", zap.String("function", fc.Name()))
			continue
		}
		var drv triggers.Driver = timerDriver{}
		if fc.Timer == nil {
			var err error
			if drv, err = h.open(ctx, fc); err != nil {
				return fmt.Errorf("function %s: opening queue %s: %w", fc.Name(), fc.Queue, err)
			}
		} else if timers == nil {
			var err error
			if timers, err = h.openTimerStore(ctx); err != nil {
				return err
			}
		}
		if fc.URL != nil && fc.URL.Scheme != "azuresb" && drv.PoisonDestination() == "" {
			// A message that failed for good would have nowhere to go, and
			// be retried for ever. (A Service Bus dead-letter queue has no
			// dead-letter queue of its own: its failures stay there.)
			drv.Close()
			return &ConfigError{Problems: []Problem{{"function " + fc.Name() + ": poison",
				fmt.Sprintf("%s has no poison destination: name one in jobhost.functions.%s.poison", fc.Queue, fc.Name())}}}
		}
		l := newListener(fc, drv, h.logs, hard, h.mws)
		l.outputs, l.callbacks, l.records, l.ring = h.outputs, h.callbacks, h.records, h.ring
		h.metrics.attach(l)
		if fc.Timer != nil {
			var err error
			if l.timer, err = h.newTimerRunner(l, timers); err != nil {
				drv.Close()
				return &ConfigError{Problems: []Problem{{"function " + fc.Name() + ": schedule", err.Error()}}}
			}
		}
		if fc.StorageQueue() {
			key := fc.Connection + "|" + fc.Queue
			h.wakers[key] = append(h.wakers[key], l.wakeup)
			l.wakePoison = func() { h.wake(fc.Connection, fc.Poison) }
		}
		listeners = append(listeners, l)
	}
	if len(listeners) == 0 {
		return errors.New("every function is disabled")
	}
	h.obsMu.Lock()
	h.listeners = listeners
	h.obsMu.Unlock()
	defer func() {
		for _, l := range listeners {
			l.stats.setState(stateStopped)
		}
	}()
	if err := h.runRecords(ctx); err != nil {
		return err
	}
	srv, err := h.startHTTP()
	if err != nil {
		return err
	}
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var polling sync.WaitGroup
	for _, l := range listeners {
		go l.sampleDepth(sampling)
		h.log.Info("listening", zap.String("function", l.fc.Name()), zap.String("queue", l.fc.Queue),
			zap.Int("batchSize", l.fc.Queues.BatchSize), zap.Int("newBatchThreshold", l.fc.Queues.NewBatchThreshold),
			zap.Int("maxDequeueCount", l.fc.Queues.MaxDequeueCount))
		switch {
		case l.timer != nil:
			polling.Go(func() { l.runTimer(ctx, l.timer) })
		case l.fc.Batch != nil:
			polling.Go(func() { l.pollBatches(ctx) })
		default:
			polling.Go(func() { l.poll(ctx) })
		}
	}
	h.started.Store(true)
	v := Version()
	h.log.Info("host started", zap.Int("functions", len(listeners)), zap.String("version", v.Version),
		zap.String("revision", v.Revision), zap.String("goVersion", v.GoVersion))
	<-ctx.Done()
	h.stopping.Store(true) // /readyz fails from now; the listener serves until the drain ends
	cleanupBy = h.shutdown(listeners, &polling, cancelHard)
	srv.stop(cleanupBy)
	return nil
}

// currentListeners returns the listeners Run started (none before).
func (h *Host) currentListeners() []*listener {
	h.obsMu.Lock()
	defer h.obsMu.Unlock()
	return h.listeners
}
