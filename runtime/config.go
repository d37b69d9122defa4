package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
)

// QueueSettings are the effective extensions.queues settings of one function.
type QueueSettings struct {
	// BatchSize is how many messages one poll asks for (1..32, default 16).
	BatchSize int
	// NewBatchThreshold is the in-flight count at or below which the next
	// poll is made (default batchSize/2 × processors).
	NewBatchThreshold int
	// MaxDequeueCount is the number of attempts before poison (default 5).
	MaxDequeueCount int
	// MaxPollingInterval caps the idle polling backoff (default 1 min).
	MaxPollingInterval time.Duration
	// VisibilityTimeout delays a failed message's next attempt (default 0).
	VisibilityTimeout time.Duration
	// LeaseDuration is the visibility lease taken at dequeue and renewed at
	// half-lease while the function runs (default 10 min; jobhost only).
	LeaseDuration time.Duration
	// MessageEncoding is base64 (default) or none.
	MessageEncoding bindings.Encoding
	// CreateQueues creates a missing trigger queue instead of backing off
	// (default false; jobhost only).
	CreateQueues bool
	// Retry is the retry policy (nil: retry after VisibilityTimeout until
	// MaxDequeueCount).
	Retry *functions.RetryPolicy
	// MaxRenewal stops lease renewal once a message has been held this
	// long (0: renew for as long as the function runs). Service Bus's
	// maxAutoLockRenewalDuration.
	MaxRenewal time.Duration
}

// ServiceBusSettings are host.json's extensions.serviceBus, with Azure
// Functions' defaults.
type ServiceBusSettings struct {
	// MaxConcurrentCalls bounds the invocations running at once per
	// function (default 16 × processors).
	MaxConcurrentCalls int
	// PrefetchCount is the receiver's prefetch (default 0).
	PrefetchCount int
	// MaxAutoLockRenewalDuration stops lock renewal after this long
	// (default 5 min).
	MaxAutoLockRenewalDuration time.Duration
	// MaxDequeueCount is the attempts before jobhost dead-letters (default
	// 10, Service Bus's own MaxDeliveryCount default; keep it at or below
	// the entity's).
	MaxDequeueCount int
}

// Config is a loaded and validated host.json.
type Config struct {
	// Version is host.json's schema version ("2.0").
	Version string
	// FunctionTimeout limits every invocation; 0 means no limit.
	FunctionTimeout time.Duration
	// ShutdownTimeout is how long in-flight functions may run after a stop
	// signal before their contexts are cancelled (jobhost.shutdownTimeout).
	ShutdownTimeout time.Duration
	// Queues holds the host-wide extensions.queues settings. NewBatchThreshold
	// is -1 when unset (derived from each function's batch size).
	Queues QueueSettings
	// PubSub holds extensions.pubsub: the same keys, for URL triggers on
	// RabbitMQ, NATS JetStream and gocloud brokers (messageEncoding defaults
	// to none there).
	PubSub QueueSettings
	// ServiceBus holds extensions.serviceBus, for azuresb:// triggers.
	ServiceBus ServiceBusSettings
	// LogLevels maps logging.logLevel categories to level names.
	LogLevels map[string]string
	// LogFormat is "json" or "console" (jobhost.logFormat).
	LogFormat string
	// Callbacks configures completion callbacks (jobhost.callbacks).
	Callbacks CallbackSettings
	// Functions holds per-function overrides from jobhost.functions, keyed by
	// lower-cased function name.
	Functions map[string]FunctionOverrides
	// Warnings lists keys that were ignored (unknown or unsupported).
	Warnings []string
}

// FunctionOverrides are one function's settings from host.json
// jobhost.functions.<Name>: the settings a function can be given in code,
// plus Disabled. Nil fields are not set.
type FunctionOverrides struct {
	functions.Settings
	// Disabled stops the host from listening for the function.
	Disabled *bool
	// Poison names the poison destination of a URL trigger.
	Poison *string
}

