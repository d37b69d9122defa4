package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
)

func writeHostJSON(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "host.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ConfigError, got %v", err)
	}
	var out []string
	for _, p := range ce.Problems {
		out = append(out, p.String())
	}
	return out
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json"), false, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	q := cfg.Queues
	if q.BatchSize != 16 || q.MaxDequeueCount != 5 || q.MaxPollingInterval != time.Minute ||
		q.VisibilityTimeout != 0 || q.LeaseDuration != 10*time.Minute || q.MessageEncoding != bindings.Base64 ||
		q.NewBatchThreshold != -1 || q.CreateQueues {
		t.Errorf("defaults differ from WebJobs': %+v", q)
	}
	if cfg.FunctionTimeout != 0 || cfg.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("timeouts: %+v", cfg)
	}
}

func TestLoadConfigRequiredMissing(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json"), true, NewAppSettings(nil))
	if p := problems(t, err); len(p) != 1 || !strings.Contains(p[0], "cannot read") {
		t.Errorf("got %q", p)
	}
}

func TestLoadConfigFull(t *testing.T) {
	p := writeHostJSON(t, `{
	  "version": "2.0",
	  "functionTimeout": "00:05:00",
	  "logging": {"logLevel": {"default": "Warning", "Function.Foo": "Debug", "Host.Triggers.Queues": "None"}},
	  "extensions": {"queues": {
	    "maxPollingInterval": "00:00:02", "visibilityTimeout": "00:00:30", "batchSize": 8,
	    "newBatchThreshold": 4, "maxDequeueCount": 3, "messageEncoding": "none",
	    "leaseDuration": "00:01:00", "createQueues": true}},
	  "jobhost": {"shutdownTimeout": "00:00:05", "logFormat": "console",
	    "functions": {"Foo": {"batchSize": 1, "functionTimeout": "-1", "disabled": false}}}
	}`)
	cfg, err := LoadConfig(p, true, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := QueueSettings{BatchSize: 8, NewBatchThreshold: 4, MaxDequeueCount: 3, MaxPollingInterval: 2 * time.Second,
		VisibilityTimeout: 30 * time.Second, LeaseDuration: time.Minute, MessageEncoding: bindings.None, CreateQueues: true}
	if cfg.Queues != want {
		t.Errorf("queues = %+v, want %+v", cfg.Queues, want)
	}
	if cfg.FunctionTimeout != 5*time.Minute || cfg.ShutdownTimeout != 5*time.Second || cfg.LogFormat != "console" {
		t.Errorf("cfg = %+v", cfg)
	}
	if cfg.LogLevels["function.foo"] != "Debug" || cfg.LogLevels["default"] != "Warning" || cfg.LogLevels["host.triggers.queues"] != "None" {
		t.Errorf("log levels = %v", cfg.LogLevels)
	}
	foo := cfg.Functions["foo"]
	if foo.BatchSize == nil || *foo.BatchSize != 1 || foo.FunctionTimeout == nil || *foo.FunctionTimeout != 0 {
		t.Errorf("function override = %+v", foo)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings = %q", cfg.Warnings)
	}
}

// Every bad value is reported at once, one line each, naming the key.
func TestLoadConfigReportsEveryProblem(t *testing.T) {
	p := writeHostJSON(t, `{
	  "version": "3.0",
	  "functionTimeout": "2000",
	  "logging": {"logLevel": {"default": "Verbose"}},
	  "extensions": {"queues": {
	    "maxPollingInterval": "00:00:00.050", "batchSize": 64, "maxDequeueCount": 0,
	    "messageEncoding": "utf8", "visibilityTimeout": 5, "newBatchThreshold": -1}}
	}`)
	_, err := LoadConfig(p, true, NewAppSettings(nil))
	got := problems(t, err)
	for _, key := range []string{"version", "functionTimeout", "logging.logLevel.default",
		"extensions.queues.maxPollingInterval", "extensions.queues.batchSize", "extensions.queues.maxDequeueCount",
		"extensions.queues.messageEncoding", "extensions.queues.visibilityTimeout", "extensions.queues.newBatchThreshold"} {
		n := 0
		for _, line := range got {
			if strings.HasPrefix(line, key+": ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("want one problem for %s, got %d in:\n%s", key, n, strings.Join(got, "\n"))
		}
	}
	if len(got) != 9 {
		t.Errorf("want 9 problems, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
	for _, line := range got {
		if strings.HasPrefix(line, "functionTimeout") && !strings.Contains(line, "00:00:02") {
			t.Errorf("bare number error should show the TimeSpan form: %s", line)
		}
	}
}

func TestLoadConfigBadJSON(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0",`)
	got := problems(t, func() error { _, err := LoadConfig(p, true, NewAppSettings(nil)); return err }())
	if len(got) != 1 || !strings.Contains(got[0], "not valid JSON") {
		t.Errorf("got %q", got)
	}
}

func TestLoadConfigUnknownKeysWarn(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "extensionBundle": {"id": "x"}, "healthMonitor": {"enabled": true},
	  "extensions": {"queues": {"batchsize": 2, "colour": "red"}, "http": {"routePrefix": "api"}}}`)
	cfg, err := LoadConfig(p, true, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queues.BatchSize != 2 {
		t.Errorf("keys must be case-insensitive: batchSize = %d", cfg.Queues.BatchSize)
	}
	w := strings.Join(cfg.Warnings, "\n")
	for _, s := range []string{"extensionBundle", "healthmonitor", "extensions.queues.colour", "extensions.http"} {
		if !strings.Contains(w, s) {
			t.Errorf("no warning for %s in:\n%s", s, w)
		}
	}
}

func TestLoadConfigEnvOverrides(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "extensions": {"queues": {"batchSize": 8, "maxDequeueCount": 3}}}`)
	settings, err := LoadAppSettings([]string{
		"AzureFunctionsJobHost__extensions__queues__batchSize=4",
		"azurefunctionsjobhost__EXTENSIONS__queues__visibilityTimeout=00:00:10",
		"AzureFunctionsJobHost__jobhost__functions__Foo__maxDequeueCount=9",
		"AzureFunctionsJobHost__logging__logLevel__Function.Foo=Error",
	}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p, true, settings)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queues.BatchSize != 4 || cfg.Queues.VisibilityTimeout != 10*time.Second || cfg.Queues.MaxDequeueCount != 3 {
		t.Errorf("queues = %+v", cfg.Queues)
	}
	if o := cfg.Functions["foo"]; o.MaxDequeueCount == nil || *o.MaxDequeueCount != 9 {
		t.Errorf("per-function override from env: %+v", o)
	}
	if cfg.LogLevels["function.foo"] != "Error" {
		t.Errorf("log level from env: %v", cfg.LogLevels)
	}
}

// A bad override is reported under the environment variable's name.
func TestLoadConfigEnvProblemNamesVariable(t *testing.T) {
	settings, _ := LoadAppSettings([]string{"AzureFunctionsJobHost__extensions__queues__batchSize=lots"}, "", false)
	_, err := LoadConfig("", false, settings)
	got := problems(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], "AzureFunctionsJobHost__extensions__queues__batchSize: ") {
		t.Errorf("got %q", got)
	}
}

func TestAppSettings(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local.settings.json")
	os.WriteFile(local, []byte(`{"IsEncrypted": false, "Values": {"Queue": "from-file", "Other": "file-only"}}`), 0o600)
	s, err := LoadAppSettings([]string{"Queue=from-env"}, local, true)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Lookup("Queue"); v != "from-env" {
		t.Errorf("the environment must win over local.settings.json, got %q", v)
	}
	if v, _ := s.Lookup("other"); v != "file-only" {
		t.Errorf("case-insensitive lookup: got %q", v)
	}
	got, err := s.Expand("%Other%-%Queue%")
	if err != nil || got != "file-only-from-env" {
		t.Errorf("Expand = %q, %v", got, err)
	}
	for _, bad := range []string{"%Missing%", "%Other", "a%%b"} {
		if _, err := s.Expand(bad); err == nil {
			t.Errorf("Expand(%q) should fail", bad)
		}
	}
	d := s.WithDefaults(map[string]string{"QUEUE": "default", "New": "d"})
	if v, _ := d.Lookup("queue"); v != "from-env" {
		t.Errorf("a default must not override a set value: %q", v)
	}
	if v, _ := d.Lookup("New"); v != "d" {
		t.Errorf("default not applied: %q", v)
	}
}

func TestAppSettingsBadFile(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local.settings.json")
	os.WriteFile(local, []byte(`{"Values": {"Port": 5, "Ok": "x", "Flag": true}}`), 0o600)
	_, err := LoadAppSettings(nil, local, true)
	got := problems(t, err)
	if len(got) != 2 || !strings.Contains(got[0], "Values.Flag") || !strings.Contains(got[1], "Values.Port") {
		t.Errorf("got %q", got)
	}
}

// A null is reported, not read as "not set".
func TestLoadConfigNulls(t *testing.T) {
	p := writeHostJSON(t, `{"version": null, "extensions": {"queues": {"batchSize": null}}, "jobhost": {"callbacks": {"allowedHosts": ["a", null]}}}`)
	_, err := LoadConfig(p, true, NewAppSettings(nil))
	got := problems(t, err)
	want := []string{"extensions.queues.batchSize: ", "jobhost.callbacks.allowedHosts[1]: ", "version: "}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) || !strings.Contains(got[i], "null") {
			t.Errorf("problem %d = %q, want %q...", i, got[i], w)
		}
	}
}
