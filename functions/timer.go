package functions

import (
	"context"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/triggers"
)

// TimerInfo is what a timer function gets about its invocation, as
// Functions' TimerInfo.
type TimerInfo struct {
	// Schedule is the schedule, %Setting% resolved.
	Schedule string `json:"schedule"`
	// Last is the previous occurrence that ran (zero when none is known);
	// Next is the occurrence this invocation is for.
	Last time.Time `json:"last"`
	Next time.Time `json:"next"`
	// IsPastDue means the invocation catches up an occurrence missed while
	// no host ran the timer (one run, however many were missed).
	IsPastDue bool `json:"isPastDue"`
	// RunOnStartup means it is the run RunOnStartup asks for.
	RunOnStartup bool `json:"runOnStartup"`
}

// TimerHandler is a timer function of the user's. Its error fails the
// occurrence: retried under the function's retry policy if it has one,
// else the next occurrence runs as usual.
type TimerHandler func(ctx context.Context, info TimerInfo) error

// TimerOptions are a timer trigger's options.
type TimerOptions struct {
	// RunOnStartup fires once when the host starts (when it takes the
	// timer's lease), unless a past-due run does.
	RunOnStartup bool
	// UseMonitor keeps the schedule status (for the catch-up run after
	// downtime); nil: on, unless the schedule fires more than once a
	// minute.
	UseMonitor *bool
}

// TimerTrigger binds a function to a schedule: NCRONTAB with six fields
// (second first) or five, or a TimeSpan ("00:05:00"), in the time zone
// WEBSITE_TIME_ZONE names (UTC by default); it may be a %Setting%
// expression. Across all hosts sharing a host id, one fires each
// occurrence.
func TimerTrigger(schedule string) Trigger {
	return Trigger{Queue: schedule, Timer: &TimerOptions{}}
}

// RunOnStartup returns the timer trigger firing also when the host starts.
func (t Trigger) RunOnStartup() Trigger {
	if t.Timer != nil {
		o := *t.Timer
		o.RunOnStartup = true
		t.Timer = &o
	}
	return t
}

// UseMonitor returns the timer trigger keeping (or not) its schedule
// status.
func (t Trigger) UseMonitor(on bool) Trigger {
	if t.Timer != nil {
		o := *t.Timer
		o.UseMonitor = &on
		t.Timer = &o
	}
	return t
}

// RegisterTimer adds a timer function to Default.
func RegisterTimer(name string, trigger Trigger, h TimerHandler, opts ...Option) {
	AddTimer(Default, name, trigger, h, opts...)
}

// AddTimer registers a timer function in r (trigger from TimerTrigger).
// The host calls it through the same path as any function: timeout,
// middleware, logs, metrics and the dashboard see a message whose body is
// the TimerInfo as JSON.
func AddTimer(r *Registry, name string, trigger Trigger, h TimerHandler, opts ...Option) {
	def := &Definition{Name: name, Trigger: trigger, ArgType: "functions.TimerInfo", validate: newValidator[TimerInfo]()}
	if trigger.Timer == nil {
		def.Trigger.Timer = &TimerOptions{} // a plain Trigger{Queue: schedule}
	}
	for _, o := range opts {
		o(&def.Settings)
	}
	if h != nil {
		bind := bindings.NewBinder[TimerInfo]()
		def.invoke = func(ctx context.Context, payload []byte, _ *triggers.Message) error {
			info, err := bind(payload)
			if err != nil {
				return err
			}
			return h(ctx, info)
		}
	}
	r.add(def, h == nil)
}

// IsTimer reports whether the function has a timer trigger.
func (d *Definition) IsTimer() bool { return d.Trigger.Timer != nil }