// CallbackSettings are jobhost.callbacks: where completion notices may go
// and how hard the host tries.
type CallbackSettings struct {
	// AllowedHosts lists the hosts (host or host:port; "*.example.com"
	// matches subdomains) a callback may be sent to. Empty: none (SSRF).
	AllowedHosts []string
	// Timeout bounds one POST (default 10 s).
	Timeout time.Duration
	// MaxAttempts is how many times a failing POST is tried (default 3).
	MaxAttempts int
}

// Defaults as in the Azure Functions Storage Queues extension.
const (
	DefaultBatchSize          = 16
	DefaultMaxDequeueCount    = 5
	DefaultMaxPollingInterval = time.Minute
	DefaultLeaseDuration      = 10 * time.Minute
	DefaultShutdownTimeout    = 25 * time.Second
	// MinPollingInterval is the first backoff step and the lowest valid
	// maxPollingInterval.
	MinPollingInterval = 100 * time.Millisecond
	maxBatchSize       = 32
	maxVisibility      = 7 * 24 * time.Hour
)

// DefaultConfig returns the configuration used when host.json sets nothing.
func DefaultConfig() *Config {
	return &Config{
		Version:         "2.0",
		ShutdownTimeout: DefaultShutdownTimeout,
		Queues: QueueSettings{
			BatchSize:          DefaultBatchSize,
			NewBatchThreshold:  -1,
			MaxDequeueCount:    DefaultMaxDequeueCount,
			MaxPollingInterval: DefaultMaxPollingInterval,
			LeaseDuration:      DefaultLeaseDuration,
			MessageEncoding:    bindings.Base64,
		},
		PubSub: QueueSettings{
			BatchSize:          DefaultBatchSize,
			NewBatchThreshold:  -1,
			MaxDequeueCount:    DefaultMaxDequeueCount,
			MaxPollingInterval: DefaultMaxPollingInterval,
			LeaseDuration:      DefaultLeaseDuration,
			MessageEncoding:    bindings.None,
		},
		ServiceBus: ServiceBusSettings{
			MaxConcurrentCalls:         16 * goruntime.NumCPU(),
			MaxAutoLockRenewalDuration: 5 * time.Minute,
			MaxDequeueCount:            10,
		},
		Callbacks: CallbackSettings{Timeout: 10 * time.Second, MaxAttempts: 3},
		LogLevels: map[string]string{},
		LogFormat: "json",
		Functions: map[string]FunctionOverrides{},
	}
}

// Problem is one invalid setting: Key names it (a host.json path, an
// environment variable or an app setting) and Message says what is expected.
type Problem struct {
	Key     string
	Message string
}

func (p Problem) String() string { return p.Key + ": " + p.Message }

// ConfigError reports every problem found in host.json and the settings.
// The CLI prints one line per problem and exits with status 2.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// EnvPrefix starts an app setting that overrides a host.json value:
// AzureFunctionsJobHost__extensions__queues__batchSize.
const EnvPrefix = "AzureFunctionsJobHost__"

// LoadConfig reads host.json at path (a missing file at the default path
// gives the defaults; pass required=true to insist on it), applies overrides
// from app settings named AzureFunctionsJobHost__a__b (case-insensitive) and
// validates everything. All problems are returned together in a
// *ConfigError.
func LoadConfig(path string, required bool, settings *AppSettings) (*Config, error) {
	v := viper.New()
	v.SetConfigType("json")
	var probs []Problem
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			var pe *os.PathError
			switch {
			case errors.As(err, &pe) && errors.Is(err, os.ErrNotExist) && !required:
			case errors.As(err, &pe):
				probs = append(probs, Problem{path, "cannot read: " + pe.Err.Error()})
			default:
				probs = append(probs, Problem{path, "not valid JSON: " + jsonErrorText(err)})
			}
		}
	}
	// Keys from app settings override the file. source remembers where a
	// value came from, so a problem names the key the user wrote.
	source := map[string]string{}
	if settings != nil {
		for _, name := range settings.Names() {
			if len(name) <= len(EnvPrefix) || !strings.EqualFold(name[:len(EnvPrefix)], EnvPrefix) {
				continue
			}
			key := strings.ToLower(strings.ReplaceAll(name[len(EnvPrefix):], "__", "."))
			val, _ := settings.Lookup(name)
			v.Set(key, val)
			source[key] = name
		}
	}
	if len(probs) == 0 && path != "" {
		probs = nullValues(path)
	}
	if len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	d := &decoder{all: v.AllSettings(), source: source, file: path}
	cfg := d.decode()
	if len(d.probs) > 0 {
		return nil, &ConfigError{Problems: d.probs}
	}
	return cfg, nil
}

