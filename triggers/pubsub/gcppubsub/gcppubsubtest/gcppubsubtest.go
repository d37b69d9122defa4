// Package gcppubsubtest provides a drivertest.Harness for the gcppubsub://
// scheme against a real Pub/Sub gRPC peer: pstest
// (cloud.google.com/go/pubsub/v2/pstest), the fake server Google ships,
// in the test process on a loopback port.
//
// The driver reaches it the way gocloud reaches Google's emulator: the
// first use of the harness starts one server for the process and sets
// PUBSUB_EMULATOR_HOST to its address, which gocloud's default gcppubsub
// opener reads once, on its first open. Every queue is a fresh topic and
// subscription on that server; the harness administers them and plays the
// other producer over plain gRPC stubs, not through gocloud.
package gcppubsubtest

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub"
	_ "github.com/jobhost/jobhost/triggers/pubsub/gcppubsub" // gcppubsub://
)

// Project is the project of every test topic and subscription.
const Project = "jobhost-test"

// AckDeadline is the test subscriptions' ack deadline: Pub/Sub's minimum
// and default, which pstest enforces too.
const AckDeadline = 10 * time.Second

// MaxDeliveryAttempts is the dead-letter policy's limit on subscriptions
// made WithDeadLetterPolicy: Pub/Sub's minimum.
const MaxDeliveryAttempts = 5

// Server is the process's pstest server and gRPC stubs to it.
type Server struct {
	Addr string
	Pub  pb.PublisherClient
	Sub  pb.SubscriberClient
}

var (
	once    sync.Once
	shared  *Server
	initErr error
	seq     atomic.Int64
)

// Shared starts the process's server on first use and points
// PUBSUB_EMULATOR_HOST at it. It stays up until the process exits. It must
// run before anything in the process opens a gcppubsub:// URL through
// gocloud's default opener, which reads the variable only once.
func Shared(t testing.TB) *Server {
	t.Helper()
	once.Do(func() {
		srv := pstest.NewServerWithAddress("127.0.0.1:0")
		conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			initErr = err
			return
		}
		if err := os.Setenv("PUBSUB_EMULATOR_HOST", srv.Addr); err != nil {
			initErr = err
			return
		}
		shared = &Server{Addr: srv.Addr, Pub: pb.NewPublisherClient(conn), Sub: pb.NewSubscriberClient(conn)}
	})
	if initErr != nil {
		t.Fatalf("pstest: %v", initErr)
	}
	if got := os.Getenv("PUBSUB_EMULATOR_HOST"); got != shared.Addr {
		t.Fatalf("PUBSUB_EMULATOR_HOST = %q, want the pstest server at %s", got, shared.Addr)
	}
	return shared
}

// TopicPath and SubscriptionPath are full resource names in Project.
func TopicPath(name string) string        { return "projects/" + Project + "/topics/" + name }
func SubscriptionPath(name string) string { return "projects/" + Project + "/subscriptions/" + name }

// Queue names one test queue: a topic, its poison topic, and their
// subscriptions.
type Queue struct {
	Topic, Poison           string // topic paths
	Subscription, PoisonSub string // subscription paths
	DeadLetterTopic         string // topic path of the native dead-letter policy, or ""
}

// Options shape a queue.
type Options struct {
	// DeadLetterPolicy gives the subscription a native dead-letter policy
	// (to its own topic, after MaxDeliveryAttempts), so that Pub/Sub sets
	// DeliveryAttempt on every delivery.
	DeadLetterPolicy bool
}

// NewQueue creates a fresh topic, poison topic and subscriptions, and
// deletes them when t ends (pstest runs a goroutine per subscription).
func (s *Server) NewQueue(ctx context.Context, t testing.TB, o Options) (Queue, error) {
	name := fmt.Sprintf("jobhost-test-%d-%d", time.Now().UnixNano(), seq.Add(1))
	q := Queue{
		Topic: TopicPath(name), Poison: TopicPath(name + "-poison"),
		Subscription: SubscriptionPath(name), PoisonSub: SubscriptionPath(name + "-poison"),
	}
	topics := []string{q.Topic, q.Poison}
	if o.DeadLetterPolicy {
		q.DeadLetterTopic = TopicPath(name + "-dlq")
		topics = append(topics, q.DeadLetterTopic)
	}
	for _, tp := range topics {
		if _, err := s.Pub.CreateTopic(ctx, &pb.Topic{Name: tp}); err != nil {
			return Queue{}, fmt.Errorf("create topic %s: %w", tp, err)
		}
		t.Cleanup(func() {
			ctx, cancel := cleanupCtx()
			defer cancel()
			s.Pub.DeleteTopic(ctx, &pb.DeleteTopicRequest{Topic: tp})
		})
	}
	sub := &pb.Subscription{Name: q.Subscription, Topic: q.Topic, AckDeadlineSeconds: int32(AckDeadline / time.Second)}
	if o.DeadLetterPolicy {
		sub.DeadLetterPolicy = &pb.DeadLetterPolicy{DeadLetterTopic: q.DeadLetterTopic, MaxDeliveryAttempts: MaxDeliveryAttempts}
	}
	for _, ps := range []*pb.Subscription{sub, {Name: q.PoisonSub, Topic: q.Poison, AckDeadlineSeconds: int32(AckDeadline / time.Second)}} {
		if err := s.CreateSubscription(ctx, t, ps); err != nil {
			return Queue{}, err
		}
	}
	return q, nil
}

