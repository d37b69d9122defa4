package memstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/operations/storetest"
)

// steppingClock is a clock that moves on by step each time it is read, so
// that every time the store sets differs, and sub-millisecond parts and a
// zone other than UTC are there to be handled.
type steppingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func TestConformance(t *testing.T) {
	clock := &steppingClock{
		t:    time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("UTC+2", 2*3600)),
		step: 10*time.Millisecond + 1234*time.Nanosecond,
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, ttl time.Duration) operations.Store {
			return memstore.New(memstore.Options{TimeToLive: ttl, Now: clock.Now})
		},
		Now: clock.Now,
	})
}

func TestConformanceRealClock(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, ttl time.Duration) operations.Store {
			return memstore.New(memstore.Options{TimeToLive: ttl})
		},
	})
}

func TestDefaultTimeToLive(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	r, err := st.Create(context.Background(), &operations.Record{ID: operations.NewID(), Name: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.ExpiresOn.Sub(r.CreatedOn); got != operations.DefaultTimeToLive {
		t.Errorf("ExpiresOn - CreatedOn = %v, want DefaultTimeToLive %v", got, operations.DefaultTimeToLive)
	}
}

func TestBadIDs(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	defer st.Close()
	id := operations.NewID()
	for _, bad := range []string{"", "op-1", "{" + id + "}", "urn:uuid:" + id, "A" + id[1:]} {
		if _, err := st.Create(ctx, &operations.Record{ID: bad}); err == nil {
			t.Errorf("Create with id %q: no error", bad)
		}
	}
	if _, err := st.Create(ctx, nil); err == nil {
		t.Errorf("Create(nil): no error")
	}
	if _, err := st.Create(ctx, &operations.Record{ID: operations.IdempotentID("alice", "f", "k")}); err != nil {
		t.Errorf("Create with an IdempotentID: %v", err)
	}
	if _, err := st.List(ctx, operations.Query{Cursor: "op-1"}); err == nil {
		t.Errorf("List with cursor op-1: no error")
	}
}

func TestCreateReplacesExpired(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st := memstore.New(memstore.Options{Now: func() time.Time { return now }})
	defer st.Close()
	id := operations.NewID()
	if _, err := st.Create(ctx, &operations.Record{ID: id, Name: "old", ExpiresOn: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Create(ctx, &operations.Record{ID: id, Name: "new"})
	if err != nil {
		t.Fatalf("Create over an expired record: %v", err)
	}
	if r.Name != "new" || !r.ExpiresOn.After(now) {
		t.Errorf("Create over an expired record returned %q expiring %v", r.Name, r.ExpiresOn)
	}
}

func TestUpdateErrorReturnsStored(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	defer st.Close()
	r, err := st.Create(ctx, &operations.Record{ID: operations.NewID(), Name: "f", Status: operations.Succeeded})
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Update(ctx, r.ID, operations.Cancel(time.Now()))
	if !errors.Is(err, operations.ErrCompleted) {
		t.Fatalf("Cancel of a succeeded record: %v, want ErrCompleted", err)
	}
	if got == nil || got.Status != operations.Succeeded || got.Version != r.Version {
		t.Errorf("Update with a failing change returned %+v, want the stored record", got)
	}
}

func TestPurgeLimit(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	for _, limit := range []int{0, -1} {
		if _, err := st.Purge(context.Background(), time.Now(), limit); err == nil {
			t.Errorf("Purge with limit %d: no error", limit)
		}
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	r, err := st.Create(ctx, &operations.Record{ID: operations.NewID(), Name: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, &operations.Record{ID: operations.NewID()}); !errors.Is(err, memstore.ErrClosed) {
		t.Errorf("Create after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Get(ctx, r.ID); !errors.Is(err, memstore.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Update(ctx, r.ID, operations.Cancel(time.Now())); !errors.Is(err, memstore.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if _, err := st.List(ctx, operations.Query{}); !errors.Is(err, memstore.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Purge(ctx, time.Now(), 10); !errors.Is(err, memstore.ErrClosed) {
		t.Errorf("Purge after Close: %v, want ErrClosed", err)
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st := memstore.New(memstore.Options{})
	defer st.Close()
	if _, err := st.Create(ctx, &operations.Record{ID: operations.NewID()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context: %v", err)
	}
}
