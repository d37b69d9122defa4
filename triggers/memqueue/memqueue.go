// Package memqueue is jobhost's in-process queue and its trigger driver,
// URL scheme memqueue:// (memqueue://orders). It has the semantics of a
// Storage Queue without the network: leases (a received message is hidden
// until it is settled or its lease ends), DequeueCount, delayed retries,
// and a poison queue. Use it for tests, local runs and pipelines inside one
// process (a function's output to memqueue://next triggers another
// function of the same host); nothing survives the process, and another
// process (the jobhost CLI included) cannot reach it.
//
// # Semantics
//
//   - Queues live in a Broker, created on first use by name; memqueue://
//     URLs use Default. A queue holds messages in arrival order.
//   - Receive returns up to max visible messages in order, each hidden for
//     its lease, with DequeueCount one more than before. When none is
//     visible it waits up to ReceiveWait (1 s) for one (the driver is a
//     triggers.Waiter), then returns none.
//   - A lease that ends makes the message visible again; settling it after
//     that (or a second time) returns an error wrapping ErrLeaseLost.
//     ExtendLease moves the lease's end; Retry(delay) makes it visible after
//     delay, behind the messages already visible.
//   - ID is a decimal sequence number per queue; InsertionTime is when it
//     was sent; ExpirationTime is zero (messages do not expire).
//   - The queue owns what it stores: Send and Publish copy the body and the
//     properties, and every delivery (and every poison copy) gets its own,
//     so no caller or holder shares bytes or maps with another.
//   - Delayed publishing: publishers (and the Driver) are
//     triggers.DelayPublisher. PublishDelayed (and Queue.SendDelayed) keep
//     the message hidden, in process, until its delay has passed; there is
//     no longest delay.
//   - DeadLetter copies body and properties unchanged to the poison queue
//     (default "<name>-poison"), recording reason and the DequeueCount, and
//     removes the original. [OpenPoisonURL] administers the poison queue.
//   - Close is idempotent; afterwards every method of a Driver, publisher
//     or poison administration returns an error wrapping
//     triggers.ErrClosed.
//
// The package registers scheme memqueue with package triggers when
// imported.
package memqueue

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// Scheme is the URL scheme of in-process queues.
const Scheme = "memqueue"

// ReceiveWait is how long Receive waits for a message when none is visible.
const ReceiveWait = time.Second

// Broker is a set of named in-process queues. Its zero value is not
// usable; call NewBroker.
type Broker struct {
	mu     sync.Mutex
	queues map[string]*Queue
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{queues: map[string]*Queue{}} }

// Default is the broker of memqueue:// URLs.
var Default = NewBroker()

// Queue returns the named queue, creating it when missing.
func (b *Broker) Queue(name string) *Queue {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[name]
	if !ok {
		q = &Queue{name: name}
		b.queues[name] = q
	}
	return q
}

// Queue is one in-process queue. It is safe for concurrent use.
type Queue struct {
	name string

	mu      sync.Mutex
	seq     uint64
	ready   []*entry // visible, in order; ready[head:] is live
	head    int
	hidden  hiddenHeap // leased or delayed, by the time they become visible
	waiters int
	arrived chan struct{} // closed when a message becomes visible and someone waits
}

// entry is one message on a queue.
type entry struct {
	q        *Queue
	id       string
	body     []byte
	props    map[string]string
	inserted time.Time
	dequeues int64

	// On a poison queue: why the message was dead-lettered and its
	// DequeueCount then.
	reason     string
	deliveries int64

	until  time.Time         // hidden until then (while index >= 0)
	index  int               // position in hidden, -1 when not hidden
	holder *triggers.Message // the delivery holding the lease, nil when none
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Send appends a message and returns its id. body and props are copied:
// the caller may reuse them at once.
func (q *Queue) Send(body []byte, props map[string]string) string {
	return q.add(&entry{body: bytes.Clone(body), props: copyProps(props)})
}

// add appends e, whose body and props the queue now owns, and returns its
// id.
func (q *Queue) add(e *entry) string {
	e.q, e.inserted, e.index = q, time.Now(), -1
	q.mu.Lock()
	q.seq++
	e.id = strconv.FormatUint(q.seq, 10)
	q.ready = append(q.ready, e)
	q.wake()
	q.mu.Unlock()
	return e.id
}

// Len returns how many messages the queue holds: visible, leased and
// delayed.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready) - q.head + len(q.hidden)
}

