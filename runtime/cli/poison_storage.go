package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

const (
	// requeueLease hides a poison message while it is copied back; if the
	// tool dies, it reappears in poison after this.
	requeueLease = 2 * time.Minute
	// releaseTimeout bounds making held messages visible again at the end,
	// even after Ctrl-C.
	releaseTimeout = 30 * time.Second
	// maxScan bounds the search for one --id.
	maxScan = 100_000
)

// storagePoison is a Storage Queue and its "<queue>-poison" queue.
type storagePoison struct {
	src, psn *azurequeue.Driver
	psnQueue *azqueue.QueueClient
}

func openStoragePoison(queue, conn string, lookup func(string) (string, bool)) (*storagePoison, error) {
	pname := azurequeue.PoisonQueueName(queue)
	if src, ok := strings.CutSuffix(queue, azurequeue.PoisonSuffix); ok {
		return nil, fmt.Errorf("--queue names the source queue, not its poison queue: use --queue %s", src)
	}
	if pname == "" {
		return nil, fmt.Errorf("queue %s has no poison queue: %s would be longer than 63 characters", queue, queue+azurequeue.PoisonSuffix)
	}
	if conn == "" {
		conn = azurequeue.DefaultConnection
	}
	svc, err := azurequeue.NewServiceClient(conn, lookup)
	if err != nil {
		return nil, err
	}
	return &storagePoison{
		src:      azurequeue.New(svc, queue, azurequeue.Options{}),
		psn:      azurequeue.New(svc, pname, azurequeue.Options{}),
		psnQueue: svc.NewQueueClient(pname),
	}, nil
}

func (s *storagePoison) Source() string { return "queue " + s.src.Name() }
func (s *storagePoison) Poison() string { return "queue " + s.psn.Name() }
func (s *storagePoison) Close()         {}

func (s *storagePoison) Count(ctx context.Context) (int, bool, error) {
	n, err := s.psn.ApproximateCount(ctx)
	if errors.Is(err, triggers.ErrNotFound) {
		return 0, false, nil
	}
	return n, err == nil, err
}

func (s *storagePoison) List(ctx context.Context, n int) ([]*poisonMessage, error) {
	msgs, err := s.psn.Peek(ctx, n)
	if err != nil {
		return nil, err
	}
	out := make([]*poisonMessage, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, fromTrigger(m))
	}
	return out, nil
}

func fromTrigger(m *triggers.Message) *poisonMessage {
	return &poisonMessage{ID: m.ID, DequeueCount: m.DequeueCount, InsertionTime: m.InsertionTime, Body: m.Body, Properties: m.Properties}
}

// Requeue dequeues poison messages with a lease, enqueues each one's text
// unchanged to the source queue and then deletes it with its pop receipt.
// Messages it skips (looking for id) or fails to copy are held until the end
// and then made visible again at once.
func (s *storagePoison) Requeue(ctx context.Context, id string, limit int, done func(*poisonMessage, error)) (bool, error) {
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
		msgs, err := s.psn.Receive(ctx, min(azurequeue.MaxBatch, limit-seen), requeueLease)
		if errors.Is(err, triggers.ErrNotFound) {
			return false, nil // deleted meanwhile
		}
		if err != nil {
			return found, err
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
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
func (s *storagePoison) move(ctx context.Context, m *triggers.Message) error {
	if _, err := s.src.Send(ctx, m.Text()); err != nil {
		return fmt.Errorf("%w to %s, it stays in poison: %w", errNotCopied, s.Source(), err)
	}
	if err := s.psn.Complete(ctx, m); err != nil {
		return fmt.Errorf("copied to %s but not deleted from %s, so it is now in both: %w", s.Source(), s.Poison(), err)
	}
	return nil
}

// Purge clears the poison queue (every message, not only the limit counted).
func (s *storagePoison) Purge(ctx context.Context, limit int) (int, error) {
	if _, err := s.psnQueue.ClearMessages(ctx, nil); err != nil {
		return 0, fmt.Errorf("clear %s: %s", s.Poison(), azureErr(err))
	}
	return limit, nil
}
