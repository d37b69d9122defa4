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

	"github.com/jobhost/jobhost/internal/redact"
)

const redacted = redact.Mask

// secretKeys are field names whose whole value is a secret.
var secretKeys = []string{"accountkey", "sharedaccesskey", "sharedaccesssignature", "password"}

// Redact returns s with the values of secrets replaced by REDACTED, keeping
// their names: AccountKey=, SharedAccessKey=, SharedAccessSignature=,
// Password= and Pwd= settings, SAS sig= parameters, Authorization header
// credentials (Bearer, Basic, SharedKey), passwords in URLs and JSON members
// named like those settings. The rules are internal/redact's, shared with
// the drivers.
func Redact(s string) string { return redact.Secrets(s) }

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
	return redact.JSONMembers(b)
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
