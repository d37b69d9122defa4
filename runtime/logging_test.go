package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newTestLogs returns Logs writing to the returned buffer.
func newTestLogs(t *testing.T, o LogOptions) (*Logs, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	o.Output = zapcore.AddSync(&buf)
	l, err := NewLogs(o)
	if err != nil {
		t.Fatal(err)
	}
	return l, &buf
}

// jsonLines decodes each line of b, failing the test on invalid JSON.
func jsonLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestParseLogLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want zapcore.Level
		off  bool
	}{
		{"Trace", zapcore.DebugLevel, false},
		{"debug", zapcore.DebugLevel, false},
		{"INFORMATION", zapcore.InfoLevel, false},
		{"Warning", zapcore.WarnLevel, false},
		{"Error", zapcore.ErrorLevel, false},
		{"Critical", zapcore.DPanicLevel, false},
		{"None", zapcore.InvalidLevel, true},
	} {
		lvl, off, err := parseLogLevel(tc.in)
		if err != nil || lvl != tc.want || off != tc.off {
			t.Errorf("parseLogLevel(%q) = %v, %v, %v; want %v, %v", tc.in, lvl, off, err, tc.want, tc.off)
		}
	}
	for _, in := range []string{"", "Verbose", "Info", "warn"} {
		if _, _, err := parseLogLevel(in); err == nil {
			t.Errorf("parseLogLevel(%q) succeeded", in)
		}
	}
}

func TestNewLogsErrors(t *testing.T) {
	for _, tc := range []struct {
		o    LogOptions
		want string
	}{
		{LogOptions{Levels: map[string]string{"default": "Information", "Function": "Verbose"}},
			`logging.logLevel.Function: unknown level "Verbose" (want Trace, Debug, Information, Warning, Error, Critical or None)`},
		{LogOptions{Levels: map[string]string{"Host": "warn"}},
			`logging.logLevel.Host: unknown level "warn" (want Trace, Debug, Information, Warning, Error, Critical or None)`},
		{LogOptions{Levels: map[string]string{"Function": "Error", "function": "Debug"}},
			`logging.logLevel: "Function" and "function" name the same category`},
		{LogOptions{Format: "xml"}, `logging.format: unknown format "xml" (want json or console)`},
	} {
		if _, err := NewLogs(tc.o); err == nil || err.Error() != tc.want {
			t.Errorf("NewLogs(%+v) error = %v; want %s", tc.o, err, tc.want)
		}
	}
}

func TestLogsCategoryLevels(t *testing.T) {
	l, _ := newTestLogs(t, LogOptions{Levels: map[string]string{
		"DEFAULT":           "Warning",
		"Function":          "Information",
		"function.ProcessX": "Trace",
		"Host":              "Error",
		"Host.Results":      "None",
		"Worker":            "critical",
	}})
	for _, tc := range []struct {
		category string
		want     zapcore.Level
	}{
		{"Function", zapcore.InfoLevel},
		{"Function.ProcessY", zapcore.InfoLevel},
		{"Function.ProcessX", zapcore.DebugLevel},
		{"FUNCTION.PROCESSX.User", zapcore.DebugLevel},
		{"Function.ProcessXY", zapcore.InfoLevel},
		{"FunctionX", zapcore.WarnLevel},
		{"Host.Aggregator", zapcore.ErrorLevel},
		{"Host.Results", zapcore.InvalidLevel},
		{"host.results.x", zapcore.InvalidLevel},
		{"Worker.Queue", zapcore.DPanicLevel},
		{"Other", zapcore.WarnLevel},
		{"", zapcore.WarnLevel},
	} {
		if got := l.Category(tc.category).Level(); got != tc.want {
			t.Errorf("Category(%q).Level() = %v; want %v", tc.category, got, tc.want)
		}
	}

	l, _ = newTestLogs(t, LogOptions{})
	if got := l.Category("Anything").Level(); got != zapcore.InfoLevel {
		t.Errorf("default level = %v; want info", got)
	}
}

func TestLogsOutputFollowsLevels(t *testing.T) {
	l, buf := newTestLogs(t, LogOptions{Levels: map[string]string{
		"Function": "Debug", "Host.Results": "None", "Worker": "Critical",
	}})
	l.Category("Function.ProcessX.User").Debug("debug shown")
	l.Category("Host").Debug("debug hidden")
	l.Category("Host").Info("info shown")
	l.Category("Host.Results").Error("none hidden")
	l.Category("Host.Results").DPanic("none hidden")
	l.Category("Worker").Error("error hidden")
	l.Category("Worker").DPanic("critical shown") // must not panic
	var got []string
	for _, m := range jsonLines(t, buf) {
		got = append(got, fmt.Sprint(m["logger"], " ", m["level"], " ", m["msg"]))
	}
	want := []string{"Function.ProcessX.User debug debug shown", "Host info info shown", "Worker dpanic critical shown"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged %q; want %q", got, want)
	}
}

