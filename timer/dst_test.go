package timer

import (
	"testing"
	"time"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// 2026's changes: New York springs forward on 8 March (02:00 EST → 03:00
// EDT, 07:00Z) and falls back on 1 November (02:00 EDT → 01:00 EST,
// 06:00Z); Berlin on 29 March (02:00 CET → 03:00 CEST, 01:00Z) and 25
// October (03:00 CEST → 02:00 CET, 01:00Z).

func TestDSTDailyInGap(t *testing.T) {
	ny, berlin := zone(t, "America/New_York"), zone(t, "Europe/Berlin")
	// 02:30 does not exist on the spring day: it runs once, at 03:30 new
	// time (the instant 02:30 would have had), as Functions does.
	wantTimes(t, nextN(t, "0 30 2 * * *", ny, time.Date(2026, 3, 7, 0, 0, 0, 0, ny), 3),
		utc(2026, 3, 7, 7, 30, 0), utc(2026, 3, 8, 7, 30, 0), utc(2026, 3, 9, 6, 30, 0))
	wantTimes(t, nextN(t, "0 30 2 * * *", berlin, time.Date(2026, 3, 28, 0, 0, 0, 0, berlin), 3),
		utc(2026, 3, 28, 1, 30, 0), utc(2026, 3, 29, 1, 30, 0), utc(2026, 3, 30, 0, 30, 0))
	if got := MustParse("0 30 2 * * *", ny).Next(time.Date(2026, 3, 8, 0, 0, 0, 0, ny)); got.Hour() != 3 || got.Minute() != 30 {
		t.Errorf("spring-day 02:30 runs at %v, want 03:30 local", got)
	}
	// 02:00 itself is skipped too: it runs at 03:00, once, not again as
	// "03:00" of a 03:00 job on the same schedule.
	wantTimes(t, nextN(t, "0 0 2,3 * * *", ny, time.Date(2026, 3, 8, 0, 0, 0, 0, ny), 3),
		utc(2026, 3, 8, 7, 0, 0), utc(2026, 3, 9, 6, 0, 0), utc(2026, 3, 9, 7, 0, 0))
}

func TestDSTDailyInRepeatedHour(t *testing.T) {
	ny, berlin := zone(t, "America/New_York"), zone(t, "Europe/Berlin")
	// 01:30 shows twice in New York on 1 November: it runs on the first
	// pass only.
	wantTimes(t, nextN(t, "0 30 1 * * *", ny, time.Date(2026, 10, 31, 0, 0, 0, 0, ny), 3),
		utc(2026, 10, 31, 5, 30, 0), utc(2026, 11, 1, 5, 30, 0), utc(2026, 11, 2, 6, 30, 0))
	wantTimes(t, nextN(t, "0 30 2 * * *", berlin, time.Date(2026, 10, 24, 0, 0, 0, 0, berlin), 3),
		utc(2026, 10, 24, 0, 30, 0), utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0))
	// 02:30 is not repeated in New York: once, in standard time.
	wantTimes(t, nextN(t, "0 30 2 * * *", ny, time.Date(2026, 11, 1, 0, 0, 0, 0, ny), 1), utc(2026, 11, 1, 7, 30, 0))
	// Starting in the second pass (01:29 EST) the day's 01:30 has run
	// (at 01:30 EDT): the next is tomorrow's.
	wantTimes(t, nextN(t, "0 30 1 * * *", ny, utc(2026, 11, 1, 6, 29, 0), 1), utc(2026, 11, 2, 6, 30, 0))
}

// countPerLocalDay checks that occurrences run strictly forward, each gap
// being want (when non-zero), and returns how many fall on each local date.
func countPerLocalDay(t *testing.T, s *Schedule, from, to time.Time, want time.Duration) map[string]int {
	t.Helper()
	days := map[string]int{}
	prev := time.Time{}
	for o := s.Next(from); o.Before(to); o = s.Next(o) {
		if !prev.IsZero() {
			if !o.After(prev) {
				t.Fatalf("%s: %v does not follow %v", s, o, prev)
			}
			if want != 0 && o.Sub(prev) != want {
				t.Fatalf("%s: %v follows %v after %v, want %v", s, o, prev, o.Sub(prev), want)
			}
		}
		prev = o
		days[o.In(s.Location()).Format("2006-01-02")]++
	}
	return days
}

func TestDSTIntervalsRunForEachRealHour(t *testing.T) {
	for _, c := range []struct {
		zone           string
		spring, autumn string
	}{
		{"America/New_York", "2026-03-08", "2026-11-01"},
		{"Europe/Berlin", "2026-03-29", "2026-10-25"},
	} {
		loc := zone(t, c.zone)
		for expr, every := range map[string]time.Duration{
			"0 0 * * * *":    time.Hour,
			"0 */15 * * * *": 15 * time.Minute,
			"0 30 * * * *":   time.Hour,
			"*/20 * * * * *": 20 * time.Second,
		} {
			s := MustParse(expr, loc)
			days := map[string]int{}
			// Around each change, and an ordinary day.
			for _, w := range [][2]time.Time{
				{time.Date(2026, 3, 1, 0, 0, 0, 0, loc), time.Date(2026, 4, 1, 0, 0, 0, 0, loc)},
				{time.Date(2026, 5, 31, 0, 0, 0, 0, loc), time.Date(2026, 6, 2, 0, 0, 0, 0, loc)},
				{time.Date(2026, 10, 20, 0, 0, 0, 0, loc), time.Date(2026, 11, 5, 0, 0, 0, 0, loc)},
			} {
				for d, n := range countPerLocalDay(t, s, w[0], w[1], every) {
					days[d] += n
				}
			}
			perHour := int(time.Hour / every)
			if got := days[c.spring]; got != 23*perHour {
				t.Errorf("%s %q: %d runs on the spring day, want %d", c.zone, expr, got, 23*perHour)
			}
			if got := days[c.autumn]; got != 25*perHour {
				t.Errorf("%s %q: %d runs on the autumn day, want %d", c.zone, expr, got, 25*perHour)
			}
			if got := days["2026-06-01"]; got != 24*perHour {
				t.Errorf("%s %q: %d runs on an ordinary day, want %d", c.zone, expr, got, 24*perHour)
			}
		}
	}
}

func TestDSTDailyRunsOncePerDayAllYear(t *testing.T) {
	for _, name := range []string{"America/New_York", "Europe/Berlin", "Australia/Sydney", "UTC"} {
		loc := zone(t, name)
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, loc).Add(-time.Second)
		to := time.Date(2027, 1, 1, 0, 0, 0, 0, loc)
		for _, expr := range []string{"0 0 0 * * *", "0 30 1 * * *", "0 0 2 * * *", "0 30 2 * * *", "0 0 3 * * *", "0 59 23 * * *", "0 15 1,2 * * *"} {
			s := MustParse(expr, loc)
			days := countPerLocalDay(t, s, from, to, 0)
			want := 1
			if expr == "0 15 1,2 * * *" {
				want = 2
			}
			if len(days) != 365 {
				t.Errorf("%s %q: runs on %d days of 2026, want 365", name, expr, len(days))
			}
			for d, n := range days {
				if n != want {
					t.Errorf("%s %q: %d runs on %s, want %d", name, expr, n, d, want)
				}
			}
		}
	}
}
