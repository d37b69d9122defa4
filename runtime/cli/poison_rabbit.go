package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
)

// rabbitTimeout bounds one requeue or purge run on a broker.
const rabbitTimeout = 30 * time.Minute

// rabbitPoison is a RabbitMQ queue and its poison queue. It speaks AMQP
// itself (basic.get, publish with confirms, ack) rather than through the
// rabbitmq driver: the driver's Message keeps only string-like headers and
// the content type, so a copy made from it would lose the other AMQP
// properties (correlation-id, reply-to, type, app-id, priority) and change
// header types; and the driver's Publish starts a consumer on the queue it
// publishes to, which would take a message and hand it back redelivered,
// one attempt older.
type rabbitPoison struct {
	serverURL string // secret: has the password
	password  string
	source    string
	poison    string
	conn      *amqp.Connection
}

func openRabbitPoison(ctx context.Context, u *url.URL, conn, poisonName string, lookup func(string) (string, bool)) (*rabbitPoison, error) {
	if u.Query().Get("deadletter") == "native" {
		return nil, fmt.Errorf("%s uses deadletter=native: its messages go to the queue's own dead-letter exchange, not a poison queue; use RabbitMQ's tools", redactURL(u))
	}
	// The driver parses the URL, names the poison queue and checks the
	// server URL setting; it connects only when used, which it is not.
	d, err := rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Connection: conn, PoisonName: poisonName})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	rd := d.(*rabbitmq.Driver)
	setting := rabbitmq.EnvServerURL
	if conn != "" {
		setting = conn
	}
	serverURL, _ := triggers.LookupSetting(lookup, setting)
	r := &rabbitPoison{serverURL: serverURL, source: rd.Queue(), poison: rd.PoisonDestination()}
	if su, err := url.Parse(strings.TrimSpace(serverURL)); err == nil {
		r.password, _ = su.User.Password()
	}
	return r, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func (r *rabbitPoison) Source() string { return "queue " + r.source }
func (r *rabbitPoison) Poison() string { return "queue " + r.poison }

func (r *rabbitPoison) Close() {
	if r.conn != nil {
		r.conn.Close() // returns deliveries not acknowledged to their queue
	}
}

// err removes the server password from an error.
func (r *rabbitPoison) err(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(r.password) >= 3 {
		msg = strings.ReplaceAll(msg, r.password, "REDACTED")
	}
	return errors.New(msg)
}

func (r *rabbitPoison) channel(_ context.Context) (*amqp.Channel, error) {
	if r.conn == nil || r.conn.IsClosed() {
		props := amqp.NewConnectionProperties()
		props.SetClientConnectionName("jobhost poison tools " + r.poison)
		c, err := amqp.DialConfig(r.serverURL, amqp.Config{Properties: props, Dial: amqp.DefaultDial(15 * time.Second)})
		if err != nil {
			return nil, r.err("connect to RabbitMQ for %s: %v", r.Poison(), err)
		}
		r.conn = c
	}
	ch, err := r.conn.Channel()
	if err != nil {
		return nil, r.err("open a channel: %v", err)
	}
	return ch, nil
}

