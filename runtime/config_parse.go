package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tailscale/hujson"
)

// jsonDoc is a parsed host.json or local.settings.json: JSON that may start
// with a UTF-8 byte-order mark and hold // and /* */ comments and trailing
// commas, as Visual Studio and the Functions tools write it.
type jsonDoc struct {
	name string // the file's path, which positions start with
	text []byte // the text, without its byte-order mark
	root hujson.Value
}

var utf8BOM = []byte("\uFEFF")

// parseJSONC parses data, or returns a problem naming the line and column
// ("host.json:3:14") where it stops being JSON.
func parseJSONC(name string, data []byte) (*jsonDoc, *Problem) {
	d := &jsonDoc{name: name, text: bytes.TrimPrefix(data, utf8BOM)}
	root, err := hujson.Parse(d.text)
	if err != nil {
		return nil, d.syntaxProblem(err)
	}
	d.root = root
	return d, nil
}

// syntaxProblem turns a hujson error ("line 3, column 14: invalid character
// ...", the column in bytes) into file:line:column, the column in
// characters, and plain words.
func (d *jsonDoc) syntaxProblem(err error) *Problem {
	msg := strings.TrimPrefix(err.Error(), "hujson: ")
	line, col := 1, 1
	var l, c int
	if n, _ := fmt.Sscanf(msg, "line %d, column %d: ", &l, &c); n == 2 && l >= 1 && c >= 1 {
		_, rest, _ := strings.Cut(msg, ": ")
		msg, line, col = rest, l, c
		start := 0
		for i := 1; i < l && start < len(d.text); i++ {
			j := bytes.IndexByte(d.text[start:], '\n')
			if j < 0 {
				break
			}
			start += j + 1
		}
		if end := start + c - 1; end <= len(d.text) {
			col = d.column(end)
		}
	}
	msg = strings.ReplaceAll(msg, io.ErrUnexpectedEOF.Error(), "unexpected end of file")
	if lit, ok := strings.CutPrefix(msg, "invalid literal: "); ok { // one line, however long the literal
		if r := []rune(lit); len(r) > 40 {
			lit = string(r[:40]) + "…"
		}
		msg = "invalid value " + strconv.Quote(lit)
	}
	if msg != "" {
		msg = ": " + msg
	}
	return &Problem{fmt.Sprintf("%s:%d:%d", d.name, line, col), "not valid JSON" + msg}
}

// line returns the 1-based line of byte offset off.
func (d *jsonDoc) line(off int) int {
	off = min(max(off, 0), len(d.text))
	return 1 + bytes.Count(d.text[:off], []byte("\n"))
}

// column returns the 1-based column, in characters, of byte offset off.
func (d *jsonDoc) column(off int) int {
	off = min(max(off, 0), len(d.text))
	return 1 + utf8.RuneCount(d.text[bytes.LastIndexByte(d.text[:off], '\n')+1:off])
}

// memberName returns an object member's name, unquoted.
func memberName(m hujson.ObjectMember) string {
	lit, _ := m.Name.Value.(hujson.Literal)
	return lit.String()
}

// literalKind returns a literal's kind ('n', 't', 'f', '"' or '0'), or 0 for
// an object or array.
func literalKind(v hujson.Value) hujson.Kind {
	if lit, ok := v.Value.(hujson.Literal); ok && len(lit) > 0 {
		return lit.Kind()
	}
	return 0
}

// showJSON describes v for a problem, as show does.
func showJSON(v hujson.Value) string {
	switch x := v.Value.(type) {
	case *hujson.Object:
		return "an object"
	case *hujson.Array:
		return "an array"
	case hujson.Literal:
		if x.Kind() == '"' {
			return strconv.Quote(x.String())
		}
		return string(x)
	}
	return "nothing"
}

// toAny returns v as encoding/json would decode it into an any, except that
// a number out of float64's range stays a json.Number (for a problem that
// shows it, not a decoding error).
func toAny(v hujson.Value) any {
	switch x := v.Value.(type) {
	case *hujson.Object:
		m := make(map[string]any, len(x.Members))
		for _, mb := range x.Members {
			m[memberName(mb)] = toAny(mb.Value)
		}
		return m
	case *hujson.Array:
		a := make([]any, len(x.Elements))
		for i, e := range x.Elements {
			a[i] = toAny(e)
		}
		return a
	case hujson.Literal:
		switch x.Kind() {
		case 't':
			return true
		case 'f':
			return false
		case '"':
			return x.String()
		case '0':
			if f, err := strconv.ParseFloat(string(x), 64); err == nil {
				return f
			}
			return json.Number(x)
		}
	}
	return nil
}

