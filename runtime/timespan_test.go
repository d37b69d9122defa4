package runtime

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParseTimeSpan(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"00:00:02", 2 * time.Second},
		{"00:00:00.100", 100 * time.Millisecond},
		{"00:00:00.1", 100 * time.Millisecond},
		{"00:00:00.0000001", 100 * time.Nanosecond},
		{"00:00:00.1234567", 123456700 * time.Nanosecond},
		{"00:01:00", time.Minute},
		{"01:02:03", time.Hour + 2*time.Minute + 3*time.Second},
		{"23:59:59.9999999", day - 100*time.Nanosecond},
		{"1.00:00:00", day},
		{"10.12:00:00.5", 10*day + 12*time.Hour + 500*time.Millisecond},
		{"-00:00:01", -time.Second},
		{"-1.02:03:04", -(day + 2*time.Hour + 3*time.Minute + 4*time.Second)},
		{"0:0:2", 2 * time.Second},
		{" 00:05:00 ", 5 * time.Minute},
		{"-00:00:00", 0},
		{"106751.23:47:16.8547758", time.Duration(math.MaxInt64 / 100 * 100)},
		{"2s", 2 * time.Second},
		{"150ms", 150 * time.Millisecond},
		{"1m30s", 90 * time.Second},
		{"-1.5h", -90 * time.Minute},
		{"1ns", time.Nanosecond},
		{"0s", 0},
	} {
		got, err := ParseTimeSpan(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTimeSpan(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseTimeSpanErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2000", `"2000" is ambiguous: write a TimeSpan like "00:00:02" (hh:mm:ss) or a Go duration like "2s"`},
		{"5", `"5" is ambiguous`},
		{"-5", `"-5" is ambiguous`},
		{"1.5", `"1.5" is ambiguous`},
		{"", `invalid duration "": want a TimeSpan like "00:00:02"`},
		{"soon", `invalid duration "soon"`},
		{"2 s", `invalid duration "2 s"`},
		{"00:00", `invalid TimeSpan "00:00": want hours, minutes and seconds`},
		{"00:00:00:00", `invalid TimeSpan "00:00:00:00"`},
		{"24:00:00", `invalid TimeSpan "24:00:00": hours must be at most 23`},
		{"00:60:00", `minutes must be at most 59`},
		{"00:00:60", `seconds must be at most 59`},
		{"000:00:01", `hours "000" has more than 2 digits`},
		{"00:00:00.12345678", `fraction "12345678" has more than 7 digits`},
		{"00:00:00.", `fraction missing`},
		{"00:00:0x", `seconds "0x" is not a number`},
		{"+00:00:01", `hours "+00" is not a number`},
		{"--00:00:01", `hours "-00" is not a number`},
		{".00:00:01", `days missing`},
		{"106752.00:00:00", `days must be at most 106751`},
		{"106751.23:47:16.8547759", `out of range`},
		{"99999999999999999999999.00:00:00", `days must be at most 106751`},
		{"9999999999h", `invalid duration "9999999999h"`},
	} {
		_, err := ParseTimeSpan(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTimeSpan(%q) error = %v; want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestFormatTimeSpan(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "00:00:00"},
		{2 * time.Second, "00:00:02"},
		{time.Minute, "00:01:00"},
		{100 * time.Millisecond, "00:00:00.1"},
		{100 * time.Nanosecond, "00:00:00.0000001"},
		{24 * time.Hour, "1.00:00:00"},
		{-(26*time.Hour + time.Second), "-1.02:00:01"},
		{time.Nanosecond, "1ns"},
		{-1500 * time.Nanosecond, "-00:00:00.0000015"},
		{math.MinInt64, "-2562047h47m16.854775808s"},
	} {
		if got := FormatTimeSpan(tc.in); got != tc.want {
			t.Errorf("FormatTimeSpan(%v) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestFormatTimeSpanRoundTrip(t *testing.T) {
	ds := []time.Duration{0, 1, -1, math.MaxInt64, math.MinInt64, math.MaxInt64 / 100 * 100, math.MinInt64 / 100 * 100}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		d := time.Duration(r.Int64())
		ds = append(ds, d, d/100*100, d>>r.IntN(63))
	}
	for _, d := range ds {
		s := FormatTimeSpan(d)
		if got, err := ParseTimeSpan(s); err != nil || got != d {
			t.Fatalf("ParseTimeSpan(FormatTimeSpan(%d) = %q) = %v, %v", int64(d), s, got, err)
		}
	}
}

func FuzzParseTimeSpan(f *testing.F) {
	// Seed corpus: testdata/fuzz/FuzzParseTimeSpan.
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTimeSpan(s)
		if err != nil {
			return
		}
		out := FormatTimeSpan(d)
		if got, err := ParseTimeSpan(out); err != nil || got != d {
			t.Fatalf("ParseTimeSpan(%q) = %v, but ParseTimeSpan(FormatTimeSpan(d) = %q) = %v, %v", s, d, out, got, err)
		}
	})
}
