package tablestore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/jobhost/jobhost/operations"
)

// Create stores a new record (see operations.Store). A record of that id
// that has expired but is not yet purged is replaced.
func (s *Store) Create(ctx context.Context, r *operations.Record) (*operations.Record, error) {
	if r == nil {
		return nil, errors.New("tablestore: create: no record")
	}
	now := s.clock()
	rec := r.Clone()
	rec.CreatedOn, rec.LastUpdated = now, now
	if rec.ExpiresOn.IsZero() {
		rec.ExpiresOn = now.Add(s.ttl)
	}
	e, err := encode(rec)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("create %q", rec.ID)
	for attempt := 1; ; attempt++ {
		var resp aztables.AddEntityResponse
		err := s.do(ctx, func() (err error) {
			resp, err = s.client.AddEntity(ctx, e.body, nil)
			return err
		})
		if err == nil {
			return stored(e, resp.ETag), nil
		}
		switch {
		case isTooLarge(err):
			return nil, wrap(op, ErrTooLarge, err)
		case errorCode(err) != string(aztables.EntityAlreadyExists) && statusCode(err) != 409:
			return nil, wrap(op, nil, err)
		}
		// Taken: by a live record (ErrExists), or an expired one, which
		// is replaced as if it were already purged.
		cur, etag, err := s.read(ctx, rec.ID)
		switch {
		case errors.Is(err, operations.ErrNotFound):
			// Purged in between: add again.
		case err != nil:
			return nil, err
		case !cur.ExpiresOn.Before(now):
			return cur, wrap(op, operations.ErrExists, nil)
		default:
			var up aztables.UpdateEntityResponse
			err = s.do(ctx, func() (err error) {
				up, err = s.client.UpdateEntity(ctx, e.body, &aztables.UpdateEntityOptions{IfMatch: &etag, UpdateMode: aztables.UpdateModeReplace})
				return err
			})
			if err == nil {
				return stored(e, up.ETag), nil
			}
			if statusCode(err) != 412 && !isNotFound(err) {
				return nil, wrap(op, nil, err)
			}
		}
		if attempt >= MaxAttempts {
			return nil, wrap(op, ErrConflict, nil)
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, wrap(op, nil, err)
		}
	}
}

// stored returns the record an entity holds, with its new ETag.
func stored(e *entity, etag azcore.ETag) *operations.Record {
	out := e.record.Clone()
	out.Version = string(etag)
	return out
}

// Get returns the record of id (see operations.Store).
func (s *Store) Get(ctx context.Context, id string) (*operations.Record, error) {
	r, _, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.ExpiresOn.Before(s.clock()) {
		return nil, wrap(fmt.Sprintf("get %q", id), operations.ErrNotFound, nil)
	}
	return r, nil
}

// read returns the stored record of id, expired or not, and its ETag.
func (s *Store) read(ctx context.Context, id string) (*operations.Record, azcore.ETag, error) {
	op := fmt.Sprintf("get %q", id)
	if validID(id) != nil {
		return nil, "", wrap(op, operations.ErrNotFound, nil) // no record can have it
	}
	var resp aztables.GetEntityResponse
	err := s.do(ctx, func() (err error) {
		resp, err = s.client.GetEntity(ctx, id, rowKey, nil)
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrClosed):
		return nil, "", err
	case isNotFound(err):
		return nil, "", wrap(op, operations.ErrNotFound, err)
	default:
		return nil, "", wrap(op, nil, err)
	}
	r, _, err := decode(resp.Value)
	if err != nil {
		return nil, "", err
	}
	r.Version = string(resp.ETag)
	return r, resp.ETag, nil
}

