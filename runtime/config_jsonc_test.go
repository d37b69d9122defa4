package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// host.json as public Functions apps have it: a byte-order mark (Visual
// Studio writes one), // and /* */ comments, trailing commas.
func TestLoadConfigJSONC(t *testing.T) {
	p := writeHostJSON(t, "\uFEFF{\n  // the Functions 2.0 schema\n  \"version\": \"2.0\",\n"+
		"  /* five minutes */ \"functionTimeout\": \"00:05:00\",\n"+
		"  \"logging\": {\"logLevel\": {\"default\": \"Warning\", \"Function.F\": \"Debug\",},},\n"+
		"  \"extensions\": {\"queues\": {\"batchSize\": 8, /* per poll */ \"maxDequeueCount\": 3,},},\n"+
		"  \"jobhost\": {\"callbacks\": {\"allowedHosts\": [\"a.example.com\", \"b.example.com\",],},}, // done\n}\n")
	cfg, err := LoadConfig(p, true, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FunctionTimeout != 5*time.Minute || cfg.Queues.BatchSize != 8 || cfg.Queues.MaxDequeueCount != 3 ||
		cfg.LogLevels["function.f"] != "Debug" || len(cfg.Callbacks.AllowedHosts) != 2 || len(cfg.Warnings) != 0 {
		t.Errorf("cfg = %+v", cfg)
	}
}

// A file that is not JSON, even with comments, is reported at its line and
// column, counted in characters and without the byte-order mark.
func TestLoadConfigMalformedLineColumn(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for text, want := range map[string]string{
		"{\n  \"version\": \"2.0\",\n  \"batchSize\": 8 8\n}\n": "host.json:3:18: not valid JSON: invalid character '8' after object value",
		"\uFEFF{\"é\": x}":                     "host.json:1:7: not valid JSON: invalid value \"x\"",
		"{\"version\": \"2.0\" /* unclosed\n}": "host.json:1:19: not valid JSON: parsing comment: unexpected end of file",
		"":                                     "host.json:1:1: not valid JSON: parsing value: unexpected end of file",
	} {
		if err := os.WriteFile(filepath.Join(dir, "host.json"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig("host.json", true, NewAppSettings(nil))
		got := problems(t, err)
		if len(got) != 1 || !strings.HasPrefix(got[0], want) {
			t.Errorf("%q: got %q, want %q...", text, got, want)
		}
	}
}

// Problems are in plain words, without Go type names.
func TestLoadConfigProblemsInPlainWords(t *testing.T) {
	for _, text := range []string{`[1, 2, 3]`, `"x"`, `42`, `{"extensions": {"queues": {"batchSize": 1e400}}}`,
		`{"version": "2.0", "functionTimeout": -1e999}`, `{"logging": {"logLevel": {"x": 1e999}}}`, `{"logging": {"logLevel": []}}`} {
		_, err := LoadConfig(writeHostJSON(t, text), true, NewAppSettings(nil))
		for _, line := range problems(t, err) {
			assertPlainWords(t, text, line)
		}
	}
}
