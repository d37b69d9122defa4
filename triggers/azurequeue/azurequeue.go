// Package azurequeue is the jobhost trigger driver for one Azure Storage
// Queue, with WebJobs semantics: a poison queue named "<queue>-poison",
// pop receipts renewed on every update, and bodies passed through exactly as
// stored (base64 decoding, where configured, is the runtime's job).
//
// Connections are resolved from app settings the way Azure Functions does
// it; see [NewServiceClient]. [OpenPoison] administers a queue's poison
// queue (list, requeue, purge).
//
// A Driver is a triggers.DelayPublisher: [Driver.PublishDelayed] (and
// [Driver.SendDelayed]) enqueue a message with a visibility timeout, so the
// service keeps it hidden for the delay (whole seconds, rounded up; at most
// [MaxVisibilityTimeout], 7 days).
package azurequeue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/queueerror"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// MaxBatch is the most messages one Receive or Peek can return (the
	// service limit).
	MaxBatch = 32
	// MaxVisibilityTimeout is the longest lease or retry delay the service
	// accepts.
	MaxVisibilityTimeout = 7 * 24 * time.Hour
	// PoisonSuffix is appended to a queue name to name its poison queue.
	PoisonSuffix = "-poison"
)

// ErrNoPoisonQueue is returned (wrapped) by DeadLetter when the queue has no
// poison queue: its name already ends in "-poison", or "<queue>-poison"
// would be longer than 63 characters. The message is left in place.
var ErrNoPoisonQueue = errors.New("queue has no poison queue")

// Options configures a Driver.
type Options struct {
	// CreateIfMissing creates the trigger queue when Receive or Send finds
	// it missing. Without it, Receive returns an error wrapping
	// triggers.ErrNotFound.
	CreateIfMissing bool
	// PoisonQueue names the poison queue; empty means PoisonQueueName's
	// "<queue>-poison" (none when that is not a valid name).
	PoisonQueue string
}

// Driver is a triggers.Driver for one Azure Storage Queue. It is safe for
// concurrent use.
type Driver struct {
	name    string
	nameErr error
	opts    Options
	svc     *azqueue.ServiceClient
	q       *azqueue.QueueClient

	poisonName  string
	poison      *azqueue.QueueClient // nil when poisonName is ""
	poisonMu    sync.Mutex           // serialises poison queue creation
	poisonReady atomic.Bool          // the poison queue is known to exist

	closed atomic.Bool
}

var (
	_ triggers.Driver    = (*Driver)(nil)
	_ triggers.Publisher = (*Driver)(nil)
)

// messageData is the Driver's private data on a received message.
type messageData struct {
	text string // the message text as stored, resent by UpdateMessage
}

// New returns a driver for the queue named queue on svc. The name is not
// lower-cased; an invalid name (see ValidateQueueName) makes every operation
// fail with the validation error.
func New(svc *azqueue.ServiceClient, queue string, opts Options) *Driver {
	d := &Driver{
		name:       queue,
		nameErr:    ValidateQueueName(queue),
		opts:       opts,
		svc:        svc,
		q:          svc.NewQueueClient(queue),
		poisonName: PoisonQueueName(queue),
	}
	if opts.PoisonQueue != "" {
		d.poisonName = opts.PoisonQueue
	}
	if d.nameErr != nil {
		d.nameErr = fmt.Errorf("azurequeue: %w", d.nameErr)
	}
	if d.poisonName != "" {
		d.poison = svc.NewQueueClient(d.poisonName)
	}
	return d
}

// PoisonQueueName returns the name of queue's poison queue, "<queue>-poison",
// or "" when it has none: the name already ends in "-poison" or the poison
// name would exceed 63 characters.
func PoisonQueueName(queue string) string {
	if queue == "" || strings.HasSuffix(queue, PoisonSuffix) || len(queue)+len(PoisonSuffix) > 63 {
		return ""
	}
	return queue + PoisonSuffix
}

// Name returns the queue's name.
func (d *Driver) Name() string { return d.name }

// PoisonDestination returns the poison queue's name, or "" when there is none.
func (d *Driver) PoisonDestination() string { return d.poisonName }

