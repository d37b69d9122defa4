package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// AppSettings are the host's app settings, as Azure Functions keeps them: the
// process environment, plus the Values of an optional local.settings.json for
// names the environment does not set. Lookups are exact first, then
// case-insensitive.
type AppSettings struct {
	values map[string]string
	folded map[string]string // lower-case name -> name
}

// NewAppSettings returns settings holding values.
func NewAppSettings(values map[string]string) *AppSettings {
	s := &AppSettings{values: map[string]string{}, folded: map[string]string{}}
	for k, v := range values {
		s.set(k, v)
	}
	return s
}

func (s *AppSettings) set(k, v string) {
	s.values[k] = v
	s.folded[strings.ToLower(k)] = k
}

// LoadAppSettings reads environ (os.Environ() form) and, when localPath names
// an existing file, its Values. A missing file is not an error unless
// required; a malformed one gives a *ConfigError naming each bad key.
func LoadAppSettings(environ []string, localPath string, required bool) (*AppSettings, error) {
	s := NewAppSettings(nil)
	if localPath != "" {
		data, err := os.ReadFile(localPath)
		switch {
		case errors.Is(err, os.ErrNotExist) && !required:
		case err != nil:
			return nil, &ConfigError{Problems: []Problem{{localPath, "cannot read: " + unwrapPath(err)}}}
		default:
			var file struct {
				Values map[string]any `json:"Values"`
			}
			if err := json.Unmarshal(data, &file); err != nil {
				return nil, &ConfigError{Problems: []Problem{{localPath, "not valid JSON: " + err.Error()}}}
			}
			var probs []Problem
			for k, v := range file.Values {
				str, ok := v.(string)
				if !ok {
					probs = append(probs, Problem{localPath + ": Values." + k, fmt.Sprintf("must be a string (app settings are strings), got %s", show(v))})
					continue
				}
				s.set(k, str)
			}
			if len(probs) > 0 {
				sort.Slice(probs, func(i, j int) bool { return probs[i].Key < probs[j].Key })
				return nil, &ConfigError{Problems: probs}
			}
		}
	}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			s.set(k, v)
		}
	}
	return s, nil
}

func unwrapPath(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// WithDefaults returns settings in which each name of defaults that s does
// not set has its default value.
func (s *AppSettings) WithDefaults(defaults map[string]string) *AppSettings {
	out := NewAppSettings(defaults)
	for k, v := range s.values {
		if old, ok := out.folded[strings.ToLower(k)]; ok {
			delete(out.values, old)
		}
		out.set(k, v)
	}
	return out
}

// Lookup returns the named setting.
func (s *AppSettings) Lookup(name string) (string, bool) {
	if v, ok := s.values[name]; ok {
		return v, true
	}
	if k, ok := s.folded[strings.ToLower(name)]; ok {
		return s.values[k], true
	}
	return "", false
}

// Names returns every setting name, sorted.
func (s *AppSettings) Names() []string {
	out := make([]string, 0, len(s.values))
	for k := range s.values {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Expand replaces each %Name% in expr with the app setting Name. An unset
// setting or an unclosed % is an error naming it.
func (s *AppSettings) Expand(expr string) (string, error) {
	if !strings.Contains(expr, "%") {
		return expr, nil
	}
	var b strings.Builder
	rest := expr
	for {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		j := strings.IndexByte(rest[i+1:], '%')
		if j < 0 {
			return "", fmt.Errorf("%q has an unclosed %% (write %%SettingName%%)", expr)
		}
		name := rest[i+1 : i+1+j]
		if name == "" {
			return "", fmt.Errorf("%q has an empty %%%% expression", expr)
		}
		v, ok := s.Lookup(name)
		if !ok {
			return "", fmt.Errorf("app setting %s is not set (used in %q)", name, expr)
		}
		b.WriteString(rest[:i])
		b.WriteString(v)
		rest = rest[i+2+j:]
	}
}
