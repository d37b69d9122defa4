package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/viper"
)

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