// Update applies change to the record of id and writes it if no other
// write came in between, retrying on conflicts (see operations.Store).
func (s *Store) Update(ctx context.Context, id string, change operations.Change) (*operations.Record, error) {
	op := fmt.Sprintf("update %q", id)
	for attempt := 1; ; attempt++ {
		cur, etag, err := s.read(ctx, id)
		if err != nil {
			return nil, err
		}
		now := s.clock()
		if cur.ExpiresOn.Before(now) {
			return nil, wrap(op, operations.ErrNotFound, nil)
		}
		next := cur.Clone()
		changed, err := change(next)
		if err != nil {
			return cur, err
		}
		if !changed {
			return cur, nil
		}
		// The id and creation time are the store's, whatever the change did.
		next.ID, next.CreatedOn, next.LastUpdated = id, cur.CreatedOn, now
		e, err := encodeToFit(cur, next)
		if err != nil {
			return nil, err
		}
		var resp aztables.UpdateEntityResponse
		err = s.do(ctx, func() (err error) {
			resp, err = s.client.UpdateEntity(ctx, e.body, &aztables.UpdateEntityOptions{IfMatch: &etag, UpdateMode: aztables.UpdateModeReplace})
			return err
		})
		switch {
		case err == nil:
			return stored(e, resp.ETag), nil
		case errors.Is(err, ErrClosed):
			return nil, err
		case isNotFound(err):
			return nil, wrap(op, operations.ErrNotFound, err) // purged in between
		case isTooLarge(err):
			return nil, wrap(op, ErrTooLarge, err)
		case statusCode(err) != 412:
			return nil, wrap(op, nil, err)
		}
		if attempt >= MaxAttempts {
			return nil, wrap(op, ErrConflict, nil)
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, wrap(op, nil, err)
		}
	}
}

// maxMessage is what encodeToFit cuts a long error message to.
const maxMessage = 16 << 10

// encodeToFit encodes next, the change of cur. When it does not fit an
// entity it gives up what a change can bring that is too large to keep,
// rather than fail a write the host would retry in vain: a new output (the
// record says OutputTooLarge instead, as operations.Succeed does for
// outputs over MaxOutput), then the tail of a new error message over
// maxMessage bytes.
func encodeToFit(cur, next *operations.Record) (*entity, error) {
	e, err := encode(next)
	if errors.Is(err, ErrTooLarge) && len(next.Output) > 0 && string(next.Output) != string(cur.Output) {
		next.ErrorCode = "OutputTooLarge"
		next.ErrorMessage = fmt.Sprintf("the output (%d bytes) does not fit the operations table's entity beside the rest of the record (input %d bytes); a table entity holds at most 1 MiB",
			len(next.Output), len(next.Input))
		next.Output = nil
		e, err = encode(next)
	}
	if errors.Is(err, ErrTooLarge) && len(next.ErrorMessage) > maxMessage && next.ErrorMessage != cur.ErrorMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(next.ErrorMessage[cut]) {
			cut--
		}
		next.ErrorMessage = next.ErrorMessage[:cut] + fmt.Sprintf(" ... (%d bytes cut: the record did not fit its table entity)", len(next.ErrorMessage)-cut)
		e, err = encode(next)
	}
	return e, err
}

