// Package memstore is an operations.Store in memory, for tests and for a
// host that runs in one process: records live in a map under a mutex and
// are gone when the process ends.
//
// Records go in and come out as copies. Version is a counter the store
// increments on each write, and Update is optimistic as the other stores
// are: it applies the change outside the lock and writes only if the
// version it read is still the stored one, otherwise it reads again.
//
// Ids are UUIDs in their canonical form (what operations.NewID and
// operations.IdempotentID return). List orders records by ID, and its
// cursor is the last ID of the page before.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobhost/jobhost/operations"
)

// ErrClosed is returned by every method but Close after Close.
var ErrClosed = errors.New("memstore: store is closed")

// Options configure a Store.
type Options struct {
	// TimeToLive is how long a record is kept after it is created, when it
	// has no ExpiresOn of its own; 0 means operations.DefaultTimeToLive.
	TimeToLive time.Duration
	// Now is the store's clock; nil means time.Now.
	Now func() time.Time
}

// Store is an operations.Store in memory. Its methods are safe for
// concurrent use.
type Store struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	records map[string]*operations.Record // never changed in place: a write replaces the record
	version uint64                        // the last Version given
	closed  bool
}

var _ operations.Store = (*Store)(nil)

// New returns an empty store.
func New(o Options) *Store {
	s := &Store{ttl: o.TimeToLive, now: o.Now, records: make(map[string]*operations.Record)}
	if s.ttl <= 0 {
		s.ttl = operations.DefaultTimeToLive
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// clock returns the store's time, in UTC.
func (s *Store) clock() time.Time { return s.now().UTC() }

// checkID reports an id that is not a canonical UUID.
func checkID(what, id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return fmt.Errorf("memstore: %s %q is not an operation id (a UUID such as operations.NewID returns)", what, id)
	}
	return nil
}

// expired reports whether r has expired at now.
func expired(r *operations.Record, now time.Time) bool { return r.ExpiresOn.Before(now) }

// stored returns a copy of r fit to store: its own bytes, its times in UTC
// (without monotonic readings), and a new version.
func (s *Store) stored(r *operations.Record) *operations.Record {
	c := r.Clone()
	for _, t := range []*time.Time{&c.StartTime, &c.EndTime, &c.CreatedOn, &c.LastUpdated, &c.ExpiresOn} {
		if t.IsZero() {
			*t = time.Time{}
		} else {
			*t = t.UTC()
		}
	}
	s.version++
	c.Version = strconv.FormatUint(s.version, 10)
	return c
}

func notFound(id string) error { return fmt.Errorf("%w: %s", operations.ErrNotFound, id) }

// Create stores a new record, setting CreatedOn and LastUpdated to now and
// ExpiresOn, when r has none, to CreatedOn plus the time to live. If the id
// is taken by a record that has not expired, it returns that record and an
// error wrapping operations.ErrExists; an expired record, which Get no
// longer finds, is replaced.
func (s *Store) Create(ctx context.Context, r *operations.Record) (*operations.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("memstore: Create of a nil record")
	}
	if err := checkID("id", r.ID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	now := s.clock()
	if old, ok := s.records[r.ID]; ok && !expired(old, now) {
		return old.Clone(), fmt.Errorf("%w: %s", operations.ErrExists, r.ID)
	}
	c := r.Clone()
	c.CreatedOn, c.LastUpdated = now, now
	if c.ExpiresOn.IsZero() {
		c.ExpiresOn = now.Add(s.ttl)
	}
	c = s.stored(c)
	s.records[c.ID] = c
	return c.Clone(), nil
}

// Get returns a copy of the record, or an error wrapping
// operations.ErrNotFound when there is none or it has expired.
func (s *Store) Get(ctx context.Context, id string) (*operations.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := s.read(id)
	if err != nil {
		return nil, err
	}
	return r.Clone(), nil
}

// read returns the stored record (not a copy: stored records are never
// changed in place).
func (s *Store) read(id string) (*operations.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	r, ok := s.records[id]
	if !ok || expired(r, s.clock()) {
		return nil, notFound(id)
	}
	return r, nil
}

// Update applies change to a copy of the stored record and, when it
// reports a change, stores the copy with LastUpdated set to now, unless
// another write came in between: then it applies change again to the new
// record. It returns the record as stored afterwards. An error from change
// is returned as it is, with the record as stored; nothing is written. An
// unknown or expired id is operations.ErrNotFound, and change is not
// called.
func (s *Store) Update(ctx context.Context, id string, change operations.Change) (*operations.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cur, err := s.read(id)
		if err != nil {
			return nil, err
		}
		next := cur.Clone()
		changed, err := change(next)
		if err != nil {
			return cur.Clone(), err
		}
		if !changed {
			return cur.Clone(), nil
		}
		if out, ok, err := s.write(cur, next); err != nil || ok {
			return out, err
		}
	}
}

// write stores next in place of cur if cur is still the stored record. It
// reports false when another write came in between.
func (s *Store) write(cur, next *operations.Record) (*operations.Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	if latest, ok := s.records[cur.ID]; !ok || latest.Version != cur.Version {
		return nil, false, nil // written or purged since: read again
	}
	// The id and creation time are the store's, whatever the change did.
	next.ID, next.CreatedOn = cur.ID, cur.CreatedOn
	next.LastUpdated = s.clock()
	c := s.stored(next)
	s.records[c.ID] = c
	return c.Clone(), true, nil
}

// List returns a page of the unexpired records q selects, ordered by ID.
// Next is the last ID of the page when more records follow; a Cursor that
// is not an id is an error.
func (s *Store) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if q.Cursor != "" {
		if err := checkID("cursor", q.Cursor); err != nil {
			return nil, fmt.Errorf("%w: %w", operations.ErrInvalidCursor, err)
		}
	}
	size := q.PageSize()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	now := s.clock()
	var match []*operations.Record
	for _, r := range s.records {
		if r.ID > q.Cursor && !expired(r, now) && q.Matches(r) {
			match = append(match, r)
		}
	}
	s.mu.Unlock()

	slices.SortFunc(match, func(a, b *operations.Record) int { return cmp.Compare(a.ID, b.ID) })
	p := &operations.Page{}
	if len(match) > size {
		match = match[:size]
		p.Next = match[size-1].ID
	}
	p.Records = make([]*operations.Record, len(match))
	for i, r := range match {
		p.Records[i] = r.Clone()
	}
	return p, nil
}

// Purge deletes at most limit records that expired before now, those that
// expired first first, and returns how many it deleted. A limit below 1 is
// an error.
func (s *Store) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if limit < 1 {
		return 0, fmt.Errorf("memstore: Purge limit %d, want at least 1", limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	var old []*operations.Record
	for _, r := range s.records {
		if expired(r, now) {
			old = append(old, r)
		}
	}
	slices.SortFunc(old, func(a, b *operations.Record) int {
		return cmp.Or(a.ExpiresOn.Compare(b.ExpiresOn), cmp.Compare(a.ID, b.ID))
	})
	old = old[:min(limit, len(old))]
	for _, r := range old {
		delete(s.records, r.ID)
	}
	return len(old), nil
}

// Close releases the records. It is idempotent; the other methods return
// ErrClosed after it.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.records = nil
	return nil
}
