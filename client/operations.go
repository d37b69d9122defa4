package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/operations"
)

var _ Operations = (*Client)(nil)

// inputError turns a validation error into an *InputError (nil stays nil).
func inputError(err error) error {
	if err == nil {
		return nil
	}
	var ie *InputError
	if errors.As(err, &ie) {
		return err
	}
	var ve *functions.ValidationError
	if errors.As(err, &ve) {
		return &InputError{Field: ve.Field, Reason: ve.Reason}
	}
	return &InputError{Reason: err.Error()}
}

func (c *Client) store() (operations.Store, error) {
	if c.opts.Store == nil {
		return nil, ErrNoStore
	}
	return c.opts.Store, nil
}

// Submit validates the input against the function's argument type, encodes
// it for the function's queue and checks its size, all before anything is
// written; then it creates the record (WaitingForResources) and sends the
// message carrying the operation id (in properties on brokers, in the JSON
// body on Storage Queues). An empty input is JSON null.
//
// With an idempotency key the id is operations.IdempotentID(RunAs,
// function, key): a repeat with the same input returns the first record
// and created false, sending nothing; with another input it fails with
// ErrIdempotencyConflict. When the send fails the record is marked Failed
// (EnqueueFailed) and returned with the error.
func (c *Client) Submit(ctx context.Context, s Submission) (*operations.Record, bool, error) {
	store, err := c.store()
	if err != nil {
		return nil, false, err
	}
	f, err := c.function(s.Function)
	if err != nil {
		return nil, false, err
	}
	input := s.Input
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage("null")
	}
	if !json.Valid(input) {
		return nil, false, &InputError{Reason: "not valid JSON"}
	}
	if len(input) > operations.MaxInput {
		return nil, false, &TooLargeError{Size: len(input), Limit: operations.MaxInput, Queue: "the operation record"}
	}
	if f.Validate != nil {
		if err := inputError(f.Validate(input)); err != nil {
			return nil, false, err
		}
	}
	id := operations.NewID()
	if s.IdempotencyKey != "" {
		id = operations.IdempotentID(s.RunAs, f.Name, s.IdempotencyKey)
	}
	msg, err := c.prepare(f.target, input, f.Encoding, sendOptions{meta: bindings.Meta{OperationID: id}})
	if err != nil {
		var notXML *NotXMLError
		if errors.As(err, &notXML) {
			return nil, false, &InputError{Reason: notXML.Reason + " (the function's Storage Queue has messageEncoding none: its messages are XML text)"}
		}
		return nil, false, err
	}
	rec := &operations.Record{ID: id, Name: f.Name, Status: operations.WaitingForResources, Input: bytes.Clone(input),
		RunAs: s.RunAs, CallbackURL: s.CallbackURL, IdempotencyKey: s.IdempotencyKey}
	ttl := s.TimeToLive
	if ttl <= 0 {
		ttl = c.opts.TimeToLive
	}
	if ttl > 0 {
		rec.ExpiresOn = c.now().Add(ttl)
	}
	stored, err := store.Create(ctx, rec)
	if errors.Is(err, operations.ErrExists) {
		if stored == nil {
			if stored, err = store.Get(ctx, id); err != nil {
				return nil, false, err
			}
		}
		if !sameJSON(stored.Input, input) {
			return stored, false, fmt.Errorf("%w (operation %s)", ErrIdempotencyConflict, id)
		}
		return stored, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if _, err := c.SendPrepared(ctx, msg); err != nil {
		failed, uerr := store.Update(context.WithoutCancel(ctx), id,
			operations.Fail("EnqueueFailed", "sending the operation's message failed: "+redact.All(err.Error()), c.now()))
		if uerr != nil {
			return stored, true, fmt.Errorf("operation %s: sending its message: %w (and marking it failed: %v)", id, err, uerr)
		}
		return failed, true, fmt.Errorf("operation %s: sending its message: %w", id, err)
	}
	return stored, true, nil
}

// sameJSON reports whether a and b are the same JSON text, ignoring
// insignificant whitespace.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// Get returns the operation's record (operations.ErrNotFound).
func (c *Client) Get(ctx context.Context, id string) (*operations.Record, error) {
	store, err := c.store()
	if err != nil {
		return nil, err
	}
	return store.Get(ctx, id)
}

// List returns a page of records.
func (c *Client) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	store, err := c.store()
	if err != nil {
		return nil, err
	}
	return store.List(ctx, q)
}

// Cancel asks for the operation to be cancelled (operations.Cancel): one
// not yet started ends Canceled at once, a running one goes to Canceling
// and Options.OnCancel is told, so an in-process host stops it at once.
func (c *Client) Cancel(ctx context.Context, id string) (*operations.Record, error) {
	store, err := c.store()
	if err != nil {
		return nil, err
	}
	rec, err := store.Update(ctx, id, operations.Cancel(c.now()))
	if err != nil {
		return rec, err
	}
	if rec.Status == operations.Canceling && c.opts.OnCancel != nil {
		c.opts.OnCancel(id)
	}
	return rec, nil
}

// Wait polls the record, 100 ms apart at first and up to 1 s apart, until
// it is completed, and returns it; when ctx ends first it returns the
// record as last read with ctx's error.
func (c *Client) Wait(ctx context.Context, id string) (*operations.Record, error) {
	store, err := c.store()
	if err != nil {
		return nil, err
	}
	delay := 100 * time.Millisecond
	var rec *operations.Record
	for {
		r, err := store.Get(ctx, id)
		switch {
		case err == nil:
			rec = r
			if rec.Status.Final() {
				return rec, nil
			}
		case ctx.Err() != nil:
			return rec, ctx.Err()
		default:
			return rec, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return rec, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}
