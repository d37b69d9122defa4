package operations

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// NewID returns a new operation id: a UUID v7, so ids sort by creation
// time.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// idempotencyNamespace scopes IdempotentID's name-based UUIDs.
var idempotencyNamespace = uuid.MustParse("6f1d2a8e-54c3-4b7e-9a0f-3c2b1d4e5f60")

// IdempotentID returns the id of the operation a caller submits to a
// function under an idempotency key: the same three give the same id (a
// UUID v5), so a repeat finds the first record instead of making a second.
func IdempotentID(runAs, name, key string) string {
	return uuid.NewSHA1(idempotencyNamespace, []byte(fmt.Sprintf("%d:%s|%d:%s|%s", len(runAs), runAs, len(name), name, key))).String()
}

// The Changes below are the only ways the host and the API change a record.
// None moves a record backwards: a late Started after Succeeded, or a
// second Cancel, writes nothing.

// Started records that attempt (1 for the first) began at now. A record
// in Canceling becomes Canceled instead (the host then completes the
// message without running it); a completed one, or one already at this
// attempt or a later one, is left as it is.
func Started(attempt int, now time.Time) Change {
	return func(r *Record) (bool, error) {
		switch {
		case r.Status.Final():
			return false, nil
		case r.Status == Canceling:
			r.Status, r.EndTime = Canceled, now
			return true, nil
		case r.Status == InProgress && attempt <= r.Attempt:
			return false, nil
		}
		r.Status, r.Attempt = InProgress, attempt
		if r.StartTime.IsZero() {
			r.StartTime = now
		}
		return true, nil
	}
}

// AttemptFailed records why an attempt failed when it will be retried.
func AttemptFailed(attempt int, message string) Change {
	return func(r *Record) (bool, error) {
		if r.Status.Final() || r.Status == Canceling || attempt < r.Attempt {
			return false, nil
		}
		r.Attempt = max(r.Attempt, attempt)
		r.ErrorCode, r.ErrorMessage = "AttemptFailed", message
		return true, nil
	}
}

// Succeed records the function's output. A record in Canceling ends
// Canceled: a cancelled operation never reports success.
func Succeed(output json.RawMessage, now time.Time) Change {
	return func(r *Record) (bool, error) {
		switch {
		case r.Status.Final():
			return false, nil
		case r.Status == Canceling:
			r.Status, r.EndTime = Canceled, now
			return true, nil
		}
		out := clone(output) // a Change may run again: output stays as given
		if len(out) > MaxOutput {
			r.ErrorCode = "OutputTooLarge"
			r.ErrorMessage = fmt.Sprintf("the output (%d bytes) is larger than the %d a record keeps", len(out), MaxOutput)
			out = nil
		} else {
			r.ErrorCode, r.ErrorMessage = "", ""
		}
		r.Status, r.Output, r.EndTime = Succeeded, out, now
		if r.StartTime.IsZero() {
			r.StartTime = now
		}
		return true, nil
	}
}

// Fail records that the operation failed for good (its message was
// poisoned). A record in Canceling ends Canceled.
func Fail(code, message string, now time.Time) Change {
	return func(r *Record) (bool, error) {
		switch {
		case r.Status.Final():
			return false, nil
		case r.Status == Canceling:
			r.Status, r.EndTime = Canceled, now
			return true, nil
		}
		r.Status, r.EndTime, r.ErrorCode, r.ErrorMessage = Failed, now, code, message
		return true, nil
	}
}

// Cancel asks for the operation to be cancelled: one not yet started is
// Canceled at once (it will never run), a running one goes to Canceling
// (the host holding it cancels it and ends it Canceled). Cancelling a
// cancelled or canceling one changes nothing; a succeeded or failed one is
// ErrCompleted.
func Cancel(now time.Time) Change {
	return func(r *Record) (bool, error) {
		switch r.Status {
		case WaitingForResources:
			r.Status, r.EndTime = Canceled, now
			return true, nil
		case InProgress:
			r.Status = Canceling
			return true, nil
		case Canceling, Canceled:
			return false, nil
		}
		return false, fmt.Errorf("%w: %s", ErrCompleted, r.Status)
	}
}

// EndCanceled ends a running operation that was cancelled: the host calls
// it once the function returned.
func EndCanceled(now time.Time) Change {
	return func(r *Record) (bool, error) {
		if r.Status.Final() {
			return false, nil
		}
		r.Status, r.EndTime = Canceled, now
		return true, nil
	}
}

// SetProgress records the function's progress value (JSON, at most
// MaxProgress bytes) while the operation runs.
func SetProgress(v json.RawMessage) Change {
	return func(r *Record) (bool, error) {
		if len(v) > MaxProgress {
			return false, fmt.Errorf("progress is %d bytes encoded; at most %d are kept", len(v), MaxProgress)
		}
		if r.Status.Final() {
			return false, nil
		}
		r.Progress = clone(v)
		return true, nil
	}
}

// Forward reports whether to may follow from: statuses only move forward.
// Stores need not call it (the Changes keep to it); tests do.
func Forward(from, to Status) bool {
	switch {
	case from.Final():
		return to == from
	case from == Canceling:
		return to == Canceling || to == Canceled
	}
	return to.rank() >= from.rank()
}
