package runtime

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

func (d *decoder) integer(key, canon string, v any, lo, hi int) (int, bool) {
	var n int
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || x < math.MinInt32 || x > math.MaxInt32 {
			d.problem(key, canon, fmt.Sprintf("must be a whole number from %d to %d, got %s", lo, hi, show(v)))
			return 0, false
		}
		n = int(x)
	case int:
		n = x
	case int64:
		n = int(x)
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			d.problem(key, canon, fmt.Sprintf("must be a whole number from %d to %d, got %s", lo, hi, show(v)))
			return 0, false
		}
		n = i
	default:
		d.problem(key, canon, fmt.Sprintf("must be a whole number from %d to %d, got %s", lo, hi, show(v)))
		return 0, false
	}
	if n < lo || n > hi {
		d.problem(key, canon, fmt.Sprintf("must be from %d to %d, got %d", lo, hi, n))
		return 0, false
	}
	return n, true
}

func (d *decoder) boolean(key, canon string, v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, true
		}
	}
	d.problem(key, canon, fmt.Sprintf("must be true or false, got %s", show(v)))
	return false, false
}

func (d *decoder) duration(key, canon string, v any, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		d.problem(key, canon, fmt.Sprintf(`must be a TimeSpan string like "00:00:30", got %s`, show(v)))
		return 0, false
	}
	t, err := ParseTimeSpan(s)
	if err != nil {
		d.problem(key, canon, err.Error())
		return 0, false
	}
	if t < lo || t > hi {
		d.problem(key, canon, fmt.Sprintf("must be from %s to %s, got %s", FormatTimeSpan(lo), FormatTimeSpan(hi), s))
		return 0, false
	}
	return t, true
}

// timeout decodes functionTimeout: a TimeSpan, or -1 for no limit (0).
func (d *decoder) timeout(key, canon string, v any) (time.Duration, bool) {
	switch x := v.(type) {
	case float64:
		if x == -1 {
			return 0, true
		}
	case string:
		if strings.TrimSpace(x) == "-1" {
			return 0, true
		}
		t, err := ParseTimeSpan(x)
		if err != nil {
			d.problem(key, canon, err.Error()+` (or -1 for no limit)`)
			return 0, false
		}
		if t <= 0 {
			d.problem(key, canon, fmt.Sprintf(`must be positive, or -1 for no limit, got %q`, x))
			return 0, false
		}
		return t, true
	}
	d.problem(key, canon, fmt.Sprintf(`must be a TimeSpan string like "00:05:00", or -1 for no limit, got %s`, show(v)))
	return 0, false
}

func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprint(v)
}