// keyName shows a member name in a key path: an empty one as "".
func keyName(prefix, name string) string {
	if name == "" {
		name = `""`
	}
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// duplicates reports every two members of one object whose names differ
// at most in case (the Functions host refuses them too), naming both, under
// keys starting with prefix. skip says which objects (by lower-case path)
// are checked elsewhere.
func (d *jsonDoc) duplicates(prefix string, v hujson.Value, skip func(lower []string) bool) []Problem {
	var probs []Problem
	var walk func(key string, lower []string, v hujson.Value)
	walk = func(key string, lower []string, v hujson.Value) {
		switch x := v.Value.(type) {
		case *hujson.Object:
			if skip != nil && skip(lower) {
				return
			}
			seen := map[string]hujson.ObjectMember{}
			for _, m := range x.Members {
				name := memberName(m)
				lk := strings.ToLower(name)
				if first, dup := seen[lk]; dup {
					fn, l1, l2 := memberName(first), d.line(first.Name.StartOffset), d.line(m.Name.StartOffset)
					msg := fmt.Sprintf("%q is set twice (lines %d and %d): keep one", fn, l1, l2)
					if fn != name {
						msg = fmt.Sprintf("%q (line %d) and %q (line %d) are the same key, as keys are case-insensitive: keep one", fn, l1, name, l2)
					}
					probs = append(probs, Problem{prefix + keyName(key, fn), msg})
					continue
				}
				seen[lk] = m
				walk(keyName(key, name), append(lower[:len(lower):len(lower)], lk), m.Value)
			}
		case *hujson.Array:
			for i, e := range x.Elements {
				walk(fmt.Sprintf("%s[%d]", key, i), append(lower[:len(lower):len(lower)], "[]"), e)
			}
		}
	}
	walk("", nil, v)
	return probs
}

// nulls reports every null: viper would drop it, silently turning
// "batchSize": null into the default.
func (d *jsonDoc) nulls() []Problem {
	var probs []Problem
	var walk func(key string, v hujson.Value)
	walk = func(key string, v hujson.Value) {
		switch x := v.Value.(type) {
		case hujson.Literal:
			if x.Kind() == 'n' {
				if key == "" { // the whole file is null
					key = d.name
				}
				probs = append(probs, Problem{key, "null is not a value: remove the key to use the default"})
			}
		case *hujson.Object:
			for _, m := range x.Members {
				walk(keyName(key, memberName(m)), m.Value)
			}
		case *hujson.Array:
			for i, e := range x.Elements {
				walk(fmt.Sprintf("%s[%d]", key, i), e)
			}
		}
	}
	walk("", d.root)
	return probs
}

// readSection reports whether jobhost decodes the object at lower-case path
// lower; in those, a key name may not hold a dot.
func readSection(lower []string) bool {
	switch len(lower) {
	case 0:
		return true
	case 1:
		switch lower[0] {
		case "logging", "extensions", "jobhost", "retry":
			return true
		}
	case 2:
		switch lower[0] + "." + lower[1] {
		case "extensions.queues", "extensions.pubsub", "extensions.servicebus", "jobhost.callbacks", "jobhost.functions":
			return true
		}
	case 3:
		return lower[0] == "jobhost" && lower[1] == "functions"
	case 4:
		return lower[0] == "jobhost" && lower[1] == "functions" && lower[3] == "retry"
	}
	return false
}

// dotted reports each key with a dot in its name in the sections jobhost
// reads: a dot is not a path ("extensions.queues" is not extensions ›
// queues), and taken literally such a key would only be ignored.
func (d *jsonDoc) dotted() []Problem {
	var probs []Problem
	var walk func(key string, lower []string, v hujson.Value)
	walk = func(key string, lower []string, v hujson.Value) {
		obj, ok := v.Value.(*hujson.Object)
		if !ok || !readSection(lower) {
			return
		}
		for _, m := range obj.Members {
			name := memberName(m)
			k := keyName(key, name)
			if strings.Contains(name, ".") {
				nested := strings.ReplaceAll(strconv.Quote(name), ".", `": {"`)
				probs = append(probs, Problem{k, fmt.Sprintf(`a key name cannot hold ".": nest the objects instead (%s: ...})`, nested)})
				continue
			}
			walk(k, append(lower[:len(lower):len(lower)], strings.ToLower(name)), m.Value)
		}
	}
	walk("", nil, d.root)
	return probs
}

// member returns the member of obj named name, compared without regard to
// case.
func member(obj *hujson.Object, name string) (hujson.ObjectMember, bool) {
	for _, m := range obj.Members {
		if strings.EqualFold(memberName(m), name) {
			return m, true
		}
	}
	return hujson.ObjectMember{}, false
}

// levelEntry is one logging.logLevel category, from host.json or an app
// setting.
type levelEntry struct {
	cat string // the category as written
	key string // what a problem names: the host.json path or the app setting
	val any
}

// isLogLevel reports whether lower is the path of logging.logLevel.
func isLogLevel(lower []string) bool {
	return len(lower) == 2 && lower[0] == "logging" && lower[1] == "loglevel"
}

// logLevels returns host.json's logging.logLevel categories in file order,
// each exactly as written (a dot is part of the name: "Function" and
// "Function.X" are two categories). A nested object is read as a dotted
// name: {"Host": {"Triggers": "None"}} is "Host.Triggers".
func (d *jsonDoc) logLevels() ([]levelEntry, []Problem) {
	root, _ := d.root.Value.(*hujson.Object)
	if root == nil {
		return nil, nil
	}
	lm, ok := member(root, "logging")
	if !ok {
		return nil, nil
	}
	logging, _ := lm.Value.Value.(*hujson.Object)
	if logging == nil {
		return nil, nil // reported by the decoder
	}
	m, ok := member(logging, "logLevel")
	if !ok {
		return nil, nil
	}
	key := "logging." + memberName(m)
	levels, _ := m.Value.Value.(*hujson.Object)
	if levels == nil {
		return nil, []Problem{{key, "must be a JSON object, got " + showJSON(m.Value)}}
	}
	var out []levelEntry
	var probs []Problem
	seen := map[string]int{} // lower-case category -> index in out
	lines := map[string]int{}
	var walk func(prefix string, obj *hujson.Object)
	walk = func(prefix string, obj *hujson.Object) {
		for _, m := range obj.Members {
			cat := prefix + memberName(m)
			if sub, ok := m.Value.Value.(*hujson.Object); ok {
				walk(cat+".", sub)
				continue
			}
			lc, line := strings.ToLower(cat), d.line(m.Name.StartOffset)
			if i, dup := seen[lc]; dup {
				msg := fmt.Sprintf("set twice (lines %d and %d): keep one", lines[lc], line)
				if out[i].cat != cat {
					msg = fmt.Sprintf("%q (line %d) and %q (line %d) are the same category, as categories are case-insensitive: keep one",
						out[i].cat, lines[lc], cat, line)
				}
				probs = append(probs, Problem{out[i].key, msg})
				continue
			}
			seen[lc], lines[lc] = len(out), line
			out = append(out, levelEntry{cat: cat, key: key + "." + cat, val: toAny(m.Value)})
		}
	}
	walk("", levels)
	return out, probs
}

// readHostJSON parses host.json and checks what viper cannot: nulls, keys
// alike but for case, dots in key names, the order of logging.logLevel. It
// returns the tree for viper, without logging.logLevel, and the log levels.
func readHostJSON(path string, data []byte) (map[string]any, []levelEntry, []Problem) {
	doc, p := parseJSONC(path, data)
	if p != nil {
		return nil, nil, []Problem{*p}
	}
	probs := doc.nulls()
	probs = append(probs, doc.duplicates("", doc.root, isLogLevel)...)
	probs = append(probs, doc.dotted()...)
	levels, lp := doc.logLevels()
	probs = append(probs, lp...)
	tree, ok := toAny(doc.root).(map[string]any)
	if !ok && literalKind(doc.root) != 'n' {
		probs = append(probs, Problem{path, "must be a JSON object, got " + showJSON(doc.root)})
	}
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Key < probs[j].Key })
		return nil, nil, probs
	}
	for k, v := range tree {
		if logging, ok := v.(map[string]any); ok && strings.EqualFold(k, "logging") {
			for lk := range logging {
				if strings.EqualFold(lk, "loglevel") {
					delete(logging, lk)
				}
			}
		}
	}
	return tree, levels, nil
}
