package runtime

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/timer"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// FunctionConfig is one function as the host runs it: its queue name
// resolved and validated, and its effective settings.
type FunctionConfig struct {
	// Definition is the registered function.
	Definition *functions.Definition
	// Queue is the resolved, lower-cased Storage Queue name, or for a URL
	// trigger the URL without credentials or query.
	Queue string
	// URL is the subscription URL of a URL trigger; nil for a Storage Queue.
	URL *url.URL
	// Connection is the connection name (for Storage Queues "Storage" when
	// not given; for URL triggers empty means the driver's usual variable).
	Connection string
	// Poison overrides a URL trigger's poison destination.
	Poison string
	// Outputs are the function's declared outputs.
	Outputs []*OutputConfig
	// outputNames are the declared outputs' names (an invocation's Pending
	// accepts these).
	outputNames []string
	// CallbackURL is the completion callback's fixed URL (%Setting%
	// resolved); CallbackField names the message field holding it instead.
	CallbackURL, CallbackField string
	// Queues are the effective queue settings.
	Queues QueueSettings
	// FunctionTimeout limits one invocation; 0 means no limit.
	FunctionTimeout time.Duration
	// Disabled functions are listed but not run.
	Disabled bool
	// Batch sizes the batches of a batch function; nil for a function that
	// takes one message at a time.
	Batch *BatchConfig // Timer is a timer function's schedule; nil for queue functions.
	Timer *TimerConfig
}

// TimerConfig is a timer function's resolved trigger.
type TimerConfig struct {
	// Schedule is the parsed schedule, in its time zone.
	Schedule *timer.Schedule
	// RunOnStartup and Monitor are the trigger's options.
	RunOnStartup bool
	Monitor      timer.Monitor
}

// StorageQueue reports whether the function reads an Azure Storage Queue
// (neither a URL trigger nor a timer).
func (f *FunctionConfig) StorageQueue() bool { return f.URL == nil && f.Timer == nil }

// BatchConfig is how a batch function's batches are filled.
type BatchConfig struct {
	// Max is the most messages a batch holds; Min the fewest the host
	// waits up to MaxWait for (1: a batch goes as soon as a receive comes
	// back short).
	Max, Min int
	MaxWait  time.Duration
}

// Name returns the function's name.
func (f *FunctionConfig) Name() string { return f.Definition.Name }

// held is how many messages the function's listener may hold unsettled at
// once: a poll's batch above the threshold, or for a batch function a
// batch being filled above it.
func (f *FunctionConfig) held() int {
	n := f.Queues.BatchSize
	if f.Batch != nil {
		n = max(n, f.Batch.Max)
	}
	return n + f.Queues.NewBatchThreshold
}

// ResolveFunctions applies settings to every function in reg: host.json
// defaults, then the options given at registration, then host.json
// jobhost.functions.<Name>. It reports every problem at once in a
// *ConfigError: registration problems, unresolved %Setting% expressions,
// invalid queue names and out-of-range values.
func ResolveFunctions(cfg *Config, reg *functions.Registry, settings *AppSettings) ([]*FunctionConfig, []string, error) {
	var probs []Problem
	var warns []string
	settings = settings.WithDefaults(reg.SettingDefaults())
	for _, err := range reg.Problems() {
		probs = append(probs, Problem{"functions", err.Error()})
	}
	defs := reg.Functions()
	known := map[string]bool{}
	var out []*FunctionConfig
	for _, def := range defs {
		known[strings.ToLower(def.Name)] = true
		fc, p := resolveOne(cfg, def, settings)
		probs = append(probs, p...)
		if fc != nil {
			out = append(out, fc)
		}
	}
	for name := range cfg.Functions {
		if !known[name] {
			warns = append(warns, fmt.Sprintf("jobhost.functions.%s: no function of that name is registered, ignored", name))
		}
	}
	if len(probs) > 0 {
		return nil, warns, &ConfigError{Problems: probs}
	}
	return out, warns, nil
}

