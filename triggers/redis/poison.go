package redis

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
)

// pageSize is how many poison entries Requeue and Purge read at a time.
const pageSize = 100

// poisonAdmin is the triggers.PoisonAdmin of a stream's poison stream.
type poisonAdmin struct {
	l              *link
	server         string
	source, poison string
	field          string
	closed         atomic.Bool
}

var (
	_ triggers.PoisonAdmin    = (*poisonAdmin)(nil)
	_ triggers.OpenPoisonFunc = OpenPoisonURL
)

// OpenPoisonURL opens the poison administration of redis://<stream>: the
// poison stream ("<stream>-poison", or the poison parameter, or
// o.PoisonName), with the server URL found as OpenURL finds it. Requeue
// moves an entry back to the stream in one script (XADD to the stream,
// then XDEL from the poison stream), without the jobhost-* bookkeeping
// fields, so its attempts start afresh. It does not connect; the first
// call does.
func OpenPoisonURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	c, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	// Open checks the names and takes a share of the client, which the
	// administration keeps (the driver itself holds nothing else).
	d, err := Open(ctx, c.serverURL, c.stream, c.opts)
	if err != nil {
		return nil, c.wrap(err)
	}
	p := &poisonAdmin{l: d.l, server: d.server, source: d.stream, poison: d.poison, field: d.opts.BodyField}
	return p, nil
}

// Source names the source stream.
func (p *poisonAdmin) Source() string { return "stream " + p.source }

// Poison names the poison stream.
func (p *poisonAdmin) Poison() string { return "stream " + p.poison }

// Close releases the administration's share of the client; it is
// idempotent.
func (p *poisonAdmin) Close() error {
	if !p.closed.Swap(true) {
		p.l.release()
	}
	return nil
}

func (p *poisonAdmin) fail(op string, err error) error {
	if p.closed.Load() {
		return fmt.Errorf("redis: %s %s: poison administration %w", op, p.Poison(), triggers.ErrClosed)
	}
	return p.l.scrub(fmt.Errorf("redis: %s %s on %s: %w", op, p.Poison(), p.server, err))
}

func (p *poisonAdmin) check(ctx context.Context, op string) error {
	if p.closed.Load() {
		return p.fail(op, nil)
	}
	return ctx.Err()
}

// Count returns the poison stream's length (XLEN); exists is false when
// the key does not exist.
func (p *poisonAdmin) Count(ctx context.Context) (int, bool, error) {
	if err := p.check(ctx, "count"); err != nil {
		return 0, false, err
	}
	pipe := p.l.c.Pipeline()
	ex := pipe.Exists(ctx, p.poison)
	n := pipe.XLen(ctx, p.poison)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, false, p.fail("count", err)
	}
	return int(n.Val()), ex.Val() == 1, nil
}

// List returns the first n poison entries (XRANGE), oldest first.
func (p *poisonAdmin) List(ctx context.Context, n int) ([]*triggers.PoisonMessage, error) {
	if err := p.check(ctx, "list"); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	xs, err := p.l.c.XRangeN(ctx, p.poison, "-", "+", int64(n)).Result()
	if err != nil {
		return nil, p.fail("list", err)
	}
	out := make([]*triggers.PoisonMessage, 0, len(xs))
	for _, x := range xs {
		out = append(out, p.message(x))
	}
	return out, nil
}

// message maps a poison entry: Body is the body field, Properties every
// other field (the jobhost-* ones included), Reason jobhost-reason,
// DequeueCount jobhost-dequeue-count, InsertionTime when the poison entry
// was added.
func (p *poisonAdmin) message(x goredis.XMessage) *triggers.PoisonMessage {
	m := &triggers.PoisonMessage{ID: x.ID, InsertionTime: idTime(x.ID), Properties: map[string]string{}}
	for k, v := range x.Values {
		s := fmt.Sprint(v)
		if k == p.field {
			m.Body = []byte(s)
			continue
		}
		m.Properties[k] = s
		switch k {
		case FieldReason:
			m.Reason = s
		case FieldDequeueCount:
			m.DequeueCount, _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return m
}

// Requeue moves the poison entry id, or when id is "" up to limit of the
// oldest, back to the source stream; each move is one script (XADD then
// XDEL), so a message is never lost nor left in both.
func (p *poisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(*triggers.PoisonMessage, error)) (bool, error) {
	if err := p.check(ctx, "requeue from"); err != nil {
		return false, err
	}
	if id != "" {
		if !validID(id) {
			return false, nil
		}
		xs, err := p.l.c.XRange(ctx, p.poison, id, id).Result()
		if err != nil {
			return false, p.fail("requeue from", err)
		}
		if len(xs) == 0 {
			return false, nil
		}
		moved, err := p.move(ctx, xs[0])
		if !moved && err == nil {
			return false, nil // moved or purged by someone else meanwhile
		}
		done(p.message(xs[0]), err)
		return true, nil
	}
	start := "-"
	for n := 0; n < limit; {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		xs, err := p.l.c.XRangeN(ctx, p.poison, start, "+", int64(min(pageSize, limit-n))).Result()
		if err != nil {
			return false, p.fail("requeue from", err)
		}
		if len(xs) == 0 {
			break
		}
		for _, x := range xs {
			start = "(" + x.ID
			moved, err := p.move(ctx, x)
			if !moved && err == nil {
				continue
			}
			done(p.message(x), err)
			n++
			if n == limit {
				break
			}
		}
	}
	return false, nil
}

// move runs poisonRequeueScript for x; moved is false, with a nil error,
// when x was no longer in the poison stream.
func (p *poisonAdmin) move(ctx context.Context, x goredis.XMessage) (bool, error) {
	res, err := poisonRequeueScript.Run(ctx, p.l.c, []string{p.poison, p.source}, x.ID).Result()
	if err != nil {
		return false, p.l.scrub(fmt.Errorf("not moved to %s, it stays in poison: %w", p.Source(), err))
	}
	if v, ok := res.(int64); ok && v == 0 {
		return false, nil
	}
	return true, nil
}

// Purge deletes up to limit of the oldest poison entries.
func (p *poisonAdmin) Purge(ctx context.Context, limit int) (int, error) {
	if err := p.check(ctx, "purge"); err != nil {
		return 0, err
	}
	n := 0
	for n < limit {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		xs, err := p.l.c.XRangeN(ctx, p.poison, "-", "+", int64(min(pageSize, limit-n))).Result()
		if err != nil {
			return n, p.fail("purge", err)
		}
		if len(xs) == 0 {
			break
		}
		ids := make([]string, len(xs))
		for i, x := range xs {
			ids[i] = x.ID
		}
		k, err := p.l.c.XDel(ctx, p.poison, ids...).Result()
		if err != nil {
			return n, p.fail("purge", err)
		}
		n += int(k)
		if k == 0 {
			break
		}
	}
	return n, nil
}