// wake tells waiting receivers that a message is visible. q.mu is held.
func (q *Queue) wake() {
	if q.waiters > 0 && q.arrived != nil {
		close(q.arrived)
		q.arrived = nil
	}
}

// promote makes hidden messages whose time has come visible again: an
// ended lease is lost to its holder. q.mu is held.
func (q *Queue) promote(now time.Time) {
	for q.hidden.visibleBy(now) {
		e := q.hidden.pop()
		e.holder = nil
		q.ready = append(q.ready, e)
	}
}

// take removes up to max visible messages and leases them. q.mu is held.
func (q *Queue) take(max int, lease time.Duration, now time.Time, source string) []*triggers.Message {
	n := min(max, len(q.ready)-q.head)
	if n <= 0 {
		return nil
	}
	out := make([]*triggers.Message, n)
	msgs := make([]triggers.Message, n) // one allocation for the batch
	size := 0
	for _, e := range q.ready[q.head : q.head+n] {
		size += len(e.body)
	}
	buf := make([]byte, 0, size) // and one for the batch's bodies
	for i := range n {
		e := q.ready[q.head]
		start := len(buf)
		buf = append(buf, e.body...)
		q.ready[q.head] = nil
		q.head++
		e.dequeues++
		e.until = now.Add(lease)
		q.hidden.push(e)
		m := &msgs[i]
		*m = triggers.Message{
			ID: e.id, Body: buf[start:len(buf):len(buf)], DequeueCount: e.dequeues, InsertionTime: e.inserted,
			NextVisibleTime: e.until, Properties: copyProps(e.props), Source: source, DriverData: e,
		}
		e.holder = m
		out[i] = m
	}
	q.compact()
	return out
}

