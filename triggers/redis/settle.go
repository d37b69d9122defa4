package redis

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
)

// maxReason bounds the reason stored with a poison entry.
const maxReason = 8192

// begin checks that the driver is open, ctx live and m one of this
// driver's deliveries.
func (d *Driver) begin(ctx context.Context, op string, m *triggers.Message) (*delivery, error) {
	if d.closed.Load() {
		return nil, d.fail(op, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dv, ok := m.DriverData.(*delivery)
	if !ok || dv.d != d {
		return nil, fmt.Errorf("redis: %s message %s: it was not received by this driver", op, m.ID)
	}
	return dv, nil
}

// lost is the error for a delivery this consumer no longer holds.
func (d *Driver) lost(op string, m *triggers.Message) error {
	return fmt.Errorf("redis: %s message %s (entry %s) in stream %q: %w: it is no longer pending for this consumer with this delivery (settled, or its lease ran out and it was delivered again)",
		op, m.ID, m.DriverData.(*delivery).entry, d.stream, triggers.ErrLeaseLost)
}

// gone is the error for an entry still pending for this consumer but
// deleted from the stream by someone else (XDEL, XTRIM, MAXLEN).
func (d *Driver) gone(op string, m *triggers.Message) error {
	return fmt.Errorf("redis: %s message %s (entry %s) in stream %q: %w: the entry was deleted from the stream (XDEL or trimming), so there is nothing to move; it was acknowledged",
		op, m.ID, m.DriverData.(*delivery).entry, d.stream, triggers.ErrLeaseLost)
}

// Complete acknowledges and deletes the entry (XACK and XDEL in one
// script), if this delivery still holds it.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	dv, err := d.begin(ctx, "complete", m)
	if err != nil {
		return err
	}
	n, err := completeScript.Run(ctx, d.l.c, []string{d.stream}, d.group, d.consumer, dv.entry, dv.n).Int64()
	if err != nil {
		return d.fail("complete message "+m.ID+" in", err)
	}
	if n == 0 {
		return d.lost("complete", m)
	}
	return nil
}

// Retry gives the delivery up: in one script the entry's fields, with
// the attempts so far in jobhost-attempt and the message id in
// jobhost-id, are added to the stream again (delay <= 0) or to the
// delayed set "<stream>:delayed" scored by the server time they are due,
// and the entry is acknowledged and deleted. A due message is moved back
// into the stream by the next Receive of any worker. Its next
// DequeueCount is one more than now.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	return d.requeue(ctx, "retry", m, delay, 0)
}

// Release gives the delivery back at once without counting it
// (triggers.Releaser): as Retry with no delay, with jobhost-attempt one
// less, so the next DequeueCount is this one. The message goes to the end
// of the stream. See the package documentation for why this is not done
// in the pending list.
func (d *Driver) Release(ctx context.Context, m *triggers.Message) error {
	return d.requeue(ctx, "release", m, 0, 1)
}

func (d *Driver) requeue(ctx context.Context, op string, m *triggers.Message, delay time.Duration, deduct int) error {
	dv, err := d.begin(ctx, op, m)
	if err != nil {
		return err
	}
	delayMS := int64(max(0, (delay+time.Millisecond-1)/time.Millisecond))
	res, err := requeueScript.Run(ctx, d.l.c, []string{d.stream, d.delayed}, d.group, d.consumer, dv.entry, dv.n, delayMS, deduct).Result()
	if err != nil {
		return d.fail(op+" message "+m.ID+" in", err)
	}
	switch v := res.(type) {
	case int64:
		if v == 0 {
			return d.lost(op, m)
		}
		return d.gone(op, m)
	case string:
		return nil
	}
	return d.fail(op+" message "+m.ID+" in", fmt.Errorf("unexpected script reply %v", res))
}

// ExtendLease keeps the entry leased for lease from now: it sets the
// entry's idle time to MaxLease - lease (XCLAIM IDLE JUSTID, which does
// not count a delivery), if this delivery still holds it.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	dv, err := d.begin(ctx, "extend the lease of", m)
	if err != nil {
		return err
	}
	leaseMS, err := leaseMillis(lease)
	if err != nil {
		return err
	}
	n, err := extendScript.Run(ctx, d.l.c, []string{d.stream}, d.group, d.consumer, dv.entry, dv.n, idleFor(leaseMS)).Int64()
	if err != nil {
		return d.fail("extend the lease of message "+m.ID+" in", err)
	}
	if n == 0 {
		return d.lost("extend the lease of", m)
	}
	m.NextVisibleTime = time.Now().Add(lease)
	return nil
}

// DeadLetter adds the entry's fields (body and properties unchanged,
// bookkeeping fields dropped) to the poison stream with jobhost-reason,
// jobhost-source, jobhost-source-id and jobhost-dequeue-count, and
// acknowledges and deletes the original, all in one script: the copy and
// the removal happen together or not at all, so it never returns
// ErrNotRemoved. It returns the poison entry's id.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	dv, err := d.begin(ctx, "dead-letter", m)
	if err != nil {
		return "", err
	}
	if len(reason) > maxReason {
		n := maxReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	res, err := deadLetterScript.Run(ctx, d.l.c, []string{d.stream, d.poison}, d.group, d.consumer, dv.entry, dv.n, reason).Result()
	if err != nil {
		var rerr goredis.Error
		if errors.As(err, &rerr) {
			return "", d.fail("dead-letter message "+m.ID+" to "+d.poison+" from", err)
		}
		return "", d.fail("dead-letter message "+m.ID+" (whether it reached "+d.poison+" is unknown) from", err)
	}
	switch v := res.(type) {
	case int64:
		if v == 0 {
			return "", d.lost("dead-letter", m)
		}
		return "", d.gone("dead-letter", m)
	case string:
		return v, nil
	}
	return "", d.fail("dead-letter message "+m.ID+" from", fmt.Errorf("unexpected script reply %v", res))
}
