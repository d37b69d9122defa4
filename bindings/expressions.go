package bindings

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Expression is an output name with {placeholders}, resolved per
// invocation from the trigger message: {queueTrigger} (the payload text),
// {id}, {dequeueCount}, {rand-guid}, {datetime} (UTC, 2006-01-02T15-04-05Z)
// and JSON properties of the payload ({siteUrl}, {order.region}; a leading
// UTF-8 byte-order mark is skipped, as the JSON binder skips it).
type Expression struct {
	parts []part
}

type part struct {
	text string // literal text, or the placeholder name when hole
	hole bool
}

// ParseExpression parses s. "{{" and "}}" stand for literal braces. An
// unclosed or empty placeholder is an error naming it.
func ParseExpression(s string) (Expression, error) {
	var e Expression
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i+1:], '}')
			if j < 0 {
				return e, fmt.Errorf("%q: unclosed {", s)
			}
			name := strings.TrimSpace(s[i+1 : i+1+j])
			if name == "" {
				return e, fmt.Errorf("%q: empty {}", s)
			}
			if lit.Len() > 0 {
				e.parts = append(e.parts, part{text: lit.String()})
				lit.Reset()
			}
			e.parts = append(e.parts, part{text: name, hole: true})
			i += j + 1
		case c == '}':
			return e, fmt.Errorf("%q: } without {", s)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		e.parts = append(e.parts, part{text: lit.String()})
	}
	return e, nil
}

// Static reports whether e has no placeholders, and its text.
func (e Expression) Static() (string, bool) {
	var b strings.Builder
	for _, p := range e.parts {
		if p.hole {
			return "", false
		}
		b.WriteString(p.text)
	}
	return b.String(), true
}

// Data is what an expression is resolved from.
type Data struct {
	// Payload is the decoded trigger message.
	Payload []byte
	// ID and DequeueCount are the trigger message's.
	ID           string
	DequeueCount int64
	// Now is the time {datetime} shows (zero: time.Now()).
	Now time.Time

	json    map[string]any
	jsonErr error
	parsed  bool
}

// Resolve returns e with its placeholders filled from d. A JSON property
// that the payload lacks is an error naming it.
func (e Expression) Resolve(d *Data) (string, error) {
	var b strings.Builder
	for _, p := range e.parts {
		if !p.hole {
			b.WriteString(p.text)
			continue
		}
		v, err := d.lookup(p.text)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func (d *Data) lookup(name string) (string, error) {
	switch strings.ToLower(name) {
	case "queuetrigger":
		return string(d.Payload), nil
	case "id":
		return d.ID, nil
	case "dequeuecount":
		return strconv.FormatInt(d.DequeueCount, 10), nil
	case "rand-guid":
		return uuid.NewString(), nil
	case "datetime":
		now := d.Now
		if now.IsZero() {
			now = time.Now()
		}
		return now.UTC().Format("2006-01-02T15-04-05Z"), nil
	}
	if !d.parsed {
		d.parsed = true
		d.jsonErr = json.Unmarshal(trimBOM(d.Payload), &d.json)
	}
	if d.jsonErr != nil || d.json == nil {
		return "", fmt.Errorf("{%s}: the trigger message is not a JSON object", name)
	}
	var cur any = d.json
	for _, key := range strings.Split(name, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", fmt.Errorf("{%s}: the trigger message has no property %q", name, key)
		}
		if cur, ok = field(obj, key); !ok {
			return "", fmt.Errorf("{%s}: the trigger message has no property %q", name, key)
		}
	}
	switch v := cur.(type) {
	case string:
		return v, nil
	case float64, bool:
		return fmt.Sprint(v), nil
	case nil:
		return "", fmt.Errorf("{%s}: the property is null", name)
	}
	return "", fmt.Errorf("{%s}: the property is an object or array, not a value", name)
}

// field finds key in obj, exactly or else case-insensitively (as WebJobs
// binding data is).
func field(obj map[string]any, key string) (any, bool) {
	if v, ok := obj[key]; ok {
		return v, true
	}
	for k, v := range obj {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}