// nullValues reports every null in the host.json at path: viper drops
// them, which would silently turn "batchSize": null into the default.
func nullValues(path string) []Problem {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil // a missing optional file; read errors were reported already
	}
	var root any
	if json.Unmarshal(data, &root) != nil {
		return nil
	}
	var probs []Problem
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case nil:
			key := prefix
			if key == "" { // the whole file is null
				key = path
			}
			probs = append(probs, Problem{key, "null is not a value: remove the key to use the default"})
		case map[string]any:
			for k, c := range x {
				key := k
				if key == "" {
					key = `""` // an empty name, shown as such
				}
				if prefix != "" {
					key = prefix + "." + key
				}
				walk(key, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
		}
	}
	walk("", root)
	sort.Slice(probs, func(i, j int) bool { return probs[i].Key < probs[j].Key })
	return probs
}

func jsonErrorText(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "While parsing config") {
		return s[i+2:]
	}
	return s
}

// decoder walks viper's nested settings map against the schema.
type decoder struct {
	all    map[string]any
	source map[string]string
	file   string
	probs  []Problem
	warns  []string
}

// name returns how the user wrote key: the app setting that set it, or the
// host.json path in its canonical casing.
func (d *decoder) name(lowerKey, canonical string) string {
	if s, ok := d.source[lowerKey]; ok {
		return s
	}
	return canonical
}

func (d *decoder) problem(lowerKey, canonical, msg string) {
	d.probs = append(d.probs, Problem{d.name(lowerKey, canonical), msg})
}

func (d *decoder) warn(lowerKey, canonical, msg string) {
	d.warns = append(d.warns, d.name(lowerKey, canonical)+": "+msg)
}

func (d *decoder) decode() *Config {
	cfg := DefaultConfig()
	top := d.all
	for k, val := range top {
		switch k {
		case "version":
			if s, ok := val.(string); !ok || s != "2.0" {
				d.problem("version", "version", fmt.Sprintf(`must be "2.0" (the Azure Functions 2.0+ schema), got %s`, show(val)))
			}
		case "functiontimeout":
			if t, ok := d.timeout("functiontimeout", "functionTimeout", val); ok {
				cfg.FunctionTimeout = t
			}
		case "logging":
			d.logging(cfg, val)
		case "extensions":
			d.extensions(cfg, val)
		case "jobhost":
			d.jobhost(cfg, val)
		case "retry":
			if p, ok := d.retry("retry", "retry", val); ok {
				cfg.Queues.Retry, cfg.PubSub.Retry = p, p
			}
		case "extensionbundle":
			d.warn(k, "extensionBundle", "ignored: jobhost compiles its bindings in")
		default:
			d.warn(k, k, "unknown key, ignored")
		}
	}
	if _, ok := top["version"]; !ok && d.file != "" {
		// Functions requires it; we only warn so that a bare {} works.
		d.warns = append(d.warns, `version: not set, assuming "2.0"`)
	}
	sort.Strings(d.warns)
	sort.Slice(d.probs, func(i, j int) bool { return d.probs[i].Key < d.probs[j].Key })
	cfg.Warnings = d.warns
	return cfg
}

func (d *decoder) section(key, canon string, val any) (map[string]any, bool) {
	m, ok := val.(map[string]any)
	if !ok {
		d.problem(key, canon, fmt.Sprintf("must be a JSON object, got %s", show(val)))
	}
	return m, ok
}

