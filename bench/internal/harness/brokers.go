package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/bench/internal/workload"
)

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- Azure Storage Queues (Azurite) ----

func azQueue(conn, name string) (*azqueue.QueueClient, error) {
	svc, err := azqueue.NewServiceClientFromConnectionString(conn, nil)
	if err != nil {
		return nil, err
	}
	return svc.NewQueueClient(name), nil
}

func azCreate(ctx context.Context, conn, name string) (*azqueue.QueueClient, error) {
	q, err := azQueue(conn, name)
	if err != nil {
		return nil, err
	}
	_, err = q.Create(ctx, nil)
	return q, err
}

// azPrefill enqueues ids [0,n) as base64 JSON with 16 senders.
func azPrefill(ctx context.Context, q *azqueue.QueueClient, n int64) error {
	return parallel(16, n, func(i int64) error {
		_, err := q.EnqueueMessage(ctx, workload.Base64(workload.Body(i, time.Time{})), nil)
		return err
	})
}

// azSend enqueues one message stamped now.
func azSend(ctx context.Context, q *azqueue.QueueClient, id int64) error {
	_, err := q.EnqueueMessage(ctx, workload.Base64(workload.Body(id, time.Now())), nil)
	return err
}

// parallel runs f(i) for i in [0,n) on w workers; the first error wins.
func parallel(w int, n int64, f func(i int64) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range w {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(n)
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// ---- RabbitMQ ----

type rabbit struct {
	url  string
	conn *amqp.Connection
	ch   *amqp.Channel // confirm mode
	mu   sync.Mutex
}

func dialRabbit(url string) (*rabbit, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": "jobhost bench"}})
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, err
	}
	return &rabbit{url: url, conn: conn, ch: ch}, nil
}

func (r *rabbit) version() string {
	if v, ok := r.conn.Properties["version"].(string); ok {
		return v
	}
	return "?"
}

func (r *rabbit) close() { r.conn.Close() }

// declare makes a durable classic queue, as watermill-amqp's durable config
// declares it.
func (r *rabbit) declare(name string) error {
	ch, err := r.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclare(name, true, false, false, false, nil)
	return err
}

// deleteQueues deletes name and the companions jobhost may have made.
func (r *rabbit) deleteQueues(name string) {
	for _, n := range []string{name, name + "-retry", name + "-retry-q", name + "-poison"} {
		ch, err := r.conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(n, false, false, false)
		ch.Close()
	}
}

func rabbitMsg(id int64, sentAt time.Time) amqp.Publishing {
	sid := strconv.FormatInt(id, 10)
	return amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		ContentType:  "application/json",
		MessageId:    sid,
		Timestamp:    time.Now(),
		// watermill-amqp's default marshaler reads its message UUID from
		// this header; everyone gets the same message.
		Headers: amqp.Table{"_watermill_message_uuid": sid},
		Body:    workload.Body(id, sentAt),
	}
}

// prefill publishes ids [0,n) persistently to queue, with publisher
// confirms, at most 2,000 unconfirmed at a time.
func (r *rabbit) prefill(ctx context.Context, queue string, n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pending []*amqp.DeferredConfirmation
	flush := func() error {
		for _, dc := range pending {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("publish nacked")
			}
		}
		pending = pending[:0]
		return nil
	}
	for i := range n {
		dc, err := r.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, rabbitMsg(i, time.Time{}))
		if err != nil {
			return err
		}
		pending = append(pending, dc)
		if len(pending) >= 2000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// send publishes one message stamped now (confirm not awaited).
func (r *rabbit) send(ctx context.Context, queue string, id int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, rabbitMsg(id, time.Now()))
	return err
}

func (r *rabbit) depth(queue string) (int, error) {
	ch, err := r.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// ---- NATS JetStream ----

type natsJS struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dialNATS(url string) (*natsJS, error) {
	nc, err := nats.Connect(url, nats.Name("jobhost bench"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsJS{nc: nc, js: js}, nil
}

func (n *natsJS) close() { n.nc.Close() }

// createStream makes a file-backed work-queue stream for subject (what
// jobhost's createQueues would make).
func (n *natsJS) createStream(ctx context.Context, stream, subject string) error {
	_, err := n.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	return err
}

func (n *natsJS) deleteStream(ctx context.Context, stream string) {
	_ = n.js.DeleteStream(ctx, stream)
	_ = n.js.DeleteStream(ctx, stream+"_POISON")
}

func natsMsg(subject string, id int64, sentAt time.Time) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set("_watermill_message_uuid", strconv.FormatInt(id, 10))
	m.Data = workload.Body(id, sentAt)
	return m
}

func (n *natsJS) prefill(ctx context.Context, subject string, count int64) error {
	for i := range count {
		if _, err := n.js.PublishMsgAsync(natsMsg(subject, i, time.Time{})); err != nil {
			return err
		}
	}
	select {
	case <-n.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *natsJS) streamMsgs(ctx context.Context, stream string) (uint64, error) {
	s, err := n.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// sanitize makes a string usable in queue and stream names.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
}

var _ = fmt.Sprint