func resolveOne(cfg *Config, def *functions.Definition, settings *AppSettings) (*FunctionConfig, []Problem) {
	var probs []Problem
	key := "function " + def.Name
	bad := func(what, msg string) { probs = append(probs, Problem{key + ": " + what, msg}) }

	fc := &FunctionConfig{Definition: def, Connection: def.Trigger.Connection, FunctionTimeout: cfg.FunctionTimeout}
	base := cfg.Queues
	source, err := settings.Expand(def.Trigger.Queue)
	switch {
	case err != nil:
		bad("queue", err.Error())
	case def.IsTimer():
		fc.Timer = resolveTimer(def, source, settings, bad)
		fc.Queue = source
	case strings.Contains(source, "://"):
		u, err := url.Parse(source)
		if err != nil {
			bad("queue", "not a valid URL: "+Redact(err.Error()))
			break
		}
		if _, err := lookupScheme(u.Scheme); err != nil {
			bad("queue", err.Error())
			break
		}
		fc.URL = u
		fc.Queue = redact.DisplayURL(u)
		base = cfg.PubSub
		if u.Scheme == "azuresb" {
			base = cfg.ServiceBus.queueSettings()
		}
	default:
		if fc.Connection == "" {
			fc.Connection = "Storage"
		}
		queue := strings.ToLower(source)
		if err := azurequeue.ValidateQueueName(queue); err != nil {
			bad("queue", fmt.Sprintf("%q: %v", queue, err))
		}
		fc.Queue = queue
	}

	fc.Outputs = resolveOutputs(def, settings, bad)
	for _, ob := range def.Settings.Outputs {
		fc.outputNames = append(fc.outputNames, ob.Name)
	}
	if cb := def.Settings.Callback; cb != nil {
		fc.CallbackField = cb.Field
		if cb.URL != "" {
			if u, err := settings.Expand(cb.URL); err != nil {
				bad("callback", err.Error())
			} else {
				fc.CallbackURL = u
			}
		}
	}
	q := overlay(base, def.Settings)
	if t := def.Settings.FunctionTimeout; t != nil {
		fc.FunctionTimeout = max(*t, 0)
	}
	if o, ok := cfg.Functions[strings.ToLower(def.Name)]; ok {
		q = overlay(q, o.Settings)
		if o.FunctionTimeout != nil {
			fc.FunctionTimeout = *o.FunctionTimeout
		}
		if o.Disabled != nil {
			fc.Disabled = *o.Disabled
		}
		if o.Poison != nil {
			fc.Poison = *o.Poison
		}
	}
	if fc.StorageQueue() && fc.Queue != "" {
		checkPoisonQueue(fc, bad)
	}
	if fc.Timer != nil && q.Retry == nil {
		q.MaxDequeueCount = 1 // without a retry policy a failed occurrence is not retried
	}
	if q.NewBatchThreshold < 0 {
		q.NewBatchThreshold = defaultThreshold(q.BatchSize)
	}
	// Values set in code are checked here; host.json values were checked
	// when loaded.
	if q.BatchSize < 1 || q.BatchSize > maxBatchSize {
		bad("batchSize", fmt.Sprintf("must be from 1 to %d, got %d", maxBatchSize, q.BatchSize))
	}
	if q.MaxDequeueCount < 1 {
		bad("maxDequeueCount", fmt.Sprintf("must be at least 1, got %d", q.MaxDequeueCount))
	}
	if q.MaxPollingInterval < MinPollingInterval {
		bad("maxPollingInterval", fmt.Sprintf("must be at least %s, got %s", MinPollingInterval, q.MaxPollingInterval))
	}
	if q.VisibilityTimeout < 0 || q.VisibilityTimeout > maxVisibility {
		bad("visibilityTimeout", fmt.Sprintf("must be from 0 to 7 days, got %s", q.VisibilityTimeout))
	}
	if q.LeaseDuration < time.Second || q.LeaseDuration > maxVisibility {
		bad("leaseDuration", fmt.Sprintf("must be from 1s to 7 days, got %s", q.LeaseDuration))
	}
	if q.Retry != nil {
		if err := q.Retry.Validate(); err != nil {
			bad("retry", err.Error())
		}
	}
	if q.MessageEncoding != bindings.Base64 && q.MessageEncoding != bindings.None {
		bad("messageEncoding", fmt.Sprintf(`must be "base64" or "none", got %q`, q.MessageEncoding))
	}
	fc.Queues = q
	if file := cfg.Functions[strings.ToLower(def.Name)].Settings; def.IsBatch() {
		fc.Batch = resolveBatch(def.Settings, file, q.LeaseDuration, bad)
	} else if file.MaxBatchSize != nil || file.MinBatchSize != nil || file.MaxBatchWait != nil {
		bad("maxBatchSize", "the function takes one message at a time: batch sizes apply to functions registered with functions.RegisterBatch")
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return fc, nil
}

// resolveBatch applies the batch options given in code, then host.json's,
// and checks them.
func resolveBatch(code, file functions.Settings, lease time.Duration, bad func(what, msg string)) *BatchConfig {
	b := &BatchConfig{Max: functions.DefaultMaxBatchSize, Min: 1}
	for _, s := range []functions.Settings{code, file} {
		if s.MaxBatchSize != nil {
			b.Max = *s.MaxBatchSize
		}
		if s.MinBatchSize != nil {
			b.Min = *s.MinBatchSize
		}
		if s.MaxBatchWait != nil {
			b.MaxWait = *s.MaxBatchWait
		}
	}
	switch {
	case b.Max < 1 || b.Max > functions.MaxMaxBatchSize:
		bad("maxBatchSize", fmt.Sprintf("must be from 1 to %d, got %d", functions.MaxMaxBatchSize, b.Max))
	case b.Min < 1 || b.Min > b.Max:
		bad("minBatchSize", fmt.Sprintf("must be from 1 to maxBatchSize (%d), got %d", b.Max, b.Min))
	case b.MaxWait < 0 || b.MaxWait >= lease/2:
		bad("maxBatchWait", fmt.Sprintf("must be from 0 to below half the lease (leaseDuration %s), got %s", lease, b.MaxWait))
	case b.Min > 1 && b.MaxWait == 0:
		bad("maxBatchWait", fmt.Sprintf("must be set when minBatchSize is %d: how long to wait for it", b.Min))
	}
	return b
}

// queueSettings maps extensions.serviceBus onto the host's settings: at most
// maxConcurrentCalls in flight, base64 off, renewal bounded by
// maxAutoLockRenewalDuration.
func (sb ServiceBusSettings) queueSettings() QueueSettings {
	batch := min(sb.MaxConcurrentCalls, maxBatchSize)
	return QueueSettings{
		BatchSize:          batch,
		NewBatchThreshold:  sb.MaxConcurrentCalls - batch,
		MaxDequeueCount:    sb.MaxDequeueCount,
		MaxPollingInterval: DefaultMaxPollingInterval,
		LeaseDuration:      DefaultLeaseDuration,
		MessageEncoding:    bindings.None,
		MaxRenewal:         sb.MaxAutoLockRenewalDuration,
	}
}

// checkPoisonQueue settles a Storage Queue function's poison queue: the
// one host.json names (jobhost.functions.<name>.poison), else "<queue>-poison". A
// queue with neither (its name is too long for the suffix, or is itself a
// poison queue) is a problem at start: a message that failed for good would
// have nowhere to go.
func checkPoisonQueue(fc *FunctionConfig, bad func(what, msg string)) {
	if fc.Poison == "" {
		if fc.Poison = azurequeue.PoisonQueueName(fc.Queue); fc.Poison == "" {
			why := fmt.Sprintf("%q is longer than 63 characters", fc.Queue+azurequeue.PoisonSuffix)
			if strings.HasSuffix(fc.Queue, azurequeue.PoisonSuffix) {
				why = "the queue is itself a poison queue"
			}
			bad("poison", fmt.Sprintf("queue %q has no poison queue (%s): name one in jobhost.functions.%s.poison", fc.Queue, why, fc.Name()))
		}
		return
	}
	fc.Poison = strings.ToLower(fc.Poison)
	switch err := azurequeue.ValidateQueueName(fc.Poison); {
	case err != nil:
		bad("poison", fmt.Sprintf("%q: %v", fc.Poison, err))
	case fc.Poison == fc.Queue:
		bad("poison", fmt.Sprintf("the poison queue must be another queue than %q", fc.Queue))
	}
}

// resolveTimer parses a timer function's schedule in the time zone of
// WEBSITE_TIME_ZONE.
func resolveTimer(def *functions.Definition, schedule string, settings *AppSettings, bad func(what, msg string)) *TimerConfig {
	loc, err := timer.LocationFromSettings(settings.Lookup)
	if err != nil {
		bad("schedule", err.Error())
		return nil
	}
	sched, err := timer.Parse(schedule, loc)
	if err != nil {
		bad("schedule", err.Error())
		return nil
	}
	tc := &TimerConfig{Schedule: sched, RunOnStartup: def.Trigger.Timer.RunOnStartup}
	if m := def.Trigger.Timer.UseMonitor; m != nil {
		tc.Monitor = timer.MonitorOff
		if *m {
			tc.Monitor = timer.MonitorOn
		}
	}
	return tc
}
