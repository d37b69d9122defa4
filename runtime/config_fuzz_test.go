package runtime

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// FuzzLoadConfig feeds arbitrary bytes to LoadConfig as host.json. It must
// never panic, and either return a *ConfigError naming each problem, or a
// config whose every value is within its documented bounds — one the host
// then accepts: it can log with it and build a host over it.
func FuzzLoadConfig(f *testing.F) {
	// Seed corpus: testdata/fuzz/FuzzLoadConfig (valid and invalid host.json).
	dir := f.TempDir() // one file per fuzzing process: its inputs run one at a time
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.QueueTrigger("fuzz-queue"),
		func(ctx context.Context, in string, msg *triggers.Message) error { return nil })
	settings := NewAppSettings(map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "host.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path, true, settings)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a *ConfigError: %T %v", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatalf("*ConfigError without problems")
			}
			for _, p := range ce.Problems {
				if p.Key == "" || p.Message == "" {
					t.Fatalf("problem without key or message: %+v", p)
				}
			}
			return
		}
		checkConfigBounds(t, cfg)
		if _, err := NewLogs(LogOptions{Format: cfg.LogFormat, Levels: cfg.LogLevels, Output: zapcore.AddSync(io.Discard)}); err != nil {
			t.Fatalf("LoadConfig accepted logging the host then rejects: %v\nhost.json: %q", err, data)
		}
		logs, _ := NewLogs(LogOptions{Output: zapcore.AddSync(io.Discard)})
		h, err := New(Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs})
		if err != nil {
			t.Fatalf("LoadConfig accepted a config the host then rejects: %v\nhost.json: %q", err, data)
		}
		for _, fc := range h.Functions() {
			checkQueueSettings(t, "function "+fc.Name(), fc.Queues, false)
			if fc.FunctionTimeout < 0 {
				t.Fatalf("function %s: functionTimeout %s", fc.Name(), fc.FunctionTimeout)
			}
		}
	})
}

// checkConfigBounds fails t unless every value of cfg is within the bounds
// README.md and config.go document.
func checkConfigBounds(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Version != "2.0" {
		t.Fatalf("version %q", cfg.Version)
	}
	if cfg.FunctionTimeout < 0 {
		t.Fatalf("functionTimeout %s", cfg.FunctionTimeout)
	}
	if cfg.ShutdownTimeout < 0 || cfg.ShutdownTimeout > 24*time.Hour {
		t.Fatalf("shutdownTimeout %s", cfg.ShutdownTimeout)
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "console" {
		t.Fatalf("logFormat %q", cfg.LogFormat)
	}
	for cat, lv := range cfg.LogLevels {
		if _, _, err := parseLogLevel(lv); err != nil {
			t.Fatalf("logLevel %q = %q: %v", cat, lv, err)
		}
	}
	checkQueueSettings(t, "extensions.queues", cfg.Queues, true)
	checkQueueSettings(t, "extensions.pubsub", cfg.PubSub, true)
	if cfg.Queues.MaxRenewal != 0 || cfg.PubSub.MaxRenewal != 0 {
		t.Fatalf("maxRenewal set from host.json: %s %s", cfg.Queues.MaxRenewal, cfg.PubSub.MaxRenewal)
	}
	sb := cfg.ServiceBus
	if sb.MaxConcurrentCalls < 1 || sb.MaxConcurrentCalls > 10000 || sb.PrefetchCount < 0 || sb.MaxDequeueCount < 1 ||
		sb.MaxAutoLockRenewalDuration < 0 || sb.MaxAutoLockRenewalDuration > maxVisibility {
		t.Fatalf("extensions.serviceBus out of bounds: %+v", sb)
	}
	cb := cfg.Callbacks
	if cb.Timeout < 100*time.Millisecond || cb.Timeout > 10*time.Minute || cb.MaxAttempts < 1 || cb.MaxAttempts > 20 {
		t.Fatalf("jobhost.callbacks out of bounds: %+v", cb)
	}
	for _, h := range cb.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/?#@ ") || h != strings.ToLower(h) {
			t.Fatalf("jobhost.callbacks.allowedHosts holds %q", h)
		}
	}
	for name, o := range cfg.Functions {
		where := "jobhost.functions." + name
		s := o.Settings
		if s.BatchSize != nil && (*s.BatchSize < 1 || *s.BatchSize > maxBatchSize) ||
			s.NewBatchThreshold != nil && *s.NewBatchThreshold < 0 ||
			s.MaxDequeueCount != nil && *s.MaxDequeueCount < 1 ||
			s.MaxPollingInterval != nil && (*s.MaxPollingInterval < MinPollingInterval || *s.MaxPollingInterval > 24*time.Hour) ||
			s.VisibilityTimeout != nil && (*s.VisibilityTimeout < 0 || *s.VisibilityTimeout > maxVisibility) ||
			s.LeaseDuration != nil && (*s.LeaseDuration < time.Second || *s.LeaseDuration > maxVisibility) ||
			s.MessageEncoding != nil && *s.MessageEncoding != bindings.Base64 && *s.MessageEncoding != bindings.None ||
			s.FunctionTimeout != nil && *s.FunctionTimeout < 0 ||
			o.Poison != nil && *o.Poison == "" {
			t.Fatalf("%s out of bounds: %+v", where, o)
		}
		if s.Retry != nil {
			if err := s.Retry.Validate(); err != nil {
				t.Fatalf("%s.retry accepted but invalid: %v", where, err)
			}
		}
	}
}

// checkQueueSettings checks one set of extensions.queues values; unset
// allows newBatchThreshold -1 (derived later from batchSize).
func checkQueueSettings(t *testing.T, where string, q QueueSettings, unset bool) {
	t.Helper()
	bad := func(key string, v any) { t.Fatalf("%s.%s out of bounds: %v (all: %+v)", where, key, v, q) }
	switch {
	case q.BatchSize < 1 || q.BatchSize > maxBatchSize:
		bad("batchSize", q.BatchSize)
	case q.NewBatchThreshold < 0 && !(unset && q.NewBatchThreshold == -1), q.NewBatchThreshold > math.MaxInt32:
		bad("newBatchThreshold", q.NewBatchThreshold)
	case q.MaxDequeueCount < 1:
		bad("maxDequeueCount", q.MaxDequeueCount)
	case q.MaxPollingInterval < MinPollingInterval || q.MaxPollingInterval > 24*time.Hour:
		bad("maxPollingInterval", q.MaxPollingInterval)
	case q.VisibilityTimeout < 0 || q.VisibilityTimeout > maxVisibility:
		bad("visibilityTimeout", q.VisibilityTimeout)
	case q.LeaseDuration < time.Second || q.LeaseDuration > maxVisibility:
		bad("leaseDuration", q.LeaseDuration)
	case q.MessageEncoding != bindings.Base64 && q.MessageEncoding != bindings.None:
		bad("messageEncoding", q.MessageEncoding)
	}
	if q.Retry != nil {
		if err := q.Retry.Validate(); err != nil {
			bad("retry", err)
		}
	}
}
