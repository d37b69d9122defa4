package httpapi

import (
	"strconv"
	"strings"
)

// preference is one element of a Prefer header (RFC 7240 §2):
//
//	preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
//	parameter  = token [ BWS "=" BWS word ]
//
// Names are lower-cased (they are case-insensitive); an empty value is no
// value, as the RFC has it.
type preference struct {
	Name   string
	Value  string
	Params []preferenceParam
}

// preferenceParam is one parameter of a preference.
type preferenceParam struct {
	Name  string
	Value string
}

// param returns the value of the first parameter named name.
func (p preference) param(name string) (string, bool) {
	for _, q := range p.Params {
		if q.Name == name {
			return q.Value, true
		}
	}
	return "", false
}

// parsePrefer reads every Prefer header of a request (several headers are
// one comma-separated list). It never fails: an element it cannot read is
// skipped up to the next comma outside a quoted string, as RFC 7240 has a
// server ignore what it does not understand. Elements come in order,
// repeats included.
func parsePrefer(headers []string) []preference {
	var prefs []preference
	for _, h := range headers {
		p := preferParser{s: h}
		for {
			p.skipSpaceAndCommas()
			if p.done() {
				break
			}
			if pref, ok := p.element(); ok {
				prefs = append(prefs, pref)
			} else {
				p.skipElement()
			}
		}
	}
	return prefs
}

// preferParser reads one header value.
type preferParser struct {
	s string
	i int
}

func (p *preferParser) done() bool { return p.i >= len(p.s) }

func (p *preferParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *preferParser) skipSpace() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *preferParser) skipSpaceAndCommas() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

// element reads one preference, up to the comma ending it (not consumed)
// or the end.
func (p *preferParser) element() (preference, bool) {
	name, value, ok := p.pair()
	if !ok {
		return preference{}, false
	}
	pref := preference{Name: name, Value: value}
	for {
		p.skipSpace()
		switch p.peek() {
		case 0, ',':
			return pref, true
		case ';':
			p.i++
			p.skipSpace()
			if c := p.peek(); c == 0 || c == ',' || c == ';' {
				continue // an empty parameter is allowed
			}
			n, v, ok := p.pair()
			if !ok {
				return preference{}, false
			}
			pref.Params = append(pref.Params, preferenceParam{Name: n, Value: v})
		default:
			return preference{}, false
		}
	}
}

// pair reads token [ BWS "=" BWS word ].
func (p *preferParser) pair() (name, value string, ok bool) {
	start := p.i
	for !p.done() && isTokenChar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", "", false
	}
	name = strings.ToLower(p.s[start:p.i])
	save := p.i
	p.skipSpace()
	if p.peek() != '=' {
		p.i = save
		return name, "", true
	}
	p.i++
	p.skipSpace()
	value, ok = p.word()
	return name, value, ok
}

// word reads a quoted string (backslash escapes the next byte) or, more
// leniently than a token, any run of bytes up to white space, ',', ';' or
// '"': callers write url=https://… unquoted.
func (p *preferParser) word() (string, bool) {
	if p.peek() == '"' {
		p.i++
		var b strings.Builder
		for !p.done() {
			c := p.s[p.i]
			p.i++
			switch c {
			case '"':
				return b.String(), true
			case '\\':
				if p.done() {
					return "", false
				}
				b.WriteByte(p.s[p.i])
				p.i++
			default:
				b.WriteByte(c)
			}
		}
		return "", false // unterminated
	}
	start := p.i
	for !p.done() && !strings.ContainsRune(" \t,;\"", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i], true
}

// skipElement moves past what is left of an unreadable element, to the
// next comma outside a quoted string.
func (p *preferParser) skipElement() {
	quoted := false
	for !p.done() {
		c := p.s[p.i]
		switch {
		case quoted && c == '\\':
			p.i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			return
		}
		p.i++
	}
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// formatPreferences writes preferences as a Prefer or Preference-Applied
// value; parsePrefer reads it back as it was.
func formatPreferences(prefs []preference) string {
	var b strings.Builder
	for i, p := range prefs {
		if i > 0 {
			b.WriteString(", ")
		}
		writePair(&b, p.Name, p.Value)
		for _, q := range p.Params {
			b.WriteString("; ")
			writePair(&b, q.Name, q.Value)
		}
	}
	return b.String()
}

func writePair(b *strings.Builder, name, value string) {
	b.WriteString(name)
	if value == "" {
		return
	}
	b.WriteByte('=')
	if isToken(value) {
		b.WriteString(value)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(value[i])
	}
	b.WriteByte('"')
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

// maxWaitSeconds bounds a wait preference as read (MaxWait bounds it
// again): larger numbers are read as this.
const maxWaitSeconds = 1 << 30

// preferences is what the API makes of a request's Prefer headers. The
// first instance of a preference counts (RFC 7240 §2); one whose value
// makes no sense (wait=soon) is ignored.
type preferences struct {
	// RespondAsync: respond-async was asked for.
	RespondAsync bool
	// Wait is the wait preference in seconds; HasWait says it was given.
	Wait    int
	HasWait bool
	// Callback is the url parameter of a callback preference
	// (Dataverse's `callback; url="…"`); HasCallback says it was given.
	Callback    string
	HasCallback bool
	// Return is return=minimal or return=representation ("" none); the API
	// reads it but always answers with a representation.
	Return string
}

// readPreferences interprets the Prefer headers.
func readPreferences(headers []string) preferences {
	var out preferences
	seen := map[string]bool{}
	for _, p := range parsePrefer(headers) {
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		switch p.Name {
		case "respond-async":
			out.RespondAsync = true
		case "wait":
			if n, ok := parseSeconds(p.Value); ok {
				out.Wait, out.HasWait = n, true
			}
		case "callback":
			if u, ok := p.param("url"); ok && u != "" {
				out.Callback, out.HasCallback = u, true
			}
		case "return":
			if v := strings.ToLower(p.Value); v == "minimal" || v == "representation" {
				out.Return = v
			}
		}
	}
	return out
}

// parseSeconds reads delta-seconds (1*DIGIT), saturating at
// maxWaitSeconds.
func parseSeconds(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxWaitSeconds {
			n = n*10 + int(c-'0')
		}
	}
	return min(n, maxWaitSeconds), true
}

// applied lists honoured preferences for Preference-Applied.
type applied []preference

func (a *applied) add(name, value string) { *a = append(*a, preference{Name: name, Value: value}) }

func (a *applied) addSeconds(name string, n int) { a.add(name, strconv.Itoa(n)) }

func (a applied) String() string { return formatPreferences(a) }
