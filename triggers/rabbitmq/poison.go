package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// poisonTimeout bounds one Requeue or Purge run.
	poisonTimeout = 30 * time.Minute
	// maxScan bounds the search of Requeue for one id.
	maxScan = 100_000
)

// poisonAdmin is the triggers.PoisonAdmin of a queue's poison queue. It
// speaks AMQP itself (basic.get, publish with confirms, ack) rather than
// through Driver.Receive: a triggers.Message keeps only string-like
// headers, so a copy made from one would lose AMQP properties and change
// header types, and a consumer would hold prefetched messages. It uses the
// connection shared by the publishers of the server URL.
type poisonAdmin struct {
	source, poison string
	user           string // the connection's user, for user-id
	sc             *shared
	pub            *confirmer // publishes to the source
	closed         atomic.Bool
}

var _ triggers.PoisonAdmin = (*poisonAdmin)(nil)

// OpenPoisonURL opens the poison administration of rabbit://<queue>: the
// queue's poison queue ("<queue>-poison", or the poison parameter, or
// o.PoisonName), found as OpenURL finds it. A URL with deadletter=native is
// refused: its messages go to the queue's own dead-letter exchange. It does
// not connect; the first call does, on the connection shared by the
// publishers of the server URL.
func OpenPoisonURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	d, err := openURL(ctx, u, o) // checks the URL and the setting; holds nothing
	if err != nil {
		return nil, err
	}
	if d.opts.NativeDeadLetter {
		return nil, fmt.Errorf("rabbitmq: %s uses deadletter=native: its messages go to the queue's own dead-letter exchange, not to a poison queue jobhost can administer; use RabbitMQ's tools on that exchange's queue", redact(u.Redacted()))
	}
	sc := acquire(d.serverURL, d.display, d.password)
	return &poisonAdmin{source: d.queue, poison: d.poisonQueue, user: d.user, sc: sc, pub: newConfirmer(sc.get)}, nil
}

// Source names the source queue.
func (p *poisonAdmin) Source() string { return "queue " + p.source }

// Poison names the poison queue.
func (p *poisonAdmin) Poison() string { return "queue " + p.poison }

// Close releases the shared connection; the broker returns any message
// still held to its queue. It is idempotent.
func (p *poisonAdmin) Close() error {
	if !p.closed.Swap(true) {
		p.pub.close()
		p.sc.release()
	}
	return nil
}

// fail wraps err, redacted, as the failure of op.
func (p *poisonAdmin) fail(op string, err error) error {
	return wrapSecret(fmt.Errorf("rabbitmq: %s %s: %w", op, p.Poison(), err), p.sc.password)
}

// channel opens a channel on the shared connection; the caller closes it,
// which returns what it holds unacknowledged to the poison queue.
func (p *poisonAdmin) channel(ctx context.Context, op string) (*amqp.Channel, error) {
	if p.closed.Load() {
		return nil, p.fail(op, errPubClosed)
	}
	conn, err := p.sc.get(ctx)
	if err == nil {
		var ch *amqp.Channel
		if ch, err = conn.Channel(); err == nil {
			return ch, nil
		}
	}
	return nil, p.fail(op, err)
}

