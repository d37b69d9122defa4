package pubsub

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/apiv1/pubsubpb"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	gcpubsub "gocloud.dev/pubsub"
	_ "gocloud.dev/pubsub/awssnssqs" // awssqs://
	_ "gocloud.dev/pubsub/gcppubsub" // gcppubsub://
	"gocloud.dev/pubsub/kafkapubsub"
	_ "gocloud.dev/pubsub/mempubsub" // mem://

	"github.com/jobhost/jobhost/triggers"
)

// Schemes lists the URL schemes this driver opens.
var Schemes = []string{"mem", "awssqs", "gcppubsub", "kafka"}

// Endpoints are the URLs one trigger uses: the subscription, the topic that
// receives retried copies, and the poison topic.
type Endpoints struct {
	Subscription, Topic, Poison string
	// Name and PoisonName are display names.
	Name, PoisonName string
}

// ParseURL derives the endpoints of a subscription URL. Query parameter
// poison names the poison topic (same scheme); gcppubsub needs topic= to
// retry by republishing.
func ParseURL(u *url.URL, poisonOverride string) (Endpoints, error) {
	q := u.Query()
	poison := q.Get("poison")
	q.Del("poison")
	if poisonOverride != "" {
		poison = poisonOverride
	}
	var e Endpoints
	switch u.Scheme {
	case "mem":
		name := u.Host + u.Path
		if name == "" {
			return e, fmt.Errorf("%s: want mem://<topic>", redactURL(u))
		}
		e.Topic = "mem://" + name
		e.Name = name
		e.PoisonName = or(poison, name+"-poison")
		e.Poison = "mem://" + e.PoisonName
	case "awssqs":
		// The SQS queue is both the subscription and the topic.
		base := *u
		base.RawQuery = ""
		e.Name = strings.TrimPrefix(u.Host+u.Path, "")
		e.Topic = withQuery(&base, q)
		pu := base
		pu.Path = u.Path + "-poison"
		if poison != "" {
			pu.Path = poison
		}
		e.PoisonName = pu.Host + pu.Path
		e.Poison = withQuery(&pu, q)
	case "gcppubsub":
		topic := q.Get("topic")
		q.Del("topic")
		e.Name = u.Host + u.Path
		if topic != "" {
			e.Topic = "gcppubsub://" + topic
			e.PoisonName = or(poison, topic+"-poison")
			e.Poison = "gcppubsub://" + e.PoisonName
		} else if poison != "" {
			e.PoisonName = poison
			e.Poison = "gcppubsub://" + poison
		}
	case "kafka":
		topic := q.Get("topic")
		if topic == "" || u.Host == "" {
			return e, fmt.Errorf("%s: want kafka://<consumer group>?topic=<topic>", redactURL(u))
		}
		e.Name = topic + " (group " + u.Host + ")"
		e.Topic = "kafka://" + topic
		e.PoisonName = or(poison, topic+"-poison")
		e.Poison = "kafka://" + e.PoisonName
	default:
		return e, fmt.Errorf("pubsub: scheme %q is not one of %s", u.Scheme, strings.Join(Schemes, ", "))
	}
	sub := *u
	e.Subscription = withQuery(&sub, q)
	return e, nil
}

// OpenURL opens a driver for u (triggers.OpenURLFunc). Kafka brokers come
// from the app setting named by o.Connection, else KAFKA_BROKERS
// (comma-separated); SQS and Pub/Sub use the AWS and Google default
// credential chains.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	e, err := ParseURL(u, o.PoisonName)
	if err != nil {
		return nil, err
	}
	mux, err := muxFor(u, o)
	if err != nil {
		return nil, err
	}
	opts := Options{Name: e.Name, PoisonName: e.PoisonName, Attempts: nativeAttempts}
	fail := func(err error) (triggers.Driver, error) {
		for _, s := range opts.Owned {
			_ = s.Shutdown(ctx)
		}
		return nil, fmt.Errorf("pubsub: opening %s: %w", redactURL(u), err)
	}
	// mem:// topics must exist before their subscriptions.
	if e.Topic != "" {
		if opts.Topic, err = mux.OpenTopic(ctx, e.Topic); err != nil {
			return fail(err)
		}
		opts.Owned = append(opts.Owned, opts.Topic)
	}
	if e.Poison != "" {
		if opts.Poison, err = mux.OpenTopic(ctx, e.Poison); err != nil {
			return fail(err)
		}
		opts.Owned = append(opts.Owned, opts.Poison)
	}
	if opts.Subscription, err = mux.OpenSubscription(ctx, e.Subscription); err != nil {
		return fail(err)
	}
	opts.Owned = append([]interface{ Shutdown(context.Context) error }{opts.Subscription}, opts.Owned...)
	return New(opts), nil
}

