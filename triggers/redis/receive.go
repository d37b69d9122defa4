package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
)

// delivery is a Message's DriverData: the entry it was delivered as and
// the delivery count the pending list had for it then, which together
// identify this delivery (see held in scripts.go).
type delivery struct {
	d     *Driver
	entry string
	n     int64
}

// Receive returns at most min(max, Prefetch) messages, each leased for
// lease (at most MaxLease). In one script it takes over entries whose
// lease ran out (XAUTOCLAIM), moves due delayed messages into the stream,
// and reads new entries (XREADGROUP); when that finds nothing it waits up
// to ReceiveWait (less when a delayed message falls due sooner) for an
// entry to be added (XREAD BLOCK, which takes nothing) and tries once
// more. When ctx ends during the wait it returns at once with ctx's
// error; the script itself is never cut short (its reply would be lost
// and its messages hidden for a lease), but is bounded by a timeout of
// its own. A missing stream or group is an error wrapping
// triggers.ErrNotFound, unless CreateIfMissing.
func (d *Driver) Receive(ctx context.Context, max int, lease time.Duration) ([]*triggers.Message, error) {
	if d.closed.Load() {
		return nil, d.fail("receive from", errClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	if p := d.opts.Prefetch; p > 0 && max > p {
		max = p
	}
	leaseMS, err := leaseMillis(lease)
	if err != nil {
		return nil, err
	}
	ms, w, err := d.claim(ctx, max, leaseMS, lease)
	if err != nil || len(ms) > 0 {
		return ms, err
	}
	if err := d.wait(ctx, w); err != nil {
		return nil, err
	}
	ms, _, err = d.claim(ctx, max, leaseMS, lease)
	return ms, err
}

// waitFor is what an empty claim says about waiting: the stream's last
// entry id (XREAD waits for a later one) and how long to wait at most.
type waitFor struct {
	after string
	block time.Duration
}

// claim runs receiveScript once (twice when it creates the group).
func (d *Driver) claim(ctx context.Context, max int, leaseMS int64, lease time.Duration) ([]*triggers.Message, waitFor, error) {
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		cursor, create := d.cursor, d.opts.CreateIfMissing && !d.ready
		d.used = true
		d.mu.Unlock()
		if create {
			if err := d.createGroup(ctx); err != nil {
				return nil, waitFor{}, err
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		res, err := receiveScript.Run(cctx, d.l.c, []string{d.stream, d.delayed, d.poison},
			d.group, d.consumer, max, MaxLease.Milliseconds(), idleFor(leaseMS), cursor, promoteLimit, d.opts.BodyField).Slice()
		cancel()
		if err != nil {
			return nil, waitFor{}, d.fail("receive from", err)
		}
		if s, _ := res[0].(string); s == "nogroup" {
			d.mu.Lock()
			d.ready = false
			d.mu.Unlock()
			if d.opts.CreateIfMissing && attempt == 0 {
				continue
			}
			return nil, waitFor{}, fmt.Errorf("redis: stream %q or its consumer group %q does not exist on %s: %w (create both with XGROUP CREATE %s %s 0 MKSTREAM, or set createQueues)",
				d.stream, d.group, d.server, triggers.ErrNotFound, d.stream, d.group)
		}
		ms, w, err := d.parseReceive(res, lease)
		if err != nil {
			return nil, waitFor{}, d.fail("receive from", err)
		}
		d.sweepOnce(ctx)
		return ms, w, nil
	}
}

// createGroup creates the stream and group (reading from the start, so
// nothing published before is missed), once.
func (d *Driver) createGroup(ctx context.Context) error {
	err := d.l.c.XGroupCreateMkStream(ctx, d.stream, d.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return d.fail("create consumer group "+strconv.Quote(d.group)+" of", err)
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	return nil
}

// sweepOnce deletes, once per driver, the group's consumers that hold
// nothing and have been idle for sweepIdle: those of workers that ended
// without Close. Errors are ignored: it is housekeeping.
func (d *Driver) sweepOnce(ctx context.Context) {
	d.mu.Lock()
	done := d.swept
	d.swept = true
	d.mu.Unlock()
	if !done {
		_ = sweepScript.Run(ctx, d.l.c, []string{d.stream}, d.group, "", sweepIdle.Milliseconds()).Err()
	}
}

// parseReceive reads receiveScript's reply.
func (d *Driver) parseReceive(res []interface{}, lease time.Duration) ([]*triggers.Message, waitFor, error) {
	if len(res) != 6 {
		return nil, waitFor{}, fmt.Errorf("unexpected script reply %v", res)
	}
	cursor, _ := res[1].(string)
	entries, _ := res[2].([]interface{})
	last, _ := res[3].(string)
	nextDue, _ := res[4].(int64)
	now, _ := res[5].(int64)
	if cursor != "" {
		d.mu.Lock()
		d.cursor = cursor
		d.mu.Unlock()
	}
	visible := time.Now().Add(lease)
	ms := make([]*triggers.Message, 0, len(entries))
	for _, e := range entries {
		m, err := d.message(e, visible)
		if err != nil {
			return nil, waitFor{}, err
		}
		ms = append(ms, m)
	}
	w := waitFor{after: last, block: d.opts.ReceiveWait}
	if nextDue >= 0 {
		w.block = min(w.block, time.Duration(nextDue-now)*time.Millisecond)
	}
	return ms, w, nil
}

// message maps one {id, deliveries, fields} of receiveScript's reply.
func (d *Driver) message(e interface{}, visible time.Time) (*triggers.Message, error) {
	a, ok := e.([]interface{})
	if !ok || len(a) != 3 {
		return nil, fmt.Errorf("unexpected entry %v in the script reply", e)
	}
	id, _ := a[0].(string)
	n, _ := a[1].(int64)
	fields, _ := a[2].([]interface{})
	if id == "" || n < 1 {
		return nil, fmt.Errorf("unexpected entry %v in the script reply", e)
	}
	m := &triggers.Message{
		ID:              id,
		DequeueCount:    n,
		NextVisibleTime: visible,
		Source:          d.stream,
		DriverData:      &delivery{d: d, entry: id, n: n},
	}
	body := false
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		switch {
		case k == d.opts.BodyField && !body:
			m.Body, body = []byte(v), true
		case k == FieldID:
			m.ID = v
		case k == FieldAttempt:
			if a, err := strconv.ParseInt(v, 10, 64); err == nil && a > 0 {
				m.DequeueCount += a
			}
		default:
			if m.Properties == nil {
				m.Properties = make(map[string]string, len(fields)/2)
			}
			m.Properties[k] = v
		}
	}
	m.InsertionTime = idTime(m.ID)
	if m.InsertionTime.IsZero() {
		m.InsertionTime = idTime(id)
	}
	return m, nil
}

// idTime is the time in a stream entry id (<ms>-<seq>): when the server
// added it. Zero for anything else.
func idTime(id string) time.Time {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}
	}
	t, err := strconv.ParseInt(ms, 10, 64)
	if _, serr := strconv.ParseUint(seq, 10, 64); err != nil || serr != nil || t <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(t)
}

// validID reports whether s is a full stream entry id.
func validID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

// wait blocks until an entry later than w.after is added to the stream,
// w.block passes, ctx ends (its error) or the driver is closed. XREAD
// takes nothing, so a wait abandoned for ctx leaves nothing hidden; the
// command itself ends within w.block in the background.
func (d *Driver) wait(ctx context.Context, w waitFor) error {
	if w.block < time.Millisecond {
		return nil
	}
	after := w.after
	if after == "" {
		after = "0-0"
	}
	res := make(chan error, 1)
	go func() {
		res <- d.l.c.XRead(context.Background(), &goredis.XReadArgs{Streams: []string{d.stream, after}, Count: 1, Block: w.block}).Err()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-d.done:
		return d.fail("receive from", errClosed)
	case err := <-res:
		if err != nil && !errors.Is(err, goredis.Nil) {
			return d.fail("wait on", err)
		}
		return nil
	}
}
