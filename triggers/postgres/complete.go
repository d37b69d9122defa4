package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

const (
	// maxCompleteBatch bounds the messages one DELETE completes.
	maxCompleteBatch = 128
	// completeTimeout bounds one batch's DELETE.
	completeTimeout = 30 * time.Second
)

// completer coalesces the Completes of a driver: while one DELETE runs,
// the Completes that arrive wait and go together in the next, so N
// concurrent Completes cost one round trip, not N, and none waits for a
// timer (group commit). Each Complete still returns only once its row is
// deleted (or found lost).
type completer struct {
	d       *Driver
	mu      sync.Mutex
	pending []*completion
	running bool       // a batch runner is under way
	idle    *sync.Cond // on mu: broadcast when running ends
}

func newCompleter(d *Driver) *completer {
	c := &completer{d: d}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// completion is one Complete waiting for its batch.
type completion struct {
	id    int64
	token pgtype.UUID
	done  chan completionResult
}

type completionResult struct {
	deleted bool
	err     error
}

// complete deletes the row of id leased with token; deleted is false
// when no such row was there (the lease was lost).
func (c *completer) complete(ctx context.Context, id int64, token pgtype.UUID) (bool, error) {
	r := &completion{id: id, token: token, done: make(chan completionResult, 1)}
	c.mu.Lock()
	c.pending = append(c.pending, r)
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case res := <-r.done:
		return res.deleted, res.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// run deletes batches until none is pending.
func (c *completer) run() {
	for {
		c.mu.Lock()
		n := min(len(c.pending), maxCompleteBatch)
		if n == 0 {
			c.running = false
			c.idle.Broadcast()
			c.mu.Unlock()
			return
		}
		batch := c.pending[:n:n]
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		c.mu.Unlock()
		c.delete(batch)
	}
}

func (c *completer) delete(batch []*completion) {
	ids := make([]int64, len(batch))
	tokens := make([]pgtype.UUID, len(batch))
	for i, r := range batch {
		ids[i], tokens[i] = r.id, r.token
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	deleted := map[int64]bool{}
	rows, err := c.d.sc.pool.Query(ctx, c.d.q.complete, ids, tokens)
	if err == nil {
		for rows.Next() {
			var id int64
			if err = rows.Scan(&id); err != nil {
				break
			}
			deleted[id] = true
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	for _, r := range batch {
		if err != nil {
			r.done <- completionResult{err: err}
			continue
		}
		r.done <- completionResult{deleted: deleted[r.id]}
		delete(deleted, r.id) // a second Complete of one delivery finds it gone
	}
}

// wait returns when no batch is under way.
func (c *completer) wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.running {
		c.idle.Wait()
	}
}