// Close marks the driver closed: every other method then fails with an
// error wrapping triggers.ErrClosed (calls already made run to their end).
// It releases nothing else (the service client is shared) and is
// idempotent.
func (d *Driver) Close() error {
	d.closed.Store(true)
	return nil
}

// usable returns why the driver cannot be used: it is closed, or its queue
// name is invalid.
func (d *Driver) usable() error {
	if d.closed.Load() {
		return fmt.Errorf("azurequeue: queue %q: driver %w", d.name, triggers.ErrClosed)
	}
	return d.nameErr
}

// Receive dequeues up to max messages (clamped to 1..32), hiding each for
// lease (rounded up to whole seconds, at least 1 s, at most 7 days).
func (d *Driver) Receive(ctx context.Context, maxMessages int, lease time.Duration) ([]*triggers.Message, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts := &azqueue.DequeueMessagesOptions{
		NumberOfMessages:  to.Ptr(int32(min(MaxBatch, max(1, maxMessages)))),
		VisibilityTimeout: to.Ptr(seconds(lease, 1)),
	}
	resp, err := d.q.DequeueMessages(ctx, opts)
	if err != nil && d.opts.CreateIfMissing && queueerror.HasCode(err, queueerror.QueueNotFound) {
		if err := d.Create(ctx); err != nil {
			return nil, err
		}
		resp, err = d.q.DequeueMessages(ctx, opts)
	}
	if err != nil {
		return nil, d.queueErr("receive from", err)
	}
	out := make([]*triggers.Message, 0, len(resp.Messages))
	for _, dm := range resp.Messages {
		if dm == nil {
			continue
		}
		text := deref(dm.MessageText)
		out = append(out, &triggers.Message{
			ID:              deref(dm.MessageID),
			Body:            []byte(text),
			DequeueCount:    deref(dm.DequeueCount),
			InsertionTime:   deref(dm.InsertionTime),
			ExpirationTime:  deref(dm.ExpirationTime),
			NextVisibleTime: deref(dm.TimeNextVisible),
			PopReceipt:      deref(dm.PopReceipt),
			Source:          d.name,
			DriverData:      &messageData{text: text},
		})
	}
	return out, nil
}

// Complete deletes the message using its current pop receipt.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	if err := d.check(m); err != nil {
		return err
	}
	if _, err := d.q.DeleteMessage(ctx, m.ID, m.PopReceipt, nil); err != nil {
		return d.messageErr("complete", m, err)
	}
	return nil
}

// Retry makes the message visible again after delay (rounded up to whole
// seconds; 0 means at once), resending its text unchanged. The new pop
// receipt and next-visible time are stored in m.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	if err := d.check(m); err != nil {
		return err
	}
	return d.update(ctx, "retry", m, clampToExpiry(seconds(delay, 0), m.ExpirationTime))
}

// ExtendLease keeps the message hidden for lease from now (rounded up to
// whole seconds, at least 1 s), resending its text unchanged. The new pop
// receipt and next-visible time are stored in m; later calls must use the
// same *Message.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	if err := d.check(m); err != nil {
		return err
	}
	return d.update(ctx, "extend lease of", m, clampToExpiry(seconds(lease, 1), m.ExpirationTime))
}

