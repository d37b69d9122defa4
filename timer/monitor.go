package timer

import "time"

// Decision is what a timer does when its host starts (or takes over the
// lease), from the stored status: see [Decide].
type Decision struct {
	// Status is the status to run with: its Next is the occurrence to
	// wait for (or, when PastDue, the one missed).
	Status Status
	// PastDue means an occurrence was missed: run once now, with
	// IsPastDue set, however many were missed.
	PastDue bool
	// Save means Status differs from what is stored (none was, or the
	// schedule changed) and should be saved before waiting.
	Save bool
	// Changed means the stored Next does not follow from the stored
	// status under the current schedule: the schedule was changed, and
	// the status was reset.
	Changed bool
}

// Decide applies Functions' rules for a timer starting at now with
// schedule s and the stored status (nil when none):
//
//   - no status: start one, Next = s.Next(now), LastUpdated = now;
//   - if the Next recomputed from the stored LastUpdated (Last when
//     LastUpdated is zero) differs from the stored Next, the schedule
//     changed: reset Next to s.Next(now), no past-due run;
//   - otherwise, if now is after the stored Next, an occurrence was
//     missed: one run with IsPastDue;
//   - otherwise wait for the stored Next.
//
// It is pure: the caller loads and saves.
func Decide(s *Schedule, stored *Status, now time.Time) Decision {
	now = now.In(s.Location())
	if stored == nil {
		return Decision{Status: Status{Next: s.Next(now), LastUpdated: now}, Save: true}
	}
	st := stored.In(s.Location())
	base := st.LastUpdated
	if base.IsZero() {
		base = st.Last
	}
	if st.Next.IsZero() || !sameInstant(s.Next(base), st.Next) {
		return Decision{Status: Status{Last: st.Last, Next: s.Next(now), LastUpdated: now}, Save: true, Changed: true}
	}
	if now.After(st.Next) {
		return Decision{Status: st, PastDue: true}
	}
	return Decision{Status: st}
}

// sameInstant compares times as stored: to the millisecond, since a status
// keeps seven fraction digits and other stores may keep fewer.
func sameInstant(a, b time.Time) bool {
	d := a.Sub(b)
	return d < time.Millisecond && d > -time.Millisecond
}

// After returns the status to save after the occurrence scheduled at
// (which began at started, for a past-due or startup run the time it
// began) has completed at done, and the occurrence to wait for next:
// s.Next(scheduled). Occurrences that fell due while the function ran (or
// while the host was late) collapse into one, due at once: Next is then
// the latest occurrence not after done. Last is scheduled, LastUpdated
// the time Next was computed from.
func After(s *Schedule, scheduled, done time.Time) Status {
	loc := s.Location()
	base := scheduled.In(loc)
	next := s.Next(base)
	// Collapse missed occurrences into the latest one due.
	for i := 0; i < 1_000_000 && !next.IsZero() && !next.After(done); i++ {
		n := s.Next(next)
		if n.IsZero() || n.After(done) {
			break
		}
		base, next = next, n
	}
	return Status{Last: scheduled.In(loc), Next: next, LastUpdated: base}
}
