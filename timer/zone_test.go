package timer

import (
	"strings"
	"testing"
	"time"
)

func TestWindowsZonesLoad(t *testing.T) {
	for win, iana := range WindowsZones {
		loc, err := LoadLocation(win)
		if err != nil {
			t.Errorf("%q (%s): %v", win, iana, err)
			continue
		}
		if loc.String() != iana {
			t.Errorf("%q: got %s, want %s", win, loc, iana)
		}
	}
}

func TestLocationFromSettings(t *testing.T) {
	set := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k == TimeZoneSetting {
				return v, true
			}
			return "", false
		}
	}
	for v, want := range map[string]string{
		"":                        "UTC",
		"Eastern Standard Time":   "America/New_York",
		"eastern standard time":   "America/New_York",
		"W. Europe Standard Time": "Europe/Berlin",
		"Pacific Standard Time":   "America/Los_Angeles",
		"GMT Standard Time":       "Europe/London",
		"Tokyo Standard Time":     "Asia/Tokyo",
		"UTC":                     "Etc/UTC",
		"Europe/Berlin":           "Europe/Berlin",
		"America/New_York":        "America/New_York",
	} {
		loc, err := LocationFromSettings(set(v))
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if loc.String() != want {
			t.Errorf("%q: got %s, want %s", v, loc, want)
		}
	}
	if loc, err := LocationFromSettings(func(string) (string, bool) { return "", false }); err != nil || loc != time.UTC {
		t.Errorf("unset: %v, %v; want UTC", loc, err)
	}
	for _, bad := range []string{"Mars Standard Time", "Local", "Europe/Nowhere"} {
		_, err := LocationFromSettings(set(bad))
		if err == nil || !strings.Contains(err.Error(), TimeZoneSetting) || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: error %v, want one naming %s and the value", bad, err, TimeZoneSetting)
		}
	}
}

func TestScheduleInWindowsZone(t *testing.T) {
	loc, err := LoadLocation("Eastern Standard Time")
	if err != nil {
		t.Fatal(err)
	}
	got := MustParse("0 0 9 * * *", loc).Next(utc(2026, 7, 1, 0, 0, 0))
	if !got.Equal(utc(2026, 7, 1, 13, 0, 0)) {
		t.Errorf("09:00 Eastern in July = %v, want 13:00Z", got)
	}
}
