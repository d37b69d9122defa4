package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Status is a timer's schedule status, as Functions keeps it in
// azure-webjobs-hosts/timers/{hostId}/{function}/status:
//
//	{"Last":"2026-03-08T03:30:00-04:00","Next":"2026-03-09T02:30:00-04:00","LastUpdated":"2026-03-08T03:30:00-04:00"}
//
// Times are written as .NET's Json.NET writes a local DateTime: ISO 8601
// with up to seven fraction digits (trailing zeros dropped) and the UTC
// offset of the time zone, "+00:00" for UTC (never "Z"). A zero time is
// written as .NET's default DateTime, "0001-01-01T00:00:00".
type Status struct {
	// Last is the last occurrence that ran (zero before the first run).
	Last time.Time
	// Next is the occurrence expected next.
	Next time.Time
	// LastUpdated is the time Next was computed from, which recomputing on
	// start compares with Next to tell whether the schedule changed.
	LastUpdated time.Time
}

// DotNetTimeLayout is the layout of the times in a status: what Json.NET
// writes for a DateTime of kind Local.
const DotNetTimeLayout = "2006-01-02T15:04:05.9999999-07:00"

// dotNetZero is how Json.NET writes default(DateTime).
const dotNetZero = "0001-01-01T00:00:00"

// FormatDotNetTime formats t as a status time (see [Status]).
func FormatDotNetTime(t time.Time) string {
	if t.IsZero() {
		return dotNetZero
	}
	return t.Round(100 * time.Nanosecond).Format(DotNetTimeLayout)
}

// ParseDotNetTime parses a status time: ISO 8601 with an offset or Z, or
// without one (a .NET DateTime of kind Unspecified, read as UTC).
// "0001-01-01T00:00:00" is the zero time.
func ParseDotNetTime(s string) (time.Time, error) {
	if s == "" || strings.HasPrefix(s, dotNetZero) {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.9999999", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timer: status time %q is not ISO 8601", s)
	}
	return t, nil
}

type statusJSON struct {
	Last        string `json:"Last"`
	Next        string `json:"Next"`
	LastUpdated string `json:"LastUpdated"`
}

// MarshalJSON writes the status in Functions' layout.
func (s Status) MarshalJSON() ([]byte, error) {
	return json.Marshal(statusJSON{FormatDotNetTime(s.Last), FormatDotNetTime(s.Next), FormatDotNetTime(s.LastUpdated)})
}

// UnmarshalJSON reads a status that Functions or jobhost wrote. Property
// names are matched without regard to case, as Json.NET does.
func (s *Status) UnmarshalJSON(b []byte) error {
	var j statusJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var out Status
	var err error
	if out.Last, err = ParseDotNetTime(j.Last); err != nil {
		return err
	}
	if out.Next, err = ParseDotNetTime(j.Next); err != nil {
		return err
	}
	if out.LastUpdated, err = ParseDotNetTime(j.LastUpdated); err != nil {
		return err
	}
	*s = out
	return nil
}

// In returns the status with its times in loc (zero times stay zero).
func (s Status) In(loc *time.Location) Status {
	in := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.In(loc)
	}
	return Status{Last: in(s.Last), Next: in(s.Next), LastUpdated: in(s.LastUpdated)}
}

// StatusStore keeps timers' schedule statuses, one per function, for one
// host id (the store is opened for it). Implementations: timerblob (the
// Functions layout), timerpg, and [MemoryStatusStore].
type StatusStore interface {
	// Load returns the function's status, or an error wrapping
	// ErrNoStatus when none has been saved.
	Load(ctx context.Context, function string) (Status, error)
	// Save replaces the function's status.
	Save(ctx context.Context, function string, s Status) error
}

// ErrNoStatus means no status has been saved for the function.
var ErrNoStatus = errors.New("timer: no schedule status")

// MemoryStatusStore is a StatusStore in memory, for tests and hosts that
// need no catch-up across restarts. The zero value is ready to use.
type MemoryStatusStore struct {
	mu sync.Mutex
	m  map[string]Status
}

// Load implements StatusStore.
func (m *MemoryStatusStore) Load(_ context.Context, function string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[function]
	if !ok {
		return Status{}, fmt.Errorf("%w for %s", ErrNoStatus, function)
	}
	return s, nil
}

// Save implements StatusStore.
func (m *MemoryStatusStore) Save(_ context.Context, function string, s Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]Status)
	}
	m.m[function] = s
	return nil
}
