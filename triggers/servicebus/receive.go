package servicebus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/jobhost/jobhost/triggers"
)

// Receive returns up to max messages (capped by Options.MaxBatch and
// MaxBatch), waiting at most Options.ReceiveWait for the first. Each is
// locked by the broker for the entity's lock duration, and the driver
// renews the lock until lease has passed (see the package doc). A missing
// entity gives an error wrapping triggers.ErrNotFound.
//
// When ctx ends (or Close begins) while it waits, Receive returns ctx's
// error (or one wrapping ErrClosed) and no messages; whatever the broker
// delivered meanwhile is abandoned at once (DeliveryCount + 1), so nothing
// stays locked that the caller did not get.
func (d *Driver) Receive(ctx context.Context, maxMessages int, lease time.Duration) ([]*triggers.Message, error) {
	op := "receive from " + d.path
	if d.isClosed() {
		return nil, closedErr(op)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := min(max(1, maxMessages), MaxBatch)
	if d.opts.MaxBatch > 0 {
		n = min(n, d.opts.MaxBatch)
	}
	d.recvMu.Lock()
	defer d.recvMu.Unlock()
	if d.isClosed() {
		return nil, closedErr(op)
	}
	rctx, cancel := context.WithTimeout(ctx, d.opts.ReceiveWait)
	defer cancel()
	defer context.AfterFunc(d.closeCtx, cancel)()
	start := time.Now()
	rms, err := d.recv.ReceiveMessages(rctx, n, nil)
	if closed, cerr := d.isClosed(), ctx.Err(); closed || cerr != nil {
		d.giveBack(ctx, rms)
		if closed {
			return nil, closedErr(op)
		}
		return nil, cerr
	}
	if err != nil && len(rms) == 0 {
		if rctx.Err() != nil {
			return nil, nil // our wait ran out: nothing to receive
		}
		return nil, wrapErr(op, err, false)
	}
	// The lock began between start and now: renewals are timed from start
	// (early, so safe), the lease and the renewal limit from now, when the
	// runtime gets the message.
	got := time.Now()
	out := make([]*triggers.Message, 0, len(rms))
	for _, rm := range rms {
		if rm == nil {
			continue
		}
		s := &msgState{d: d, rm: rm, receivedAt: got, acquiredAt: start, leaseUntil: got.Add(max(lease, 0))}
		m := d.toMessage(rm)
		m.DriverData = s
		s.mu.Lock()
		m.NextVisibleTime = s.visibleAtLocked()
		s.startLocked()
		s.mu.Unlock()
		out = append(out, m)
	}
	return out, nil
}

// giveBack abandons messages Receive took but will not return, all at
// once and within giveBackTimeout (a lock it cannot release runs out by
// itself). The caller holds recvMu, so Close has not closed the receiver.
func (d *Driver) giveBack(ctx context.Context, rms []*azservicebus.ReceivedMessage) {
	if len(rms) == 0 {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, rm := range rms {
		if rm != nil {
			wg.Go(func() { _ = d.recv.AbandonMessage(actx, rm, nil) })
		}
	}
	wg.Wait()
}

// toMessage maps a received message. See the package doc for the
// properties a scheduled retry copy carries.
func (d *Driver) toMessage(rm *azservicebus.ReceivedMessage) *triggers.Message {
	m := &triggers.Message{
		ID:           rm.MessageID,
		Body:         rm.Body,
		DequeueCount: int64(rm.DeliveryCount),
		Source:       d.path,
		Properties:   map[string]string{},
	}
	if rm.EnqueuedTime != nil {
		m.InsertionTime = *rm.EnqueuedTime
	}
	if rm.ExpiresAt != nil {
		m.ExpirationTime = *rm.ExpiresAt
	}
	if rm.LockedUntil != nil {
		m.NextVisibleTime = *rm.LockedUntil
	}
	for k, v := range rm.ApplicationProperties {
		switch k {
		case DeliveryCountProperty:
			if n, ok := toInt64(v); ok && n >= 0 {
				m.DequeueCount += n
			}
		case OriginalIDProperty:
			if s, ok := v.(string); ok && s != "" {
				m.ID = s
			}
		case OriginalEnqueuedTimeProperty:
			if t, ok := toTime(v); ok {
				m.InsertionTime = t
			}
		default:
			m.Properties[k] = stringify(v)
		}
	}
	for k, p := range map[string]*string{PropContentType: rm.ContentType, PropCorrelationID: rm.CorrelationID, PropSubject: rm.Subject} {
		if _, taken := m.Properties[k]; p != nil && *p != "" && !taken {
			m.Properties[k] = *p
		}
	}
	return m
}

// stringify renders an application property value.
func stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint64:
		if x <= 1<<62 {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, !x.IsZero()
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	}
	return time.Time{}, false
}
