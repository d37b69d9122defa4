package timer

import "testing"

func TestDecide(t *testing.T) {
	hourly := MustParse("0 0 * * * *", nil)
	now := utc(2026, 5, 1, 14, 20, 0)

	d := Decide(hourly, nil, now)
	if !d.Save || d.PastDue || d.Changed || !d.Status.Next.Equal(utc(2026, 5, 1, 15, 0, 0)) || !d.Status.LastUpdated.Equal(now) || !d.Status.Last.IsZero() {
		t.Errorf("no status: %+v", d)
	}

	ok := Status{Last: utc(2026, 5, 1, 14, 0, 0), Next: utc(2026, 5, 1, 15, 0, 0), LastUpdated: utc(2026, 5, 1, 14, 0, 0)}
	if d := Decide(hourly, &ok, now); d.Save || d.PastDue || d.Changed || d.Status != ok {
		t.Errorf("in time: %+v", d)
	}

	// Down since 09:00's run was due: five missed, one past-due run.
	missed := Status{Last: utc(2026, 5, 1, 8, 0, 0), Next: utc(2026, 5, 1, 9, 0, 0), LastUpdated: utc(2026, 5, 1, 8, 0, 0)}
	if d := Decide(hourly, &missed, now); !d.PastDue || d.Save || d.Changed || d.Status != missed {
		t.Errorf("missed: %+v", d)
	}
	// Down for ten days: still one.
	if d := Decide(hourly, &missed, now.AddDate(0, 0, 10)); !d.PastDue {
		t.Errorf("missed for days: %+v", d)
	}
	// Exactly at Next is not past due (the run is due now, not missed).
	if d := Decide(hourly, &ok, ok.Next); d.PastDue {
		t.Errorf("at Next: %+v", d)
	}

	// The schedule changed to every 30 minutes: Next(08:00) is 08:30, not
	// the stored 09:00: reset, no past-due run.
	half := MustParse("0 */30 * * * *", nil)
	d = Decide(half, &missed, now)
	if d.PastDue || !d.Changed || !d.Save || !d.Status.Next.Equal(utc(2026, 5, 1, 14, 30, 0)) || !d.Status.Last.Equal(missed.Last) {
		t.Errorf("changed: %+v", d)
	}

	// A status from before LastUpdated existed: Next follows from Last.
	legacy := Status{Last: utc(2026, 5, 1, 8, 0, 0), Next: utc(2026, 5, 1, 9, 0, 0)}
	if d := Decide(hourly, &legacy, now); !d.PastDue || d.Changed {
		t.Errorf("legacy: %+v", d)
	}
	// A first status (Last never set) recomputes from LastUpdated.
	first := Status{Next: utc(2026, 5, 1, 9, 0, 0), LastUpdated: utc(2026, 5, 1, 8, 12, 0)}
	if d := Decide(hourly, &first, now); !d.PastDue || d.Changed {
		t.Errorf("first status: %+v", d)
	}

	// Constant schedules: Next = LastUpdated + interval.
	every := MustParse("00:05:00", nil)
	c := Status{Last: utc(2026, 5, 1, 14, 0, 3), Next: utc(2026, 5, 1, 14, 5, 3), LastUpdated: utc(2026, 5, 1, 14, 0, 3)}
	if d := Decide(every, &c, now); !d.PastDue || d.Changed {
		t.Errorf("constant, missed: %+v", d)
	}
	if d := Decide(MustParse("00:10:00", nil), &c, now); !d.Changed {
		t.Errorf("constant, changed: %+v", d)
	}
}

func TestAfter(t *testing.T) {
	hourly := MustParse("0 0 * * * *", nil)
	st := After(hourly, utc(2026, 5, 1, 14, 0, 0), utc(2026, 5, 1, 14, 0, 2))
	if want := (Status{Last: utc(2026, 5, 1, 14, 0, 0), Next: utc(2026, 5, 1, 15, 0, 0), LastUpdated: utc(2026, 5, 1, 14, 0, 0)}); st != want {
		t.Errorf("after a short run: %+v, want %+v", st, want)
	}
	// A run of 3.5 hours: 15:00, 16:00 and 17:00 fell due meanwhile;
	// they collapse into one, due at once (17:00), and Next still follows
	// from LastUpdated.
	st = After(hourly, utc(2026, 5, 1, 14, 0, 0), utc(2026, 5, 1, 17, 30, 0))
	if !st.Next.Equal(utc(2026, 5, 1, 17, 0, 0)) || !st.Last.Equal(utc(2026, 5, 1, 14, 0, 0)) || !hourly.Next(st.LastUpdated).Equal(st.Next) {
		t.Errorf("after a long run: %+v", st)
	}
	if d := Decide(hourly, &st, utc(2026, 5, 1, 17, 30, 0)); d.Changed || !d.PastDue {
		t.Errorf("a collapsed status reads as changed: %+v", d)
	}
}
