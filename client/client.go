// Package client is the caller's half of jobhost, for a web app or any
// program that hands work to functions: it sends typed values to a
// function's queue (Storage Queue or any trigger URL) encoded as the host
// expects, and submits, reads, lists and cancels background operations.
// It needs no running host.
//
// It is the one implementation of sending: the host's output bindings and
// the CLI's send go through it too, so a message from a web app is
// resolved (%Setting%, connections), encoded (messageEncoding: base64 on
// Storage Queues by default) and checked (the 64 KiB Storage Queue limit,
// XML text under encoding none) exactly as theirs, before anything is sent.
//
// # In a web app
//
// Build the options from the worker's configuration and functions, so the
// client knows every function's queue, encoding and argument type:
//
//	settings, err := runtime.LoadAppSettings(os.Environ(), "local.settings.json", false)
//	cfg, err := runtime.LoadConfig("host.json", false, settings)
//	opts, err := runtime.ClientOptions(cfg, settings, functions.Default)
//	opts.Store = store // an operations.Store, for Submit, Get, List, Cancel, Wait
//	c, err := client.New(opts)
//	defer c.Close()
//
// then, in a handler, send a value to a function by its Ref (the compiler
// checks the value is the function's argument type) or start a background
// operation:
//
//	id, err := client.Enqueue(r.Context(), c, worker.ProcessOrder, order, client.Delay(time.Minute))
//	rec, err := client.Start(r.Context(), c, worker.ProcessOrder, order, client.SubmitOptions{IdempotencyKey: key})
//
// An error for which Unsendable is true is the caller's (400); others are
// the broker's (503, try again). A program that shares only the argument
// type sends with NewQueue[T] to a queue name or URL, or builds Options by
// hand (Lookup, Functions). See Example (webApp).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// ErrUnknownFunction: Submit named a function the client does not know.
var ErrUnknownFunction = errors.New("unknown function")

// ErrDelayUnsupported: a delay was asked of a broker that cannot delay a
// message.
var ErrDelayUnsupported = errors.New("the broker cannot delay a message")

// ErrIdempotencyConflict: Submit was given an idempotency key used before
// with a different input.
var ErrIdempotencyConflict = errors.New("idempotency key reused with a different input")

// InputError says why an input does not fit the function's argument type.
type InputError struct {
	// Field is the JSON path of the offending field ("address.zip"), ""
	// when the input as a whole is wrong.
	Field string
	// Reason says what is wrong.
	Reason string
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return "input: " + e.Reason
	}
	return "input field " + e.Field + ": " + e.Reason
}

// TooLargeError: the message is over the destination's size limit.
type TooLargeError struct {
	// Size is the message's size after encoding; Limit the most allowed.
	Size, Limit int
	// Queue is the destination as displayed (secrets removed).
	Queue string
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the message to %s is %d bytes after encoding; at most %d are allowed", e.Queue, e.Size, e.Limit)
}

// Submission asks for one background operation.
type Submission struct {
	// Function names the function to run.
	Function string
	// Input is the function's input as JSON.
	Input json.RawMessage
	// RunAs names the caller (a key's name); "" for the admin.
	RunAs string
	// CallbackURL is POSTed to when the operation completes ("" none).
	CallbackURL string
	// IdempotencyKey makes a repeat return the first operation instead of
	// queueing a second ("" none).
	IdempotencyKey string
	// TimeToLive overrides how long the record is kept (0: the store's).
	TimeToLive time.Duration
}

// Operations is what the client offers for background operations; the HTTP
// API serves it.
type Operations interface {
	// Submit validates the input against the function's argument type
	// (*InputError, *TooLargeError, ErrUnknownFunction), writes the record,
	// then sends the message. created is false when an idempotency key
	// found an earlier operation: nothing was sent.
	Submit(ctx context.Context, s Submission) (rec *operations.Record, created bool, err error)
	// Get returns a record (operations.ErrNotFound).
	Get(ctx context.Context, id string) (*operations.Record, error)
	// List returns a page of records.
	List(ctx context.Context, q operations.Query) (*operations.Page, error)
	// Cancel asks for an operation to be cancelled and returns the record
	// after the change (operations.ErrCompleted, operations.ErrNotFound).
	Cancel(ctx context.Context, id string) (*operations.Record, error)
	// Wait returns the record once it is completed, or as it is when ctx
	// ends (with ctx's error).
	Wait(ctx context.Context, id string) (*operations.Record, error)
	// Functions lists the functions that can be submitted to.
	Functions() []string
}
