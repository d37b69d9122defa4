package runtime

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/webhook"
)

// decoder walks viper's nested settings map against the schema.
type decoder struct {
	all    map[string]any
	source map[string]string
	file   string
	levels []levelEntry // logging.logLevel: the file's in order, then app settings
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
	d.logLevels(cfg)
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
		if k == "loglevel" { // the file's is in d.levels: only an app setting gets here
			d.problem("logging.loglevel", "logging.logLevel", fmt.Sprintf(
				"must name a category (%slogging__logLevel__<Category>), got %s", EnvPrefix, show(v)))
			continue
		}
		d.warn("logging."+k, "logging."+k, "unknown key, ignored")
	}
}

// logLevels validates d.levels into cfg.LogLevels, keyed by lower-case
// category. An app setting replaces the file's entry for its category.
func (d *decoder) logLevels(cfg *Config) {
	var order []string
	byCat := map[string]levelEntry{}
	for _, e := range d.levels {
		lc := strings.ToLower(e.cat)
		if _, ok := byCat[lc]; !ok {
			order = append(order, lc)
		}
		byCat[lc] = e
	}
	for _, lc := range order {
		e := byCat[lc]
		s, ok := e.val.(string)
		if !ok {
			d.probs = append(d.probs, Problem{e.key, fmt.Sprintf("must be a level name, got %s", show(e.val))})
			continue
		}
		if _, _, err := parseLogLevel(s); err != nil {
			d.probs = append(d.probs, Problem{e.key, err.Error()})
			continue
		}
		cfg.LogLevels[lc] = s
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
		case "http":
			d.httpSection(cfg, v)
		case "operations":
			d.operationsSection(cfg, v)
		case "dashboard":
			d.dashboardSection(cfg, v)
		case "tracing":
			d.tracingSection(cfg, v)
		case "timers":
			d.timersSection(cfg, v)
		case "hostid":
			if id, ok := v.(string); ok && validHostID(id) {
				cfg.HostID = id
			} else {
				d.problem(key, "jobhost.hostId", fmt.Sprintf("must be 1 to 32 lower-case letters, digits and dashes, got %s", show(v)))
			}
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
		case "maxbatchsize", "minbatchsize":
			if create != nil {
				d.warn(key, canon(k), "set batch sizes per function, ignored")
			} else if n, ok := d.integer(key, canon(map[string]string{"maxbatchsize": "maxBatchSize", "minbatchsize": "minBatchSize"}[k]), v, 1, functions.MaxMaxBatchSize); ok {
				if k == "maxbatchsize" {
					o.MaxBatchSize = &n
				} else {
					o.MinBatchSize = &n
				}
			}
		case "maxbatchwait":
			if create != nil {
				d.warn(key, canon(k), "set maxBatchWait per function, ignored")
			} else if t, ok := d.duration(key, canon("maxBatchWait"), v, 0, maxVisibility); ok {
				o.MaxBatchWait = &t
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
		case "signingsecret":
			// The name of an app setting, never the secret: a value is not
			// quoted in a problem, in case one was pasted here.
			name, ok := fv.(string)
			switch {
			case !ok:
				d.problem(key, "jobhost.callbacks.signingSecret", fmt.Sprintf("must be the name of an app setting, got %s", show(fv)))
			case strings.HasPrefix(strings.TrimSpace(name), webhook.SecretPrefix):
				d.problem(key, "jobhost.callbacks.signingSecret", "must name the app setting that holds the secret, not hold the secret: "+
					"put the secret in an app setting (the value is not shown)")
			case !appSettingName(name):
				d.problem(key, "jobhost.callbacks.signingSecret", "must be the name of an app setting: letters, digits, '_', '-', '.' or ':' (the value is not shown)")
			default:
				cb.SigningSecret = name
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

// appSettingName reports whether s can name an app setting: letters,
// digits, '_', '-', '.' and ':', at most 256.
func appSettingName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_-.:", c) >= 0) {
			return false
		}
	}
	return true
}

// callbackSecrets reads the callbacks' signing secrets from the app setting
// jobhost.callbacks.signingSecret names (JOBHOST_CALLBACK_SECRET when it
// names none). The default setting may be unset (unsigned callbacks); a
// named one must be set. A malformed value is a problem naming the setting,
// never showing its value.
func (d *decoder) callbackSecrets(cfg *Config, settings *AppSettings) {
	cb := &cfg.Callbacks
	secrets, setting, set, msg := signingSecrets(cb.SigningSecret, settings)
	switch {
	case msg != "":
		d.probs = append(d.probs, Problem{setting, msg})
	case !set && cb.SigningSecret != "":
		d.problem("jobhost.callbacks.signingsecret", "jobhost.callbacks.signingSecret",
			fmt.Sprintf("names app setting %s, which is not set: set it to the whsec_ secret, or remove the key to send callbacks unsigned", setting))
	default:
		cb.Secrets = secrets
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
