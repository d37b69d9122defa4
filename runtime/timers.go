package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/timer"
	"github.com/jobhost/jobhost/triggers"
)

// SettingHostID is the app setting naming the host id, as Functions reads
// it.
const SettingHostID = "AzureFunctionsWebHost__hostid"

var hostIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

func validHostID(s string) bool { return hostIDPattern.MatchString(s) }

// HostID returns the host id the timers' statuses and leases are kept
// under: jobhost.hostId, else the setting AzureFunctionsWebHost__hostid,
// else WEBSITE_SITE_NAME, else the executable's name — lower-cased, other
// characters as dashes, at most 32 (Functions' rule). Hosts of one app
// must share it; two apps on one store must not.
func HostID(cfg *Config, settings *AppSettings) string {
	if cfg.HostID != "" {
		return cfg.HostID
	}
	for _, name := range []string{SettingHostID, "WEBSITE_SITE_NAME"} {
		if v, ok := settings.Lookup(name); ok && strings.TrimSpace(v) != "" {
			return cleanHostID(v)
		}
	}
	exe, _ := os.Executable()
	return cleanHostID(strings.TrimSuffix(filepath.Base(exe), filepath.Ext(exe)))
}

func cleanHostID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-")
	if len(id) > 32 {
		id = strings.TrimRight(id[:32], "-")
	}
	if id == "" {
		id = "jobhost"
	}
	return id
}

// timerStoreKind is where timers keep status and leases: the configured
// store, else blob on the Storage connection when it is set, else the
// PostgreSQL operations store's database, else memory.
func (h *Host) timerStoreKind() (kind, connection string) {
	t := h.cfg.Timers
	if t.Store != "" {
		return t.Store, t.Connection
	}
	conn := cmpOr(t.Connection, "Storage")
	for _, name := range []string{"AzureWebJobs" + conn, conn} {
		if v, ok := h.settings.Lookup(name); ok && v != "" {
			return "blob", conn
		}
	}
	if h.cfg.Operations.Store == "postgres" {
		return "postgres", h.cfg.Operations.Connection
	}
	return "memory", ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// openTimerStore opens the timers' store once for every timer function.
func (h *Host) openTimerStore(ctx context.Context) (timer.Store, error) {
	kind, conn := h.timerStoreKind()
	if kind == "memory" {
		h.log.Warn("timers keep their status and lease in this process only: with several hosts each fires every occurrence (set AzureWebJobsStorage, or jobhost.timers.store)")
	}
	s, err := timer.OpenStore(ctx, kind, conn, h.settings.Lookup, HostID(h.cfg, h.settings))
	if err != nil {
		return nil, &ConfigError{Problems: []Problem{{"jobhost.timers", Redact(err.Error())}}}
	}
	return s, nil
}

// timerDriver stands in for a timer function's driver: a timer has no
// queue, so nothing is received or settled through it.
type timerDriver struct{}

var errTimerDriver = errors.New("a timer function has no queue")

func (timerDriver) Receive(context.Context, int, time.Duration) ([]*triggers.Message, error) {
	return nil, errTimerDriver
}
func (timerDriver) Complete(context.Context, *triggers.Message) error                   { return nil }
func (timerDriver) Retry(context.Context, *triggers.Message, time.Duration) error       { return nil }
func (timerDriver) ExtendLease(context.Context, *triggers.Message, time.Duration) error { return nil }
func (timerDriver) DeadLetter(context.Context, *triggers.Message, string) (string, error) {
	return "", nil
}
func (timerDriver) PoisonDestination() string { return "" }
func (timerDriver) Close() error              { return nil }

// newTimerRunner makes the Runner of a timer function's listener.
func (h *Host) newTimerRunner(l *listener, store timer.Store) (*timer.Runner, error) {
	tc := l.fc.Timer
	t := h.cfg.Timers
	return timer.NewRunner(l.fc.Name(), tc.Schedule, timer.Options{
		Locker: store, Status: store, Monitor: tc.Monitor, RunOnStartup: tc.RunOnStartup,
		LeaseDuration: t.LeaseDuration, AcquireInterval: t.AcquireInterval,
		Logger: l.log,
		OnLeadership: func(held bool) {
			if held {
				l.stats.setState(stateListening)
				l.log.Info("timer lease taken: this host fires the schedule", zap.String("schedule", tc.Schedule.String()))
			} else {
				l.stats.setState(stateStandby)
			}
		},
	})
}

// runTimer fires a timer function's occurrences until ctx ends. An
// occurrence under way when ctx ends gets the shutdown's drain, as any
// invocation.
func (l *listener) runTimer(ctx context.Context, r *timer.Runner) {
	defer l.stats.setState(stateStopping)
	l.stats.setState(stateStandby)
	w := l.newWorker()
	r.Run(ctx, func(_ context.Context, info timer.TimerInfo) error { return l.fireTimer(w, info) }) //nolint:errcheck // only for a nil fire
}

// fireTimer runs one occurrence through the host's invocation path (its
// timeout, middleware, logs, metrics and ring), retried under the
// function's retry policy when it has one.
func (l *listener) fireTimer(w *workerState, info timer.TimerInfo) error {
	payload, err := json.Marshal(functions.TimerInfo{Schedule: info.Schedule, Last: info.Last, Next: info.Next,
		IsPastDue: info.IsPastDue, RunOnStartup: info.RunOnStartup})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.inflight++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.inflight--
		l.mu.Unlock()
	}()
	m := &triggers.Message{ID: info.Next.UTC().Format(time.RFC3339Nano), Body: payload, InsertionTime: info.Next,
		Source: "timer:" + l.fc.Name(), Properties: map[string]string{"isPastDue": fmt.Sprint(info.IsPastDue)}}
	for attempt := int64(1); ; attempt++ {
		start, id := time.Now(), newInvocationID()
		m.DequeueCount = attempt
		l.stats.received.Add(1)
		var pending *invocation.Pending
		if len(l.fc.Outputs) > 0 {
			pending = invocation.NewPending(l.fc.outputNames)
		}
		runErr, _ := l.invoke(m, id, "", payload, pending, w.renewal, start)
		if runErr == nil && pending != nil {
			if items := pending.Items(); len(items) > 0 {
				targets, terr := l.outputs.resolve(l.fc, m, payload)
				if terr == nil {
					ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
					terr = l.outputs.send(outputContext(ctx, items), l.fc, items, targets)
					cancel()
				}
				runErr = terr
			}
		}
		outcome := OutcomeSucceeded
		if runErr != nil {
			outcome = OutcomeFailed
			if l.hard.Err() != nil {
				outcome = OutcomeCancelled
			}
		}
		l.finish(&l.metrics.shared, id, m, outcome, runErr, start)
		if runErr == nil || outcome == OutcomeCancelled || attempt >= int64(l.attempts()) {
			return runErr
		}
		if !sleep(l.hard, l.retryDelay(m, runErr)) {
			return runErr
		}
	}
}

// MigrateTimers applies the migration of the timers' store when the
// registry has timer functions and their store has one (PostgreSQL's
// tables); it returns the store kind and whether anything was migrated.
func MigrateTimers(ctx context.Context, cfg *Config, reg *functions.Registry, settings *AppSettings) (kind string, migrated bool, err error) {
	h := &Host{cfg: cfg, settings: settings}
	has := false
	for _, d := range reg.Functions() {
		has = has || d.IsTimer()
	}
	if !has {
		return "", false, nil
	}
	kind, conn := h.timerStoreKind()
	migrated, err = timer.Migrate(ctx, kind, conn, settings.Lookup)
	return kind, migrated, err
}