// CreateSubscription creates ps and deletes it when t ends.
func (s *Server) CreateSubscription(ctx context.Context, t testing.TB, ps *pb.Subscription) error {
	if _, err := s.Sub.CreateSubscription(ctx, ps); err != nil {
		return fmt.Errorf("create subscription %s: %w", ps.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		s.Sub.DeleteSubscription(ctx, &pb.DeleteSubscriptionRequest{Subscription: ps.Name})
	})
	return nil
}

// cleanupCtx bounds a cleanup call.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// URL is the trigger URL of q's subscription.
func (q Queue) URL() *url.URL {
	u, _ := url.Parse(fmt.Sprintf("gcppubsub://%s?topic=%s&ackdeadline=%s", q.Subscription, q.Topic, AckDeadline))
	return u
}

// Publish sends a message to topic over gRPC, as another producer would.
func (s *Server) Publish(ctx context.Context, topic string, body []byte, attrs map[string]string) (string, error) {
	r, err := s.Pub.Publish(ctx, &pb.PublishRequest{Topic: topic, Messages: []*pb.PubsubMessage{{Data: body, Attributes: maps.Clone(attrs)}}})
	if err != nil {
		return "", err
	}
	return r.MessageIds[0], nil
}

// Drain pulls and acks what subscription holds now.
func (s *Server) Drain(ctx context.Context, subscription string) ([]*pb.ReceivedMessage, error) {
	r, err := s.Sub.Pull(ctx, &pb.PullRequest{Subscription: subscription, MaxMessages: 100, ReturnImmediately: true})
	if err != nil || len(r.ReceivedMessages) == 0 {
		return nil, err
	}
	ids := make([]string, 0, len(r.ReceivedMessages))
	for _, m := range r.ReceivedMessages {
		ids = append(ids, m.AckId)
	}
	if _, err := s.Sub.Acknowledge(ctx, &pb.AcknowledgeRequest{Subscription: subscription, AckIds: ids}); err != nil {
		return nil, err
	}
	return r.ReceivedMessages, nil
}

// NewHarness returns a harness whose queues are fresh topics and
// subscriptions on the shared server.
func NewHarness(o Options) func(t *testing.T) drivertest.Harness {
	return func(t *testing.T) drivertest.Harness { return harness{o: o} }
}

type harness struct{ o Options }

func (h harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	srv := Shared(t)
	s, err := triggers.Lookup("gcppubsub")
	if err != nil {
		return drivertest.Queue{}, err
	}
	q, err := srv.NewQueue(ctx, t, h.o)
	if err != nil {
		return drivertest.Queue{}, err
	}
	drv, err := s.Subscription(ctx, q.URL(), triggers.OpenOptions{})
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { drv.Close() })
	return drivertest.Queue{
		Driver: drv,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			_, err := srv.Publish(ctx, q.Topic, body, props)
			return err
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			ms, err := srv.Drain(ctx, q.PoisonSub)
			var out []*triggers.Message
			for _, m := range ms {
				md := m.Message.Attributes
				out = append(out, &triggers.Message{ID: md[pubsub.IDKey], Body: m.Message.Data, Properties: md})
			}
			return out, err
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			mu, _ := url.Parse("gcppubsub://" + q.Subscription + "-missing?topic=" + q.Topic)
			return s.Subscription(ctx, mu, triggers.OpenOptions{})
		},
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			pu, _ := url.Parse("gcppubsub://" + q.Topic)
			p, err := s.Publisher(ctx, pu, triggers.OpenOptions{})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			p, err := s.Poison(ctx, q.URL(), triggers.OpenOptions{})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		Capabilities: drivertest.Capabilities{Properties: true},
	}, nil
}
