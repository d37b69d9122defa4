package gcppubsub

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/apiv1/pubsubpb"
	"gocloud.dev/gcp"
	gocloudgcp "gocloud.dev/pubsub/gcppubsub"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// PoisonSubscriptionParam is the trigger URL parameter naming the
// subscription the poison administration reads the poison topic through:
// a path, or a bare name in the poison topic's project. Without it the
// subscription is <poison topic>-jobhost.
const PoisonSubscriptionParam = "poisonsubscription"

// PoisonSubscriptionSuffix ends the default poison subscription's name.
const PoisonSubscriptionSuffix = "-jobhost"

const (
	// pullWait is how long one Pull waits for messages before the poison
	// subscription is taken as read to its end.
	pullWait = 2 * time.Second
	// holdSeconds is the ack deadline of a message an operation holds.
	holdSeconds = 60
	// maxCount bounds Count, which counts by pulling.
	maxCount = 10_000
	// maxPull is Pub/Sub's largest Pull and acknowledgement batch.
	maxPull = 1000
)

var (
	connOnce sync.Once
	conn     *grpc.ClientConn
	connErr  error
)

// dial returns the process's gRPC connection to Pub/Sub: the emulator at
// PUBSUB_EMULATOR_HOST when it is set (as gocloud's opener does), else
// pubsub.googleapis.com with Google's default credentials.
func dial(ctx context.Context) (*grpc.ClientConn, error) {
	connOnce.Do(func() {
		if e := os.Getenv("PUBSUB_EMULATOR_HOST"); e != "" {
			conn, connErr = grpc.NewClient(e, grpc.WithTransportCredentials(insecure.NewCredentials()))
			return
		}
		creds, err := gcp.DefaultCredentials(ctx)
		if err != nil {
			connErr = err
			return
		}
		conn, _, connErr = gocloudgcp.Dial(ctx, creds.TokenSource)
	})
	return conn, connErr
}

// fullPath turns a short resource path ("p/t") into the long form
// ("projects/p/<kind>/t").
func fullPath(p, kind string) string {
	if strings.HasPrefix(p, "projects/") {
		return p
	}
	project, name, _ := strings.Cut(p, "/")
	return "projects/" + project + "/" + kind + "/" + name
}

// poisonSubscription is the path of the subscription that reads e's poison
// topic for subscription URL u.
func poisonSubscription(u *url.URL, e pubsub.Endpoints) string {
	topic := fullPath(e.PoisonName, "topics")
	project := path.Dir(path.Dir(topic)) // projects/<p>
	name := u.Query().Get(PoisonSubscriptionParam)
	switch {
	case name == "":
		return project + "/subscriptions/" + path.Base(topic) + PoisonSubscriptionSuffix
	case strings.Contains(name, "/"):
		return fullPath(strings.TrimPrefix(name, "/"), "subscriptions")
	}
	return project + "/subscriptions/" + name
}

// ensure creates the poison subscription when it is missing; created
// reports whether it did.
func ensure(ctx context.Context, sub pubsubpb.SubscriberClient, name, topic string) (created bool, err error) {
	_, err = sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if status.Code(err) != codes.NotFound {
		return false, err
	}
	_, err = sub.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: name, Topic: topic, AckDeadlineSeconds: holdSeconds,
		MessageRetentionDuration: durationpb.New(7 * 24 * time.Hour), // Pub/Sub's longest
	})
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	return err == nil, err
}

// prepare creates the poison subscription when a trigger opens, so that
// Pub/Sub keeps what is poisoned from then on (a pubsub.Kind Prepare). It
// is best effort: without the right to create subscriptions (or when the
// poison topic is missing, which fails the poison move anyway) the trigger
// opens all the same, and the poison administration says what is missing.
func prepare(ctx context.Context, u *url.URL, e pubsub.Endpoints, _ triggers.OpenOptions) error {
	c, err := dial(ctx)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _ = ensure(ctx, pubsubpb.NewSubscriberClient(c), poisonSubscription(u, e), fullPath(e.PoisonName, "topics"))
	return nil
}

// openPoison opens the backend of e's poison subscription (a pubsub.Kind
// Poison).
func openPoison(ctx context.Context, u *url.URL, e pubsub.Endpoints, _ triggers.OpenOptions) (pubsub.PoisonBackend, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	return &backend{
		pub: pubsubpb.NewPublisherClient(c), sub: pubsubpb.NewSubscriberClient(c),
		topic: fullPath(e.PoisonName, "topics"), subscription: poisonSubscription(u, e),
	}, nil
}

