package runtime

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/triggers"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                         { return c.t }
func (c fixedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// compareResultLine writes one completion line through zap (logResult) and
// through resultLine, and fails unless the bytes are the same.
func compareResultLine(t *testing.T, function, queue, msgID, errText, traceID string, dequeues int64, d time.Duration, at time.Time) {
	t.Helper()
	var out bytes.Buffer
	logs, err := NewLogs(LogOptions{Output: zapcore.AddSync(&out)})
	if err != nil {
		t.Fatal(err)
	}
	cat := CategoryFunction + "." + function
	l := &listener{results: logs.Category(cat).With(zap.String("function", function), zap.String("queue", queue)).
		WithOptions(zap.WithCaller(false), zap.WithClock(fixedClock{at}))}
	line := logs.resultLine(cat, function, queue)
	if line == nil {
		t.Fatal("no resultLine for a JSON log at Information")
	}
	var runErr error
	outcome := OutcomeSucceeded
	if errText != "" {
		runErr, outcome = errors.New(errText), OutcomeFailed
	}
	m := &triggers.Message{ID: msgID, DequeueCount: dequeues}
	id := newInvocationID()
	l.logResult(id, m, outcome, runErr, d, traceID)
	want := out.String()
	out.Reset()
	line.write(at, id, m, outcome, runErr, d, traceID)
	if got := out.String(); got != want {
		t.Fatalf("completion lines differ\nzap:        %q\nresultLine: %q", want, got)
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestResultLineMatchesZap(t *testing.T) {
	at := time.Date(2026, 12, 2, 17, 4, 5, 678_901_234, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	for _, c := range []struct {
		name, function, queue, msgID, err, trace string
		dequeues                                 int64
		d                                        time.Duration
		at                                       time.Time
	}{
		{"plain", "Bench", "bench", "1", "", "", 1, 12 * time.Microsecond, at},
		{"traced", "ProcessOrder", "orders", "c2f1e0a4-7d1b-4c59-9e43-1a2b3c4d5e6f", "", "4bf92f3577b34da6a3ce929d0e0e4736", 3, 1500 * time.Millisecond, at},
		{"failed", "F", "q", "m", "boom: the database said no", "", 2, 0, at},
		{"escaped id", "F", "q", "a\"b\\c\nd\re\tf\x01\x1f", "", "", 1, time.Millisecond, at},
		{"invalid UTF-8", "F", "q", "\xff\xfeok\xc3", "bad \xe2\x82 bytes", "", 1, time.Millisecond, at},
		{"unicode", "Fünf", "queue-✓", "héllo ✓ 世界", "", "", 1, time.Hour, at},
		{"secret in id", "F", "q", "AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net", "", "", 1, 0, at},
		{"secret in error", "F", "q", "7", "dial https://user:hunter2@127.0.0.1/x failed; Password=hunter2", "", 5, 0, at},
		{"multi-line error", "F", "q", "7", "line one\nline two\n\tat frame", "", 1, 0, at},
		{"zone", "F", "q", "1", "", "", 1, 0, at.In(berlin)},
		{"zone west", "F", "q", "1", "", "", 1, 0, at.In(time.FixedZone("", -(3*3600 + 30*60)))},
		{"zone with seconds", "F", "q", "1", "", "", 1, 0, at.In(time.FixedZone("LMT", 5*3600+21*60+10))},
		{"New York", "F", "q", "1", "", "", 1, 0, at.In(mustZone(t, "America/New_York"))},
		{"year 10000", "F", "q", "1", "", "", 1, 0, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"year 99", "F", "q", "1", "", "", 1, 0, time.Date(99, 3, 4, 5, 6, 7, 8_000_000, time.UTC)},
		{"whole second", "F", "q", "1", "", "", 1, 0, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"long duration", "F", "q", "1", "", "", 1, 49*time.Hour + 7*time.Microsecond, at},
	} {
		t.Run(c.name, func(t *testing.T) {
			compareResultLine(t, c.function, c.queue, c.msgID, c.err, c.trace, c.dequeues, c.d, c.at)
		})
	}
}

// TestResultLineOnlyForJSONAtInformation: console logs, and a function's
// category above Information, keep zap's path (which writes nothing or
// another format).
func TestResultLineOnlyForJSONAtInformation(t *testing.T) {
	for _, c := range []struct {
		o    LogOptions
		want bool
	}{
		{LogOptions{}, true},
		{LogOptions{Format: "JSON"}, true},
		{LogOptions{Format: "console"}, false},
		{LogOptions{Levels: map[string]string{"Function": "Warning"}}, false},
		{LogOptions{Levels: map[string]string{"function.f": "None"}}, false},
		{LogOptions{Levels: map[string]string{"default": "None", "Function.F": "Debug"}}, true},
	} {
		logs, err := NewLogs(c.o)
		if err != nil {
			t.Fatal(err)
		}
		if got := logs.resultLine("Function.F", "F", "q") != nil; got != c.want {
			t.Errorf("%+v: resultLine = %v, want %v", c.o, got, c.want)
		}
	}
}

func FuzzResultLine(f *testing.F) {
	f.Add("F", "q", "1", "", int64(1), int64(12), int64(1_796_000_000_000), 0)
	f.Add("Fünf", "orders", "a\"b\\\x01\xff", "Password=x\nnext", int64(9), int64(-5), int64(-62_000_000_000_000), -12_345)
	f.Fuzz(func(t *testing.T, function, queue, msgID, errText string, dequeues, micros, unixMilli int64, offset int) {
		at := time.UnixMilli(unixMilli).In(time.FixedZone("", offset%(18*3600)))
		if strings.ContainsAny(function, ".") || function == "" {
			return // a category is Function.<name>: a dot would name another category's level
		}
		compareResultLine(t, function, queue, msgID, errText, "", dequeues, time.Duration(micros)*time.Microsecond, at)
	})
}

// BenchmarkResultLine is one completion line, JSON, as a worker writes it.
func BenchmarkResultLine(b *testing.B) {
	logs, err := NewLogs(LogOptions{Output: zapcore.AddSync(io.Discard)})
	if err != nil {
		b.Fatal(err)
	}
	line := logs.resultLine("Function.Bench", "Bench", "bench")
	m := &triggers.Message{ID: "123456", DequeueCount: 1}
	id := newInvocationID()
	b.ReportAllocs()
	for b.Loop() {
		line.write(time.Now(), id, m, OutcomeSucceeded, nil, 12*time.Microsecond, "")
	}
}
