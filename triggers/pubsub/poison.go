package pubsub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	gcpubsub "gocloud.dev/pubsub"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// MaxRequeueScan bounds how many poison messages Requeue holds while it
	// looks for the one with the id it was given.
	MaxRequeueScan = 5000
	// poisonPage is how many messages one PoisonBackend.Fetch asks for.
	poisonPage = 100
	// releaseTimeout bounds giving held messages back after an operation.
	releaseTimeout = 30 * time.Second
)

// ErrNoSourceTopic is wrapped by Requeue when the trigger URL names no topic
// to publish to (gcppubsub:// without topic=).
var ErrNoSourceTopic = errors.New("no source topic to requeue into")

// PoisonHeld is a poison message that an operation of a PoisonBackend
// holds until it releases or removes it.
type PoisonHeld struct {
	// Message is the message as List reports it.
	Message *triggers.PoisonMessage
	// Metadata is the message's metadata as stored; Requeue copies it,
	// without jobhost's bookkeeping keys.
	Metadata map[string]string
	// Handle is the backend's own (an ack id, an offset).
	Handle any
}

// PoisonBackend reads and removes the messages of one poison destination:
// what a scheme gives NewPoisonAdmin, which makes a triggers.PoisonAdmin of
// it. Its methods are called one at a time.
type PoisonBackend interface {
	// Poison names the poison destination for messages.
	Poison() string
	// Count returns how many messages the poison destination holds (see
	// triggers.PoisonAdmin.Count).
	Count(ctx context.Context) (n int, exists bool, err error)
	// Fetch returns up to n messages that the backend does not hold now,
	// and holds them (hidden from other readers where the broker can hide
	// them) until Release or Remove. It returns none when there are no
	// more.
	Fetch(ctx context.Context, n int) ([]*PoisonHeld, error)
	// Release gives held messages back, unchanged.
	Release(ctx context.Context, hs []*PoisonHeld) error
	// Remove deletes a held message from the poison destination.
	Remove(ctx context.Context, h *PoisonHeld) error
	// Close releases the backend's resources.
	Close() error
}

// poisonAdmin is a triggers.PoisonAdmin over a PoisonBackend; requeued
// copies are published to the source topic.
type poisonAdmin struct {
	b      PoisonBackend
	source string
	topic  *gcpubsub.Topic // nil: the trigger has no topic to requeue into
	shared bool            // topic is process-wide: left open at Close
	life   *life
	opMu   sync.Mutex
}

var _ triggers.PoisonAdmin = (*poisonAdmin)(nil)

// NewPoisonAdmin returns the poison administration of b, requeueing into
// topic (nil: Requeue fails with ErrNoSourceTopic), named source in
// messages. Its Close closes b and shuts topic down unless shared. Every
// operation holds what it reads only for its own duration: List releases
// what it fetched; Requeue publishes each message to topic and removes it
// from the poison destination only after the publish returned, so an
// interruption can duplicate a message, never lose one.
func NewPoisonAdmin(b PoisonBackend, source string, topic *gcpubsub.Topic, shared bool) triggers.PoisonAdmin {
	return &poisonAdmin{b: b, source: source, topic: topic, shared: shared, life: newLife()}
}

// Source names the source topic.
func (p *poisonAdmin) Source() string { return p.source }

// Poison names the poison destination.
func (p *poisonAdmin) Poison() string { return p.b.Poison() }

// begin starts an operation: one at a time, ended by Close.
func (p *poisonAdmin) begin(ctx context.Context, op string) (context.Context, func(), error) {
	cctx, exit, ok := p.life.enterCtx(ctx)
	if !ok {
		return nil, nil, fmt.Errorf("pubsub: %s %s: %w", op, p.Poison(), triggers.ErrClosed)
	}
	p.opMu.Lock()
	return cctx, func() { p.opMu.Unlock(); exit() }, nil
}

// fail wraps err as op's, with ErrClosed when Close ended it.
func (p *poisonAdmin) fail(op string, err error) error {
	if p.life.closing() {
		return fmt.Errorf("pubsub: %s %s: %w: %w", op, p.Poison(), triggers.ErrClosed, err)
	}
	return fmt.Errorf("pubsub: %s %s: %w", op, p.Poison(), err)
}

// Count returns the backend's count.
func (p *poisonAdmin) Count(ctx context.Context) (int, bool, error) {
	ctx, end, err := p.begin(ctx, "count")
	if err != nil {
		return 0, false, err
	}
	defer end()
	n, exists, err := p.b.Count(ctx)
	if err != nil {
		return 0, false, p.fail("count", err)
	}
	return n, exists, nil
}

// release gives hs back, within releaseTimeout even when ctx has ended.
func (p *poisonAdmin) release(ctx context.Context, hs []*PoisonHeld) error {
	if len(hs) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	return p.b.Release(rctx, hs)
}

