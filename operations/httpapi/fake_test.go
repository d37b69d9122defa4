package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/operations"
)

// fakeOps is a client.Operations over an in-memory map, applying the
// operations package's Changes as a store would.
type fakeOps struct {
	mu        sync.Mutex
	recs      map[string]*operations.Record
	changed   chan struct{} // closed and replaced on every write
	functions []string
	// waiting, when set, receives an operation's id each time Wait starts
	// waiting on it.
	waiting chan string
	// submitErr and getErr, when set, are what Submit and Get return.
	submitErr, getErr error
	// submissions are the submissions Submit was given, in order.
	submissions []client.Submission
	// listed are the queries List was given.
	listed []operations.Query
	// maxInput makes Submit answer *client.TooLargeError beyond it.
	maxInput int
}

func newFake(functions ...string) *fakeOps {
	return &fakeOps{recs: map[string]*operations.Record{}, changed: make(chan struct{}), functions: functions, maxInput: 1000}
}

var _ client.Operations = (*fakeOps)(nil)

func (f *fakeOps) Submit(ctx context.Context, s client.Submission) (*operations.Record, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submissions = append(f.submissions, s)
	if f.submitErr != nil {
		return nil, false, f.submitErr
	}
	if !slices.Contains(f.functions, s.Function) {
		return nil, false, fmt.Errorf("submit %q: %w", s.Function, client.ErrUnknownFunction)
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(s.Input, &probe) == nil {
		if _, bad := probe["bad"]; bad {
			return nil, false, &client.InputError{Field: "bad", Reason: "is not expected"}
		}
	}
	if len(s.Input) > f.maxInput {
		return nil, false, &client.TooLargeError{Size: len(s.Input) * 4 / 3, Limit: f.maxInput, Queue: "secret-queue"}
	}
	id := operations.NewID()
	if s.IdempotencyKey != "" {
		id = operations.IdempotentID(s.RunAs, s.Function, s.IdempotencyKey)
		if prev, ok := f.recs[id]; ok {
			if !bytes.Equal(prev.Input, s.Input) {
				return nil, false, client.ErrIdempotencyConflict
			}
			return prev.Clone(), false, nil
		}
	}
	now := time.Now()
	rec := &operations.Record{
		ID: id, Name: s.Function, Status: operations.WaitingForResources, Input: s.Input,
		RunAs: s.RunAs, CallbackURL: s.CallbackURL, IdempotencyKey: s.IdempotencyKey,
		CreatedOn: now, LastUpdated: now, ExpiresOn: now.Add(operations.DefaultTimeToLive),
	}
	f.recs[id] = rec
	return rec.Clone(), true, nil
}

func (f *fakeOps) Get(ctx context.Context, id string) (*operations.Record, error) {
	if id == "boom" {
		panic("the fake was asked for boom")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	rec, ok := f.recs[id]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", id, operations.ErrNotFound)
	}
	return rec.Clone(), nil
}

func (f *fakeOps) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = append(f.listed, q)
	if q.Cursor == "bogus" {
		return nil, fmt.Errorf("fake: %w", operations.ErrInvalidCursor)
	}
	ids := make([]string, 0, len(f.recs))
	for id := range f.recs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	page := &operations.Page{}
	for _, id := range ids {
		rec := f.recs[id]
		if id <= q.Cursor || !q.Matches(rec) {
			continue
		}
		if len(page.Records) == q.PageSize() {
			page.Next = page.Records[len(page.Records)-1].ID
			break
		}
		page.Records = append(page.Records, rec.Clone())
	}
	return page, nil
}

func (f *fakeOps) Cancel(ctx context.Context, id string) (*operations.Record, error) {
	return f.update(id, operations.Cancel(time.Now()))
}

func (f *fakeOps) Wait(ctx context.Context, id string) (*operations.Record, error) {
	for {
		f.mu.Lock()
		rec, ok := f.recs[id]
		if !ok {
			f.mu.Unlock()
			return nil, operations.ErrNotFound
		}
		rec = rec.Clone()
		ch := f.changed
		f.mu.Unlock()
		if rec.Status.Final() {
			return rec, nil
		}
		if f.waiting != nil {
			select {
			case f.waiting <- id:
			case <-ctx.Done():
				return rec, ctx.Err()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return rec, ctx.Err()
		}
	}
}

func (f *fakeOps) Functions() []string { return slices.Clone(f.functions) }

// update applies change as a store's Update does.
func (f *fakeOps) update(id string, change operations.Change) (*operations.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.recs[id]
	if !ok {
		return nil, operations.ErrNotFound
	}
	c := rec.Clone()
	changed, err := change(c)
	if err != nil {
		return nil, err
	}
	if !changed {
		return rec.Clone(), nil
	}
	c.LastUpdated = time.Now()
	f.recs[id] = c
	close(f.changed)
	f.changed = make(chan struct{})
	return c.Clone(), nil
}

// start, succeed and fail drive an operation as the host would.
func (f *fakeOps) start(id string) {
	if _, err := f.update(id, operations.Started(1, time.Now())); err != nil {
		panic(err)
	}
}

func (f *fakeOps) succeed(id, output string) {
	if _, err := f.update(id, operations.Succeed(json.RawMessage(output), time.Now())); err != nil {
		panic(err)
	}
}

func (f *fakeOps) fail(id string) {
	if _, err := f.update(id, operations.Fail("Boom", "it broke", time.Now())); err != nil {
		panic(err)
	}
}

func (f *fakeOps) lastSubmission() client.Submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submissions) == 0 {
		panic(errors.New("no submission"))
	}
	return f.submissions[len(f.submissions)-1]
}
