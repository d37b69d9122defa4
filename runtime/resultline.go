package runtime

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/triggers"
)

// resultLine writes a function's completion lines in JSON without zap's
// generic encoder. The line has fixed keys, so its constant parts (level,
// logger, function, queue) are encoded once, and an invocation appends only
// its own values: the same bytes zap writes (resultline_test.go compares
// them), in about a fifth of the time. It exists only for the JSON format
// with the function's category at Information or below.
type resultLine struct {
	out  zapcore.WriteSyncer // Logs' output, locked
	name string              // `","logger":"Function.F","msg":"`
	with string              // `,"function":"F","queue":"q","invocationId":"`
}

// resultLine returns the completion-line writer for category cat with the
// function and queue fields, or nil when lines in that category are not
// JSON or not written at Information.
func (l *Logs) resultLine(cat, function, queue string) *resultLine {
	if !l.json || l.level(cat) > zapcore.InfoLevel {
		return nil
	}
	return &resultLine{
		out:  l.out,
		name: `","logger":` + quoteJSON(Redact(cat)) + `,"msg":"`,
		with: `,"function":` + quoteJSON(Redact(function)) + `,"queue":` + quoteJSON(Redact(queue)) + `,"invocationId":"`,
	}
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// write writes the completion line of invocation id of m, which ended at
// now with outcome after d; runErr and traceID are left out when empty.
// Values are redacted as redactCore redacts them.
func (r *resultLine) write(now time.Time, id string, m *triggers.Message, outcome string, runErr error, d time.Duration, traceID string) {
	bp := lineBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"level":"info","ts":"`...)
	b = appendLineTime(b, now)
	b = append(b, r.name...)
	b = append(b, resultMessage(outcome)...) // an outcome: nothing to escape or redact
	b = append(b, '"')
	b = append(b, r.with...)
	b = append(b, id...) // a UUID: nothing to escape or redact
	b = append(b, `","messageId":`...)
	b = appendJSONString(b, Redact(m.ID))
	b = append(b, `,"dequeueCount":`...)
	b = strconv.AppendInt(b, m.DequeueCount, 10)
	b = append(b, `,"outcome":"`...)
	b = append(b, outcome...)
	b = append(b, `","durationMs":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
	if runErr != nil {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, Redact(runErr.Error()))
	}
	if traceID != "" {
		b = append(b, `,"traceId":"`...)
		b = append(b, traceID...) // hex
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	_, _ = r.out.Write(b) // as zap's core: a failed write of a log line is not the invocation's error
	if cap(b) <= 64<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
}

// appendLineTime appends t as zap's ISO8601TimeEncoder does
// ("2006-01-02T15:04:05.000Z0700"), without the quotes and without
// time.Format's general layout parsing.
func appendLineTime(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z0700")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	_, offset := t.Zone()
	if offset == 0 {
		return append(b, 'Z')
	}
	// As Go's Z0700: the sign is that of the offset in whole minutes.
	zone := offset / 60
	sign := byte('+')
	if zone < 0 {
		sign, zone = '-', -zone
	}
	b = append(b, sign)
	b = appendDigits(b, zone/60, 2)
	return appendDigits(b, zone%60, 2)
}

// appendDigits appends v, which is not negative, in exactly width digits.
func appendDigits(b []byte, v, width int) []byte {
	var d [4]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}

// quoteJSON returns s as a JSON string literal, escaped as zap escapes.
func quoteJSON(s string) string { return string(appendJSONString(nil, s)) }

const lowerHex = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal, quotes included,
// escaped exactly as zap's JSON encoder escapes: \" \\ \n \r \t, other
// control bytes as \u00XX, invalid UTF-8 as \ufffd, nothing else.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[last:i]...)
			b = append(b, `\ufffd`...)
			i++
			last = i
			continue
		}
		if c >= 0x20 && c != '\\' && c != '"' {
			i++
			continue
		}
		b = append(b, s[last:i]...)
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
		}
		i++
		last = i
	}
	b = append(b, s[last:]...)
	return append(b, '"')
}
