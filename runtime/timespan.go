package runtime

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

const (
	tick         = 100 * time.Nanosecond // resolution of a .NET TimeSpan
	ticksPerSec  = uint64(time.Second / tick)
	ticksPerMin  = 60 * ticksPerSec
	ticksPerHour = 60 * ticksPerMin
	ticksPerDay  = 24 * ticksPerHour
	maxTicks     = uint64(math.MaxInt64 / tick)
)

// ParseTimeSpan parses a duration written the way host.json writes them: a
// .NET TimeSpan, [-][d.]hh:mm:ss[.fffffff] ("00:00:02", "00:00:00.100",
// "1.00:00:00"), or a Go duration ("2s", "1m30s"). A bare number such as
// "2000" is rejected as ambiguous (.NET would read "5" as five days).
func ParseTimeSpan(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if strings.Contains(t, ":") {
		d, err := parseTimeSpan(t)
		if err != nil {
			return 0, fmt.Errorf("invalid TimeSpan %q: %v (want [-][d.]hh:mm:ss[.fffffff], e.g. \"00:00:02\")", s, err)
		}
		return d, nil
	}
	if isBareNumber(t) {
		return 0, fmt.Errorf("%q is ambiguous: write a TimeSpan like \"00:00:02\" (hh:mm:ss) or a Go duration like \"2s\"", s)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a TimeSpan like \"00:00:02\" (hh:mm:ss) or a Go duration like \"2s\"", s)
	}
	return d, nil
}

// FormatTimeSpan formats d as a .NET TimeSpan ("00:01:00", "1.00:00:00",
// "00:00:00.1000000"), the inverse of ParseTimeSpan. A d finer than the
// TimeSpan's 100 ns tick is formatted as a Go duration instead, so
// ParseTimeSpan(FormatTimeSpan(d)) == d for every d.
func FormatTimeSpan(d time.Duration) string {
	if d%tick != 0 {
		return d.String()
	}
	sign, u := "", uint64(d) // d%tick == 0, so d != math.MinInt64 and -d cannot overflow
	if d < 0 {
		sign, u = "-", uint64(-d)
	}
	t := u / uint64(tick)
	days := ""
	if n := t / ticksPerDay; n > 0 {
		days = fmt.Sprintf("%d.", n)
	}
	s := fmt.Sprintf("%s%s%02d:%02d:%02d", sign, days, t/ticksPerHour%24, t/ticksPerMin%60, t/ticksPerSec%60)
	if f := t % ticksPerSec; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%07d", f), "0")
	}
	return s
}

// parseTimeSpan parses [-][d.]hh:mm:ss[.fffffff].
func parseTimeSpan(s string) (time.Duration, error) {
	s, neg := strings.CutPrefix(s, "-")
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return 0, errors.New("want hours, minutes and seconds separated by ':'")
	}
	var days uint64
	if d, h, ok := strings.Cut(f[0], "."); ok {
		var err error
		if days, err = number(d, "days", math.MaxInt, maxTicks/ticksPerDay); err != nil {
			return 0, err
		}
		f[0] = h
	}
	sec, frac, hasFrac := strings.Cut(f[2], ".")
	h, err := number(f[0], "hours", 2, 23)
	if err != nil {
		return 0, err
	}
	m, err := number(f[1], "minutes", 2, 59)
	if err != nil {
		return 0, err
	}
	ss, err := number(sec, "seconds", 2, 59)
	if err != nil {
		return 0, err
	}
	var ft uint64
	if hasFrac {
		if ft, err = number(frac, "fraction", 7, ticksPerSec-1); err != nil {
			return 0, err
		}
		for range 7 - len(frac) {
			ft *= 10
		}
	}
	t := days*ticksPerDay + h*ticksPerHour + m*ticksPerMin + ss*ticksPerSec + ft
	if t > maxTicks {
		return 0, errors.New("out of range for a Go time.Duration (about ±106751 days)")
	}
	d := time.Duration(t) * tick
	if neg {
		d = -d
	}
	return d, nil
}

// number parses 1 to maxDigits decimal digits worth at most max.
func number(s, what string, maxDigits int, max uint64) (uint64, error) {
	switch {
	case s == "":
		return 0, fmt.Errorf("%s missing", what)
	case strings.Trim(s, "0123456789") != "":
		return 0, fmt.Errorf("%s %q is not a number", what, s)
	case len(s) > maxDigits:
		return 0, fmt.Errorf("%s %q has more than %d digits", what, s, maxDigits)
	}
	var n uint64
	for _, c := range []byte(s) {
		if n = n*10 + uint64(c-'0'); n > max { // max is small, so n*10 cannot overflow
			return 0, fmt.Errorf("%s must be at most %d", what, max)
		}
	}
	return n, nil
}

// isBareNumber reports whether s is a signed decimal number without a unit.
func isBareNumber(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return s != "" && strings.Trim(s, "0123456789.") == "" && strings.Trim(s, ".") != ""
}
