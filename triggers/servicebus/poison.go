package servicebus

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/jobhost/jobhost/triggers"
)

// Property names PoisonAdmin.List adds to PoisonMessage.Properties (unless
// an application property has the name already).
const (
	PropMessageID                  = "MessageID"
	PropDeadLetterReason           = "DeadLetterReason"
	PropDeadLetterErrorDescription = "DeadLetterErrorDescription"
	PropDeadLetterSource           = "DeadLetterSource"
)

const (
	// peekPage is how many messages one PeekMessages call asks for.
	peekPage = 250
	// receivePage is how many messages one poison ReceiveMessages asks for.
	receivePage = 100
	// MaxRequeueScan bounds how many dead-lettered messages Requeue locks
	// while it looks for the one with the id it was given.
	MaxRequeueScan = 5000
)

// poisonReceiver is the part of *azservicebus.Receiver (PeekLock, on a
// dead-letter queue) a PoisonAdmin uses: the fake boundary.
type poisonReceiver interface {
	ReceiveMessages(ctx context.Context, maxMessages int, options *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	PeekMessages(ctx context.Context, maxMessageCount int, options *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	CompleteMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.AbandonMessageOptions) error
	Close(ctx context.Context) error
}

// runtimeCounter is the part of *admin.Client PoisonAdmin.Count uses.
type runtimeCounter interface {
	GetQueueRuntimeProperties(ctx context.Context, queueName string, options *admin.GetQueueRuntimePropertiesOptions) (*admin.GetQueueRuntimePropertiesResponse, error)
	GetSubscriptionRuntimeProperties(ctx context.Context, topicName string, subscriptionName string, options *admin.GetSubscriptionRuntimePropertiesOptions) (*admin.GetSubscriptionRuntimePropertiesResponse, error)
}

var (
	_ poisonReceiver       = (*azservicebus.Receiver)(nil)
	_ runtimeCounter       = (*admin.Client)(nil)
	_ triggers.PoisonAdmin = (*PoisonAdmin)(nil)
)

// PoisonAdmin administers the dead-letter queue of one queue or topic
// subscription, Service Bus's own poison destination (a
// triggers.PoisonAdmin). Its operations run one at a time.
//
// PoisonMessage.ID is the message's sequence number in the dead-letter
// queue, in decimal (also in PoisonMessage.Sequence): unlike the MessageID,
// which the sender chooses and retried copies change, it names one message
// there. The MessageID is in Properties["MessageID"].
type PoisonAdmin struct {
	entity  Entity
	dlqPath string
	wait    time.Duration
	dlq     poisonReceiver
	send    sender         // to the queue; nil for a subscription
	counter runtimeCounter // nil: count by peeking
	release func(context.Context) error

	opMu sync.Mutex // one operation at a time

	mu       sync.Mutex
	closed   bool
	peekOnly bool // the runtime properties were refused
	closeCtx context.Context
	stop     context.CancelFunc
}

// NewPoisonAdmin returns the poison administration of e (a queue or a topic
// subscription, not a dead-letter queue) through r, normally an
// *azservicebus.Receiver in PeekLock mode on e's dead-letter queue, and s,
// normally an *azservicebus.Sender on the queue, for Requeue (nil for a
// subscription, which cannot be requeued into). c, normally an
// *admin.Client, gives Count the runtime properties; nil means counting by
// peeking. opts may be nil; only ReceiveWait is used: how long Requeue and
// Purge wait for more messages once they stop arriving. The administration
// owns r and s: Close closes them.
func NewPoisonAdmin(r poisonReceiver, s sender, c runtimeCounter, e Entity, opts *Options) (*PoisonAdmin, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.DeadLetterQueue {
		return nil, fmt.Errorf("servicebus: NewPoisonAdmin %s: name the queue or subscription, not its dead-letter queue", e.Path())
	}
	s, o, err := checkOpen("NewPoisonAdmin", r, s, e, opts)
	if err != nil {
		return nil, err
	}
	if pc, ok := c.(*admin.Client); ok && pc == nil {
		c = nil
	}
	ctx, stop := context.WithCancel(context.Background())
	return &PoisonAdmin{
		entity: e, dlqPath: e.Path() + DeadLetterSuffix, wait: o.ReceiveWait,
		dlq: r, send: s, counter: c, closeCtx: ctx, stop: stop,
	}, nil
}

// OpenPoisonURL opens the poison administration of a subscription URL (a
// triggers.OpenPoisonFunc, registered for the azuresb scheme): the
// dead-letter queue of the queue or topic subscription u names. The
// connection is found as for OpenURL and shared likewise; o.PoisonName must
// be empty or the entity's dead-letter queue. listener_timeout sets how long
// Requeue and Purge wait for more messages once they stop arriving.
func OpenPoisonURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	e, opts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	if err := checkPoisonName(e, o.PoisonName); err != nil {
		return nil, err
	}
	sc, release, err := acquireConn(o)
	if err != nil {
		return nil, fmt.Errorf("servicebus: %s: %w", e.Path(), err)
	}
	dl := e
	dl.DeadLetterQueue = true
	r, err := newReceiver(sc.client, dl)
	if err != nil {
		releaseNow(ctx, release)
		return nil, err
	}
	var s sender
	if e.Queue != "" {
		snd, err := sc.client.NewSender(e.Queue, nil)
		if err != nil {
			_ = closeParts(ctx, "", nil, r.Close, release)
			return nil, wrapErr("open sender for "+e.Path(), err, false)
		}
		s = snd
	}
	var c runtimeCounter
	if ac, err := sc.adminClient(); err == nil {
		c = ac
	}
	p, err := NewPoisonAdmin(r, s, c, e, &opts)
	if err != nil {
		_ = closeParts(ctx, "", s, r.Close, release)
		return nil, err
	}
	p.release = release
	return p, nil
}