// muxFor returns the URL mux for u: gocloud's default, or for kafka:// one
// whose brokers come from the app settings.
func muxFor(u *url.URL, o triggers.OpenOptions) (*gcpubsub.URLMux, error) {
	if u.Scheme != "kafka" {
		return gcpubsub.DefaultURLMux(), nil
	}
	brokers, ok := triggers.LookupSetting(o.Lookup, o.Connection, "KAFKA_BROKERS")
	if !ok {
		return nil, fmt.Errorf("kafka: no brokers: set %s", or(o.Connection, "KAFKA_BROKERS"))
	}
	mux := new(gcpubsub.URLMux)
	ko := &kafkapubsub.URLOpener{Brokers: strings.Split(brokers, ","), Config: kafkapubsub.MinimalConfig()}
	mux.RegisterTopic("kafka", ko)
	mux.RegisterSubscription("kafka", ko)
	return mux, nil
}

// Topic is a gocloud topic as a triggers.Publisher, for outputs.
type Topic struct {
	t    *gcpubsub.Topic
	name string
}

// OpenTopicURL opens the topic u names for publishing: mem://<topic>,
// awssqs://<queue url>, gcppubsub://projects/P/topics/T, kafka://<topic>.
func OpenTopicURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (*Topic, error) {
	mux, err := muxFor(u, o)
	if err != nil {
		return nil, err
	}
	t, err := mux.OpenTopic(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("pubsub: opening topic %s: %w", redactURL(u), err)
	}
	return &Topic{t: t, name: redactURL(u)}, nil
}

// Publish sends body with props as metadata.
func (t *Topic) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	if err := t.t.Send(ctx, &gcpubsub.Message{Body: body, Metadata: props}); err != nil {
		return "", fmt.Errorf("pubsub: publish to %s: %w", t.name, err)
	}
	return "", nil
}

// Close shuts the topic down.
func (t *Topic) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return t.t.Shutdown(ctx)
}

// nativeAttempts reads the broker's own delivery count where gocloud
// exposes it.
func nativeAttempts(m *gcpubsub.Message) (int64, bool) {
	var sqs sqstypes.Message
	if m.As(&sqs) {
		if n, err := strconv.ParseInt(sqs.Attributes["ApproximateReceiveCount"], 10, 64); err == nil {
			return n, true
		}
	}
	var rm *pubsubpb.ReceivedMessage
	if m.As(&rm) && rm != nil && rm.DeliveryAttempt > 0 {
		return int64(rm.DeliveryAttempt), true
	}
	return 0, false
}

// sentTime is when the broker received m, where gocloud exposes it.
func sentTime(m *gcpubsub.Message) time.Time {
	var sqs sqstypes.Message
	if m.As(&sqs) {
		if ms, err := strconv.ParseInt(sqs.Attributes["SentTimestamp"], 10, 64); err == nil {
			return time.UnixMilli(ms)
		}
	}
	var pm *pubsubpb.PubsubMessage
	if m.As(&pm) && pm != nil && pm.PublishTime != nil {
		return pm.PublishTime.AsTime()
	}
	return time.Time{}
}

func withQuery(u *url.URL, q url.Values) string {
	c := *u
	c.RawQuery = q.Encode()
	return c.String()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// redactURL drops credentials from u for messages.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}
