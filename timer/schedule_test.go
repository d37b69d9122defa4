package timer

import (
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

func nextN(t *testing.T, expr string, loc *time.Location, from time.Time, n int) []time.Time {
	t.Helper()
	s, err := Parse(expr, loc)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	return s.NextN(from, n)
}

func wantTimes(t *testing.T, got []time.Time, want ...time.Time) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d occurrences %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("occurrence %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestCronSixAndFiveFields(t *testing.T) {
	from := utc(2026, 1, 5, 9, 0, 0) // a Monday
	wantTimes(t, nextN(t, "*/15 * * * * *", nil, from, 3), utc(2026, 1, 5, 9, 0, 15), utc(2026, 1, 5, 9, 0, 30), utc(2026, 1, 5, 9, 0, 45))
	wantTimes(t, nextN(t, "0 */5 * * * *", nil, from, 2), utc(2026, 1, 5, 9, 5, 0), utc(2026, 1, 5, 9, 10, 0))
	// Five fields: minute first, seconds 0.
	wantTimes(t, nextN(t, "30 9 * * 1-5", nil, from, 2), utc(2026, 1, 5, 9, 30, 0), utc(2026, 1, 6, 9, 30, 0))
	wantTimes(t, nextN(t, "0 30 9 * * 1-5", nil, utc(2026, 1, 9, 10, 0, 0), 1), utc(2026, 1, 12, 9, 30, 0)) // Friday → Monday
	// Next is strictly after its argument.
	wantTimes(t, nextN(t, "0 30 9 * * *", nil, utc(2026, 1, 5, 9, 30, 0), 1), utc(2026, 1, 6, 9, 30, 0))
	wantTimes(t, nextN(t, "0 30 9 * * *", nil, utc(2026, 1, 5, 9, 29, 59).Add(999*time.Millisecond), 1), utc(2026, 1, 5, 9, 30, 0))
}

func TestCronNames(t *testing.T) {
	from := utc(2026, 1, 1, 0, 0, 0) // a Thursday
	for _, expr := range []string{"0 0 12 * * Mon", "0 0 12 * * MON", "0 0 12 * * Monday", "0 0 12 * * 1"} {
		wantTimes(t, nextN(t, expr, nil, from, 1), utc(2026, 1, 5, 12, 0, 0))
	}
	wantTimes(t, nextN(t, "0 0 0 * * Sun", nil, from, 1), utc(2026, 1, 4, 0, 0, 0))
	wantTimes(t, nextN(t, "0 0 0 * * 0", nil, from, 1), utc(2026, 1, 4, 0, 0, 0)) // Sunday is 0
	wantTimes(t, nextN(t, "0 0 0 1 Mar *", nil, from, 1), utc(2026, 3, 1, 0, 0, 0))
	wantTimes(t, nextN(t, "0 0 0 1 March *", nil, from, 1), utc(2026, 3, 1, 0, 0, 0))
	wantTimes(t, nextN(t, "0 0 9 * * Sat,Sun", nil, from, 2), utc(2026, 1, 3, 9, 0, 0), utc(2026, 1, 4, 9, 0, 0))
}

// NCRONTAB (NCrontab, and so Functions) requires a day to match both the
// day-of-month and the day-of-week fields; classic cron (and robfig/cron's
// own evaluation) fires when either matches. This is the difference the
// wrapper exists for.
func TestCronDayOfMonthAndDayOfWeek(t *testing.T) {
	from := utc(2026, 1, 1, 0, 0, 0)
	// Friday the 13th: in 2026, February, March and November.
	got := nextN(t, "0 0 0 13 * 5", nil, from, 3)
	wantTimes(t, got, utc(2026, 2, 13, 0, 0, 0), utc(2026, 3, 13, 0, 0, 0), utc(2026, 11, 13, 0, 0, 0))

	rob, err := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse("0 0 0 13 * 5")
	if err != nil {
		t.Fatal(err)
	}
	if r := rob.Next(from); r.Equal(got[0]) {
		t.Fatalf("robfig/cron agrees (%v): the test no longer shows the OR/AND difference", r)
	} else if !r.Equal(utc(2026, 1, 2, 0, 0, 0)) { // Friday 2 January: robfig ORs the fields
		t.Fatalf("robfig/cron: %v", r)
	}
	// A restricted day of month with * day of week: every such day.
	wantTimes(t, nextN(t, "0 0 0 31 * *", nil, from, 2), utc(2026, 1, 31, 0, 0, 0), utc(2026, 3, 31, 0, 0, 0))
	// Leap day, on a Monday: 2044.
	wantTimes(t, nextN(t, "0 0 0 29 2 1", nil, from, 1), utc(2044, 2, 29, 0, 0, 0))
}

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{
		"", "* * * *", "0 0 0 * * * *", "0 0 0 * * 7", "60 * * * * *", "0 0 0 30 2 *",
		"TZ=UTC 0 0 * * *", "@daily", "@every 5m", "0 0 0 * * Funday", "00:00:00", "24:00", "1:60:00", "abc", "-01:00:00",
	} {
		if s, err := Parse(expr, nil); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", expr, s)
		} else if expr != "" && !strings.Contains(err.Error(), strings.TrimSpace(expr)) {
			t.Errorf("Parse(%q) error %q does not name the expression", expr, err)
		}
	}
}

func TestTimeSpan(t *testing.T) {
	for expr, want := range map[string]time.Duration{
		"01:00:00":     time.Hour,
		"00:01:00":     time.Minute,
		"00:00:30":     30 * time.Second,
		"00:00:00.5":   500 * time.Millisecond,
		"23:59:59":     24*time.Hour - time.Second,
		"24:00:00":     24 * 24 * time.Hour, // dd:hh:mm when the first part is 24 or more
		"25:01:02":     25*24*time.Hour + time.Hour + 2*time.Minute,
		"1.02:03:04":   26*time.Hour + 3*time.Minute + 4*time.Second,
		"2:00:00:00":   48 * time.Hour,
		"25:00:00:00":  25 * 24 * time.Hour,
		"01:30":        90 * time.Minute,
		" 00:05:00 \n": 5 * time.Minute,
	} {
		s, err := Parse(expr, nil)
		if err != nil {
			t.Errorf("Parse(%q): %v", expr, err)
			continue
		}
		if s.Interval() != want {
			t.Errorf("Parse(%q).Interval() = %v, want %v", expr, s.Interval(), want)
		}
		from := utc(2026, 3, 8, 1, 0, 0)
		if got := s.Next(from); !got.Equal(from.Add(want)) {
			t.Errorf("Parse(%q).Next = %v, want %v", expr, got, from.Add(want))
		}
	}
}

func TestFiresMoreThanOncePerMinute(t *testing.T) {
	for expr, want := range map[string]bool{
		"*/1 * * * * *": true, "*/30 * * * * *": true, "0,30 * * * * *": true,
		"0 * * * * *": false, "* * * * *": false, "15 */5 * * * *": false,
		"00:00:30": true, "00:01:00": false, "01:00:00": false,
	} {
		if got := MustParse(expr, nil).FiresMoreThanOncePerMinute(); got != want {
			t.Errorf("%q: FiresMoreThanOncePerMinute = %v, want %v", expr, got, want)
		}
	}
}

func TestScheduleString(t *testing.T) {
	s := MustParse("  0 */5 * * * *  ", nil)
	if s.String() != "0 */5 * * * *" {
		t.Errorf("String() = %q", s.String())
	}
	if s.Location() != time.UTC {
		t.Errorf("Location() = %v, want UTC", s.Location())
	}
}
