package runtime

import (
	"errors"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/jobhost/jobhost/bindings"
)

// AppSettings are the host's app settings, as Azure Functions keeps them: the
// process environment, plus the Values of an optional local.settings.json for
// names the environment does not set (compared without regard to case: the
// environment wins). Lookups are exact first, then case-insensitive; of names
// differing only in case, a case-insensitive lookup finds the one set last
// (the later in the environment; in NewAppSettings, the last in sorted order).
type AppSettings struct {
	values map[string]string
	folded map[string]string // lower-case name -> the name a case-insensitive lookup finds
}

// NewAppSettings returns settings holding values.
func NewAppSettings(values map[string]string) *AppSettings {
	s := &AppSettings{values: map[string]string{}, folded: map[string]string{}}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		s.set(k, values[k])
	}
	return s
}

func (s *AppSettings) set(k, v string) {
	s.values[k] = v
	s.folded[strings.ToLower(k)] = k
}

// LoadAppSettings reads environ (os.Environ() form) and, when localPath names
// an existing file, its Values. A missing file is not an error unless
// required; a malformed one gives a *ConfigError naming each bad key. The
// file may hold a byte-order mark, comments and trailing commas.
func LoadAppSettings(environ []string, localPath string, required bool) (*AppSettings, error) {
	s := NewAppSettings(nil)
	fromFile := map[string]bool{}
	if localPath != "" {
		data, err := os.ReadFile(localPath)
		switch {
		case errors.Is(err, os.ErrNotExist) && !required:
		case err != nil:
			return nil, &ConfigError{Problems: []Problem{{localPath, "cannot read: " + unwrapPath(err)}}}
		default:
			values, probs := readLocalSettings(localPath, data)
			if len(probs) > 0 {
				return nil, &ConfigError{Problems: probs}
			}
			for _, kv := range values {
				s.set(kv[0], kv[1])
				fromFile[kv[0]] = true
			}
		}
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		// The environment wins over the file, whatever the case of the name.
		if old, ok := s.folded[strings.ToLower(k)]; ok && old != k && fromFile[old] {
			delete(s.values, old)
			delete(fromFile, old)
		}
		s.set(k, v)
		delete(fromFile, k)
	}
	return s, nil
}

// readLocalSettings returns the Values of local.settings.json, in file order.
func readLocalSettings(path string, data []byte) ([][2]string, []Problem) {
	doc, p := parseJSONC(path, data)
	if p != nil {
		return nil, []Problem{*p}
	}
	probs := doc.duplicates(path+": ", doc.root, nil)
	root, ok := doc.root.Value.(*hujson.Object)
	if !ok {
		return nil, append(probs, Problem{path, "must be a JSON object, got " + showJSON(doc.root)})
	}
	var values [][2]string
	for _, m := range root.Members {
		name := memberName(m)
		switch strings.ToLower(name) {
		case "isencrypted":
			switch literalKind(m.Value) {
			case 't':
				probs = append(probs, Problem{path + ": " + name, "the values are encrypted: decrypt them with `func settings decrypt`, then run again"})
			case 'f':
			default:
				probs = append(probs, Problem{path + ": " + name, "must be true or false, got " + showJSON(m.Value)})
			}
		case "values":
			obj, ok := m.Value.Value.(*hujson.Object)
			if !ok {
				probs = append(probs, Problem{path + ": " + name, "must be a JSON object of strings, got " + showJSON(m.Value)})
				continue
			}
			for _, vm := range obj.Members {
				k := memberName(vm)
				lit, _ := vm.Value.Value.(hujson.Literal)
				if literalKind(vm.Value) != '"' {
					probs = append(probs, Problem{path + ": " + name + "." + k, "must be a string (app settings are strings), got " + showJSON(vm.Value)})
					continue
				}
				values = append(values, [2]string{k, lit.String()})
			}
		}
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Key < probs[j].Key })
	return values, probs
}

func unwrapPath(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// WithDefaults returns settings in which each name of defaults that s does
// not set (compared without regard to case) has its default value.
func (s *AppSettings) WithDefaults(defaults map[string]string) *AppSettings {
	out := &AppSettings{values: maps.Clone(s.values), folded: maps.Clone(s.folded)}
	for _, k := range slices.Sorted(maps.Keys(defaults)) {
		if _, ok := s.folded[strings.ToLower(k)]; !ok {
			out.set(k, defaults[k])
		}
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
// setting or an unclosed % is an error naming it (see
// bindings.ExpandSettings, which the client shares).
func (s *AppSettings) Expand(expr string) (string, error) {
	return bindings.ExpandSettings(expr, s.Lookup)
}