// backoff waits a little (jittered, growing with attempt, at most about
// 50 ms) before a write lost to another is tried again.
func backoff(ctx context.Context, attempt int) error {
	limit := time.Millisecond << min(attempt, 6)
	t := time.NewTimer(rand.N(limit) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cursorPrefix versions cursors: a cursor is base64url("1:" + last id).
const cursorPrefix = "1:"

func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	id, ok := strings.CutPrefix(string(b), cursorPrefix)
	if err != nil || !ok || id == "" || !utf8.ValidString(id) {
		return "", fmt.Errorf("%w %q: pass the Next of a previous page", ErrBadCursor, c)
	}
	return id, nil
}

// filter returns the OData filter selecting q's unexpired records at now,
// after the cursor's id.
func filter(q operations.Query, now time.Time, after string) string {
	parts := []string{
		"RowKey eq " + quote(rowKey),
		"ExpiresOn ge datetime'" + formatTime(ceil(now)) + "'",
	}
	if after != "" {
		parts = append(parts, "PartitionKey gt "+quote(after))
	}
	if q.Name != "" {
		parts = append(parts, "Name eq "+quote(q.Name))
	}
	if len(q.Status) > 0 {
		var or []string
		for _, st := range q.Status {
			or = append(or, "Status eq "+strconv.Itoa(int(st)))
		}
		parts = append(parts, "("+strings.Join(or, " or ")+")")
	}
	if q.Since.After(minTime) { // every stored time is later than minTime
		parts = append(parts, "CreatedOn ge datetime'"+formatTime(ceil(q.Since))+"'")
	}
	if q.RunAs != nil {
		parts = append(parts, "RunAs eq "+quote(*q.RunAs))
	}
	return strings.Join(parts, " and ")
}

// List returns a page of unexpired records matching q, in id order (see
// operations.Store).
func (s *Store) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	after := ""
	if q.Cursor != "" {
		var err error
		if after, err = decodeCursor(q.Cursor); err != nil {
			return nil, err
		}
	}
	size := q.PageSize()
	now := s.clock()
	page := &operations.Page{Records: []*operations.Record{}}
	more := false
	err := s.do(ctx, func() error {
		page.Records, more = page.Records[:0], false
		f := filter(q, now, after)
		top := int32(size)
		pager := s.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &f, Top: &top})
		for pager.More() && len(page.Records) < size {
			resp, err := pager.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, body := range resp.Entities {
				if len(page.Records) == size {
					more = true
					break
				}
				r, etag, err := decode(body)
				if err != nil {
					return err
				}
				r.Version = etag
				page.Records = append(page.Records, r)
			}
		}
		if len(page.Records) == size && !more && pager.More() {
			// A continuation does not promise another record: look.
			last := page.Records[size-1].ID
			var err error
			more, err = s.exists(ctx, filter(q, now, last))
			return err
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, wrap("list", nil, err)
	}
	if more {
		page.Next = encodeCursor(page.Records[len(page.Records)-1].ID)
	}
	return page, nil
}

// exists reports whether any entity matches f.
func (s *Store) exists(ctx context.Context, f string) (bool, error) {
	top, sel := int32(1), "PartitionKey"
	pager := s.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &f, Top: &top, Select: &sel})
	for pager.More() {
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return false, err
		}
		if len(resp.Entities) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// purgeWorkers is how many deletes Purge has in flight.
const purgeWorkers = 8

// Purge deletes at most limit records that expired before now (see
// operations.Store). A record rewritten or already deleted since it was
// found is not counted.
func (s *Store) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return 0, ErrClosed
		}
		return 0, nil
	}
	type key struct {
		id   string
		etag azcore.ETag
	}
	var found []key
	err := s.do(ctx, func() error {
		found = found[:0]
		f := "RowKey eq " + quote(rowKey) + " and ExpiresOn lt datetime'" + formatTime(ceil(now)) + "'"
		top, sel := int32(min(limit, operations.MaxPage)), "PartitionKey,RowKey,ExpiresOn"
		pager := s.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &f, Top: &top, Select: &sel})
		for pager.More() && len(found) < limit {
			resp, err := pager.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, body := range resp.Entities {
				r, etag, err := decode(body)
				if err != nil {
					return err
				}
				if len(found) < limit {
					found = append(found, key{r.ID, azcore.ETag(etag)})
				}
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return 0, err
		}
		return 0, wrap("purge", nil, err)
	}
	var (
		mu       sync.Mutex
		deleted  int
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan key)
	)
	for range min(purgeWorkers, len(found)) {
		wg.Go(func() {
			for k := range next {
				etag := k.etag
				if etag == "" {
					etag = azcore.ETagAny
				}
				_, err := s.client.DeleteEntity(ctx, k.id, rowKey, &aztables.DeleteEntityOptions{IfMatch: &etag})
				mu.Lock()
				switch {
				case err == nil:
					deleted++
				case isNotFound(err), statusCode(err) == 412:
					// Gone already, or rewritten: not ours to count.
				case firstErr == nil:
					firstErr = wrap(fmt.Sprintf("purge %q", k.id), nil, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, k := range found {
		next <- k
	}
	close(next)
	wg.Wait()
	return deleted, firstErr
}