// compact reclaims the consumed front of q.ready. q.mu is held.
func (q *Queue) compact() {
	if q.head == len(q.ready) {
		q.ready, q.head = q.ready[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.ready) {
		q.ready, q.head = append(q.ready[:0], q.ready[q.head:]...), 0
	}
}

// nextWake returns how long until the first hidden message becomes
// visible, or false when none is hidden. q.mu is held.
func (q *Queue) nextWake(now time.Time) (time.Duration, bool) {
	if len(q.hidden) == 0 {
		return 0, false
	}
	return q.hidden[0].e.until.Sub(now), true
}

func copyProps(p map[string]string) map[string]string {
	if len(p) == 0 {
		return nil
	}
	return maps.Clone(p)
}

// hiddenHeap orders hidden entries by the time they become visible. Each
// slot keeps its entry's time as a number beside it, so that ordering reads
// only the heap's own memory, not the entries scattered over the heap.
type hiddenHeap []hiddenSlot

type hiddenSlot struct {
	at int64 // e.until, as nanoseconds since epoch (monotonic)
	e  *entry
}

// epoch is what slot times count from; it has a monotonic clock reading, so
// slot order agrees with time.Time comparisons of until.
var epoch = time.Now()

func slotTime(t time.Time) int64 { return int64(t.Sub(epoch)) }

// visibleBy reports whether the first hidden entry is visible at now.
func (h hiddenHeap) visibleBy(now time.Time) bool { return len(h) > 0 && h[0].at <= slotTime(now) }

func (h hiddenHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index, h[j].e.index = i, j
}

func (h hiddenHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if h[i].at <= h[j].at {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down sifts slot i down; it reports whether it moved.
func (h hiddenHeap) down(i int) bool {
	i0, n := i, len(h)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && h[r].at < h[j].at {
			j = r
		}
		if h[i].at <= h[j].at {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// push adds e, hidden until e.until.
func (h *hiddenHeap) push(e *entry) {
	e.index = len(*h)
	*h = append(*h, hiddenSlot{at: slotTime(e.until), e: e})
	h.up(e.index)
}

// remove takes out the entry at slot i and returns it.
func (h *hiddenHeap) remove(i int) *entry {
	old := *h
	n := len(old) - 1
	if i != n {
		old.swap(i, n)
		if !old[:n].down(i) {
			old[:n].up(i)
		}
	}
	e := old[n].e
	old[n] = hiddenSlot{}
	*h = old[:n]
	e.index = -1
	return e
}

// pop takes out the entry visible first.
func (h *hiddenHeap) pop() *entry { return h.remove(0) }

// fix restores the order after e.until of the entry at slot i changed.
func (h hiddenHeap) fix(i int) {
	h[i].at = slotTime(h[i].e.until)
	if !h.down(i) {
		h.up(i)
	}
}

// Driver is a triggers.Driver for one Queue. It is safe for concurrent use.
type Driver struct {
	q, poison *Queue
	source    string
	closed    chan struct{}
	closeOnce sync.Once
}

var (
	_ triggers.Driver        = (*Driver)(nil)
	_ triggers.Waiter        = (*Driver)(nil)
	_ triggers.PrivateBodies = (*Driver)(nil)
	_ triggers.Publisher     = (*Driver)(nil)
	_ triggers.OpenURLFunc   = OpenURL
)

// New returns a driver for q that dead-letters to poison (nil: no poison
// queue; DeadLetter then fails and leaves the message in place).
func New(q, poison *Queue) *Driver {
	return &Driver{q: q, poison: poison, source: Scheme + "://" + q.name, closed: make(chan struct{})}
}

// OpenURL opens a driver for memqueue://name on Default. The poison queue
// is o.PoisonName or "<name>-poison". The URL takes no query parameters.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	return Default.OpenURL(ctx, u, o)
}

// OpenURL opens a driver for memqueue://name on b, as the package's
// OpenURL does on Default.
func (b *Broker) OpenURL(_ context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	name, poison, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	return New(b.Queue(name), b.Queue(poison)), nil
}

// parseURL returns the queue memqueue://name names and its poison queue.
func parseURL(u *url.URL, o triggers.OpenOptions) (name, poison string, err error) {
	name = u.Host + u.Path
	if name == "" {
		return "", "", fmt.Errorf("memqueue: URL %q names no queue (memqueue://<name>)", u.Redacted())
	}
	if u.RawQuery != "" || u.User != nil {
		return "", "", fmt.Errorf("memqueue: URL %q: memqueue:// takes no user or query parameters", u.Redacted())
	}
	poison = o.PoisonName
	if poison == "" {
		poison = name + "-poison"
	}
	if poison == name {
		return "", "", fmt.Errorf("memqueue: URL %q: the poison queue may not be the queue itself", u.Redacted())
	}
	return name, poison, nil
}

// Queue returns the driver's queue.
func (d *Driver) Queue() *Queue { return d.q }

// ReceiveWaits reports that Receive waits (up to ReceiveWait) for messages.
func (d *Driver) ReceiveWaits() bool { return true }

// BodiesPrivate reports that every delivery's Body is its own: the queue
// settles and dead-letters from the copy it keeps.
func (d *Driver) BodiesPrivate() bool { return true }

// PoisonDestination returns the poison queue's name, or "".
func (d *Driver) PoisonDestination() string {
	if d.poison == nil {
		return ""
	}
	return d.poison.name
}

// Publish sends a message to the driver's queue; body and props are
// copied.
func (d *Driver) Publish(_ context.Context, body []byte, props map[string]string) (string, error) {
	if err := d.checkOpen("publish to", ""); err != nil {
		return "", err
	}
	return d.q.Send(body, props), nil
}

// checkOpen returns an error wrapping triggers.ErrClosed once the driver
// is closed; id names the message op was for, if any.
func (d *Driver) checkOpen(op, id string) error {
	select {
	case <-d.closed:
		if id != "" {
			return fmt.Errorf("memqueue: %s message %s from %s: driver %w", op, id, d.source, triggers.ErrClosed)
		}
		return fmt.Errorf("memqueue: %s %s: driver %w", op, d.source, triggers.ErrClosed)
	default:
		return nil
	}
}

// Receive returns up to max visible messages, each leased for lease,
// waiting up to ReceiveWait for the first.
func (d *Driver) Receive(ctx context.Context, max int, lease time.Duration) ([]*triggers.Message, error) {
	if err := d.checkOpen("receive from", ""); err != nil {
		return nil, err
	}
	if lease <= 0 {
		return nil, fmt.Errorf("memqueue: receive from %s: lease %v is not positive", d.q.name, lease)
	}
	if max < 1 {
		return nil, nil
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	deadline := time.Now().Add(ReceiveWait)
	q := d.q
	for {
		if err := d.checkOpen("receive from", ""); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := time.Now()
		q.mu.Lock()
		q.promote(now)
		if out := q.take(max, lease, now, d.source); out != nil {
			q.mu.Unlock()
			return out, nil
		}
		wait := deadline.Sub(now)
		if w, ok := q.nextWake(now); ok && w < wait {
			wait = w
		}
		if wait <= 0 {
			q.mu.Unlock()
			if now.Before(deadline) {
				continue
			}
			return nil, nil
		}
		if q.arrived == nil {
			q.arrived = make(chan struct{})
		}
		arrived := q.arrived
		q.waiters++
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-arrived:
		case <-timer.C:
		case <-ctx.Done():
		case <-d.closed:
		}
		q.mu.Lock()
		q.waiters--
		q.mu.Unlock()
		// Look again: past the deadline, the loop's last look returns
		// what is visible, or none.
	}
}

// held returns m's entry, with q.mu locked, when m still holds its lease.
func (d *Driver) held(m *triggers.Message, op string) (*entry, error) {
	if err := d.checkOpen(op, m.ID); err != nil {
		return nil, err
	}
	e, ok := m.DriverData.(*entry)
	if !ok || e.q != d.q {
		return nil, fmt.Errorf("memqueue: %s message %s: it was not received from %s", op, m.ID, d.source)
	}
	d.q.mu.Lock()
	if e.holder != m || !time.Now().Before(e.until) {
		d.q.mu.Unlock()
		return nil, fmt.Errorf("memqueue: %s message %s from %s: it was settled or its lease ended: %w", op, m.ID, d.source, triggers.ErrLeaseLost)
	}
	return e, nil
}

// Complete removes the message from the queue.
func (d *Driver) Complete(_ context.Context, m *triggers.Message) error {
	e, err := d.held(m, "complete")
	if err != nil {
		return err
	}
	d.q.hidden.remove(e.index)
	e.holder = nil
	d.q.mu.Unlock()
	return nil
}

// Retry makes the message visible again after delay (at once when delay
// is not positive).
func (d *Driver) Retry(_ context.Context, m *triggers.Message, delay time.Duration) error {
	e, err := d.held(m, "retry")
	if err != nil {
		return err
	}
	q := d.q
	e.holder = nil
	if delay > 0 {
		e.until = time.Now().Add(delay)
		q.hidden.fix(e.index)
	} else {
		q.hidden.remove(e.index)
		q.ready = append(q.ready, e)
		q.wake()
	}
	q.mu.Unlock()
	return nil
}

// ExtendLease keeps the message hidden for lease from now and updates
// m.NextVisibleTime.
func (d *Driver) ExtendLease(_ context.Context, m *triggers.Message, lease time.Duration) error {
	if err := d.checkOpen("extend lease of", m.ID); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("memqueue: extend lease of message %s: lease %v is not positive", m.ID, lease)
	}
	e, err := d.held(m, "extend lease of")
	if err != nil {
		return err
	}
	e.until = time.Now().Add(lease)
	d.q.hidden.fix(e.index)
	m.NextVisibleTime = e.until
	d.q.mu.Unlock()
	return nil
}

// DeadLetter moves the message to the poison queue, recording reason and
// its DequeueCount there, and returns the copy's id.
func (d *Driver) DeadLetter(_ context.Context, m *triggers.Message, reason string) (string, error) {
	if err := d.checkOpen("dead-letter", m.ID); err != nil {
		return "", err
	}
	if d.poison == nil {
		return "", fmt.Errorf("memqueue: dead-letter message %s from %s: no poison queue (the message was left in place)", m.ID, d.source)
	}
	e, err := d.held(m, "dead-letter")
	if err != nil {
		return "", err
	}
	d.q.hidden.remove(e.index)
	e.holder = nil
	d.q.mu.Unlock()
	// The queue owns e's body and props and no delivery shares them: the
	// poison copy takes them over.
	return d.poison.add(&entry{body: e.body, props: e.props, reason: reason, deliveries: e.dequeues}), nil
}

// Close ends the driver: every other method fails afterwards with an error
// wrapping triggers.ErrClosed, and a waiting Receive returns at once.
// Leased messages stay hidden until their leases end. Close is idempotent.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}