// Source names the queue or subscription.
func (p *PoisonAdmin) Source() string {
	if p.entity.Queue != "" {
		return "queue " + p.entity.Queue
	}
	return "subscription " + p.entity.Path()
}

// Poison names the dead-letter queue.
func (p *PoisonAdmin) Poison() string { return "dead-letter queue " + p.dlqPath }

func (p *PoisonAdmin) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// begin starts an operation: it waits for the one before, and returns a
// context that Close cancels and the function that ends the operation,
// which the operation defers with its error (see closedDuring).
func (p *PoisonAdmin) begin(ctx context.Context, op string) (context.Context, func(err *error), error) {
	if p.isClosed() {
		return nil, nil, closedErr(op)
	}
	p.opMu.Lock()
	if p.isClosed() {
		p.opMu.Unlock()
		return nil, nil, closedErr(op)
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.closeCtx, cancel)
	return ctx, func(err *error) {
		p.closedDuring(op, err)
		stop()
		cancel()
		p.opMu.Unlock()
	}, nil
}

// closedDuring turns the error of an operation that Close interrupted into
// one wrapping ErrClosed.
func (p *PoisonAdmin) closedDuring(op string, err *error) {
	if *err != nil && p.isClosed() {
		*err = &opError{op: op, kinds: []error{ErrClosed}, err: *err}
	}
}

// Count returns how many messages the dead-letter queue holds. It reads the
// entity's runtime properties (DeadLetterMessageCount) when the credentials
// allow it (the Manage right, or the Azure Service Bus Data Owner role);
// when the management endpoint refuses them (401 or 403, as for a
// Listen-only key) it counts by peeking through the whole dead-letter
// queue, one round trip per 250 messages, and keeps counting that way for
// the administration's life. exists is true whenever the entity exists (a
// dead-letter queue always does); a missing entity is an error wrapping
// triggers.ErrNotFound.
func (p *PoisonAdmin) Count(ctx context.Context) (n int, exists bool, err error) {
	op := "count the messages in " + p.dlqPath
	ctx, end, err := p.begin(ctx, op)
	if err != nil {
		return 0, false, err
	}
	defer end(&err)
	p.mu.Lock()
	c := p.counter
	if p.peekOnly {
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		n, found, err := p.runtimeCount(ctx, c)
		switch {
		case err == nil && !found:
			return 0, false, &opError{op: op + " (runtime properties): no " + p.Source(), kinds: []error{triggers.ErrNotFound}}
		case err == nil:
			return n, true, nil
		case isUnauthorized(err):
			p.mu.Lock()
			p.peekOnly = true
			p.mu.Unlock()
		default:
			return 0, false, wrapErr(op+" (runtime properties)", err, false)
		}
	}
	n = 0
	from := int64(0)
	for {
		rms, err := p.peek(ctx, op, peekPage, from)
		if err != nil {
			return 0, false, err
		}
		next := nextSequence(rms, from)
		if len(rms) == 0 || next == from {
			return n, true, nil
		}
		n += len(rms)
		from = next
	}
}

// runtimeCount reads DeadLetterMessageCount; found is false when the
// entity does not exist.
func (p *PoisonAdmin) runtimeCount(ctx context.Context, c runtimeCounter) (n int, found bool, err error) {
	e := p.entity
	if e.Queue != "" {
		r, err := c.GetQueueRuntimeProperties(ctx, e.Queue, nil)
		if err != nil || r == nil {
			return 0, false, err
		}
		return int(r.DeadLetterMessageCount), true, nil
	}
	r, err := c.GetSubscriptionRuntimeProperties(ctx, e.Topic, e.Subscription, nil)
	if err != nil || r == nil {
		return 0, false, err
	}
	return int(r.DeadLetterMessageCount), true, nil
}

