package runtime

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// parseLogLevel parses a host.json logging.logLevel name: Trace, Debug,
// Information, Warning, Error, Critical or None, in any case. Trace maps to
// zap's Debug level and Critical to DPanic, which never panics in loggers
// from Logs as they are not in development mode. off reports None, for which
// level is zapcore.InvalidLevel, a level that enables nothing.
func parseLogLevel(s string) (level zapcore.Level, off bool, err error) {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return zapcore.DebugLevel, false, nil
	case "information":
		return zapcore.InfoLevel, false, nil
	case "warning":
		return zapcore.WarnLevel, false, nil
	case "error":
		return zapcore.ErrorLevel, false, nil
	case "critical":
		return zapcore.DPanicLevel, false, nil
	case "none":
		return zapcore.InvalidLevel, true, nil
	}
	return zapcore.InvalidLevel, false, fmt.Errorf("unknown level %q (want Trace, Debug, Information, Warning, Error, Critical or None)", s)
}

// LogOptions configures NewLogs.
type LogOptions struct {
	// Format is "json" (the default) or "console".
	Format string
	// Levels maps category names to level names, as host.json's
	// logging.logLevel does. The key "default" covers categories no other
	// key matches; without it they log at Information.
	Levels map[string]string
	// Output receives the log lines; nil means os.Stderr.
	Output zapcore.WriteSyncer
}

// Logs hands out a logger per category, with levels set per category and
// secrets redacted from everything they write. It is safe for concurrent use.
type Logs struct {
	enc     zapcore.Encoder
	json    bool // enc is the JSON encoder (resultLine writes its lines)
	out     zapcore.WriteSyncer
	levels  map[string]zapcore.Level // lower-case category -> level, always with "default"
	loggers sync.Map                 // category -> *zap.Logger
}

// NewLogs returns Logs configured by o, or an error naming the first bad
// level or format.
func NewLogs(o LogOptions) (*Logs, error) {
	var enc zapcore.Encoder
	isJSON := false
	switch strings.ToLower(o.Format) {
	case "", "json":
		c := zap.NewProductionEncoderConfig()
		c.EncodeTime = zapcore.ISO8601TimeEncoder
		enc, isJSON = zapcore.NewJSONEncoder(c), true
	case "console":
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()) // capital levels, no colour
	default:
		return nil, fmt.Errorf("logging.format: unknown format %q (want json or console)", o.Format)
	}
	levels := map[string]zapcore.Level{"default": zapcore.InfoLevel}
	keys := make(map[string]string, len(o.Levels)) // lower-case -> as written
	for _, k := range slices.Sorted(maps.Keys(o.Levels)) {
		lk := strings.ToLower(k)
		if prev, ok := keys[lk]; ok {
			return nil, fmt.Errorf("logging.logLevel: %q and %q name the same category", prev, k)
		}
		keys[lk] = k
		lvl, _, err := parseLogLevel(o.Levels[k])
		if err != nil {
			return nil, fmt.Errorf("logging.logLevel.%s: %w", k, err)
		}
		levels[lk] = lvl
	}
	out := o.Output
	if out == nil {
		out = os.Stderr
	}
	return &Logs{enc: enc, json: isJSON, out: zapcore.Lock(out), levels: levels}, nil
}

// Category returns the logger for the named category, such as
// "Function.ProcessOrder". Its name appears in every entry, and its level is
// that of the longest dot-separated prefix of name (compared without regard
// to case) in LogOptions.Levels, else that of "default".
func (l *Logs) Category(name string) *zap.Logger {
	if lg, ok := l.loggers.Load(name); ok {
		return lg.(*zap.Logger)
	}
	core := redactCore{zapcore.NewCore(l.enc.Clone(), l.out, l.level(name))}
	lg, _ := l.loggers.LoadOrStore(name, zap.New(core, zap.AddCaller()).Named(name))
	return lg.(*zap.Logger)
}

// level returns the level for category name.
func (l *Logs) level(name string) zapcore.Level {
	for n := strings.ToLower(name); ; {
		if lvl, ok := l.levels[n]; ok {
			return lvl
		}
		i := strings.LastIndexByte(n, '.')
		if i < 0 {
			return l.levels["default"]
		}
		n = n[:i]
	}
}

// Sync flushes the output. It ignores the errors that terminals and pipes
// return as they cannot be synced.
func (l *Logs) Sync() error {
	err := l.out.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTTY) {
		return nil
	}
	return err
}