// backend is the pubsub.PoisonBackend of a poison topic, read through its
// poison subscription over Pub/Sub's own API (pull, modify the ack
// deadline, acknowledge). Pub/Sub cannot peek: List pulls messages and
// gives them back at once (ack deadline 0), which counts a delivery in the
// poison subscription; Count pulls everything (at most 10,000) and gives it
// back, so it is as exact as Pub/Sub's pull, which may hold messages back
// for a while; Requeue and Purge acknowledge. A message held longer than
// 60 s, or acknowledged when its deadline had passed, can come back: a
// duplicate, never a loss.
type backend struct {
	pub                 pubsubpb.PublisherClient
	sub                 pubsubpb.SubscriberClient
	topic, subscription string
}

// Poison names the poison subscription and its topic.
func (b *backend) Poison() string {
	return "subscription " + b.subscription + " (topic " + b.topic + ")"
}

// Count pulls every message (at most maxCount) and gives them back. exists
// is false when the poison topic does not exist, or when its subscription
// did not: it is created then, and keeps what is poisoned from then on
// (Pub/Sub kept nothing before).
func (b *backend) Count(ctx context.Context) (int, bool, error) {
	if _, err := b.pub.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: b.topic}); status.Code(err) == codes.NotFound {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	created, err := ensure(ctx, b.sub, b.subscription, b.topic)
	if err != nil {
		return 0, false, fmt.Errorf("create the poison subscription: %w", err)
	}
	if created {
		return 0, false, nil
	}
	var held []*pubsub.PoisonHeld
	defer func() { _ = b.Release(context.WithoutCancel(ctx), held) }()
	for len(held) < maxCount {
		hs, err := b.Fetch(ctx, min(maxCount-len(held), maxPull))
		held = append(held, hs...)
		if err != nil {
			return 0, false, err
		}
		if len(hs) == 0 {
			break
		}
	}
	return len(held), true, nil
}

// Fetch pulls up to n messages, waiting at most pullWait, and holds them
// for holdSeconds.
func (b *backend) Fetch(ctx context.Context, n int) ([]*pubsub.PoisonHeld, error) {
	pctx, cancel := context.WithTimeout(ctx, pullWait)
	defer cancel()
	r, err := b.sub.Pull(pctx, &pubsubpb.PullRequest{Subscription: b.subscription, MaxMessages: int32(min(n, maxPull))})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case pctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded:
		return nil, nil // nothing arrived in time
	default:
		return nil, err
	}
	out := make([]*pubsub.PoisonHeld, 0, len(r.ReceivedMessages))
	ids := make([]string, 0, len(r.ReceivedMessages))
	for _, rm := range r.ReceivedMessages {
		m := rm.GetMessage()
		var at time.Time
		if m.GetPublishTime() != nil {
			at = m.GetPublishTime().AsTime()
		}
		md := m.GetAttributes()
		pm := pubsub.PoisonMessage(m.GetMessageId(), m.GetData(), md, 0, at)
		out = append(out, &pubsub.PoisonHeld{Message: pm, Metadata: md, Handle: rm.GetAckId()})
		ids = append(ids, rm.GetAckId())
	}
	if len(ids) > 0 {
		if _, err := b.sub.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
			Subscription: b.subscription, AckIds: ids, AckDeadlineSeconds: holdSeconds,
		}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// ackIDs returns the ack ids of hs.
func ackIDs(hs []*pubsub.PoisonHeld) []string {
	ids := make([]string, 0, len(hs))
	for _, h := range hs {
		ids = append(ids, h.Handle.(string))
	}
	return ids
}

// Release gives hs back at once (ack deadline 0).
func (b *backend) Release(ctx context.Context, hs []*pubsub.PoisonHeld) error {
	ids := ackIDs(hs)
	var errs []error
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxPull)]
		ids = ids[len(chunk):]
		_, err := b.sub.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: b.subscription, AckIds: chunk})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Remove acknowledges h.
func (b *backend) Remove(ctx context.Context, h *pubsub.PoisonHeld) error {
	_, err := b.sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: b.subscription, AckIds: ackIDs([]*pubsub.PoisonHeld{h})})
	return err
}

// Close does nothing: the connection is the process's.
func (b *backend) Close() error { return nil }
