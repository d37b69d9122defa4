package memqueue

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// requeueHold is how long Requeue keeps a poison message hidden while it
// copies it to the source, so that no other Requeue moves it too.
const requeueHold = time.Minute

var _ triggers.OpenPoisonFunc = OpenPoisonURL

// OpenPoisonURL opens the administration of the poison queue of
// memqueue://name on Default: o.PoisonName or "<name>-poison", as OpenURL
// finds it. List and Requeue see the visible poison messages, in order;
// Count and Purge also those a receiver on the poison queue holds.
func OpenPoisonURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	return Default.OpenPoisonURL(ctx, u, o)
}

// OpenPoisonURL opens the poison administration of memqueue://name on b,
// as the package's OpenPoisonURL does on Default.
func (b *Broker) OpenPoisonURL(_ context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	name, poison, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	return &poisonAdmin{src: b.Queue(name), psn: b.Queue(poison)}, nil
}

// poisonAdmin is the triggers.PoisonAdmin of one source queue.
type poisonAdmin struct {
	src, psn *Queue
	closed   atomic.Bool
}

// Source names the source queue.
func (a *poisonAdmin) Source() string { return "queue " + Scheme + "://" + a.src.name }

// Poison names the poison queue.
func (a *poisonAdmin) Poison() string { return "queue " + Scheme + "://" + a.psn.name }

// check returns an error wrapping triggers.ErrClosed once a is closed.
func (a *poisonAdmin) check(op string) error {
	if a.closed.Load() {
		return fmt.Errorf("memqueue: %s %s: poison administration %w", op, a.Poison(), triggers.ErrClosed)
	}
	return nil
}

// Count returns how many messages the poison queue holds; exists is false
// until it first received one.
func (a *poisonAdmin) Count(context.Context) (int, bool, error) {
	if err := a.check("count"); err != nil {
		return 0, false, err
	}
	q := a.psn
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready) - q.head + len(q.hidden), q.seq > 0, nil
}

// List returns copies of the first n visible poison messages.
func (a *poisonAdmin) List(_ context.Context, n int) ([]*triggers.PoisonMessage, error) {
	if err := a.check("list"); err != nil {
		return nil, err
	}
	q := a.psn
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promote(time.Now())
	visible := q.ready[q.head:]
	visible = visible[:min(max(n, 0), len(visible))]
	out := make([]*triggers.PoisonMessage, 0, len(visible))
	for _, e := range visible {
		out = append(out, e.poisonMessage())
	}
	return out, nil
}

// Requeue moves visible poison messages back to the source one at a time:
// each is hidden, sent to the source as a new message (body and properties
// unchanged), and then removed from the poison queue.
func (a *poisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(*triggers.PoisonMessage, error)) (bool, error) {
	if err := a.check("requeue from"); err != nil {
		return false, err
	}
	if id != "" {
		limit = 1
	}
	for range max(limit, 0) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		e, mark, pm := a.hold(id)
		if e == nil {
			return false, nil // not there, or nothing (more) to move
		}
		// The source takes the stored body and props as they are: the
		// queues never change them, and every delivery gets a copy.
		a.src.add(&entry{body: e.body, props: e.props})
		done(pm, a.remove(e, mark))
		if id != "" {
			return true, nil
		}
	}
	return false, nil
}

// hold hides the visible poison message whose id is id (the first one
// when id is ""), held by mark, and returns it with its PoisonMessage; nil
// when there is none.
func (a *poisonAdmin) hold(id string) (e *entry, mark *triggers.Message, pm *triggers.PoisonMessage) {
	q := a.psn
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	q.promote(now)
	i := q.head
	if id != "" {
		for i < len(q.ready) && q.ready[i].id != id {
			i++
		}
	}
	if i >= len(q.ready) {
		return nil, nil, nil
	}
	e = q.ready[i]
	if i == q.head {
		q.ready[i] = nil
		q.head++
	} else {
		copy(q.ready[i:], q.ready[i+1:])
		q.ready[len(q.ready)-1] = nil
		q.ready = q.ready[:len(q.ready)-1]
	}
	q.compact()
	mark = &triggers.Message{ID: e.id}
	e.holder, e.until = mark, now.Add(requeueHold)
	q.hidden.push(e)
	return e, mark, e.poisonMessage()
}

// remove deletes e, copied to the source, from the poison queue if mark
// still holds it.
func (a *poisonAdmin) remove(e *entry, mark *triggers.Message) error {
	q := a.psn
	q.mu.Lock()
	defer q.mu.Unlock()
	if e.holder != mark || e.index < 0 {
		return fmt.Errorf("memqueue: message %s was copied to %s but left %s meanwhile (purged, or visible again after %v): it may be in both",
			e.id, a.Source(), a.Poison(), requeueHold)
	}
	q.hidden.remove(e.index)
	e.holder = nil
	return nil
}

// Purge deletes up to limit poison messages, visible ones first, and
// returns how many.
func (a *poisonAdmin) Purge(_ context.Context, limit int) (int, error) {
	if err := a.check("purge"); err != nil {
		return 0, err
	}
	q := a.psn
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promote(time.Now())
	n := 0
	for ; n < limit && q.head < len(q.ready); n++ {
		q.ready[q.head] = nil
		q.head++
	}
	q.compact()
	for ; n < limit && len(q.hidden) > 0; n++ {
		q.hidden.pop().holder = nil
	}
	return n, nil
}

// Close makes every other method fail; it is idempotent.
func (a *poisonAdmin) Close() error {
	a.closed.Store(true)
	return nil
}

// poisonMessage returns a copy of poison entry e.
func (e *entry) poisonMessage() *triggers.PoisonMessage {
	return &triggers.PoisonMessage{
		ID: e.id, DequeueCount: e.deliveries, InsertionTime: e.inserted,
		Body: bytes.Clone(e.body), Properties: copyProps(e.props), Reason: e.reason,
	}
}
