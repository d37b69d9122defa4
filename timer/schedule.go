package timer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed timer schedule: an NCRONTAB expression evaluated
// in a time zone, or a constant interval (a TimeSpan). It is immutable and
// safe for concurrent use.
type Schedule struct {
	expr  string
	loc   *time.Location
	cron  *cronSpec     // nil for a constant interval
	every time.Duration // the constant interval
}

// Parse parses a resolved schedule expression (the caller expands
// %Setting% first):
//
//   - NCRONTAB with six fields, {second} {minute} {hour} {day} {month}
//     {day-of-week}, or five (seconds 0). Each field takes *, numbers,
//     ranges a-b, steps */n and a-b/n, and lists; months and days of the
//     week also take names (Jan, Mon or Monday). Day of week runs 0-6,
//     Sunday 0. A day must match both the day and the day-of-week field.
//   - a TimeSpan: hh:mm:ss (hh below 24), dd:hh:mm when the first part is
//     24 or more, d.hh:mm:ss, d:hh:mm:ss or hh:mm; a constant interval
//     measured from the previous occurrence, unaffected by time zones.
//
// Cron occurrences are wall-clock times in loc (nil means UTC); see
// [Schedule.Next] for daylight-saving changes.
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	e := strings.TrimSpace(expr)
	if e == "" {
		return nil, errors.New("timer: empty schedule")
	}
	s := &Schedule{expr: e, loc: loc}
	if len(strings.Fields(e)) == 1 {
		d, err := parseTimeSpan(e)
		if err != nil {
			return nil, fmt.Errorf("timer: schedule %q is not a TimeSpan (hh:mm:ss, or dd:hh:mm when the first part is 24 or more): %w", e, err)
		}
		s.every = d
		return s, nil
	}
	c, err := parseCron(e)
	if err != nil {
		return nil, fmt.Errorf("timer: schedule %q is not an NCRONTAB expression: %w", e, err)
	}
	s.cron = c
	return s, nil
}

// MustParse is Parse for schedules known to be valid; it panics on error.
func MustParse(expr string, loc *time.Location) *Schedule {
	s, err := Parse(expr, loc)
	if err != nil {
		panic(err)
	}
	return s
}

// Next returns the first occurrence strictly after t, in the schedule's
// location, or the zero time if there is none within thirty years.
//
// For cron schedules, daylight-saving changes neither skip nor double a
// run: a wall time that the clock skips in spring (02:30 when 02:00 jumps
// to 03:00) fires at the instant it would have had without the change
// (03:30 new time), and a wall time that the clock shows twice in autumn
// fires once, on its first pass — unless the schedule is an interval one
// (it fires at more than one minute or second of an hour, or in every
// hour), which keeps firing through the repeated hour so that an hourly
// job runs for each real hour. A constant schedule returns t plus the
// interval.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.cron == nil {
		return t.Add(s.every).In(s.loc)
	}
	return s.cron.next(t, s.loc)
}

// NextN returns the next n occurrences after t (fewer if the schedule
// ends), for logging what a timer will do.
func (s *Schedule) NextN(t time.Time, n int) []time.Time {
	var out []time.Time
	for len(out) < n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// String returns the schedule expression as given (trimmed).
func (s *Schedule) String() string { return s.expr }

// Location returns the time zone cron occurrences are evaluated in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Interval returns the constant interval of a TimeSpan schedule, and 0
// for a cron schedule.
func (s *Schedule) Interval() time.Duration { return s.every }

// FiresMoreThanOncePerMinute reports whether the schedule can fire more
// than once within a minute: a cron schedule whose second field allows
// more than one value, or an interval under a minute. Functions turns
// UseMonitor off by default for such schedules.
func (s *Schedule) FiresMoreThanOncePerMinute() bool {
	if s.cron == nil {
		return s.every < time.Minute
	}
	return s.cron.second&(s.cron.second-1) != 0
}

// parseTimeSpan parses the TimeSpan forms Functions accepts as a constant
// schedule.
func parseTimeSpan(e string) (time.Duration, error) {
	days := 0
	rest := e
	// d.hh:mm:ss
	if i := strings.IndexByte(e, '.'); i >= 0 && i < strings.IndexByte(e, ':') {
		d, err := strconv.Atoi(e[:i])
		if err != nil || d < 0 {
			return 0, fmt.Errorf("bad day count %q", e[:i])
		}
		days, rest = d, e[i+1:]
	}
	parts := strings.Split(rest, ":")
	num := func(s string, max int) (int, error) {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || (max >= 0 && v > max) || s == "" || strings.ContainsAny(s, "+-") {
			return 0, fmt.Errorf("bad component %q", s)
		}
		return v, nil
	}
	var h, m int
	var sec time.Duration
	var err error
	seconds := func(s string) (time.Duration, error) {
		whole, frac, hasFrac := strings.Cut(s, ".")
		v, err := num(whole, 59)
		if err != nil {
			return 0, err
		}
		d := time.Duration(v) * time.Second
		if hasFrac {
			if frac == "" || len(frac) > 7 {
				return 0, fmt.Errorf("bad fraction %q", frac)
			}
			f, err := num(frac, -1)
			if err != nil {
				return 0, err
			}
			for i := len(frac); i < 9; i++ {
				f *= 10
			}
			d += time.Duration(f)
		}
		return d, nil
	}
	switch len(parts) {
	case 2: // hh:mm
		if h, err = num(parts[0], 23); err != nil {
			return 0, err
		}
		if m, err = num(parts[1], 59); err != nil {
			return 0, err
		}
	case 3:
		first, err := num(parts[0], -1)
		if err != nil {
			return 0, err
		}
		if first >= 24 && days == 0 && !strings.Contains(parts[2], ".") {
			// dd:hh:mm
			days = first
			if h, err = num(parts[1], 23); err != nil {
				return 0, err
			}
			if m, err = num(parts[2], 59); err != nil {
				return 0, err
			}
			break
		}
		if first > 23 {
			return 0, fmt.Errorf("hours %d out of range", first)
		}
		h = first
		if m, err = num(parts[1], 59); err != nil {
			return 0, err
		}
		if sec, err = seconds(parts[2]); err != nil {
			return 0, err
		}
	case 4: // d:hh:mm:ss
		if days != 0 {
			return 0, errors.New("two day counts")
		}
		if days, err = num(parts[0], -1); err != nil {
			return 0, err
		}
		if h, err = num(parts[1], 23); err != nil {
			return 0, err
		}
		if m, err = num(parts[2], 59); err != nil {
			return 0, err
		}
		if sec, err = seconds(parts[3]); err != nil {
			return 0, err
		}
	default:
		return 0, errors.New("want hh:mm:ss")
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + sec
	if d <= 0 {
		return 0, errors.New("the interval must be positive")
	}
	return d, nil
}
