package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// PoisonAdmin administers a queue's poison messages in the poison table
// (triggers.PoisonAdmin), on the pool shared for its DSN.
type PoisonAdmin struct {
	source, poison string
	t              tables
	q              queries
	sc             *shared
	closed         atomic.Bool
	once           sync.Once
}

var _ triggers.PoisonAdmin = (*PoisonAdmin)(nil)

// OpenPoison returns the poison administration of queue (its poison
// destination is o.PoisonQueue, default "<queue>-poison") in the database
// at dsn. It does not connect until used; it never creates tables.
func OpenPoison(ctx context.Context, dsn, queue string, o Options) (*PoisonAdmin, error) {
	if err := checkQueue(queue); err != nil {
		return nil, err
	}
	poison := o.PoisonQueue
	if poison == "" {
		poison = queue + PoisonSuffix
	}
	if err := checkQueue(poison); err != nil {
		return nil, fmt.Errorf("%w (the poison queue)", err)
	}
	t, err := newTables(o.Schema)
	if err != nil {
		return nil, err
	}
	sc, err := acquire(dsn)
	if err != nil {
		return nil, err
	}
	return &PoisonAdmin{source: queue, poison: poison, t: t, q: newQueries(t), sc: sc}, nil
}

// Source names the source queue.
func (p *PoisonAdmin) Source() string { return "queue " + p.source }

// Poison names the poison destination.
func (p *PoisonAdmin) Poison() string {
	return fmt.Sprintf("queue %s (table %s)", p.poison, poisonDisplay(p.t))
}

// Close releases the administration's share of the pool; it is
// idempotent.
func (p *PoisonAdmin) Close() error {
	p.once.Do(func() {
		p.closed.Store(true)
		p.sc.release()
	})
	return nil
}

func (p *PoisonAdmin) fail(op string, err error) error {
	if p.sc.missing(p.t, err) {
		return fmt.Errorf("postgres: %s %s: %w", op, p.Poison(), notMigrated("table "+poisonDisplay(p.t)+" does not exist"))
	}
	return fmt.Errorf("postgres: %s %s on %s: %w", op, p.Poison(), p.sc.display, p.sc.scrub(err))
}

func (p *PoisonAdmin) check(op string) error {
	if p.closed.Load() {
		return fmt.Errorf("postgres: %s %s: poison administration %w", op, p.Poison(), triggers.ErrClosed)
	}
	return nil
}

// Count returns how many poison messages the queue has; exists is false
// when the tables do not exist (nothing can have been poisoned).
func (p *PoisonAdmin) Count(ctx context.Context) (int, bool, error) {
	if err := p.check("count"); err != nil {
		return 0, false, err
	}
	var n int
	if err := p.sc.pool.QueryRow(ctx, p.q.poisonCount, p.poison).Scan(&n); err != nil {
		if isMissing(err) {
			p.sc.missing(p.t, err)
			return 0, false, nil
		}
		return 0, false, p.fail("count", err)
	}
	return n, true, nil
}

// List returns up to n poison messages, oldest first, without removing
// them.
func (p *PoisonAdmin) List(ctx context.Context, n int) ([]*triggers.PoisonMessage, error) {
	if err := p.check("list"); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	rows, err := p.sc.pool.Query(ctx, p.q.poisonList, p.poison, n)
	if err != nil {
		if isMissing(err) {
			p.sc.missing(p.t, err)
			return nil, nil
		}
		return nil, p.fail("list", err)
	}
	defer rows.Close()
	var out []*triggers.PoisonMessage
	for rows.Next() {
		m, err := scanPoison(rows.Scan)
		if err != nil {
			return nil, p.fail("list", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, p.fail("list", err)
	}
	return out, nil
}

// scanPoison reads id, attempts, poisoned_at, body, props, reason.
func scanPoison(scan func(...any) error, more ...any) (*triggers.PoisonMessage, error) {
	var (
		id          int64
		attempts    int64
		at          time.Time
		body, props []byte
		reason      string
	)
	if err := scan(append([]any{&id, &attempts, &at, &body, &props, &reason}, more...)...); err != nil {
		return nil, err
	}
	return &triggers.PoisonMessage{
		ID:            strconv.FormatInt(id, 10),
		DequeueCount:  attempts,
		InsertionTime: at,
		Body:          body,
		Properties:    decodeProps(props),
		Reason:        reason,
	}, nil
}

// Requeue moves poison messages back to the source queue, each in one
// statement that inserts the copy (attempts 0, enqueued now, body and
// properties unchanged) and deletes the poison row: both or neither, so
// nothing is lost or duplicated. With id it moves that message; else up
// to limit of the oldest.
func (p *PoisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(m *triggers.PoisonMessage, err error)) (bool, error) {
	if err := p.check("requeue from"); err != nil {
		return false, err
	}
	if id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return false, nil // no such id
		}
		m, err := p.requeueOne(ctx, &n)
		if err != nil {
			if m == nil {
				m = &triggers.PoisonMessage{ID: id}
			}
			done(m, err)
			return true, nil
		}
		if m == nil {
			return false, nil
		}
		done(m, nil)
		return true, nil
	}
	for range limit {
		m, err := p.requeueOne(ctx, nil)
		if err != nil {
			return false, err
		}
		if m == nil {
			break
		}
		done(m, nil)
	}
	return false, nil
}

// requeueOne moves the message whose id is *id (nil: the oldest); nil
// when there is none.
func (p *PoisonAdmin) requeueOne(ctx context.Context, id *int64) (*triggers.PoisonMessage, error) {
	var newID, notified int64
	m, err := scanPoison(p.sc.pool.QueryRow(ctx, p.q.requeue, p.poison, id, p.source, Channel(p.source)).Scan, &newID, &notified)
	if errors.Is(err, errNoRows) {
		return nil, nil
	}
	if err != nil {
		if isMissing(err) {
			p.sc.missing(p.t, err)
			return nil, nil
		}
		return nil, p.fail("requeue from", err)
	}
	return m, nil
}

// Purge deletes up to limit poison messages, oldest first, and returns
// how many.
func (p *PoisonAdmin) Purge(ctx context.Context, limit int) (int, error) {
	if err := p.check("purge"); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	ct, err := p.sc.pool.Exec(ctx, p.q.purge, p.poison, limit)
	if err != nil {
		if isMissing(err) {
			p.sc.missing(p.t, err)
			return 0, nil
		}
		return 0, p.fail("purge", err)
	}
	return int(ct.RowsAffected()), nil
}