func (d *decoder) logging(cfg *Config, val any) {
	m, ok := d.section("logging", "logging", val)
	if !ok {
		return
	}
	for k, v := range m {
		if k != "loglevel" {
			d.warn("logging."+k, "logging."+k, "unknown key, ignored")
			continue
		}
		levels, ok := d.section("logging.loglevel", "logging.logLevel", v)
		if !ok {
			continue
		}
		flattenLevels(levels, "", func(cat string, lv any) {
			key := "logging.loglevel." + cat
			s, ok := lv.(string)
			if !ok {
				d.problem(key, "logging.logLevel."+cat, fmt.Sprintf("must be a level name, got %s", show(lv)))
				return
			}
			if _, _, err := ParseLogLevel(s); err != nil {
				d.problem(key, "logging.logLevel."+cat, err.Error())
				return
			}
			cfg.LogLevels[cat] = s
		})
	}
}

// flattenLevels turns {"function": {"x": "Debug"}} (how viper nests a
// category with a dot) back into "function.x".
func flattenLevels(m map[string]any, prefix string, f func(string, any)) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flattenLevels(sub, prefix+k+".", f)
			continue
		}
		f(prefix+k, v)
	}
}

func (d *decoder) extensions(cfg *Config, val any) {
	m, ok := d.section("extensions", "extensions", val)
	if !ok {
		return
	}
	for k, v := range m {
		var target *QueueSettings
		canon := "extensions." + k
		switch k {
		case "queues":
			target = &cfg.Queues
		case "pubsub":
			target, canon = &cfg.PubSub, "extensions.pubsub"
		case "servicebus":
			d.serviceBus(cfg, v)
			continue
		default:
			d.warn(canon, canon, "unsupported extension, ignored")
			continue
		}
		q, ok := d.section("extensions."+k, canon, v)
		if !ok {
			continue
		}
		var o FunctionOverrides
		d.queueKeys("extensions."+k+".", canon+".", q, &o, &target.CreateQueues)
		*target = overlay(*target, o.Settings)
	}
}

// serviceBusIgnored are Functions' extensions.serviceBus keys that jobhost
// accepts and ignores.
var serviceBusIgnored = map[string]bool{"transporttype": true, "webproxy": true, "clientretryoptions": true,
	"sessionhandleroptions": true, "maxmessagebatchsize": true, "minmessagebatchsize": true,
	"maxbatchwaittime": true, "sessionidletimeout": true, "maxconcurrentsessions": true,
	"enablecrossentitytransactions": true, "maxconcurrentcallsacrossallfunctions": true}

func (d *decoder) serviceBus(cfg *Config, val any) {
	m, ok := d.section("extensions.servicebus", "extensions.serviceBus", val)
	if !ok {
		return
	}
	sb := &cfg.ServiceBus
	for k, v := range m {
		key := "extensions.servicebus." + k
		canon := func(n string) string { return "extensions.serviceBus." + n }
		switch k {
		case "maxconcurrentcalls":
			if n, ok := d.integer(key, canon("maxConcurrentCalls"), v, 1, 10000); ok {
				sb.MaxConcurrentCalls = n
			}
		case "prefetchcount":
			if n, ok := d.integer(key, canon("prefetchCount"), v, 0, math.MaxInt32); ok {
				sb.PrefetchCount = n
				if n > 0 {
					d.warn(key, canon("prefetchCount"), "azservicebus has no prefetch; jobhost receives only what it may run, ignored")
				}
			}
		case "maxdequeuecount":
			if n, ok := d.integer(key, canon("maxDequeueCount"), v, 1, math.MaxInt32); ok {
				sb.MaxDequeueCount = n
			}
		case "maxautolockrenewalduration":
			if t, ok := d.duration(key, canon("maxAutoLockRenewalDuration"), v, 0, maxVisibility); ok {
				sb.MaxAutoLockRenewalDuration = t
			}
		case "autocompletemessages":
			if b, ok := d.boolean(key, canon("autoCompleteMessages"), v); ok && !b {
				d.problem(key, canon("autoCompleteMessages"), "false is not supported: jobhost settles every message itself (return nil to complete, an error to retry)")
			}
		default:
			if serviceBusIgnored[k] {
				d.warn(key, canon(k), "not used by jobhost, ignored")
			} else {
				d.warn(key, canon(k), "unknown key, ignored")
			}
		}
	}
}

