package timer

import "time"

// TimerInfo is what a timer function receives about its invocation, like
// Functions' TimerInfo. It is defined here for now; the proposal is to
// re-export it as functions.TimerInfo so that function authors need no
// import of this package.
type TimerInfo struct {
	// Schedule is the schedule expression, resolved (%Setting% expanded).
	Schedule string
	// Last is the previous occurrence that ran (zero if none is known),
	// and Next the occurrence this invocation is for — as Functions'
	// ScheduleStatus, read before the run: for a past-due run, the
	// occurrence that was missed; for a RunOnStartup run, the next one due.
	Last, Next time.Time
	// IsPastDue means the invocation catches up an occurrence missed while
	// no host ran the timer.
	IsPastDue bool
	// RunOnStartup means the invocation is the one RunOnStartup asks for.
	RunOnStartup bool
}