// DeadLetter copies the message text unchanged to the poison queue (creating
// it if missing), then deletes the original, and returns the poison copy's
// id. Storage Queues cannot store reason. If the copy fails the original is
// left alone; if the delete fails after the copy was made, the poison id is
// returned with the error (the original will reappear when its lease ends).
// Without a poison queue it returns an error wrapping ErrNoPoisonQueue.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	if err := d.check(m); err != nil {
		return "", err
	}
	if d.poison == nil {
		return "", fmt.Errorf("azurequeue: dead-letter message %s from queue %q: %w", m.ID, d.name, ErrNoPoisonQueue)
	}
	if err := d.ensurePoison(ctx); err != nil {
		return "", err
	}
	text := messageText(m)
	resp, err := d.poison.EnqueueMessage(ctx, text, nil)
	if err != nil && queueerror.HasCode(err, queueerror.QueueNotFound) {
		// Deleted since we created it: create it again, once.
		d.poisonReady.Store(false)
		if err := d.ensurePoison(ctx); err != nil {
			return "", err
		}
		resp, err = d.poison.EnqueueMessage(ctx, text, nil)
	}
	if err != nil {
		return "", &opError{op: fmt.Sprintf("dead-letter message %s: enqueue to poison queue %q", m.ID, d.poisonName), err: err}
	}
	var id string
	if len(resp.Messages) > 0 && resp.Messages[0] != nil {
		id = deref(resp.Messages[0].MessageID)
	}
	if _, err := d.q.DeleteMessage(ctx, m.ID, m.PopReceipt, nil); err != nil {
		return id, fmt.Errorf("%w: %w", triggers.ErrNotRemoved, d.messageErr(fmt.Sprintf("dead-letter (poison copy %s made), delete", id), m, err))
	}
	return id, nil
}

// Send enqueues text unchanged (no base64 encoding) and returns the new
// message's id. With Options.CreateIfMissing it creates a missing queue.
func (d *Driver) Send(ctx context.Context, text string) (id string, err error) {
	return d.enqueue(ctx, text, nil)
}

// enqueue is Send with EnqueueMessage options (nil: the service's
// defaults).
func (d *Driver) enqueue(ctx context.Context, text string, o *azqueue.EnqueueMessageOptions) (id string, err error) {
	if err := d.usable(); err != nil {
		return "", err
	}
	resp, err := d.q.EnqueueMessage(ctx, text, o)
	if err != nil && d.opts.CreateIfMissing && queueerror.HasCode(err, queueerror.QueueNotFound) {
		if err := d.Create(ctx); err != nil {
			return "", err
		}
		resp, err = d.q.EnqueueMessage(ctx, text, o)
	}
	if err != nil {
		return "", d.queueErr("send to", err)
	}
	if len(resp.Messages) > 0 && resp.Messages[0] != nil {
		id = deref(resp.Messages[0].MessageID)
	}
	return id, nil
}

// Peek returns up to n (clamped to 1..32) visible messages without
// dequeuing them. They have no pop receipt, so they cannot be settled.
func (d *Driver) Peek(ctx context.Context, n int) ([]*triggers.Message, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	resp, err := d.q.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: to.Ptr(int32(min(MaxBatch, max(1, n))))})
	if err != nil {
		return nil, d.queueErr("peek at", err)
	}
	out := make([]*triggers.Message, 0, len(resp.Messages))
	for _, pm := range resp.Messages {
		if pm == nil {
			continue
		}
		out = append(out, &triggers.Message{
			ID:             deref(pm.MessageID),
			Body:           []byte(deref(pm.MessageText)),
			DequeueCount:   deref(pm.DequeueCount),
			InsertionTime:  deref(pm.InsertionTime),
			ExpirationTime: deref(pm.ExpirationTime),
			Source:         d.name,
		})
	}
	return out, nil
}

// ApproximateCount returns the service's approximate number of messages in
// the queue, visible or not.
func (d *Driver) ApproximateCount(ctx context.Context) (int, error) {
	if err := d.usable(); err != nil {
		return 0, err
	}
	resp, err := d.q.GetProperties(ctx, nil)
	if err != nil {
		return 0, d.queueErr("get properties of", err)
	}
	return int(deref(resp.ApproximateMessagesCount)), nil
}

// Create creates the queue; it succeeds when the queue already exists.
func (d *Driver) Create(ctx context.Context) error {
	if err := d.usable(); err != nil {
		return err
	}
	if _, err := d.q.Create(ctx, nil); err != nil && !queueerror.HasCode(err, queueerror.QueueAlreadyExists) {
		return &opError{op: fmt.Sprintf("create queue %q", d.name), err: err}
	}
	return nil
}

