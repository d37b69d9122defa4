package runtime

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

// Categories that nest ("Function" and "Function.X", the usual Functions
// pattern) are all kept, and the longest prefix wins.
func TestLoadConfigLogLevelNestedCategories(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "logging": {"logLevel": {
	  "default": "Error", "Function": "Warning", "Function.X": "Information", "Function.X.User": "Debug",
	  "Host": "Error", "Host.Triggers.Queues": "None"}}}`)
	want := map[string]string{"default": "Error", "function": "Warning", "function.x": "Information",
		"function.x.user": "Debug", "host": "Error", "host.triggers.queues": "None"}
	for range 20 { // viper's map order made this random
		cfg, err := LoadConfig(p, true, NewAppSettings(nil))
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.LogLevels) != len(want) {
			t.Fatalf("log levels = %v, want %v", cfg.LogLevels, want)
		}
		for k, v := range want {
			if cfg.LogLevels[k] != v {
				t.Fatalf("log levels = %v, want %v", cfg.LogLevels, want)
			}
		}
		logs, err := NewLogs(LogOptions{Levels: cfg.LogLevels, Output: zapcore.AddSync(io.Discard)})
		if err != nil {
			t.Fatal(err)
		}
		for cat, lvl := range map[string]zapcore.Level{"Function.Y": zapcore.WarnLevel, "Function.X": zapcore.InfoLevel,
			"Function.X.User": zapcore.DebugLevel, "Host.Startup": zapcore.ErrorLevel, "Other": zapcore.ErrorLevel} {
			if got := logs.level(cat); got != lvl {
				t.Errorf("level(%s) = %s, want %s", cat, got, lvl)
			}
		}
	}
}

// The same from app settings, and an app setting replaces the file's entry.
func TestLoadConfigLogLevelNestedFromSettings(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "logging": {"logLevel": {"Function.X": "Debug"}}}`)
	settings := NewAppSettings(map[string]string{
		"AzureFunctionsJobHost__logging__logLevel__Function":   "Warning",
		"AzureFunctionsJobHost__logging__logLevel__Function.X": "Information",
	})
	cfg, err := LoadConfig(p, true, settings)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevels["function"] != "Warning" || cfg.LogLevels["function.x"] != "Information" || len(cfg.LogLevels) != 2 {
		t.Errorf("log levels = %v", cfg.LogLevels)
	}
}

// One category written twice, in any case or nesting, is a problem naming both.
func TestLoadConfigLogLevelSameCategoryTwice(t *testing.T) {
	p := writeHostJSON(t, `{"logging": {"logLevel": {"Function.X": "Debug",
	  "function.x": "Error", "Host": {"Triggers": "None"}, "host.triggers": "Debug"}}}`)
	got := problems(t, func() error { _, err := LoadConfig(p, true, NewAppSettings(nil)); return err }())
	if len(got) != 2 || !strings.HasPrefix(got[0], "logging.logLevel.Function.X: ") ||
		!strings.Contains(got[0], `"Function.X"`) || !strings.Contains(got[0], `"function.x"`) ||
		!strings.HasPrefix(got[1], "logging.logLevel.Host.Triggers: ") || !strings.Contains(got[1], `"host.triggers"`) {
		t.Errorf("got %q", got)
	}
}

// Keys of one object that differ only in case are a problem naming both,
// not one of them at random.
func TestLoadConfigDuplicateKeys(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0",
	  "extensions": {"queues": {"batchSize": 2,
	    "BatchSize": 3}, "http": {"a": 1, "A": 2}},
	  "jobhost": {"functions": {"Foo": {}, "foo": {}}}}`)
	got := problems(t, func() error { _, err := LoadConfig(p, true, NewAppSettings(nil)); return err }())
	want := []string{
		`extensions.http.a: "a" (line 3) and "A" (line 3) are the same key`,
		`extensions.queues.batchSize: "batchSize" (line 2) and "BatchSize" (line 3) are the same key`,
		`jobhost.functions.Foo: "Foo" (line 4) and "foo" (line 4) are the same key`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("problem %d = %q, want %q...", i, got[i], w)
		}
	}
}

// A dot in a key name is not a path: in the sections jobhost reads it is a
// problem; elsewhere (sections it ignores) it is left alone.
func TestLoadConfigDottedKey(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "extensions.queues": {"batchSize": 2},
	  "logging": {"logLevel.Function": "Debug"}, "jobhost": {"functions": {"A.B": {"batchSize": 1}}}}`)
	got := problems(t, func() error { _, err := LoadConfig(p, true, NewAppSettings(nil)); return err }())
	want := []string{`extensions.queues: `, `jobhost.functions.A.B: `, `logging.logLevel.Function: `}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) || !strings.Contains(got[i], "nest") {
			t.Errorf("problem %d = %q, want %q...", i, got[i], w)
		}
	}
	p = writeHostJSON(t, `{"version": "2.0", "extensions": {"http": {"customHeaders": {"X.Y": "z"}}}}`)
	if _, err := LoadConfig(p, true, NewAppSettings(nil)); err != nil {
		t.Errorf("a dot in an ignored section: %v", err)
	}
}

// The environment wins over local.settings.json, whatever the case of the
// names.
func TestLoadConfigEnvWinsOverLocalSettings(t *testing.T) {
	local := filepath.Join(t.TempDir(), "local.settings.json")
	os.WriteFile(local, []byte(`{"Values": {"AzureFunctionsJobHost__extensions__queues__batchSize": "2"}}`), 0o600)
	settings, err := LoadAppSettings([]string{"AZUREFUNCTIONSJOBHOST__EXTENSIONS__QUEUES__BATCHSIZE=4"}, local, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig("", false, settings)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queues.BatchSize != 4 {
		t.Errorf("batchSize = %d, want 4 (from the environment)", cfg.Queues.BatchSize)
	}
}

// Two app settings for one key (environment names may differ in case) are a
// problem naming both.
func TestLoadConfigTwoSettingsSameKey(t *testing.T) {
	settings, _ := LoadAppSettings([]string{"AzureFunctionsJobHost__extensions__queues__batchSize=4",
		"AZUREFUNCTIONSJOBHOST__extensions__queues__batchSize=8"}, "", false)
	got := problems(t, func() error { _, err := LoadConfig("", false, settings); return err }())
	if len(got) != 1 || !strings.Contains(got[0], "AZUREFUNCTIONSJOBHOST__extensions__queues__batchSize") ||
		!strings.Contains(got[0], "AzureFunctionsJobHost__extensions__queues__batchSize") {
		t.Errorf("got %q", got)
	}
}
