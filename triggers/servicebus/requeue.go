package servicebus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/jobhost/jobhost/triggers"
)

// Requeue moves messages back to the queue: the one whose ID (sequence
// number) is id, or, when id is "", up to limit of them (limit <= 0 moves
// none). Each is received from the dead-letter queue in PeekLock, sent to
// the queue as a copy, and completed in the dead-letter queue only once the
// send succeeded: an interruption can leave a message in both, never in
// neither.
//
// The copy has the body, the application properties and the system
// properties the sender sets (ContentType, CorrelationID, Subject, To,
// ReplyTo, SessionID, PartitionKey, TimeToLive), without jobhost's
// bookkeeping properties (names starting "jobhost-" or "x-jobhost-", in
// any case), so that its delivery count starts afresh. It gets a new
// MessageID, so that duplicate detection cannot drop it, and carries the
// old one (or the one it already carried) in OriginalIDProperty, so that
// the driver reports the same Message.ID.
//
// Looking for id locks the messages ahead of it (at most MaxRequeueScan)
// until it is found, then abandons them, which raises their DeliveryCount
// in the dead-letter queue. Requeue stops at the first message it cannot
// move (done gets the error too); what it did not reach stays. A topic
// subscription cannot be requeued into: the error wraps
// ErrRequeueSubscription.
func (p *PoisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(m *triggers.PoisonMessage, err error)) (found bool, err error) {
	op := "requeue from " + p.dlqPath
	ctx, end, err := p.begin(ctx, op)
	if err != nil {
		return false, err
	}
	defer end(&err)
	if p.send == nil {
		return false, &opError{op: op, kinds: []error{ErrRequeueSubscription}}
	}
	if done == nil {
		done = func(*triggers.PoisonMessage, error) {}
	}
	target := int64(-1)
	if id != "" {
		seq, perr := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
		if perr != nil || seq < 0 {
			return false, nil // not a sequence number: no such message
		}
		if ok, err := p.peekHas(ctx, op, seq); err != nil || !ok {
			return false, err
		}
		target, limit = seq, 1
	} else if limit <= 0 {
		return false, nil
	}

	h := &held{p: p}
	defer h.abandon(ctx)
	moved, scanned := 0, 0
	for moved < limit && !found {
		n := receivePage
		if target < 0 {
			n = min(limit-moved, receivePage)
		}
		rms, err := p.receive(ctx, op, n, h)
		if err != nil {
			return found, err
		}
		if len(rms) == 0 {
			break
		}
		for i, rm := range rms {
			if found || moved == limit {
				h.add(rm)
				continue
			}
			if seq, _ := sequenceOf(rm); target >= 0 && seq != target {
				h.add(rm)
				scanned++
				continue
			}
			found = target >= 0
			pm := poisonMessage(rm)
			if err := p.move(ctx, rm, pm, h); err != nil {
				h.add(rms[i+1:]...)
				done(pm, err)
				return found, err
			}
			moved++
			done(pm, nil)
		}
		if target >= 0 && !found && scanned >= MaxRequeueScan {
			break
		}
	}
	if target >= 0 && !found {
		// It was there when peeked: another receiver holds it, it is too
		// far back, or it was removed meanwhile.
		still, err := p.peekHas(ctx, op, target)
		if err != nil || !still {
			return false, err
		}
		return true, fmt.Errorf("servicebus: requeue message %s from %s: it could not be locked: another receiver holds it, or more than %d messages are ahead of it; try again later", id, p.dlqPath, MaxRequeueScan)
	}
	return found, nil
}

// move sends a copy of rm to the queue, then completes rm. On failure rm
// is left to h (abandoned at the end of Requeue).
func (p *PoisonAdmin) move(ctx context.Context, rm *azservicebus.ReceivedMessage, pm *triggers.PoisonMessage, h *held) error {
	if err := p.send.SendMessage(ctx, requeueCopy(rm), nil); err != nil {
		h.add(rm)
		return wrapErr(fmt.Sprintf("requeue message %s: send a copy to %s (it stays in the dead-letter queue)", pm.ID, p.entity.Path()), err, false)
	}
	if err := p.dlq.CompleteMessage(ctx, rm, nil); err != nil {
		h.add(rm)
		return wrapErr(fmt.Sprintf("requeue message %s: copied to %s, but removing it from the dead-letter queue failed, so it is in both", pm.ID, p.entity.Path()), err, true)
	}
	return nil
}

// Purge deletes up to limit messages (limit <= 0 deletes none) by
// receiving them in PeekLock and completing them, and returns how many it
// deleted.
func (p *PoisonAdmin) Purge(ctx context.Context, limit int) (n int, err error) {
	op := "purge " + p.dlqPath
	ctx, end, err := p.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer end(&err)
	h := &held{p: p}
	defer h.abandon(ctx)
	for n < limit {
		rms, err := p.receive(ctx, op, min(limit-n, receivePage), h)
		if err != nil {
			return n, err
		}
		if len(rms) == 0 {
			break
		}
		for i, rm := range rms {
			if err := p.dlq.CompleteMessage(ctx, rm, nil); err != nil {
				h.add(rms[i+1:]...)
				return n, wrapErr(op, err, true)
			}
			n++
		}
	}
	return n, nil
}

// receive locks up to n messages, waiting at most p.wait. When ctx ends it
// hands what arrived to h and returns ctx's error.
func (p *PoisonAdmin) receive(ctx context.Context, op string, n int, h *held) ([]*azservicebus.ReceivedMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	rms, err := p.dlq.ReceiveMessages(rctx, n, nil)
	out := rms[:0:0]
	for _, rm := range rms {
		if rm != nil {
			out = append(out, rm)
		}
	}
	if cerr := ctx.Err(); cerr != nil {
		h.add(out...)
		return nil, cerr
	}
	if err != nil && len(out) == 0 {
		if rctx.Err() != nil {
			return nil, nil // the wait ran out
		}
		return nil, wrapErr(op, err, false)
	}
	return out, nil
}

// held collects dead-lettered messages an operation locked but did not
// settle; abandon gives them back.
type held struct {
	p  *PoisonAdmin
	ms []*azservicebus.ReceivedMessage
}

func (h *held) add(ms ...*azservicebus.ReceivedMessage) { h.ms = append(h.ms, ms...) }

// abandon abandons the held messages, a few at a time, within
// closeTimeout even when ctx has ended; a lock it cannot release runs out
// by itself.
func (h *held) abandon(ctx context.Context) {
	if len(h.ms) == 0 {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, rm := range h.ms {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = h.p.dlq.AbandonMessage(actx, rm, nil)
		})
	}
	wg.Wait()
	h.ms = nil
}

// isBookkeeping reports whether an application property is jobhost's own.
func isBookkeeping(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "jobhost-") || strings.HasPrefix(n, "x-jobhost-")
}

// requeueCopy is what Requeue sends for a dead-lettered message (see
// Requeue).
func requeueCopy(rm *azservicebus.ReceivedMessage) *azservicebus.Message {
	props := make(map[string]any, len(rm.ApplicationProperties)+1)
	for k, v := range rm.ApplicationProperties {
		if !isBookkeeping(k) {
			props[k] = v
		}
	}
	orig := rm.MessageID
	if s, ok := rm.ApplicationProperties[OriginalIDProperty].(string); ok && s != "" {
		orig = s
	}
	if orig != "" {
		props[OriginalIDProperty] = orig
	}
	cp := copyOf(rm, props)
	cp.TimeToLive = rm.TimeToLive
	return cp
}
