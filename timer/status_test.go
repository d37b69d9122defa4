package timer

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// The layout Functions' StorageScheduleMonitor writes: Json.NET with
// IsoDateFormat, local DateTimes (offset, never Z), up to seven fraction
// digits, default(DateTime) for a Last never set.
func TestStatusJSONLayout(t *testing.T) {
	ny := zone(t, "America/New_York")
	st := Status{
		Next:        time.Date(2026, 3, 8, 3, 30, 0, 0, ny),
		LastUpdated: time.Date(2026, 3, 7, 12, 0, 0, 123456789, ny),
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Last":"0001-01-01T00:00:00","Next":"2026-03-08T03:30:00-04:00","LastUpdated":"2026-03-07T12:00:00.1234568-05:00"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Status{Last: utc(2026, 1, 2, 3, 4, 5), Next: utc(2026, 1, 2, 3, 5, 0).Add(500 * time.Millisecond), LastUpdated: utc(2026, 1, 2, 3, 4, 5)})
	want = `{"Last":"2026-01-02T03:04:05+00:00","Next":"2026-01-02T03:05:00.5+00:00","LastUpdated":"2026-01-02T03:04:05+00:00"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestStatusJSONRead(t *testing.T) {
	// As Functions writes it (with Json.NET's case-insensitive names), a
	// UTC "Z" form, and an offset-less DateTime.
	for _, in := range []string{
		`{"Last":"2026-01-02T03:04:05.0076335+00:00","Next":"2026-01-02T03:09:05+00:00","LastUpdated":"2026-01-02T03:04:05.0076335+00:00"}`,
		`{"last":"2026-01-02T03:04:05.0076335Z","next":"2026-01-02T03:09:05Z","lastUpdated":"2026-01-02T03:04:05.0076335Z"}`,
		`{"Last":"2026-01-02T04:04:05.0076335+01:00","Next":"2026-01-02T03:09:05","LastUpdated":"2026-01-01T22:04:05.0076335-05:00"}`,
	} {
		var st Status
		if err := json.Unmarshal([]byte(in), &st); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		last := utc(2026, 1, 2, 3, 4, 5).Add(7633500 * time.Nanosecond)
		if !st.Last.Equal(last) || !st.Next.Equal(utc(2026, 1, 2, 3, 9, 5)) || !st.LastUpdated.Equal(last) {
			t.Errorf("%s: read %+v", in, st)
		}
	}
	var st Status
	if err := json.Unmarshal([]byte(`{"Last":"0001-01-01T00:00:00","Next":"2026-01-02T03:09:05+00:00"}`), &st); err != nil || !st.Last.IsZero() || !st.LastUpdated.IsZero() {
		t.Errorf("default DateTime: %+v, %v", st, err)
	}
	if err := json.Unmarshal([]byte(`{"Last":"yesterday"}`), &st); err == nil {
		t.Error("a bad time was accepted")
	}
}

func TestMemoryStatusStore(t *testing.T) {
	var m MemoryStatusStore
	ctx := context.Background()
	if _, err := m.Load(ctx, "F"); !errors.Is(err, ErrNoStatus) {
		t.Fatalf("Load of nothing: %v", err)
	}
	want := Status{Next: utc(2026, 1, 1, 0, 0, 0)}
	if err := m.Save(ctx, "F", want); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Load(ctx, "F"); err != nil || got != want {
		t.Fatalf("Load = %+v, %v", got, err)
	}
}