func (d *decoder) jobhost(cfg *Config, val any) {
	m, ok := d.section("jobhost", "jobhost", val)
	if !ok {
		return
	}
	for k, v := range m {
		key := "jobhost." + k
		switch k {
		case "shutdowntimeout":
			if t, ok := d.duration(key, "jobhost.shutdownTimeout", v, 0, 24*time.Hour); ok {
				cfg.ShutdownTimeout = t
			}
		case "logformat":
			s, _ := v.(string)
			switch strings.ToLower(s) {
			case "json", "console":
				cfg.LogFormat = strings.ToLower(s)
			default:
				d.problem(key, "jobhost.logFormat", fmt.Sprintf(`must be "json" or "console", got %s`, show(v)))
			}
		case "callbacks":
			d.callbacks(cfg, v)
		case "functions":
			fns, ok := d.section(key, "jobhost.functions", v)
			if !ok {
				continue
			}
			for name, fv := range fns {
				prefix := "jobhost.functions." + name + "."
				fm, ok := d.section(strings.TrimSuffix(prefix, "."), strings.TrimSuffix(prefix, "."), fv)
				if !ok {
					continue
				}
				var o FunctionOverrides
				d.queueKeys(prefix, prefix, fm, &o, nil)
				cfg.Functions[name] = o
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

// queueKeys decodes the extensions.queues keys of m into o. createQueues is
// only accepted host-wide (create != nil); functionTimeout and disabled only
// per function.
func (d *decoder) queueKeys(lowerPrefix, canonPrefix string, m map[string]any, o *FunctionOverrides, create *bool) {
	for k, v := range m {
		key := lowerPrefix + k
		canon := func(n string) string { return canonPrefix + n }
		switch k {
		case "batchsize":
			if n, ok := d.integer(key, canon("batchSize"), v, 1, maxBatchSize); ok {
				o.BatchSize = &n
			}
		case "newbatchthreshold":
			if n, ok := d.integer(key, canon("newBatchThreshold"), v, 0, math.MaxInt32); ok {
				o.NewBatchThreshold = &n
			}
		case "maxdequeuecount":
			if n, ok := d.integer(key, canon("maxDequeueCount"), v, 1, math.MaxInt32); ok {
				o.MaxDequeueCount = &n
			}
		case "maxpollinginterval":
			if t, ok := d.duration(key, canon("maxPollingInterval"), v, MinPollingInterval, 24*time.Hour); ok {
				o.MaxPollingInterval = &t
			}
		case "visibilitytimeout":
			if t, ok := d.duration(key, canon("visibilityTimeout"), v, 0, maxVisibility); ok {
				o.VisibilityTimeout = &t
			}
		case "leaseduration":
			if t, ok := d.duration(key, canon("leaseDuration"), v, time.Second, maxVisibility); ok {
				o.LeaseDuration = &t
			}
		case "messageencoding":
			s, _ := v.(string)
			if e, err := bindings.ParseEncoding(s); err != nil {
				d.problem(key, canon("messageEncoding"), fmt.Sprintf(`must be "base64" or "none", got %s`, show(v)))
			} else {
				o.MessageEncoding = &e
			}
		case "createqueues":
			if create == nil {
				d.warn(key, canon(k), "only valid in extensions.queues, ignored")
			} else if b, ok := d.boolean(key, canon("createQueues"), v); ok {
				*create = b
			}
		case "functiontimeout":
			if create != nil {
				d.warn(key, canon(k), "set functionTimeout at the top level of host.json, ignored")
			} else if t, ok := d.timeout(key, canon("functionTimeout"), v); ok {
				o.FunctionTimeout = &t
			}
		case "retry":
			if create != nil {
				d.warn(key, canon(k), "set retry at the top level of host.json or per function, ignored")
			} else if p, ok := d.retry(key, canon("retry"), v); ok {
				o.Retry = p
			}
		case "poison":
			if create != nil {
				d.warn(key, canon(k), "set poison per function, ignored")
			} else if p, ok := v.(string); !ok || p == "" {
				d.problem(key, canon("poison"), fmt.Sprintf("must be a queue, subject or topic name, got %s", show(v)))
			} else {
				o.Poison = &p
			}
		case "disabled":
			if create != nil {
				d.warn(key, canon(k), "unknown key, ignored")
			} else if b, ok := d.boolean(key, canon("disabled"), v); ok {
				o.Disabled = &b
			}
		default:
			d.warn(key, canon(k), "unknown key, ignored")
		}
	}
}

func (d *decoder) integer(key, canon string, v any, lo, hi int) (int, bool) {
	var n int
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || x < math.MinInt32 || x > math.MaxInt32 {
			d.problem(key, canon, fmt.Sprintf("must be a whole number from %d to %d, got %s", lo, hi, show(v)))
			return 0, false
		}
		n = int(x)
	case int:
		n = x
	case int64:
		n = int(x)
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			d.problem(key, canon, fmt.Sprintf("must be a whole number from %d to %d, got %s", lo, hi, show(v)))
			return 0, false
		}
		n = i
	default:
		d.problem(key, canon, fmt.Sprintf("must be a whole number from %d to %d, got %s", lo, hi, show(v)))
		return 0, false
	}
	if n < lo || n > hi {
		d.problem(key, canon, fmt.Sprintf("must be from %d to %d, got %d", lo, hi, n))
		return 0, false
	}
	return n, true
}

func (d *decoder) boolean(key, canon string, v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, true
		}
	}
	d.problem(key, canon, fmt.Sprintf("must be true or false, got %s", show(v)))
	return false, false
}

