package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
)

// Complete acknowledges the message. By default it does not wait for the
// server's reply: the ack (carrying the pull request for the room it frees,
// see the package doc) is handed to the connection, whose flusher writes
// it at once (with whatever else is buffered: acks of other messages, pull
// requests), and Close flushes what is still buffered. An ack lost on the
// way (the connection drops first) means the server redelivers the message
// when its ack wait ends, as for a worker that died: at least once, never a
// loss. With Options.AckSync it waits for the reply, one round trip.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	dl, err := d.hold(m, "complete")
	if err != nil {
		return err
	}
	defer dl.mu.Unlock()
	if d.opts.AckSync {
		err = d.settleReply(ctx, dl, ackAck)
	} else {
		err = d.settleAsync(dl)
	}
	if err != nil {
		return d.msgErr("complete", m, err)
	}
	dl.settle()
	return nil
}

// Retry Naks the message, with the given delay when it is positive. The
// message stays pending on the server (counting against the consumer's
// MaxAckPending, not this driver's Prefetch) until it is redelivered.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	dl, err := d.hold(m, "retry")
	if err != nil {
		return err
	}
	defer dl.mu.Unlock()
	body := ackNak
	if delay > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay":%d}`, delay.Nanoseconds())
	}
	sent := time.Now()
	if err := d.settleReply(ctx, dl, body); err != nil {
		return d.msgErr("retry", m, err)
	}
	dl.settle()
	if delay > 0 {
		d.expect(sent.Add(delay))
	}
	return nil
}

// ExtendLease sends InProgress, which restarts the server's AckWait clock,
// and keeps the message leased for lease from now (see the package doc for
// leases longer than AckWait). m.NextVisibleTime is updated.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	if lease <= 0 {
		return fmt.Errorf("jetstream: extend lease of message %s: lease %v is not positive", m.ID, lease)
	}
	dl, err := d.hold(m, "extend lease of")
	if err != nil {
		return err
	}
	defer dl.mu.Unlock()
	sent := time.Now()
	if err := d.reply(ctx, dl, ackProgress); err != nil {
		return d.msgErr("extend lease of", m, err)
	}
	dl.touch(sent)
	dl.deadline, dl.lease = sent.Add(lease), lease
	m.NextVisibleTime = dl.deadline
	dl.schedule()
	return nil
}

// DeadLetter copies the message to the poison subject and then terminates
// the original (see the package doc). It returns the copy's ID (its
// Nats-Msg-Id). If the copy cannot be made the original is left as it is;
// if the copy was made but the Term failed, the copy's ID is returned with
// the error (the original is redelivered later and a second DeadLetter is
// de-duplicated by Nats-Msg-Id within the poison stream's duplicate window).
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	if d.isClosed() {
		return "", fmt.Errorf("jetstream: dead-letter message %s: driver %w", m.ID, triggers.ErrClosed)
	}
	if d.opts.PoisonSubject == "" {
		return "", fmt.Errorf("jetstream: dead-letter message %s from %s: %w", m.ID, d.source, ErrNoPoison)
	}
	dl, err := d.hold(m, "dead-letter")
	if err != nil {
		return "", err
	}
	defer dl.mu.Unlock()
	if err := d.ensurePoison(ctx); err != nil {
		return "", err
	}
	cp := &nats.Msg{
		Subject: d.opts.PoisonSubject,
		Data:    dl.msg.Data,
		Header:  poisonHeader(dl.msg.Header, reason, d.source, d.opts.Stream, dl.seq),
	}
	pctx, cancel := withTimeout(ctx)
	_, err = d.js.PublishMsg(pctx, cp)
	cancel()
	if err != nil {
		return "", d.scrub(fmt.Errorf("jetstream: dead-letter message %s from %s: publish to %q: %w (the message was left in place)", m.ID, d.source, d.opts.PoisonSubject, err))
	}
	pid := cp.Header.Get(HeaderMsgID)
	if err := d.settleReply(ctx, dl, ackTerm); err != nil {
		return pid, d.msgErr("terminate (after copying it to "+d.opts.PoisonSubject+")", m, err)
	}
	dl.settle()
	return pid, nil
}

