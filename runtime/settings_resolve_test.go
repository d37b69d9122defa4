package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeLocalSettings(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "local.settings.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A name set in the environment hides local.settings.json's, whatever the
// case of either.
func TestAppSettingsEnvironmentWinsAnyCase(t *testing.T) {
	local := writeLocalSettings(t, `{"Values": {"queue": "from-file", "Other": "file-only"}}`)
	s, err := LoadAppSettings([]string{"Queue=from-env"}, local, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []*AppSettings{s, s.WithDefaults(map[string]string{"QUEUE": "default"})} {
		for _, name := range []string{"queue", "Queue", "QUEUE"} {
			if v, _ := set.Lookup(name); v != "from-env" {
				t.Errorf("Lookup(%s) = %q, want from-env", name, v)
			}
		}
	}
	if got := strings.Join(s.Names(), ","); got != "Other,Queue" {
		t.Errorf("names = %s", got)
	}
}

// Environment names that differ only in case: each is found exactly, and a
// case-insensitive lookup finds the later one, every time.
func TestAppSettingsCaseDuplicatesInEnvironment(t *testing.T) {
	s, err := LoadAppSettings([]string{"Queue=first", "QUEUE=second"}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 { // WithDefaults used to pick one at random
		d := s.WithDefaults(nil)
		for name, want := range map[string]string{"Queue": "first", "QUEUE": "second", "queue": "second"} {
			if v, _ := d.Lookup(name); v != want {
				t.Fatalf("Lookup(%s) = %q, want %q", name, v, want)
			}
		}
	}
}

// Names in local.settings.json that differ only in case are a problem
// naming both.
func TestAppSettingsDuplicateNamesInFile(t *testing.T) {
	local := writeLocalSettings(t, "{\"Values\": {\n  \"Queue\": \"a\",\n  \"QUEUE\": \"b\"}}")
	_, err := LoadAppSettings(nil, local, true)
	got := problems(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], local+": Values.Queue: ") ||
		!strings.Contains(got[0], `"Queue" (line 2) and "QUEUE" (line 3)`) {
		t.Errorf("got %q", got)
	}
}

// local.settings.json as Visual Studio and func write it: a byte-order
// mark, comments, trailing commas.
func TestAppSettingsJSONC(t *testing.T) {
	local := writeLocalSettings(t, "\uFEFF{\n  // storage\n  \"IsEncrypted\": false,\n  \"Values\": {\n"+
		"    \"AzureWebJobsStorage\": \"UseDevelopmentStorage=true\", /* Azurite */\n    \"Queue\": \"orders\",\n  },\n}\n")
	s, err := LoadAppSettings(nil, local, true)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Lookup("Queue"); v != "orders" {
		t.Errorf("Queue = %q", v)
	}
	if v, _ := s.Lookup("AzureWebJobsStorage"); v != "UseDevelopmentStorage=true" {
		t.Errorf("AzureWebJobsStorage = %q", v)
	}
}

// Encrypted values are refused, not used as they are.
func TestAppSettingsEncrypted(t *testing.T) {
	local := writeLocalSettings(t, `{"IsEncrypted": true, "Values": {"AzureWebJobsStorage": "AAAAQ2lwaGVy"}}`)
	_, err := LoadAppSettings(nil, local, true)
	got := problems(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], local+": IsEncrypted: ") || !strings.Contains(got[0], "func settings decrypt") {
		t.Errorf("got %q", got)
	}
}

// A malformed file is reported at its line and column.
func TestAppSettingsMalformedLineColumn(t *testing.T) {
	local := writeLocalSettings(t, "{\n  \"Values\": {\n    \"A\": \"x\" \"B\": \"y\"\n  }\n}\n")
	_, err := LoadAppSettings(nil, local, true)
	got := problems(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], local+":3:14: not valid JSON: ") {
		t.Errorf("got %q", got)
	}
}

// Problems are in plain words, without Go type names.
func TestAppSettingsProblemsInPlainWords(t *testing.T) {
	for _, text := range []string{`{"Values": "x"}`, `{"Values": [1]}`, `[1]`, `"x"`, `{"IsEncrypted": "no"}`,
		`{"Values": {"A": {"b": 1}}}`} {
		_, err := LoadAppSettings(nil, writeLocalSettings(t, text), true)
		for _, line := range problems(t, err) {
			assertPlainWords(t, text, line)
		}
	}
}

// assertPlainWords fails t if a problem line shows Go's type names.
func assertPlainWords(t *testing.T, input, line string) {
	t.Helper()
	for _, bad := range []string{"Go value", "Go struct", "map[", "interface {}", "float64", "unmarshal"} {
		if strings.Contains(line, bad) {
			t.Errorf("%s: problem shows %q: %s", input, bad, line)
		}
	}
}
