package timer

import (
	"fmt"
	"math/bits"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// horizonYears bounds every search for an occurrence: a schedule with no
// occurrence within it has none (Parse rejects those that never fire).
const horizonYears = 30

// cronSpec is a parsed NCRONTAB expression: one bit per allowed value of
// each field (robfig/cron's SpecSchedule layout), evaluated here with
// NCRONTAB's rules rather than robfig's.
type cronSpec struct {
	second, minute, hour, dom, month, dow uint64
	// interval is set when the schedule fires more than once in an hour
	// of the day, or in every hour: on the second pass of a repeated
	// (autumn) hour it fires again. Point-in-time schedules fire on the
	// first pass only.
	interval bool
}

// starBit is the bit robfig/cron sets for a field written as "*"; NCRONTAB
// semantics do not depend on it, so it is masked off.
const starBit = 1 << 63

var (
	parser6 = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	parser5 = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	wordRE  = regexp.MustCompile(`[A-Za-z]+`)
)

// parseCron parses a five- or six-field NCRONTAB expression.
func parseCron(expr string) (*cronSpec, error) {
	fields := strings.Fields(expr)
	if len(fields) != 5 && len(fields) != 6 {
		return nil, fmt.Errorf("want 6 fields {second} {minute} {hour} {day} {month} {day-of-week} (or 5 without seconds), got %d", len(fields))
	}
	if strings.Contains(fields[0], "=") || strings.HasPrefix(fields[0], "@") {
		return nil, fmt.Errorf("%q is not a field (time zones come from WEBSITE_TIME_ZONE; descriptors are not NCRONTAB)", fields[0])
	}
	// NCRONTAB reads month and day names by their first three letters
	// ("Monday", "Mon"); robfig/cron knows the three-letter forms.
	n := len(fields)
	for _, i := range []int{n - 2, n - 1} {
		fields[i] = wordRE.ReplaceAllStringFunc(fields[i], func(w string) string {
			if len(w) > 3 {
				return w[:3]
			}
			return w
		})
	}
	p := parser6
	if n == 5 {
		p = parser5
	}
	s, err := p.Parse(strings.Join(fields, " "))
	if err != nil {
		return nil, err
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("unsupported expression")
	}
	c := &cronSpec{
		second: spec.Second &^ starBit, minute: spec.Minute &^ starBit, hour: spec.Hour &^ starBit,
		dom: spec.Dom &^ starBit, month: spec.Month &^ starBit, dow: spec.Dow &^ starBit,
	}
	c.interval = bits.OnesCount64(c.second) > 1 || bits.OnesCount64(c.minute) > 1 || c.hour == 1<<24-1
	ref := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := c.nextWall(ref, time.Time{}); !ok {
		return nil, fmt.Errorf("the schedule never fires (no such date)")
	}
	return c, nil
}

// matchesDay applies NCRONTAB's rule: a day must match both the
// day-of-month and the day-of-week field (classic cron ORs them when both
// are restricted; NCrontab, and so Functions, does not).
func (c *cronSpec) matchesDay(t time.Time) bool {
	return c.dom&(1<<uint(t.Day())) != 0 && c.dow&(1<<uint(t.Weekday())) != 0
}

// nextWall returns the first wall-clock time at or after from (a naive
// time in UTC, whole seconds) that matches, before until (zero: no bound)
// and within the horizon.
func (c *cronSpec) nextWall(from, until time.Time) (time.Time, bool) {
	t := from
	limit := from.AddDate(horizonYears, 0, 0)
	if !until.IsZero() && until.Before(limit) {
		limit = until
	}
	for t.Before(limit) {
		switch {
		case c.month&(1<<uint(t.Month())) == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !c.matchesDay(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case c.hour&(1<<uint(t.Hour())) == 0:
			t = t.Truncate(time.Hour).Add(time.Hour)
		case c.minute&(1<<uint(t.Minute())) == 0:
			t = t.Truncate(time.Minute).Add(time.Minute)
		case c.second&(1<<uint(t.Second())) == 0:
			t = t.Add(time.Second)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

// wall returns instant i's wall clock at UTC offset off (seconds) as a
// naive UTC time, with its fraction of a second.
func wall(i time.Time, off int) time.Time {
	return i.Add(time.Duration(off) * time.Second).UTC()
}

// instant returns the instant at which the wall clock reads w (naive UTC)
// at UTC offset off.
func instant(w time.Time, off int) time.Time {
	return w.Add(-time.Duration(off) * time.Second)
}

// after returns the whole-second wall time just after w: the least wall
// time c with c > w.
func after(w time.Time) time.Time { return w.Truncate(time.Second).Add(time.Second) }

// next returns the first occurrence strictly after t in loc. It walks the
// zone's periods of constant UTC offset from the one holding t. In each
// period the wall clock runs monotonically, so the first matching wall
// time is its first occurrence there; at the period's start it also looks
// at the transition:
//
//   - spring forward (a gap): wall times the clock skipped fire at the
//     instant they would have had at the old offset (02:30 EST, which
//     never shows, fires at 03:30 EDT), as Functions does;
//   - fall back (an overlap): wall times the clock shows twice fire on
//     the second pass only for interval schedules (c.interval).
//
// Occurrences that coincide (a skipped 02:00 and the real 03:00 of an
// hourly job both fall at 03:00 EDT) fire once, since each call returns
// an instant strictly after t.
func (c *cronSpec) next(t time.Time, loc *time.Location) time.Time {
	cur := t.In(loc)
	start, end := cur.ZoneBounds()
	_, off := cur.Zone()
	first := true
	horizon := t.AddDate(horizonYears, 0, 0)
	for {
		var best time.Time
		consider := func(i time.Time) {
			if best.IsZero() || i.Before(best) {
				best = i
			}
		}
		// Normal occurrences in [start, end) at offset off.
		lo := wall(start, off)
		if first || start.IsZero() {
			lo = after(wall(t, off))
		}
		if !start.IsZero() {
			_, poff := start.Add(-time.Second).In(loc).Zone()
			switch {
			case poff > off && !c.interval:
				// The walls [start+off, start+poff) had their first pass
				// in the previous period.
				if w := wall(start, poff); lo.Before(w) {
					lo = w
				}
			case poff < off:
				// The walls [start+poff, start+off) were skipped: each
				// fires at its old-offset instant.
				glo := wall(start, poff)
				if first {
					if w := after(wall(t, poff)); w.After(glo) {
						glo = w
					}
				}
				if w, ok := c.nextWall(glo, wall(start, off)); ok {
					consider(instant(w, poff))
				}
			}
		}
		var hi time.Time
		if !end.IsZero() {
			hi = wall(end, off)
		}
		if w, ok := c.nextWall(lo, hi); ok {
			consider(instant(w, off))
		}
		if !best.IsZero() {
			return best.In(loc)
		}
		if end.IsZero() || end.After(horizon) {
			return time.Time{}
		}
		cur = end.In(loc)
		start, end = cur.ZoneBounds()
		_, off = cur.Zone()
		first = false
	}
}
