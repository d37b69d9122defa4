package runtime

import (
	"errors"
	"os"
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
//
// The file may start with a UTF-8 byte-order mark and hold // and /* */
// comments and trailing commas. Keys are case-insensitive, so two keys of
// one object that differ only in case are a problem, as is a dot in a key
// name outside logging.logLevel, whose category names are taken exactly as
// written. An app setting wins over the file; two app settings naming the
// same key are a problem.
func LoadConfig(path string, required bool, settings *AppSettings) (*Config, error) {
	v := viper.New()
	var probs []Problem
	var levels []levelEntry
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && !required:
		case err != nil:
			probs = append(probs, Problem{path, "cannot read: " + unwrapPath(err)})
		default:
			tree, lv, p := readHostJSON(path, data)
			probs, levels = append(probs, p...), lv
			if tree != nil {
				if err := v.MergeConfigMap(tree); err != nil {
					probs = append(probs, Problem{path, "cannot be read: " + err.Error()})
				}
			}
		}
	}
	// Keys from app settings override the file. source remembers where a
	// value came from, so a problem names the key the user wrote.
	source := map[string]string{}
	if settings != nil {
		lv, p := overrides(v, settings, source)
		probs, levels = append(probs, p...), append(levels, lv...)
	}
	if len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	d := &decoder{all: v.AllSettings(), source: source, file: path, levels: levels}
	cfg := d.decode()
	if settings != nil {
		d.callbackSecrets(cfg, settings)
	}
	if len(d.probs) > 0 {
		return nil, &ConfigError{Problems: d.probs}
	}
	return cfg, nil
}

// overrides sets in v each app setting named AzureFunctionsJobHost__a__b,
// recording its name in source, and returns those under logging.logLevel
// (whose categories may hold dots) for the decoder. Two settings naming the
// same key, as they may differ in case, are a problem naming both.
func overrides(v *viper.Viper, settings *AppSettings, source map[string]string) ([]levelEntry, []Problem) {
	var levels []levelEntry
	var probs []Problem
	for _, name := range settings.Names() {
		if len(name) <= len(EnvPrefix) || !strings.EqualFold(name[:len(EnvPrefix)], EnvPrefix) {
			continue
		}
		key := strings.ToLower(strings.ReplaceAll(name[len(EnvPrefix):], "__", "."))
		val, _ := settings.Lookup(name)
		if prev, dup := source[key]; dup {
			probs = append(probs, Problem{prev, name + " sets the same key: set only one"})
			continue
		}
		source[key] = name
		if cat, ok := strings.CutPrefix(key, "logging.loglevel."); ok {
			levels = append(levels, levelEntry{cat: cat, key: name, val: val})
			continue
		}
		v.Set(key, val)
	}
	return levels, probs
}
