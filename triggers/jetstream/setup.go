package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
)

// setup makes sure the stream exists and the durable consumer is set up.
func (d *Driver) setup(ctx context.Context, lease time.Duration) error {
	if d.ready.Load() {
		return nil
	}
	d.setupMu.Lock()
	defer d.setupMu.Unlock()
	if d.ready.Load() {
		return nil
	}
	s, err := d.js.Stream(ctx, d.opts.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		if !d.opts.CreateIfMissing {
			return fmt.Errorf("jetstream: stream %q does not exist: %w", d.opts.Stream, triggers.ErrNotFound)
		}
		s, err = createTriggerStream(ctx, d.js, d.opts)
	}
	if err != nil {
		return d.apiErr("look up stream "+strconv.Quote(d.opts.Stream), err)
	}
	d.maxAge.Store(int64(s.CachedInfo().Config.MaxAge))

	// A new consumer's AckWait is the lease; an existing one keeps its own
	// unless Options.AckWait says otherwise, so that workers with other
	// leases do not change it under each other.
	ackWait := d.opts.AckWait
	if ackWait == 0 {
		ackWait = max(lease, MinAckWait)
	}
	c, err := d.js.Consumer(ctx, d.opts.Stream, d.opts.Consumer)
	switch {
	case errors.Is(err, natsjs.ErrConsumerNotFound):
		_, err = d.js.CreateOrUpdateConsumer(ctx, d.opts.Stream, natsjs.ConsumerConfig{
			Durable:       d.opts.Consumer,
			Description:   "jobhost trigger",
			DeliverPolicy: natsjs.DeliverAllPolicy,
			AckPolicy:     natsjs.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1,
			FilterSubject: d.opts.Subject,
			ReplayPolicy:  natsjs.ReplayInstantPolicy,
			MaxAckPending: d.maxAckPending(0),
		})
	case err == nil:
		cfg := c.CachedInfo().Config
		if err := d.compatible(cfg); err != nil {
			return err
		}
		if d.opts.AckWait == 0 {
			ackWait = cfg.AckWait
		}
		if pending := d.maxAckPending(cfg.MaxAckPending); cfg.AckWait != ackWait || cfg.MaxAckPending != pending {
			cfg.AckWait, cfg.MaxAckPending = ackWait, pending
			_, err = d.js.UpdateConsumer(ctx, d.opts.Stream, cfg)
		}
	}
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return fmt.Errorf("jetstream: stream %q does not exist: %w", d.opts.Stream, triggers.ErrNotFound)
	}
	if err != nil {
		return d.apiErr("set up consumer "+strconv.Quote(d.opts.Consumer)+" on stream "+strconv.Quote(d.opts.Stream), err)
	}
	d.ackWait.Store(int64(ackWait))
	d.ready.Store(true)
	return nil
}

// maxAckPending is the MaxAckPending the consumer should have, given its
// current one (0 for a consumer not yet created): Options.MaxAckPending
// when set, else DefaultMaxAckPending unless the current limit is higher
// or there is none. The limit is consumer-wide; Prefetch, which bounds
// this driver alone, is kept by its pull requests.
func (d *Driver) maxAckPending(current int) int {
	switch {
	case d.opts.MaxAckPending != 0:
		return d.opts.MaxAckPending
	case current < 0 || current > DefaultMaxAckPending:
		return current
	}
	return DefaultMaxAckPending
}

// compatible checks an existing consumer's configuration.
func (d *Driver) compatible(cfg natsjs.ConsumerConfig) error {
	var why string
	switch {
	case cfg.DeliverSubject != "":
		why = "it is a push consumer; a pull consumer is needed"
	case cfg.AckPolicy != natsjs.AckExplicitPolicy:
		why = fmt.Sprintf("its ack policy is %s; explicit is needed", cfg.AckPolicy)
	case len(cfg.FilterSubjects) > 0 || cfg.FilterSubject != d.opts.Subject:
		f := cfg.FilterSubject
		if len(cfg.FilterSubjects) > 0 {
			f = strings.Join(cfg.FilterSubjects, ",")
		}
		why = fmt.Sprintf("its filter subject is %q, not %q", f, d.opts.Subject)
	case len(cfg.BackOff) > 0:
		why = "it has a BackOff, which overrides AckWait and distorts retry delays"
	default:
		return nil
	}
	return fmt.Errorf("jetstream: consumer %q on stream %q cannot be used: %s", d.opts.Consumer, d.opts.Stream, why)
}