func TestLogsJSONFormat(t *testing.T) {
	l, buf := newTestLogs(t, LogOptions{})
	l.Category("Function.X").Error("failed", zap.Int("attempt", 2))
	m := jsonLines(t, buf)[0]
	for k, want := range map[string]any{"level": "error", "logger": "Function.X", "msg": "failed", "attempt": 2.0} {
		if m[k] != want {
			t.Errorf("%s = %v; want %v", k, m[k], want)
		}
	}
	if ts, _ := m["ts"].(string); !strings.Contains(ts, "T") {
		t.Errorf("ts = %v; want ISO8601", m["ts"])
	}
	if c, _ := m["caller"].(string); !strings.HasPrefix(c, "runtime/logging_test.go:") {
		t.Errorf("caller = %v", m["caller"])
	}
	if _, ok := m["stacktrace"]; ok {
		t.Error("unrequested stacktrace")
	}
}

func TestLogsConsoleFormat(t *testing.T) {
	l, buf := newTestLogs(t, LogOptions{Format: "Console"})
	l.Category("Function.X").Info("hello Password=hunter2", zap.String("queue", "orders"))
	out := buf.String()
	for _, want := range []string{"\tINFO\tFunction.X\t", "hello Password=REDACTED", `{"queue": "orders"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("console output %q lacks %q", out, want)
		}
	}
	if strings.ContainsAny(out, "\x1b") || strings.Contains(out, "hunter2") {
		t.Errorf("console output %q has colour or a secret", out)
	}
}

func TestLogsCategoryConcurrent(t *testing.T) {
	l, buf := newTestLogs(t, LogOptions{Levels: map[string]string{"Function": "Debug"}})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				l.Category(fmt.Sprint("Function.F", j%5)).Debug("x", zap.Int("g", i))
			}
		})
	}
	wg.Wait()
	if n := len(jsonLines(t, buf)); n != 400 {
		t.Errorf("%d lines; want 400", n)
	}
	if l.Category("Function.F1") != l.Category("Function.F1") {
		t.Error("Category not cached")
	}
	if err := l.Sync(); err != nil {
		t.Error(err)
	}
}

// secrets pairs text holding a secret with the secret and the redacted text.
var secrets = []struct{ name, in, secret, want string }{
	{"AccountKey",
		"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5MQ+/==;EndpointSuffix=core.windows.net",
		"c2VjcmV0a2V5MQ",
		"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=REDACTED;EndpointSuffix=core.windows.net"},
	{"SharedAccessKey",
		"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0a2V5Mg==",
		"c2VjcmV0a2V5Mg",
		"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=REDACTED"},
	{"SharedAccessSignature",
		"QueueEndpoint=https://a.queue.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=q&sig=c2VjcmV0c2lnMw%3D%3D",
		"c2VjcmV0c2lnMw",
		"QueueEndpoint=https://a.queue.core.windows.net/;SharedAccessSignature=REDACTED"},
	{"sig",
		`GET "https://a.queue.core.windows.net/q?sv=2022-11-02&sig=c2VjcmV0c2lnNA%3D%3D&sp=r" failed`,
		"c2VjcmV0c2lnNA",
		`GET "https://a.queue.core.windows.net/q?sv=2022-11-02&sig=REDACTED&sp=r" failed`},
	{"SharedKey",
		"Authorization: SharedKey acct:c2VjcmV0c2lnNQ==",
		"c2VjcmV0c2lnNQ",
		"Authorization: SharedKey acct:REDACTED"},
	{"Bearer",
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0Ng.c2ln",
		"c2VjcmV0Ng",
		"Authorization: Bearer REDACTED"},
	{"Password",
		"Server=db;User Id=sa;Password=s3cr3t!pw;Encrypt=true",
		"s3cr3t!pw",
		"Server=db;User Id=sa;Password=REDACTED;Encrypt=true"},
	{"Pwd",
		"Driver={x};Uid=sa;PWD=hunter2xyz",
		"hunter2xyz",
		"Driver={x};Uid=sa;PWD=REDACTED"},
	{"userinfo",
		"dial amqp://user:p4ssw0rdX@broker:5672/vhost: refused",
		"p4ssw0rdX",
		"dial amqp://user:REDACTED@broker:5672/vhost: refused"},
}

func TestRedact(t *testing.T) {
	for _, tc := range secrets {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("%s: Redact(%q) = %q; want %q", tc.name, tc.in, got, tc.want)
		}
		if got := Redact(tc.want); got != tc.want {
			t.Errorf("%s: Redact not idempotent: %q -> %q", tc.name, tc.want, got)
		}
	}
	for in, want := range map[string]string{
		`open "AccountName=a;AccountKey=abc+/==" failed`:         `open "AccountName=a;AccountKey=REDACTED" failed`,
		`Password="a;b c";Server=x`:                              `Password=REDACTED;Server=x`,
		`Password="a"";b";Server=x`:                              `Password=REDACTED;Server=x`,
		"Password=two words\nnext line":                          "Password=REDACTED\nnext line",
		`{"user":"sa","password":"x\"y"}`:                        `{"user":"sa","password":"REDACTED"}`,
		`map[Authorization:[Basic dXNlcjpwYXNz] Accept:[*/*]]`:   `map[Authorization:[Basic REDACTED] Accept:[*/*]]`,
		"token Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig":  "token Bearer REDACTED",
		"postgres://u:p@ss@db/x":                                 "postgres://u:REDACTED@db/x",
		"Authorization: SharedAccessSignature sr=x&sig=abc&se=1": "Authorization: SharedAccessSignature sr=x&sig=REDACTED&se=1",
		// Not secrets.
		"SharedAccessKeyName=RootManageSharedAccessKey;Endpoint=sb://x/": "SharedAccessKeyName=RootManageSharedAccessKey;Endpoint=sb://x/",
		"refreshing the Bearer token":                                    "refreshing the Bearer token",
		"GET http://host:8080/a@b?x=1":                                   "GET http://host:8080/a@b?x=1",
		"no secrets here":                                                "no secrets here",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q; want %q", in, got, want)
		}
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

type nilError struct{ msg string }

func (e *nilError) Error() string { return e.msg }

func TestLogsRedactFields(t *testing.T) {
	for _, tc := range secrets {
		l, buf := newTestLogs(t, LogOptions{})
		lg := l.Category("Function.X")
		obj := zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
			enc.AddString("conn", tc.in)
			return nil
		})
		ways := map[string]func(){
			"msg":        func() { lg.Info("connect " + tc.in) },
			"String":     func() { lg.Info("m", zap.String("conn", tc.in)) },
			"ByteString": func() { lg.Info("m", zap.ByteString("conn", []byte(tc.in))) },
			"Error":      func() { lg.Info("m", zap.Error(fmt.Errorf("open queue %s: %w", tc.in, errTest))) },
			"Any struct": func() { lg.Info("m", zap.Any("cfg", struct{ Conn, Other string }{tc.in, "<ok>"})) },
			"Any map":    func() { lg.Info("m", zap.Any("cfg", map[string]any{tc.in: []string{tc.in}})) },
			"Stringer":   func() { lg.Info("m", zap.Stringer("conn", stringer(tc.in))) },
			"Strings":    func() { lg.Info("m", zap.Strings("conns", []string{"x", tc.in})) },
			"Object":     func() { lg.Info("m", zap.Object("o", obj)) },
			"Inline":     func() { lg.Info("m", zap.Inline(obj)) },
			"Errors":     func() { lg.Info("m", zap.Errors("errs", []error{fmt.Errorf("%s", tc.in)})) },
			"With":       func() { lg.With(zap.String("conn", tc.in)).Info("m") },
			"Named":      func() { lg.Named(tc.in).Info("m") },
		}
		for way, log := range ways {
			buf.Reset()
			log()
			out := buf.String()
			jsonLines(t, buf)
			if strings.Contains(out, tc.secret) || !strings.Contains(out, redacted) {
				t.Errorf("%s via %s: %s", tc.name, way, out)
			}
		}
	}
}

var errTest = fmt.Errorf("test error")

func TestLogsRedactEdgeCases(t *testing.T) {
	l, buf := newTestLogs(t, LogOptions{})
	lg := l.Category("X")
	lg.Info("m",
		zap.Error((*nilError)(nil)),
		zap.Stringer("s", (*nilStringer)(nil)),
		zap.String("Password", "plain"),
		zap.String("AccountKey", "sig=plain3"),
		zap.Int("password", 12345),
		zap.Any("cfg", struct {
			Password string
			Port     int
			HTML     string
		}{"plain2", 5, "<a&b>"}),
		zap.Any("bad", func() {}),
		zap.Any("tricky", map[string]string{"k": `Password="x\"y" sig=a\b "AccountKey":"z\"" \`}),
		zap.Duration("d", 1500e6),
	)
	m := jsonLines(t, buf)[0]
	want := map[string]any{
		"error":      "<nil>",
		"s":          "<nil>",
		"Password":   "REDACTED",
		"AccountKey": "REDACTED",
		"password":   "REDACTED",
		"cfg":        map[string]any{"Password": "REDACTED", "Port": 5.0, "HTML": "<a&b>"},
		"d":          1.5,
		"tricky":     map[string]any{"k": `Password=REDACTED sig=REDACTED "AccountKey":"REDACTED" \`},
	}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v; want %v", k, m[k], v)
		}
	}
	if s := buf.String(); strings.Contains(s, "plain") {
		t.Errorf("secret logged: %s", s)
	}
	if _, ok := m["bad"]; !ok {
		t.Errorf("unmarshalable field dropped: %v", m)
	}
}

type nilStringer struct{ s string }

func (n *nilStringer) String() string { return n.s }