// peek returns up to n messages from sequence number from on.
func (p *PoisonAdmin) peek(ctx context.Context, op string, n int, from int64) ([]*azservicebus.ReceivedMessage, error) {
	rms, err := p.dlq.PeekMessages(ctx, n, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
	if err != nil {
		return nil, wrapErr(op, err, false)
	}
	return rms, nil
}

// peekHas reports whether the dead-letter queue holds sequence number seq.
func (p *PoisonAdmin) peekHas(ctx context.Context, op string, seq int64) (bool, error) {
	rms, err := p.peek(ctx, op, 1, seq)
	if err != nil || len(rms) == 0 {
		return false, err
	}
	got, ok := sequenceOf(rms[0])
	return ok && got == seq, nil
}

// List returns up to n messages, peeked (nothing is locked or changed), in
// sequence order. See PoisonAdmin for the ID; Reason is the
// DeadLetterReason, and Properties hold the application properties as
// strings and, unless those have the names, the MessageID, ContentType,
// CorrelationID, Subject, DeadLetterReason, DeadLetterErrorDescription
// (for jobhost, the function's error) and DeadLetterSource.
func (p *PoisonAdmin) List(ctx context.Context, n int) (out []*triggers.PoisonMessage, err error) {
	op := "list " + p.dlqPath
	ctx, end, err := p.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	from := int64(0)
	for len(out) < n {
		rms, err := p.peek(ctx, op, min(n-len(out), peekPage), from)
		if err != nil {
			return nil, err
		}
		next := nextSequence(rms, from)
		for _, rm := range rms {
			if len(out) < n && rm != nil {
				out = append(out, poisonMessage(rm))
			}
		}
		if len(rms) == 0 || next == from {
			break
		}
		from = next
	}
	return out, nil
}

// Close closes the receiver and the sender and drops the administration's
// reference to the shared client. It ends an operation in progress (what it
// holds is abandoned first). It is idempotent; afterwards every other
// method returns an error wrapping ErrClosed.
func (p *PoisonAdmin) Close() error {
	if !markClosed(&p.mu, &p.closed, p.stop) {
		return nil
	}
	p.opMu.Lock() // the operation in progress, cancelled, ends
	defer p.opMu.Unlock()
	return closeParts(context.Background(), "poison administration of "+p.entity.Path(), p.send, p.dlq.Close, p.release)
}

// sequenceOf returns rm's sequence number.
func sequenceOf(rm *azservicebus.ReceivedMessage) (int64, bool) {
	if rm == nil || rm.SequenceNumber == nil {
		return 0, false
	}
	return *rm.SequenceNumber, true
}

// nextSequence returns the sequence number after the highest in rms, or
// from when there is none higher.
func nextSequence(rms []*azservicebus.ReceivedMessage, from int64) int64 {
	next := from
	for _, rm := range rms {
		if seq, ok := sequenceOf(rm); ok && seq+1 > next {
			next = seq + 1
		}
	}
	return next
}

// poisonMessage maps a dead-lettered message (see List).
func poisonMessage(rm *azservicebus.ReceivedMessage) *triggers.PoisonMessage {
	pm := &triggers.PoisonMessage{
		Body:         rm.Body,
		DequeueCount: int64(rm.DeliveryCount),
		Properties:   make(map[string]string, len(rm.ApplicationProperties)+4),
	}
	if seq, ok := sequenceOf(rm); ok {
		pm.ID = strconv.FormatInt(seq, 10)
		if seq >= 0 {
			pm.Sequence = uint64(seq)
		}
	}
	if rm.EnqueuedTime != nil {
		pm.InsertionTime = *rm.EnqueuedTime
	}
	for k, v := range rm.ApplicationProperties {
		pm.Properties[k] = stringify(v)
		if k == DeliveryCountProperty {
			if n, ok := toInt64(v); ok && n >= 0 {
				pm.DequeueCount += n // deliveries before a scheduled retry copy
			}
		}
	}
	if rm.DeadLetterReason != nil {
		pm.Reason = *rm.DeadLetterReason
	}
	for _, f := range []struct {
		k string
		v *string
	}{
		{PropMessageID, &rm.MessageID},
		{PropContentType, rm.ContentType},
		{PropCorrelationID, rm.CorrelationID},
		{PropSubject, rm.Subject},
		{PropDeadLetterReason, rm.DeadLetterReason},
		{PropDeadLetterErrorDescription, rm.DeadLetterErrorDescription},
		{PropDeadLetterSource, rm.DeadLetterSource},
	} {
		if _, taken := pm.Properties[f.k]; f.v != nil && *f.v != "" && !taken {
			pm.Properties[f.k] = *f.v
		}
	}
	return pm
}