// Count returns the number of ready messages in the poison queue.
func (p *poisonAdmin) Count(ctx context.Context) (int, bool, error) {
	ch, err := p.channel(ctx, "count")
	if err != nil {
		return 0, false, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(p.poison, true, false, false, false, nil)
	if isCode(err, amqp.NotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, p.fail("count", err)
	}
	return q.Messages, true, nil
}

// get takes the next message without acknowledging it (or, with ack, for
// good); ok is false when the poison queue is empty or does not exist.
func (p *poisonAdmin) get(ch *amqp.Channel, op string, ack bool) (amqp.Delivery, bool, error) {
	d, ok, err := ch.Get(p.poison, ack)
	if isCode(err, amqp.NotFound) {
		return d, false, nil
	}
	if err != nil {
		return d, false, p.fail(op, err)
	}
	return d, ok, nil
}

// List gets up to n messages and hands them back (the broker marks them
// redelivered).
func (p *poisonAdmin) List(ctx context.Context, n int) ([]*triggers.PoisonMessage, error) {
	ch, err := p.channel(ctx, "list")
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []*triggers.PoisonMessage
	var last uint64
	for len(out) < n {
		d, ok, err := p.get(ch, "list", false)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		last = d.DeliveryTag
		out = append(out, poisonMessage(d))
	}
	if last != 0 {
		if err := ch.Nack(last, true, true); err != nil {
			return nil, p.fail("release the messages listed from", err)
		}
	}
	return out, nil
}

// poisonMessage maps a delivery from the poison queue. Its DequeueCount is
// the copy's x-jobhost-attempt (else 1) plus the x-delivery-count it kept
// from the source queue: exact for quorum queues, a lower bound for
// classic ones. InsertionTime is its AMQP timestamp, which copies keep from
// the original (RabbitMQ does not record when a message was stored).
func poisonMessage(d amqp.Delivery) *triggers.PoisonMessage {
	m := &triggers.PoisonMessage{ID: messageID(d), InsertionTime: d.Timestamp, Body: d.Body, Properties: properties(d), DequeueCount: 1}
	if a, ok := intHeader(d.Headers, HeaderAttempt); ok && a >= 1 {
		m.DequeueCount = a
	}
	if n, ok := intHeader(d.Headers, HeaderDeliveryCount); ok && n >= 1 {
		m.DequeueCount += n
	}
	m.Reason, _ = headerString(d.Headers[HeaderReason])
	return m
}

// Requeue gets poison messages one at a time; each is published to the
// source queue (mandatory, with a publisher confirm) and only then
// acknowledged. Skipped and failed messages are held and released at the
// end.
func (p *poisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(*triggers.PoisonMessage, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, poisonTimeout)
	defer cancel()
	ch, err := p.channel(ctx, "requeue from")
	if err != nil {
		return false, err
	}
	defer ch.Close() // releases what is still held
	if id != "" {
		limit = maxScan
	}
	var held []uint64
	defer func() {
		for _, tag := range held {
			_ = ch.Nack(tag, false, true)
		}
	}()
	found := false
	for seen := 0; seen < limit && !found; seen++ {
		if err := ctx.Err(); err != nil {
			return found, err
		}
		d, ok, err := p.get(ch, "requeue from", false)
		if err != nil {
			return found, err
		}
		if !ok {
			break
		}
		m := poisonMessage(d)
		if id != "" && m.ID != id {
			held = append(held, d.DeliveryTag)
			continue
		}
		found = id != ""
		if err := p.pub.publish(ctx, p.source, p.requeueCopy(d), nil); err != nil {
			held = append(held, d.DeliveryTag)
			if errors.Is(err, errNoRoute) {
				err = fmt.Errorf("the broker could not route it (does the queue exist?): %w", err)
			}
			done(m, wrapSecret(fmt.Errorf("not copied to %s, it stays in poison: %w", p.Source(), err), p.sc.password))
			continue
		}
		if err := ch.Ack(d.DeliveryTag, false); err != nil {
			done(m, p.fail(fmt.Sprintf("copied to %s but not acknowledged in", p.Source()), fmt.Errorf("%w, so it will be in both", err)))
			return found, p.fail("requeue from", fmt.Errorf("channel lost: %w", err))
		}
		done(m, nil)
	}
	return found, nil
}

// requeueCopy is d as it was first published: body and properties
// unchanged (user-id only when it is this connection's user: the broker
// refuses any other), without the headers jobhost and the broker added on
// the way to poison.
func (p *poisonAdmin) requeueCopy(d amqp.Delivery) amqp.Publishing {
	h := amqp.Table{}
	for k, v := range d.Headers {
		if !bookkeeping(k) {
			h[k] = v
		}
	}
	pub := amqp.Publishing{
		Headers:         h,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
	if d.UserId == p.user {
		pub.UserId = d.UserId
	}
	return pub
}

// bookkeeping reports headers that jobhost or the broker added to a
// message on its way to poison; a requeued copy drops them so that its
// attempt count starts afresh.
func bookkeeping(k string) bool {
	l := strings.ToLower(k)
	return strings.HasPrefix(l, "x-jobhost-") || strings.HasPrefix(l, "jobhost-") ||
		l == "x-delivery-count" || l == "x-death" || strings.HasPrefix(l, "x-first-death-") ||
		strings.HasPrefix(l, "x-last-death-")
}

// Purge takes and acknowledges up to limit messages.
func (p *poisonAdmin) Purge(ctx context.Context, limit int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, poisonTimeout)
	defer cancel()
	ch, err := p.channel(ctx, "purge")
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	n := 0
	for n < limit {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		_, ok, err := p.get(ch, "purge", true) // auto-ack: taking it deletes it
		if err != nil {
			return n, err
		}
		if !ok {
			break
		}
		n++
	}
	return n, nil
}