// createTriggerStream creates the stream of opts for CreateIfMissing: work-queue
// retention, file storage, capturing the filter subject (or the stream
// name when there is none).
func createTriggerStream(ctx context.Context, js natsjs.JetStream, opts Options) (natsjs.Stream, error) {
	s, err := createStream(ctx, js, natsjs.StreamConfig{
		Name:        opts.Stream,
		Description: "created by jobhost",
		Subjects:    []string{sourceSubject(opts)},
		Retention:   natsjs.WorkQueuePolicy,
		Storage:     natsjs.FileStorage,
	})
	if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, opts.Stream) // another worker made it
	}
	return s, err
}

// sourceSubject is the subject of opts's messages: the filter subject, or
// the stream name when there is none.
func sourceSubject(opts Options) string {
	if opts.Subject != "" {
		return opts.Subject
	}
	return opts.Stream
}

// createStream creates a stream, retrying a few times on "error creating
// store for stream": nats-server 2.9 fails so when it creates an account's
// only stream while removing the account's storage directory after its last
// stream was deleted.
func createStream(ctx context.Context, js natsjs.JetStream, cfg natsjs.StreamConfig) (natsjs.Stream, error) {
	for i := 0; ; i++ {
		s, err := js.CreateStream(ctx, cfg)
		var apiErr *natsjs.APIError
		if i == 4 || !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStreamCreate {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(i+1) * 20 * time.Millisecond):
		}
	}
}

// errCodeStreamCreate is JetStream's "error creating store for stream".
const errCodeStreamCreate natsjs.ErrorCode = 10049

// ensurePoison makes sure a stream captures the poison subject.
func (d *Driver) ensurePoison(ctx context.Context) error {
	d.poisonMu.Lock()
	defer d.poisonMu.Unlock()
	if d.poisonReady {
		return nil
	}
	subj := d.opts.PoisonSubject
	name, err := d.js.StreamNameBySubject(ctx, subj)
	switch {
	case err == nil:
		filter := d.opts.Subject
		if filter == "" {
			filter = ">"
		}
		if name == d.opts.Stream && subjectMatches(filter, subj) {
			return fmt.Errorf("jetstream: poison subject %q is captured by stream %q and matches consumer %q's filter: poisoned messages would be delivered again", subj, name, d.opts.Consumer)
		}
	case errors.Is(err, natsjs.ErrStreamNotFound):
		pname := d.opts.Stream + PoisonStreamSuffix
		cfg := natsjs.StreamConfig{
			Name:        pname,
			Description: "jobhost poison messages of stream " + d.opts.Stream,
			Subjects:    []string{subj},
			Retention:   natsjs.LimitsPolicy,
			Storage:     natsjs.FileStorage,
		}
		_, err = createStream(ctx, d.js, cfg)
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			// It exists for other poison subjects: add ours.
			var s natsjs.Stream
			if s, err = d.js.Stream(ctx, pname); err == nil {
				cfg = s.CachedInfo().Config
				cfg.Subjects = append(cfg.Subjects, subj)
				_, err = d.js.UpdateStream(ctx, cfg)
			}
		}
		if err != nil {
			return d.apiErr(fmt.Sprintf("create poison stream %q for subject %q", pname, subj), err)
		}
	default:
		return d.apiErr("find the stream for poison subject "+strconv.Quote(subj), err)
	}
	d.poisonReady = true
	return nil
}