func (r *rabbitPoison) Count(ctx context.Context) (int, bool, error) {
	ch, err := r.channel(ctx)
	if err != nil {
		return 0, false, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(r.poison, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, r.err("check %s: %v", r.Poison(), err)
	}
	return q.Messages, true, nil
}

// get takes the next message from the poison queue without acknowledging
// it; ok is false when the queue is empty.
func (r *rabbitPoison) get(ch *amqp.Channel) (amqp.Delivery, bool, error) {
	d, ok, err := ch.Get(r.poison, false)
	if err != nil {
		return d, false, r.err("get from %s: %v", r.Poison(), err)
	}
	return d, ok, nil
}

func rabbitMessage(d amqp.Delivery) *poisonMessage {
	m := &poisonMessage{ID: d.MessageId, InsertionTime: d.Timestamp, Body: d.Body, Properties: map[string]string{}}
	for k, v := range d.Headers {
		switch v := v.(type) {
		case string:
			m.Properties[k] = v
		case []byte:
			m.Properties[k] = string(v)
		case amqp.Table, []any:
		default:
			m.Properties[k] = fmt.Sprint(v)
		}
	}
	if d.ContentType != "" {
		m.Properties["content-type"] = d.ContentType
	}
	switch a := d.Headers[rabbitmq.HeaderAttempt].(type) {
	case int32:
		m.DequeueCount = int64(a)
	case int64:
		m.DequeueCount = a
	case int:
		m.DequeueCount = int64(a)
	}
	return m
}

// List gets up to n messages and hands them back (the broker marks them
// redelivered).
func (r *rabbitPoison) List(ctx context.Context, n int) ([]*poisonMessage, error) {
	ch, err := r.channel(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []*poisonMessage
	var last uint64
	for len(out) < n {
		d, ok, err := r.get(ch)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		last = d.DeliveryTag
		out = append(out, rabbitMessage(d))
	}
	if last != 0 {
		if err := ch.Nack(last, true, true); err != nil {
			return nil, r.err("release the messages listed from %s: %v", r.Poison(), err)
		}
	}
	return out, nil
}

// Requeue gets poison messages one at a time; each is published to the
// source queue (with a publisher confirm, mandatory) and only then
// acknowledged. Skipped and failed messages are held and released at the
// end.
func (r *rabbitPoison) Requeue(ctx context.Context, id string, limit int, done func(*poisonMessage, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, rabbitTimeout)
	defer cancel()
	ch, err := r.channel(ctx)
	if err != nil {
		return false, err
	}
	defer ch.Close() // releases what is still held
	pub, err := r.channel(ctx)
	if err != nil {
		return false, err
	}
	defer pub.Close()
	if err := pub.Confirm(false); err != nil {
		return false, r.err("enable publisher confirms: %v", err)
	}
	returns := pub.NotifyReturn(make(chan amqp.Return, 1))
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
		d, ok, err := r.get(ch)
		if err != nil {
			return found, err
		}
		if !ok {
			break
		}
		if id != "" && d.MessageId != id {
			held = append(held, d.DeliveryTag)
			continue
		}
		found = id != ""
		m := rabbitMessage(d)
		if err := r.publish(ctx, pub, returns, requeueCopy(d)); err != nil {
			held = append(held, d.DeliveryTag)
			done(m, fmt.Errorf("not copied to %s, it stays in poison: %w", r.Source(), err))
			continue
		}
		if err := ch.Ack(d.DeliveryTag, false); err != nil {
			done(m, r.err("copied to %s but not acknowledged in %s, so it will be in both: %v", r.Source(), r.Poison(), err))
			return found, r.err("channel lost: %v", err)
		}
		done(m, nil)
	}
	return found, nil
}

// requeueCopy is d as it was first published: body and properties
// unchanged, without the headers jobhost and the broker added on the way
// to poison.
func requeueCopy(d amqp.Delivery) amqp.Publishing {
	h := amqp.Table{}
	for k, v := range d.Headers {
		if !bookkeeping(k) {
			h[k] = v
		}
	}
	return amqp.Publishing{
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
}

// publish sends msg to the source queue and waits for the broker's
// confirm; an unroutable message (no such queue) is an error.
func (r *rabbitPoison) publish(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, msg amqp.Publishing) error {
	for drained := false; !drained; { // a return left over from an abandoned publish
		select {
		case _, open := <-returns:
			drained = !open
		default:
			drained = true
		}
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", r.source, true, false, msg)
	if err != nil {
		return r.err("publish: %v", err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return r.err("waiting for the publisher confirm: %v", err)
	}
	if !acked {
		return errors.New("the broker refused the message (publisher nack)")
	}
	// A basic.return comes before the confirm of the same publish.
	select {
	case ret := <-returns:
		return fmt.Errorf("the broker could not route it to %s (does the queue exist?): %d %s", r.Source(), ret.ReplyCode, ret.ReplyText)
	default:
	}
	return nil
}

// Purge takes and acknowledges up to limit messages.
func (r *rabbitPoison) Purge(ctx context.Context, limit int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, rabbitTimeout)
	defer cancel()
	ch, err := r.channel(ctx)
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	n := 0
	for n < limit {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		_, ok, err := ch.Get(r.poison, true) // auto-ack: taking it deletes it
		if err != nil {
			return n, r.err("get from %s: %v", r.Poison(), err)
		}
		if !ok {
			break
		}
		n++
	}
	return n, nil
}
