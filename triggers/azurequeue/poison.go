package azurequeue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/queueerror"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// requeueLease hides a poison message while Requeue copies it back; if
	// the process dies, the message reappears in the poison queue after it.
	requeueLease = 2 * time.Minute
	// releaseTimeout bounds making held messages visible again at the end
	// of Requeue, even after its context was cancelled.
	releaseTimeout = 30 * time.Second
	// maxScan bounds the search for one id.
	maxScan = 100_000
)

// OpenPoison returns the administration of the poison queue of the Storage
// Queue queue ("<queue>-poison") on svc. queue must be the source queue:
// a name that is itself a poison queue's, or one too long to have a poison
// queue, is refused with an error wrapping ErrNoPoisonQueue. The messages'
// Properties and Reason are empty (Storage Queues store neither).
func OpenPoison(svc *azqueue.ServiceClient, queue string) (triggers.PoisonAdmin, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, fmt.Errorf("azurequeue: %w", err)
	}
	if src, ok := strings.CutSuffix(queue, PoisonSuffix); ok {
		return nil, fmt.Errorf("azurequeue: %w: %s is a poison queue; give its source queue, %s", ErrNoPoisonQueue, queue, src)
	}
	pname := PoisonQueueName(queue)
	if pname == "" {
		return nil, fmt.Errorf("azurequeue: %w: for queue %s, %s would be longer than 63 characters", ErrNoPoisonQueue, queue, queue+PoisonSuffix)
	}
	return &poisonAdmin{
		src:      New(svc, queue, Options{}),
		psn:      New(svc, pname, Options{}),
		psnQueue: svc.NewQueueClient(pname),
	}, nil
}

// poisonAdmin is a Storage Queue and its "<queue>-poison" queue. Close
// marks only the administration closed, not its drivers, so that a Requeue
// still running can release what it holds.
type poisonAdmin struct {
	src, psn *Driver
	psnQueue *azqueue.QueueClient
	closed   atomic.Bool
}

// Source names the source queue.
func (s *poisonAdmin) Source() string { return "queue " + s.src.Name() }

// Poison names the poison queue.
func (s *poisonAdmin) Poison() string { return "queue " + s.psn.Name() }

// Close makes every other method fail; it is idempotent.
func (s *poisonAdmin) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *poisonAdmin) check(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("azurequeue: %s %s: poison administration %w", op, s.Poison(), triggers.ErrClosed)
	}
	return nil
}

// Count returns the poison queue's approximate message count; exists is
// false when the poison queue does not exist.
func (s *poisonAdmin) Count(ctx context.Context) (int, bool, error) {
	if err := s.check("count"); err != nil {
		return 0, false, err
	}
	n, err := s.psn.ApproximateCount(ctx)
	if errors.Is(err, triggers.ErrNotFound) {
		return 0, false, nil
	}
	return n, err == nil, err
}

// List peeks at up to n (at most MaxBatch) visible poison messages; none
// when the poison queue does not exist.
func (s *poisonAdmin) List(ctx context.Context, n int) ([]*triggers.PoisonMessage, error) {
	if err := s.check("list"); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, nil
	}
	msgs, err := s.psn.Peek(ctx, n)
	if errors.Is(err, triggers.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]*triggers.PoisonMessage, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, fromTrigger(m))
	}
	return out, nil
}

func fromTrigger(m *triggers.Message) *triggers.PoisonMessage {
	return &triggers.PoisonMessage{ID: m.ID, DequeueCount: m.DequeueCount, InsertionTime: m.InsertionTime, Body: m.Body, Properties: m.Properties}
}

// Requeue creates the source queue if missing, then dequeues poison
// messages hidden for two minutes, enqueues each one's text unchanged to
// the source queue and only then deletes it with its pop receipt. Looking
// for id it scans at most 100,000 messages. Messages it skips (looking for
// id), fails to copy, or has not reached when ctx ends are held until the
// end and then made visible again at once, even after ctx was cancelled.
func (s *poisonAdmin) Requeue(ctx context.Context, id string, limit int, done func(*triggers.PoisonMessage, error)) (bool, error) {
	if err := s.check("requeue from"); err != nil {
		return false, err
	}
	if err := s.src.Create(ctx); err != nil {
		return false, err
	}
	var held []*triggers.Message
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		for _, m := range held {
			_ = s.psn.Retry(rctx, m, 0) // else it reappears when its lease ends
		}
	}()
	if id != "" {
		limit = maxScan
	}
	found := false
	for seen := 0; seen < limit && !found; {
		msgs, err := s.psn.Receive(ctx, min(MaxBatch, limit-seen), requeueLease)
		if errors.Is(err, triggers.ErrNotFound) {
			return false, nil // deleted meanwhile
		}
		if err != nil {
			return found, err
		}
		if len(msgs) == 0 {
			break
		}
		for i, m := range msgs {
			if err := ctx.Err(); err != nil {
				held = append(held, msgs[i:]...)
				return found, err
			}
			seen++
			if id != "" && m.ID != id {
				held = append(held, m)
				continue
			}
			found = found || id != ""
			err := s.move(ctx, m)
			if errors.Is(err, errNotCopied) {
				held = append(held, m)
			}
			done(fromTrigger(m), err)
		}
	}
	return found, nil
}

// errNotCopied marks a message whose copy failed: it is still in poison.
var errNotCopied = errors.New("not copied")

// move copies m's text to the source queue, then deletes m.
func (s *poisonAdmin) move(ctx context.Context, m *triggers.Message) error {
	if _, err := s.src.Send(ctx, m.Text()); err != nil {
		return fmt.Errorf("%w to %s, it stays in poison: %w", errNotCopied, s.Source(), err)
	}
	if err := s.psn.Complete(ctx, m); err != nil {
		return fmt.Errorf("copied to %s but not deleted from %s, so it is now in both: %w", s.Source(), s.Poison(), err)
	}
	return nil
}

// Purge clears the poison queue: every message, not only the limit
// counted. It returns limit, as the service does not say how many it
// deleted; 0 when the poison queue does not exist.
func (s *poisonAdmin) Purge(ctx context.Context, limit int) (int, error) {
	if err := s.check("purge"); err != nil {
		return 0, err
	}
	if _, err := s.psnQueue.ClearMessages(ctx, nil); err != nil {
		if queueerror.HasCode(err, queueerror.QueueNotFound) {
			return 0, nil
		}
		return 0, &opError{op: "clear " + s.Poison(), err: err}
	}
	return limit, nil
}
