package child

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/mempubsub"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// prefillMem sends n bodies to a mempubsub topic with 16 senders.
func prefillMem(ctx context.Context, t *gcpubsub.Topic, n int64) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if err := t.Send(ctx, &gcpubsub.Message{Body: workload.Body(i, time.Time{})}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// gocloudMem is a plain gocloud mempubsub Receive loop: Concurrency
// goroutines, each Receive, decode, Ack.
type gocloudMem struct {
	spec  *proto.Spec
	rec   *workload.Recorder
	sink  *logSink
	topic *gcpubsub.Topic
	sub   *gcpubsub.Subscription
	loop  receiveLoop
}

func (g *gocloudMem) prepare(ctx context.Context) error {
	g.topic = mempubsub.NewTopic()
	g.sub = mempubsub.NewSubscription(g.topic, 10*time.Minute)
	return prefillMem(ctx, g.topic, g.spec.Prefill)
}

func (g *gocloudMem) start(ctx context.Context) error {
	g.loop.run(ctx, g.sub, g.spec.Concurrency, g.rec, g.sink)
	return nil
}

func (g *gocloudMem) stop() error {
	g.loop.stop()
	ctx := context.Background()
	g.sub.Shutdown(ctx)
	return g.topic.Shutdown(ctx)
}

// receiveLoop is n goroutines running Receive, decode, record, Ack on a
// gocloud subscription.
type receiveLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *receiveLoop) run(ctx context.Context, sub *gcpubsub.Subscription, n int, rec *workload.Recorder, sink *logSink) {
	ctx, l.cancel = context.WithCancel(ctx)
	for range n {
		l.wg.Go(func() {
			for {
				m, err := sub.Receive(ctx)
				if err != nil {
					if ctx.Err() == nil {
						sink.note("receive: " + err.Error())
					}
					return
				}
				o, err := workload.Decode(m.Body)
				if err != nil {
					sink.note("decode: " + err.Error())
				}
				rec.Record(&o)
				m.Ack()
			}
		})
	}
}

func (l *receiveLoop) stop() {
	l.cancel()
	l.wg.Wait()
}

// watermillGoChan is a Watermill router over a GoChannel pub/sub.
//
// A GoChannel subscriber takes one message at a time (it waits for the Ack
// before sending the next) and every subscriber of a topic gets every
// message, so concurrency N means N topics ("partitions") with one handler
// each; the pre-fill spreads messages over them round-robin. Persistent mode
// keeps what was published before the handlers subscribed.
type watermillGoChan struct {
	spec   *proto.Spec
	rec    *workload.Recorder
	sink   *logSink
	gc     *gochannel.GoChannel
	router *message.Router
	done   chan error
}

func (w *watermillGoChan) prepare(ctx context.Context) error {
	w.gc = gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	n := int64(w.spec.Concurrency)
	for i := range w.spec.Prefill {
		msg := message.NewMessage(strconv.FormatInt(i, 10), workload.Body(i, time.Time{}))
		if err := w.gc.Publish(fmt.Sprintf("bench-%d", i%n), msg); err != nil {
			return err
		}
	}
	var err error
	w.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	rec, sink := w.rec, w.sink
	for i := range w.spec.Concurrency {
		w.router.AddConsumerHandler(fmt.Sprintf("bench-%d", i), fmt.Sprintf("bench-%d", i), w.gc,
			func(msg *message.Message) error {
				o, err := workload.Decode(msg.Payload)
				if err != nil {
					sink.note("decode: " + err.Error())
				}
				rec.Record(&o)
				return nil
			})
	}
	return nil
}

func (w *watermillGoChan) start(ctx context.Context) error {
	return runRouter(ctx, w.router, &w.done)
}

func (w *watermillGoChan) stop() error {
	err := w.router.Close()
	<-w.done
	w.gc.Close()
	return err
}

// runRouter runs r until it is closed and waits until it is running.
func runRouter(ctx context.Context, r *message.Router, done *chan error) error {
	*done = make(chan error, 1)
	go func() { *done <- r.Run(ctx) }()
	select {
	case <-r.Running():
		return nil
	case err := <-*done:
		return fmt.Errorf("router stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("router not running after 30 s")
	}
}

// bare decodes pre-built bodies with Concurrency goroutines and no
// messaging at all: the floor.
type bare struct {
	spec   *proto.Spec
	rec    *workload.Recorder
	bodies [][]byte
	wg     sync.WaitGroup
}

func (b *bare) prepare(context.Context) error {
	b.bodies = make([][]byte, b.spec.Prefill)
	for i := range b.bodies {
		b.bodies[i] = workload.Body(int64(i), time.Time{})
	}
	return nil
}

func (b *bare) start(context.Context) error {
	var next atomic.Int64
	n := int64(len(b.bodies))
	for range b.spec.Concurrency {
		b.wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				o, _ := workload.Decode(b.bodies[i])
				b.rec.Record(&o)
			}
		})
	}
	return nil
}

func (b *bare) stop() error { b.wg.Wait(); return nil }
