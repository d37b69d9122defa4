package pubsub

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	gcpubsub "gocloud.dev/pubsub"
)

// unknownHold is how long a copy whose not-before is ahead is held before
// it is republished when the ack deadline is unknown.
const unknownHold = time.Second

// holdLimit is how long a received message may stay unacked without the
// broker redelivering it: half its ack deadline; negative when unbounded.
func holdLimit(deadline time.Duration) time.Duration {
	switch {
	case deadline < 0:
		return -1
	case deadline == 0:
		return unknownHold
	}
	return deadline / 2
}

// ParseAckDeadline returns the duration in query parameter key of q
// (time.ParseDuration syntax), or def when it is absent. It must be
// positive.
func ParseAckDeadline(q url.Values, key string, def time.Duration) (time.Duration, error) {
	s := q.Get(key)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 30s", key, s)
	}
	return d, nil
}

// deferred is a received copy whose not-before is still ahead, held
// unacked until its timer republishes it.
type deferred struct {
	gm    *gcpubsub.Message
	timer *time.Timer
}

// notBefore returns the not-before time in md, or the zero time.
func notBefore(md map[string]string) time.Time {
	ms, err := strconv.ParseInt(md[NotBeforeKey], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// next returns the next message of the subscription that is due, and when
// it was received; it holds the others (park).
func (d *Driver) next(ctx context.Context) (*gcpubsub.Message, time.Time, error) {
	for {
		gm, err := d.o.Subscription.Receive(ctx)
		if err != nil {
			return nil, time.Time{}, err
		}
		now := time.Now()
		// Without a topic a copy cannot be republished: it is due.
		due := notBefore(gm.Metadata)
		if d.o.Topic == nil || !due.After(now) {
			return gm, now, nil
		}
		d.park(gm, now, due)
	}
}

// park holds gm, received at now, until due or for the hold limit,
// whichever is first, and then republishes it.
func (d *Driver) park(gm *gcpubsub.Message, now, due time.Time) {
	p := &deferred{gm: gm}
	wait, isDue := due.Sub(now), true
	if d.hold >= 0 && wait > d.hold {
		wait, isDue = d.hold, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deferred[p] = struct{}{}
	p.timer = time.AfterFunc(wait, func() { d.republish(p, isDue) })
}

// republish publishes a copy of p with its attempt count, without
// not-before when it is due, and acks p. On failure p stays unacked and the
// broker redelivers it.
func (d *Driver) republish(p *deferred, isDue bool) {
	d.mu.Lock()
	_, ok := d.deferred[p]
	delete(d.deferred, p)
	d.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, exit, ok := d.life.enterCtx(ctx)
	if !ok {
		return
	}
	defer exit()
	gm := p.gm
	md := copyMetadata(gm.Metadata)
	md[AttemptKey] = strconv.FormatInt(Attempts(gm.Metadata, d.native(gm)), 10)
	if md[IDKey] == "" && gm.LoggableID != "" {
		md[IDKey] = gm.LoggableID
	}
	if isDue {
		delete(md, NotBeforeKey)
	}
	if err := d.o.Topic.Send(ctx, &gcpubsub.Message{Body: gm.Body, Metadata: md}); err != nil {
		return
	}
	gm.Ack()
}
