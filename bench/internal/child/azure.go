package child

import (
	"context"
	"encoding/base64"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// azqueueLoop is the plain azqueue loop, the ceiling for jobhost on a
// Storage Queue: dequeue BatchSize messages, run them with up to
// Concurrency goroutines (base64-decode, JSON-decode, delete), and when the
// batch is done dequeue again; after an empty dequeue wait EmptySleep.
type azqueueLoop struct {
	spec *proto.Spec
	rec  *workload.Recorder
	sink *logSink

	q      *azqueue.QueueClient
	cancel context.CancelFunc
	done   chan struct{}
}

func (a *azqueueLoop) prepare(context.Context) error {
	svc, err := azqueue.NewServiceClientFromConnectionString(a.spec.AzureConn, nil)
	if err != nil {
		return err
	}
	a.q = svc.NewQueueClient(a.spec.Queue)
	return nil
}

func (a *azqueueLoop) start(ctx context.Context) error {
	ctx, a.cancel = context.WithCancel(ctx)
	a.done = make(chan struct{})
	go a.loop(ctx)
	return nil
}

func (a *azqueueLoop) loop(ctx context.Context) {
	defer close(a.done)
	sleep := a.spec.EmptySleep
	if sleep <= 0 {
		sleep = 100 * time.Millisecond
	}
	opts := &azqueue.DequeueMessagesOptions{
		NumberOfMessages:  to.Ptr(int32(a.spec.BatchSize)),
		VisibilityTimeout: to.Ptr(int32(600)),
	}
	sem := make(chan struct{}, max(a.spec.Concurrency, 1))
	for ctx.Err() == nil {
		resp, err := a.q.DequeueMessages(ctx, opts)
		if err != nil {
			if ctx.Err() == nil {
				a.sink.note("dequeue: " + err.Error())
				pause(ctx, sleep)
			}
			continue
		}
		if len(resp.Messages) == 0 {
			pause(ctx, sleep)
			continue
		}
		var wg sync.WaitGroup
		for _, m := range resp.Messages {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				body, err := base64.StdEncoding.DecodeString(*m.MessageText)
				if err != nil {
					a.sink.note("base64: " + err.Error())
				}
				o, err := workload.Decode(body)
				if err != nil {
					a.sink.note("decode: " + err.Error())
				}
				a.rec.Record(&o)
				dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := a.q.DeleteMessage(dctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
					a.sink.note("delete: " + err.Error())
				}
			})
		}
		wg.Wait()
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (a *azqueueLoop) stop() error {
	a.cancel()
	<-a.done
	return nil
}