// List fetches up to n messages and releases them.
func (p *poisonAdmin) List(ctx context.Context, n int) (_ []*triggers.PoisonMessage, err error) {
	ctx, end, err := p.begin(ctx, "list")
	if err != nil {
		return nil, err
	}
	defer end()
	var held []*PoisonHeld
	defer func() {
		if rerr := p.release(ctx, held); rerr != nil && err == nil {
			err = p.fail("release the messages listed from", rerr)
		}
	}()
	for len(held) < n {
		hs, err := p.b.Fetch(ctx, min(n-len(held), poisonPage))
		held = append(held, hs...)
		if err != nil {
			return nil, p.fail("list", err)
		}
		if len(hs) == 0 {
			break
		}
	}
	out := make([]*triggers.PoisonMessage, 0, len(held))
	for _, h := range held {
		out = append(out, h.Message)
	}
	return out, nil
}

// Requeue moves messages back to the source topic (see NewPoisonAdmin):
// the one whose ID is id, looked for among at most MaxRequeueScan, or up to
// limit of them. It stops at the first message it cannot move (done gets
// the error too); what it did not reach, or skipped, stays.
func (p *poisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(*triggers.PoisonMessage, error)) (found bool, err error) {
	ctx, end, err := p.begin(ctx, "requeue from")
	if err != nil {
		return false, err
	}
	defer end()
	if p.topic == nil {
		return false, p.fail("requeue from", fmt.Errorf("%w: name the topic the trigger reads (topic=)", ErrNoSourceTopic))
	}
	if done == nil {
		done = func(*triggers.PoisonMessage, error) {}
	}
	if id != "" {
		limit = MaxRequeueScan
	}
	var held []*PoisonHeld
	defer func() { _ = p.release(ctx, held) }()
	moved, seen := 0, 0
	for moved < limit && !found && seen < limit {
		hs, err := p.b.Fetch(ctx, min(limit-seen, poisonPage))
		if err != nil {
			held = append(held, hs...)
			return found, p.fail("requeue from", err)
		}
		if len(hs) == 0 {
			break
		}
		for i, h := range hs {
			seen++
			if found || (id != "" && h.Message.ID != id) {
				held = append(held, h)
				continue
			}
			found = id != ""
			if err := p.move(ctx, h); err != nil {
				held = append(held, hs[i:]...)
				done(h.Message, err)
				return found, err
			}
			moved++
			done(h.Message, nil)
		}
	}
	return found, nil
}

// move publishes a copy of h to the source topic, then removes h.
func (p *poisonAdmin) move(ctx context.Context, h *PoisonHeld) error {
	m := &gcpubsub.Message{Body: h.Message.Body, Metadata: RequeueMetadata(h.Metadata)}
	if err := p.topic.Send(ctx, m); err != nil {
		return p.fail("requeue from", fmt.Errorf("message %s not copied to %s, it stays in poison: %w", h.Message.ID, p.source, err))
	}
	if err := p.b.Remove(ctx, h); err != nil {
		return p.fail("requeue from", fmt.Errorf("message %s copied to %s but not removed from poison, so it is in both: %w", h.Message.ID, p.source, err))
	}
	return nil
}

// RequeueMetadata is the metadata of a requeued copy: md without jobhost's
// bookkeeping keys (names starting "jobhost-" in any case: the attempt
// count, the reason, the source, not-before) except IDKey, so that the
// copy's attempts start afresh and the driver reports the same Message.ID.
func RequeueMetadata(md map[string]string) map[string]string {
	out := make(map[string]string, len(md))
	for k, v := range md {
		if !strings.HasPrefix(strings.ToLower(k), "jobhost-") || k == IDKey {
			out[k] = v
		}
	}
	return out
}

// Purge fetches and removes up to limit messages.
func (p *poisonAdmin) Purge(ctx context.Context, limit int) (n int, err error) {
	ctx, end, err := p.begin(ctx, "purge")
	if err != nil {
		return 0, err
	}
	defer end()
	var held []*PoisonHeld
	defer func() { _ = p.release(ctx, held) }()
	for n < limit {
		hs, err := p.b.Fetch(ctx, min(limit-n, poisonPage))
		if err != nil {
			held = append(held, hs...)
			return n, p.fail("purge", err)
		}
		if len(hs) == 0 {
			break
		}
		for i, h := range hs {
			if err := p.b.Remove(ctx, h); err != nil {
				held = append(held, hs[i:]...)
				return n, p.fail("purge", err)
			}
			n++
		}
	}
	return n, nil
}

// Close ends an operation in progress (what it holds is released), closes
// the backend and shuts the source topic down unless it is shared. It is
// idempotent; afterwards every other method returns an error wrapping
// triggers.ErrClosed.
func (p *poisonAdmin) Close() error {
	if !p.life.close() {
		return nil
	}
	err := p.b.Close()
	if p.topic != nil && !p.shared {
		err = errors.Join(err, shutdown([]interface{ Shutdown(context.Context) error }{p.topic}))
	}
	return err
}

// PoisonMessage maps a poison copy's body and metadata: DequeueCount from
// its jobhost-attempt (else 1) plus what the broker counted beyond (native
// deliveries of the last copy, where known), Reason from jobhost-reason,
// Properties a copy of md.
func PoisonMessage(id string, body []byte, md map[string]string, native int64, inserted time.Time) *triggers.PoisonMessage {
	return &triggers.PoisonMessage{
		ID: id, Body: body, Properties: maps.Clone(md), Reason: md[ReasonKey],
		DequeueCount: Attempts(md, native), InsertionTime: inserted,
	}
}