// ensurePoison creates the poison queue once per driver (and tolerates
// another host creating it at the same time).
func (d *Driver) ensurePoison(ctx context.Context) error {
	if d.poisonReady.Load() {
		return nil
	}
	d.poisonMu.Lock()
	defer d.poisonMu.Unlock()
	if d.poisonReady.Load() {
		return nil
	}
	if _, err := d.poison.Create(ctx, nil); err != nil && !queueerror.HasCode(err, queueerror.QueueAlreadyExists) {
		return &opError{op: fmt.Sprintf("create poison queue %q", d.poisonName), err: err}
	}
	d.poisonReady.Store(true)
	return nil
}

// update sends UpdateMessage with the original text and stores the new pop
// receipt and next-visible time in m.
func (d *Driver) update(ctx context.Context, op string, m *triggers.Message, visibility int32) error {
	resp, err := d.q.UpdateMessage(ctx, m.ID, m.PopReceipt, messageText(m), &azqueue.UpdateMessageOptions{VisibilityTimeout: &visibility})
	if err != nil {
		return d.messageErr(op, m, err)
	}
	if resp.PopReceipt != nil {
		m.PopReceipt = *resp.PopReceipt
	}
	if resp.TimeNextVisible != nil {
		m.NextVisibleTime = *resp.TimeNextVisible
	}
	return nil
}

// check rejects messages this driver cannot settle.
func (d *Driver) check(m *triggers.Message) error {
	if err := d.usable(); err != nil {
		return err
	}
	if m == nil {
		return errors.New("azurequeue: nil message")
	}
	if m.Source != "" && m.Source != d.name {
		return fmt.Errorf("azurequeue: message %s is from %q, not queue %q", m.ID, m.Source, d.name)
	}
	if m.PopReceipt == "" {
		return fmt.Errorf("azurequeue: message %s in queue %q has no pop receipt (peeked, not received): %w", m.ID, d.name, triggers.ErrLeaseLost)
	}
	return nil
}

// queueErr wraps an error from an operation on the queue itself.
func (d *Driver) queueErr(op string, err error) error {
	e := &opError{op: fmt.Sprintf("%s queue %q", op, d.name), err: err}
	if queueerror.HasCode(err, queueerror.QueueNotFound) || statusCode(err) == 404 {
		e.kinds = []error{triggers.ErrNotFound}
	}
	return e
}

// messageErr wraps an error from an operation on one message: a missing
// message or a stale pop receipt means the lease is lost; a missing queue
// means both that and ErrNotFound.
func (d *Driver) messageErr(op string, m *triggers.Message, err error) error {
	e := &opError{op: fmt.Sprintf("%s message %s in queue %q", op, m.ID, d.name), err: err}
	switch {
	case queueerror.HasCode(err, queueerror.QueueNotFound):
		e.kinds = []error{triggers.ErrNotFound, triggers.ErrLeaseLost}
	case queueerror.HasCode(err, queueerror.MessageNotFound, queueerror.PopReceiptMismatch) || statusCode(err) == 404:
		e.kinds = []error{triggers.ErrLeaseLost}
	}
	return e
}

func messageText(m *triggers.Message) string {
	if md, ok := m.DriverData.(*messageData); ok && md != nil {
		return md.text
	}
	return string(m.Body)
}

// seconds converts d to whole seconds, rounding up, clamped to
// [lo, MaxVisibilityTimeout].
func seconds(d time.Duration, lo int32) int32 {
	if d <= 0 {
		return lo
	}
	if d >= MaxVisibilityTimeout {
		return int32(MaxVisibilityTimeout / time.Second)
	}
	return max(lo, int32((d+time.Second-1)/time.Second))
}

// clampToExpiry keeps a visibility timeout before the message's expiry,
// which the service requires.
func clampToExpiry(secs int32, expiry time.Time) int32 {
	if expiry.IsZero() {
		return secs
	}
	left := time.Until(expiry) - time.Second
	if left < time.Duration(secs)*time.Second {
		return int32(max(0, left/time.Second))
	}
	return secs
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Publish enqueues body as the message text (triggers.Publisher);
// Storage Queues have no properties, so props are ignored.
func (d *Driver) Publish(ctx context.Context, body []byte, _ map[string]string) (string, error) {
	return d.Send(ctx, string(body))
}