func (d *decoder) duration(key, canon string, v any, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		d.problem(key, canon, fmt.Sprintf(`must be a TimeSpan string like "00:00:30", got %s`, show(v)))
		return 0, false
	}
	t, err := ParseTimeSpan(s)
	if err != nil {
		d.problem(key, canon, err.Error())
		return 0, false
	}
	if t < lo || t > hi {
		d.problem(key, canon, fmt.Sprintf("must be from %s to %s, got %s", FormatTimeSpan(lo), FormatTimeSpan(hi), s))
		return 0, false
	}
	return t, true
}

func (d *decoder) callbacks(cfg *Config, v any) {
	m, ok := d.section("jobhost.callbacks", "jobhost.callbacks", v)
	if !ok {
		return
	}
	cb := &cfg.Callbacks
	for k, fv := range m {
		key := "jobhost.callbacks." + k
		switch k {
		case "allowedhosts":
			list, ok := fv.([]any)
			if s, isStr := fv.(string); isStr { // from an environment variable: comma-separated
				for _, h := range strings.Split(s, ",") {
					list = append(list, strings.TrimSpace(h))
				}
				ok = true
			}
			if !ok {
				d.problem(key, "jobhost.callbacks.allowedHosts", fmt.Sprintf("must be a list of host names, got %s", show(fv)))
				continue
			}
			cb.AllowedHosts = nil
			for _, h := range list {
				s, ok := h.(string)
				if !ok || s == "" || strings.ContainsAny(s, "/?#@ ") {
					d.problem(key, "jobhost.callbacks.allowedHosts", fmt.Sprintf("must hold host names (host or host:port), got %s", show(h)))
					continue
				}
				cb.AllowedHosts = append(cb.AllowedHosts, strings.ToLower(s))
			}
		case "timeout":
			if t, ok := d.duration(key, "jobhost.callbacks.timeout", fv, 100*time.Millisecond, 10*time.Minute); ok {
				cb.Timeout = t
			}
		case "maxattempts":
			if n, ok := d.integer(key, "jobhost.callbacks.maxAttempts", fv, 1, 20); ok {
				cb.MaxAttempts = n
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

// retry decodes a Functions retry policy object.
func (d *decoder) retry(key, canon string, v any) (*functions.RetryPolicy, bool) {
	m, ok := d.section(key, canon, v)
	if !ok {
		return nil, false
	}
	p := &functions.RetryPolicy{MaxRetryCount: -1}
	good := true
	for k, fv := range m {
		fk, fc := key+"."+k, canon+"."+k
		switch k {
		case "strategy":
			s, _ := fv.(string)
			switch strings.ToLower(s) {
			case "fixeddelay":
				p.Strategy = "fixedDelay"
			case "exponentialbackoff":
				p.Strategy = "exponentialBackoff"
			default:
				d.problem(fk, canon+".strategy", fmt.Sprintf(`must be "fixedDelay" or "exponentialBackoff", got %s`, show(fv)))
				good = false
			}
		case "maxretrycount":
			n, ok := d.integer(fk, canon+".maxRetryCount", fv, -1, math.MaxInt32)
			p.MaxRetryCount, good = n, good && ok
		case "delayinterval":
			t, ok := d.duration(fk, canon+".delayInterval", fv, 0, maxVisibility)
			p.DelayInterval, good = t, good && ok
		case "minimuminterval":
			t, ok := d.duration(fk, canon+".minimumInterval", fv, 0, maxVisibility)
			p.MinimumInterval, good = t, good && ok
		case "maximuminterval":
			t, ok := d.duration(fk, canon+".maximumInterval", fv, 0, maxVisibility)
			p.MaximumInterval, good = t, good && ok
		default:
			d.warn(fk, fc, "unknown key, ignored")
		}
	}
	if !good {
		return nil, false
	}
	if p.Strategy == "" {
		d.problem(key+".strategy", canon+".strategy", `is required: "fixedDelay" or "exponentialBackoff"`)
		return nil, false
	}
	if err := p.Validate(); err != nil {
		d.problem(key, canon, err.Error())
		return nil, false
	}
	return p, true
}

// timeout decodes functionTimeout: a TimeSpan, or -1 for no limit (0).
func (d *decoder) timeout(key, canon string, v any) (time.Duration, bool) {
	switch x := v.(type) {
	case float64:
		if x == -1 {
			return 0, true
		}
	case string:
		if strings.TrimSpace(x) == "-1" {
			return 0, true
		}
		t, err := ParseTimeSpan(x)
		if err != nil {
			d.problem(key, canon, err.Error()+` (or -1 for no limit)`)
			return 0, false
		}
		if t <= 0 {
			d.problem(key, canon, fmt.Sprintf(`must be positive, or -1 for no limit, got %q`, x))
			return 0, false
		}
		return t, true
	}
	d.problem(key, canon, fmt.Sprintf(`must be a TimeSpan string like "00:05:00", or -1 for no limit, got %s`, show(v)))
	return 0, false
}

func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprint(v)
}

// overlay returns q with the queue settings set in o laid over it.
func overlay(q QueueSettings, o functions.Settings) QueueSettings {
	if o.BatchSize != nil {
		q.BatchSize = *o.BatchSize
	}
	if o.NewBatchThreshold != nil {
		q.NewBatchThreshold = *o.NewBatchThreshold
	}
	if o.MaxDequeueCount != nil {
		q.MaxDequeueCount = *o.MaxDequeueCount
	}
	if o.MaxPollingInterval != nil {
		q.MaxPollingInterval = *o.MaxPollingInterval
	}
	if o.VisibilityTimeout != nil {
		q.VisibilityTimeout = *o.VisibilityTimeout
	}
	if o.LeaseDuration != nil {
		q.LeaseDuration = *o.LeaseDuration
	}
	if o.MessageEncoding != nil {
		q.MessageEncoding = *o.MessageEncoding
	}
	if o.Retry != nil {
		q.Retry = o.Retry
	}
	return q
}

// defaultThreshold is WebJobs' newBatchThreshold: batchSize/2 × processors.
func defaultThreshold(batchSize int) int {
	return batchSize / 2 * goruntime.NumCPU()
}