// publishControl reports headers that would make the poison publish
// conditional or change the poison stream, not describe the message.
func publishControl(k string) bool {
	k = strings.ToLower(k)
	for _, p := range []string{"nats-expected-", "nats-batch-", "nats-schedule"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	switch k {
	case "nats-rollup", "nats-ttl", "nats-incr", "nats-required-api-level":
		return true
	}
	return false
}

func poisonHeader(h nats.Header, reason, source, stream string, seq uint64) nats.Header {
	out := nats.Header{}
	for k, vs := range h {
		if !publishControl(k) {
			out[k] = append([]string(nil), vs...)
		}
	}
	if out.Get(HeaderMsgID) == "" {
		out.Set(HeaderMsgID, stream+":"+strconv.FormatUint(seq, 10))
	}
	if r := cleanReason(reason); r != "" {
		out.Set(HeaderReason, r)
	}
	out.Set(HeaderSource, source)
	out.Set(HeaderSourceSequence, strconv.FormatUint(seq, 10))
	return out
}

// cleanReason makes reason a valid one-line header value of bounded size.
func cleanReason(r string) string {
	r = strings.TrimSpace(strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' || c < ' ' && c != '\t' {
			return ' '
		}
		return c
	}, r))
	if len(r) > reasonLimit {
		r = r[:reasonLimit]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
	}
	return r
}

// reply sends an acknowledgement and waits for the server's answer.
func (d *Driver) reply(ctx context.Context, dl *delivery, body []byte) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := d.nc.RequestWithContext(ctx, dl.msg.Reply, body)
	if errors.Is(err, nats.ErrNoResponders) {
		// Nobody serves the ack subject: the consumer is gone.
		return fmt.Errorf("%w (the consumer no longer exists)", triggers.ErrLeaseLost)
	}
	return err
}

// settleReply sends a settlement (reply) for a delivery that then no
// longer counts against Prefetch: the request for its room (refill) goes
// out first, so that it overlaps the settlement's round trip. dl.mu is
// held.
func (d *Driver) settleReply(ctx context.Context, dl *delivery, body []byte) error {
	d.settling.Add(1)
	defer d.settling.Add(-1)
	d.refill()
	return d.reply(ctx, dl, body)
}

// settleAsync sends an ack without waiting for the server's answer,
// carrying the request for its room (ackRefill). The publish fails at
// once when the connection is down (nothing is buffered while
// reconnecting), so an error leaves the message held, as a failed
// settleReply does. dl.mu is held.
func (d *Driver) settleAsync(dl *delivery) error {
	d.settling.Add(1)
	defer d.settling.Add(-1)
	return d.ackRefill(dl.msg.Reply)
}

// flushAcks writes what the connection still buffers (acks sent by
// Complete) and waits for the server's PONG, which it sends after reading
// them: an ack flushed here is not lost with the connection. It is a
// no-op when disconnected: an unflushed ack then means a redelivery.
func (d *Driver) flushAcks() {
	if d.nc == nil || !d.nc.IsConnected() {
		return
	}
	_ = d.nc.FlushTimeout(flushTimeout)
}

// withTimeout bounds ctx by opTimeout when it has no deadline of its own.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}

// hold returns m's delivery, locked, if this driver still holds it.
func (d *Driver) hold(m *triggers.Message, op string) (*delivery, error) {
	dl, ok := m.DriverData.(*delivery)
	if !ok || dl == nil || dl.d != d {
		return nil, fmt.Errorf("jetstream: %s message %s: it was not received by this driver (%s)", op, m.ID, d.source)
	}
	if d.isClosed() {
		return nil, fmt.Errorf("jetstream: %s message %s: driver %w", op, m.ID, triggers.ErrClosed)
	}
	dl.mu.Lock()
	why := ""
	switch dl.state {
	case settled:
		why = "it was already settled"
	case lost:
		why = "its lease ended or it was delivered again"
	default:
		now := time.Now()
		margin := min(maxSettleMargin, dl.lease/4)
		switch {
		case !now.Add(margin).Before(dl.deadline):
			why = fmt.Sprintf("its lease ended at %s", dl.deadline.Format(time.RFC3339Nano))
			dl.expire(now)
		case !now.Add(margin).Before(dl.touched.Add(d.currentAckWait())):
			why = "the server's ack wait ran out"
			dl.lose()
			d.expect(dl.touched.Add(d.currentAckWait()))
		}
	}
	if why != "" {
		dl.mu.Unlock()
		return nil, fmt.Errorf("jetstream: %s message %s (stream sequence %d) from %s: %s: %w", op, m.ID, dl.seq, d.source, why, triggers.ErrLeaseLost)
	}
	return dl, nil
}

func (d *Driver) msgErr(op string, m *triggers.Message, err error) error {
	if !errors.Is(err, triggers.ErrLeaseLost) && !d.nc.IsConnected() {
		err = fmt.Errorf("%w; not connected to %s", err, d.server)
	}
	return d.scrub(fmt.Errorf("jetstream: %s message %s from %s: %w", op, m.ID, d.source, err))
}

func (d *Driver) forget(dl *delivery) {
	d.mu.Lock()
	if d.inflight[dl.seq] == dl {
		delete(d.inflight, dl.seq)
	}
	d.mu.Unlock()
}
