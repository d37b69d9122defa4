package child

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/rabbitpubsub"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// decodeHandler is the Watermill handler: decode, record, ack.
func decodeHandler(rec *workload.Recorder, sink *logSink) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		o, err := workload.Decode(msg.Payload)
		if err != nil {
			sink.note("decode: " + err.Error())
		}
		rec.Record(&o)
		return nil
	}
}

// watermillAMQP is a Watermill router over watermill-amqp v3 with the
// durable queue config (NewDurableQueueConfig: durable queue named after the
// topic, default exchange, persistent messages, prefetch 1 per channel). A
// subscription handles one message at a time (it waits for the Ack before
// taking the next delivery), so concurrency N is N handlers on the same
// queue: N channels, N consumers, at most N unacknowledged deliveries.
type watermillAMQP struct {
	spec   *proto.Spec
	rec    *workload.Recorder
	sink   *logSink
	sub    *wmamqp.Subscriber
	router *message.Router
	done   chan error
}

func (w *watermillAMQP) prepare(ctx context.Context) error {
	var err error
	w.sub, err = wmamqp.NewSubscriber(wmamqp.NewDurableQueueConfig(w.spec.RabbitURL), watermill.NopLogger{})
	if err != nil {
		return err
	}
	w.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	for i := range w.spec.Concurrency {
		w.router.AddConsumerHandler("bench-"+string(rune('a'+i)), w.spec.Queue, w.sub, decodeHandler(w.rec, w.sink))
	}
	return nil
}

func (w *watermillAMQP) start(ctx context.Context) error { return runRouter(ctx, w.router, &w.done) }

func (w *watermillAMQP) stop() error {
	err := w.router.Close()
	<-w.done
	w.sub.Close()
	return err
}

// gocloudRabbit is a plain gocloud rabbitpubsub Receive loop: Concurrency
// goroutines on one subscription, with rabbitpubsub's default prefetch
// (none: the broker may push the whole queue into the process). With
// prefetch_count 16 it manages about 250 msg/s: ReceiveBatch waits up to
// 50 ms for a batch larger than the prefetch allows, and the acks that
// would free the prefetch are sent only between ReceiveBatch calls.
type gocloudRabbit struct {
	spec *proto.Spec
	rec  *workload.Recorder
	sink *logSink
	conn *amqp.Connection
	sub  *gcpubsub.Subscription
	loop receiveLoop
}

func (g *gocloudRabbit) prepare(context.Context) error {
	var err error
	g.conn, err = amqp.Dial(g.spec.RabbitURL)
	if err != nil {
		return err
	}
	var opts rabbitpubsub.SubscriptionOptions
	if p := g.spec.Prefetch; p > 0 {
		opts.PrefetchCount = &p
	}
	g.sub = rabbitpubsub.OpenSubscription(g.conn, g.spec.Queue, &opts)
	return nil
}

func (g *gocloudRabbit) start(ctx context.Context) error {
	g.loop.run(ctx, g.sub, g.spec.Concurrency, g.rec, g.sink)
	return nil
}

func (g *gocloudRabbit) stop() error {
	g.loop.stop()
	g.sub.Shutdown(context.Background())
	return g.conn.Close()
}

// watermillNATS is a Watermill router over watermill-nats v2 with JetStream
// enabled: SubscribersCount queue subscriptions on one durable push
// consumer (explicit acks, AckSync as the default JetStreamConfig does,
// MaxAckPending = Concurrency, like jobhost's consumer). Each subscription
// handles one message at a time.
type watermillNATS struct {
	spec   *proto.Spec
	rec    *workload.Recorder
	sink   *logSink
	sub    *wmnats.Subscriber
	router *message.Router
	done   chan error
}

func (w *watermillNATS) prepare(ctx context.Context) error {
	var err error
	w.sub, err = wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:              w.spec.NATSURL,
		QueueGroupPrefix: "bench",
		SubscribersCount: w.spec.Concurrency,
		AckWaitTimeout:   30 * time.Second,
		CloseTimeout:     10 * time.Second,
		Unmarshaler:      &wmnats.NATSMarshaler{},
		JetStream: wmnats.JetStreamConfig{
			SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit(), nats.MaxAckPending(w.spec.Concurrency)},
			DurablePrefix:    "bench",
		},
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	w.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	w.router.AddConsumerHandler("bench", w.spec.Subject, w.sub, decodeHandler(w.rec, w.sink))
	return nil
}

func (w *watermillNATS) start(ctx context.Context) error { return runRouter(ctx, w.router, &w.done) }

func (w *watermillNATS) stop() error {
	err := w.router.Close()
	<-w.done
	w.sub.Close()
	return err
}
