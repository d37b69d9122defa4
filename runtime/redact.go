package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const redacted = "REDACTED"

// secretRules find secrets; each replacement keeps the secret's name and
// puts REDACTED in place of its value. A rule only runs on text containing
// one of its lower-case keywords, which spares most text the regexps.
var secretRules = []struct {
	kw   []string
	re   *regexp.Regexp
	repl string
}{
	// Base64 keys in connection strings run to ';', white space or a quote.
	{[]string{"accountkey", "sharedaccesskey"},
		regexp.MustCompile(`(?i)\b(AccountKey|SharedAccessKey)(\s*=\s*)[^;\s"']+`), "${1}${2}" + redacted},
	// Other connection-string secrets run to ';', a quote, a line break or
	// the end; a quoted value runs to its closing quote ("" and \" escape one).
	{[]string{"sharedaccesssignature", "password", "pwd"},
		regexp.MustCompile(`(?i)\b(SharedAccessSignature|Password|Pwd)(\s*=\s*)(?:"(?:[^"\\]|""|\\.)*"?|(?:\\.|[^;"\\\r\n])+)`), "${1}${2}" + redacted},
	// SAS query parameter.
	{[]string{"sig="}, regexp.MustCompile(`(?i)\b(sig=)[^&\s"']+`), "${1}" + redacted},
	// Authorization headers: "Authorization: Bearer x", `"Authorization":["Basic x"]`.
	{[]string{"authorization"},
		regexp.MustCompile(`(?i)(\bAuthorization["']?\s*[:=]\s*\[?["']?\s*(?:Bearer|Basic)\s+)[^\s"',;\]]+`), "${1}" + redacted},
	// Bearer tokens elsewhere, if long enough not to be prose ("Bearer token").
	{[]string{"bearer"}, regexp.MustCompile(`(?i)\b(Bearer\s+)[\w.~+/-]{16,}=*`), "${1}" + redacted},
	// Storage shared-key signatures: "SharedKey account:signature".
	{[]string{"sharedkey"},
		regexp.MustCompile(`(?i)\b(SharedKey(?:Lite)?\s+[^\s:"',;]+:)[^\s"',;\]]+`), "${1}" + redacted},
	// Passwords in URLs: amqp://user:pass@host.
	{[]string{"://"},
		regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@"']*:)[^\s/?#"']+@`), "${1}" + redacted + "@"},
	// JSON members named like secrets: "password":"x".
	{[]string{"accountkey", "sharedaccess", "password"}, jsonSecret, jsonSecretRepl},
}

// jsonSecret finds JSON members named like secrets. It suits both text and
// encoded JSON, which it keeps valid.
var jsonSecret = regexp.MustCompile(`(?i)("(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password)"\s*:\s*)"(?:[^"\\]|\\.)*"`)

const jsonSecretRepl = `${1}"` + redacted + `"`

// secretKeys are field names whose whole value is a secret.
var secretKeys = []string{"accountkey", "sharedaccesskey", "sharedaccesssignature", "password"}

// Redact returns s with the values of secrets replaced by REDACTED, keeping
// their names: AccountKey=, SharedAccessKey=, SharedAccessSignature=,
// Password= and Pwd= settings, SAS sig= parameters, Authorization header
// credentials (Bearer, Basic, SharedKey), passwords in URLs and JSON members
// named like those settings.
func Redact(s string) string {
	// Every rule needs '=' or ':' in the text, but the Bearer one: most log
	// text (ids, names, outcomes) is spared the work below.
	if !strings.ContainsAny(s, "=:") && !containsFold(s, "bearer") {
		return s
	}
	lower := strings.ToLower(s)
	for _, r := range secretRules {
		if r.kw[0] == "://" && !strings.Contains(s, "@") {
			continue // a URL password needs user:password@
		}
		if slices.ContainsFunc(r.kw, func(kw string) bool { return strings.Contains(lower, kw) }) {
			s = r.re.ReplaceAllString(s, r.repl)
		}
	}
	return s
}

// containsFold reports whether s contains the lower-case ASCII word,
// ignoring case, without allocating.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		j := 0
		for ; j < len(word); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != word[j] {
				break
			}
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// redactCore redacts entries and fields before they reach the wrapped Core.
type redactCore struct{ zapcore.Core }

func (c redactCore) Level() zapcore.Level { return zapcore.LevelOf(c.Core) }

func (c redactCore) With(fs []zapcore.Field) zapcore.Core {
	return redactCore{c.Core.With(redactFields(fs))}
}

func (c redactCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c redactCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e.Message, e.LoggerName, e.Stack = Redact(e.Message), Redact(e.LoggerName), Redact(e.Stack)
	return c.Core.Write(e, redactFields(fs))
}

// redactFields returns fs with secrets redacted. Fields that can hold text
// other than a plain string (errors, Stringers, objects, arrays, reflected
// values) are encoded first, so it is the text written that is redacted.
func redactFields(fs []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field // nil until a field changes: most lines hold no secret
	for i, f := range fs {
		var expanded []zapcore.Field
		changed := false
		switch f.Type {
		case zapcore.StringType:
			if r := Redact(f.String); r != f.String {
				f.String, changed = r, true
			}
		case zapcore.ByteStringType:
			if s := string(f.Interface.([]byte)); Redact(s) != s {
				f, changed = zap.ByteString(f.Key, []byte(Redact(s))), true
			}
		case zapcore.ErrorType, zapcore.StringerType, zapcore.ReflectType,
			zapcore.ObjectMarshalerType, zapcore.ArrayMarshalerType, zapcore.InlineMarshalerType:
			m := zapcore.NewMapObjectEncoder()
			f.AddTo(m) // records failures as key+"Error", as zap does
			expanded = []zapcore.Field{}
			for _, k := range slices.Sorted(maps.Keys(m.Fields)) {
				expanded = append(expanded, redactKey(redactValue(k, m.Fields[k])))
			}
			changed = true
		}
		if expanded == nil && f.Type != zapcore.NamespaceType && f.Type != zapcore.SkipType && secretKey(f.Key) {
			f, changed = zap.String(f.Key, redacted), true
		}
		if changed && out == nil {
			out = append(make([]zapcore.Field, 0, len(fs)+len(expanded)), fs[:i]...)
		}
		switch {
		case expanded != nil:
			out = append(out, expanded...)
		case out != nil:
			out = append(out, f)
		}
	}
	if out == nil {
		return fs
	}
	return out
}

func secretKey(k string) bool {
	if len(k) < minSecretKey || len(k) > maxSecretKey {
		return false // most keys: no comparison at all
	}
	return slices.ContainsFunc(secretKeys, func(s string) bool { return strings.EqualFold(s, k) })
}

// The shortest and longest of secretKeys.
const minSecretKey, maxSecretKey = len("password"), len("sharedaccesssignature")

// redactKey redacts the whole value of a field named like a secret.
func redactKey(f zapcore.Field) zapcore.Field {
	if secretKey(f.Key) {
		return zap.String(f.Key, redacted)
	}
	return f
}

// redactValue returns a field for v, as encoded by a MapObjectEncoder, with
// secrets redacted.
func redactValue(k string, v any) zapcore.Field {
	if s, ok := v.(string); ok {
		return zap.String(k, Redact(s))
	}
	b, err := marshalJSON(v)
	if err != nil {
		return zap.String(k, Redact(fmt.Sprint(v)))
	}
	return zap.Reflect(k, json.RawMessage(redactJSON(b)))
}

// jsonString matches the string literals of valid JSON.
var jsonString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// redactJSON redacts the strings in valid JSON b, keeping it valid.
func redactJSON(b []byte) []byte {
	b = jsonString.ReplaceAllFunc(b, func(lit []byte) []byte {
		var s string
		if json.Unmarshal(lit, &s) != nil {
			return lit
		}
		if r := Redact(s); r != s {
			if q, err := marshalJSON(r); err == nil {
				return q
			}
		}
		return lit
	})
	return jsonSecret.ReplaceAll(b, []byte(jsonSecretRepl))
}

// marshalJSON encodes v as zap's JSON encoder does, without HTML escaping.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
