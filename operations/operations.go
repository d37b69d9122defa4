// Package operations holds background operation records, as Dataverse's
// background operations and Durable Functions' instances keep them: what a
// caller asked a function to do, and what became of it. The host keeps a
// record true while the operation's message is processed; callers read it
// through the client, the HTTP API or the CLI.
//
// A Store keeps records. Stores live in their own packages (memstore,
// tablestore, pgstore) and pass the storetest conformance suite. The rules
// of how a record may change (never backwards; Canceling ends Canceled)
// live here, in the Change functions, so every store applies the same ones:
// a store only reads, writes conditionally and retries.
package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is a record's state code, as Dataverse numbers it.
type State int

// States.
const (
	Ready     State = 0
	Locked    State = 2
	Completed State = 3
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Ready:
		return "Ready"
	case Locked:
		return "Locked"
	case Completed:
		return "Completed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is a record's status code, as Dataverse numbers it.
type Status int

// Statuses.
const (
	WaitingForResources Status = 0
	InProgress          Status = 20
	Canceling           Status = 22
	Succeeded           Status = 30
	Failed              Status = 31
	Canceled            Status = 32
)

// Statuses lists every status in the order an operation goes through them.
var Statuses = []Status{WaitingForResources, InProgress, Canceling, Succeeded, Failed, Canceled}

// String returns the status's name ("InProgress").
func (s Status) String() string {
	switch s {
	case WaitingForResources:
		return "WaitingForResources"
	case InProgress:
		return "InProgress"
	case Canceling:
		return "Canceling"
	case Succeeded:
		return "Succeeded"
	case Failed:
		return "Failed"
	case Canceled:
		return "Canceled"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// State returns the state a status belongs to.
func (s Status) State() State {
	switch s {
	case InProgress, Canceling:
		return Locked
	case Succeeded, Failed, Canceled:
		return Completed
	}
	return Ready
}

// Final reports whether s is a completed status: nothing changes it.
func (s Status) Final() bool { return s.State() == Completed }

// rank orders statuses: a record's rank never falls.
func (s Status) rank() int {
	switch s {
	case WaitingForResources:
		return 0
	case InProgress:
		return 1
	case Canceling:
		return 2
	}
	return 3
}

// ParseStatus reads a status by name (case-insensitive) or code.
func ParseStatus(v string) (Status, error) {
	for _, s := range Statuses {
		if strings.EqualFold(v, s.String()) || v == fmt.Sprint(int(s)) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown status %q (one of WaitingForResources, InProgress, Canceling, Succeeded, Failed, Canceled, or their codes 0, 20, 22, 30, 31, 32)", v)
}

// Limits on what a record holds.
const (
	// MaxProgress is the largest progress value, encoded (as Durable
	// Functions' custom status).
	MaxProgress = 16 << 10
	// MaxOutput is the largest output kept; a larger one is replaced by an
	// error note (the function still succeeds).
	MaxOutput = 512 << 10
	// MaxInput is the largest input kept.
	MaxInput = 512 << 10
	// DefaultTimeToLive is how long a record is kept after it is created
	// (Dataverse's default).
	DefaultTimeToLive = 90 * 24 * time.Hour
)

// Record is one background operation.
type Record struct {
	// ID identifies the operation (see NewID).
	ID string `json:"id"`
	// Name is the function that runs it.
	Name string `json:"name"`
	// Status is where it is; its State follows from it.
	Status Status `json:"status"`
	// Input is the function's input as submitted (JSON).
	Input json.RawMessage `json:"input,omitempty"`
	// Output is the function's return value once it succeeded (JSON).
	Output json.RawMessage `json:"output,omitempty"`
	// Progress is the last value the function reported (JSON, at most
	// MaxProgress bytes).
	Progress json.RawMessage `json:"progress,omitempty"`
	// StartTime is when its first attempt started; EndTime when it
	// completed.
	StartTime time.Time `json:"startTime,omitzero"`
	EndTime   time.Time `json:"endTime,omitzero"`
	// Attempt is the number of the latest attempt (1 for the first);
	// RetryCount is Attempt-1.
	Attempt int `json:"attempt"`
	// ErrorCode and ErrorMessage say why it failed (or why its last
	// attempt did).
	ErrorCode    string `json:"errorCode,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
	// RunAs is the caller that submitted it (the key's name); "" for the
	// admin or an unauthenticated local caller.
	RunAs string `json:"runAs,omitempty"`
	// CallbackURL is POSTed to when it completes.
	CallbackURL string `json:"callbackUrl,omitempty"`
	// IdempotencyKey is the caller's key, when it gave one.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// CreatedOn and LastUpdated are set by Create and each write.
	CreatedOn   time.Time `json:"createdOn"`
	LastUpdated time.Time `json:"lastUpdated"`
	// ExpiresOn is when the record may be purged (CreatedOn + time to live).
	ExpiresOn time.Time `json:"expiresOn"`
	// Version is the store's concurrency token; callers do not set it.
	Version string `json:"-"`
}

// State returns the record's state.
func (r *Record) State() State { return r.Status.State() }

// RetryCount returns how many attempts were retries.
func (r *Record) RetryCount() int { return max(r.Attempt-1, 0) }

// Clone returns a deep copy.
func (r *Record) Clone() *Record {
	c := *r
	c.Input = clone(r.Input)
	c.Output = clone(r.Output)
	c.Progress = clone(r.Progress)
	return &c
}

func clone(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

// Errors stores return (wrapped or as they are).
var (
	// ErrNotFound: no record of that id, or it has expired.
	ErrNotFound = errors.New("operation not found")
	// ErrExists: Create was given an id that is taken.
	ErrExists = errors.New("operation exists")
	// ErrCompleted: the change is refused because the operation completed
	// (cancelling a succeeded operation).
	ErrCompleted = errors.New("operation already completed")
	// ErrInvalidCursor: List was given a cursor no List returned.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrNotMigrated: the store's schema is missing or older than this
	// build's ("jobhost operations migrate" applies it).
	ErrNotMigrated = errors.New("operations store not migrated")
)

// Change is one change to a record: it edits r in place and reports
// whether anything changed (false: nothing is written). An error aborts
// the update and is returned by Store.Update as it is. A Change may be
// called more than once (after a conflicting write), each time on a fresh
// copy of the stored record.
type Change func(r *Record) (changed bool, err error)

// Query selects records for List. Zero fields select everything.
type Query struct {
	// Name selects one function's records (exact match).
	Name string
	// Status selects records in one of these statuses.
	Status []Status
	// Since selects records created at or after it.
	Since time.Time
	// RunAs selects one caller's records; AnyCaller (the default) all.
	RunAs *string
	// Limit is the page size: 1..MaxPage; 0 means DefaultPage.
	Limit int
	// Cursor continues from the page that returned it as Next.
	Cursor string
}

// Page sizes.
const (
	DefaultPage = 50
	MaxPage     = 1000
)

// Page is one page of List.
type Page struct {
	// Records are ordered by ID.
	Records []*Record
	// Next is the cursor of the next page, "" when this is the last.
	Next string
}

// Store keeps operation records. Methods are safe for concurrent use.
//
// Contract (checked by storetest):
//   - Create stores a new record, setting CreatedOn and LastUpdated to now
//     and ExpiresOn to CreatedOn + the store's time to live when the record
//     has none; it returns the record as stored. If the id is taken it
//     returns the stored record and an error wrapping ErrExists, and
//     changes nothing.
//   - Get returns a copy of the record, or ErrNotFound when there is none
//     or it expired (ExpiresOn before now), purged or not.
//   - Update applies change to a copy of the stored record and, when it
//     reports a change, writes it only if no other write came in between
//     (optimistic concurrency: an ETag, a version column); on a conflict it
//     reads again and applies change again. It sets LastUpdated and returns
//     the record as stored afterwards (unchanged when change wrote
//     nothing). ErrNotFound as for Get.
//   - List returns a page of unexpired records matching q, ordered by ID,
//     and a cursor for the next page; a cursor it did not return is an
//     error wrapping ErrInvalidCursor.
//   - Purge deletes at most limit records that expired before now and
//     returns how many it deleted; a sweep calls it until it returns fewer
//     than limit.
//   - Close releases the store; it is idempotent.
//
// A store error other than those above (the server unreachable) is
// returned as it is: the host retries its writes, never its messages.
type Store interface {
	Create(ctx context.Context, r *Record) (*Record, error)
	Get(ctx context.Context, id string) (*Record, error)
	Update(ctx context.Context, id string, change Change) (*Record, error)
	List(ctx context.Context, q Query) (*Page, error)
	Purge(ctx context.Context, now time.Time, limit int) (int, error)
	Close() error
}

// Matches reports whether r is selected by q (ignoring Limit and Cursor):
// stores that filter in memory use it.
func (q *Query) Matches(r *Record) bool {
	if q.Name != "" && r.Name != q.Name {
		return false
	}
	if len(q.Status) > 0 {
		found := false
		for _, s := range q.Status {
			found = found || s == r.Status
		}
		if !found {
			return false
		}
	}
	if !q.Since.IsZero() && r.CreatedOn.Before(q.Since) {
		return false
	}
	if q.RunAs != nil && r.RunAs != *q.RunAs {
		return false
	}
	return true
}

// PageSize returns q.Limit bounded to 1..MaxPage (DefaultPage for 0).
func (q *Query) PageSize() int {
	switch {
	case q.Limit <= 0:
		return DefaultPage
	case q.Limit > MaxPage:
		return MaxPage
	}
	return q.Limit
}
