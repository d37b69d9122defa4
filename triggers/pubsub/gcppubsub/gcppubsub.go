// Package gcppubsub registers the gcppubsub:// scheme: Google Cloud Pub/Sub
// through gocloud.dev/pubsub/gcppubsub, as triggers and outputs. Import it
// for its side effect:
//
//	import _ "github.com/jobhost/jobhost/triggers/pubsub/gcppubsub"
//
// A trigger URL is gcppubsub://projects/<p>/subscriptions/<s>, with
// topic=projects/<p>/topics/<t> naming the topic the subscription reads so
// that retries republish to it and poisoned messages go to <t>-poison.
// Without topic a retry is a Nack, and there is a poison topic only when
// the poison parameter names one (a bare name is a topic in the same
// project). ackdeadline=<duration> states the subscription's ack deadline
// (Pub/Sub's default: 10s), which the driver plans delayed retries by; it is
// not sent to Pub/Sub. An output URL is gcppubsub://projects/<p>/topics/<t>.
// Credentials come from Google's default chain. The delivery count is
// Pub/Sub's DeliveryAttempt (set when the subscription has a dead-letter
// policy) and the insertion time its PublishTime.
//
// Poison administration (the scheme's Poison opener): a topic keeps
// messages only for the subscriptions it has, so the poison topic is read
// through a subscription of jobhost's, <poison topic>-jobhost in its
// project, or the one poisonsubscription= names (a path or a bare name).
// A trigger that opens creates it when it is missing (best effort: it
// needs the right to create subscriptions; otherwise create it yourself,
// gcloud pubsub subscriptions create <poison>-jobhost --topic <poison>),
// and Count creates it too, reporting then that nothing was kept. Pub/Sub
// cannot peek: List pulls and gives back at once, Count pulls everything
// (at most 10,000) and gives it back, Requeue publishes to topic= (required)
// and only then acknowledges, Purge acknowledges. See [backend].
package gcppubsub

import (
	"cmp"
	"errors"
	"net/url"
	"path"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/apiv1/pubsubpb"
	gcpubsub "gocloud.dev/pubsub"
	_ "gocloud.dev/pubsub/gcppubsub" // gcppubsub:// in gocloud's default mux

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// defaultAckDeadline is Pub/Sub's default ack deadline.
const defaultAckDeadline = 10 * time.Second

var kind = &pubsub.Kind{
	Scheme: "gcppubsub", Endpoints: endpoints, Attempts: attempts, SentTime: sentTime,
	Poison: openPoison, Prepare: prepare,
}

func init() {
	triggers.Register(triggers.Scheme{Name: kind.Scheme, Subscription: kind.OpenURL, Publisher: kind.OpenPublisher, Poison: kind.OpenPoison})
}

func endpoints(u *url.URL, q url.Values, poison string) (pubsub.Endpoints, error) {
	sub := strings.Trim(u.Host+u.Path, "/")
	if u.Host == "" || !strings.Contains(sub, "/") {
		return pubsub.Endpoints{}, errors.New("want gcppubsub://projects/<project>/subscriptions/<subscription>")
	}
	deadline, err := pubsub.ParseAckDeadline(q, "ackdeadline", defaultAckDeadline)
	if err != nil {
		return pubsub.Endpoints{}, err
	}
	q.Del("ackdeadline")
	q.Del(PoisonSubscriptionParam) // the poison administration's
	topic := q.Get("topic")
	q.Del("topic")
	e := pubsub.Endpoints{Name: u.Host + u.Path, AckDeadline: deadline}
	if topic != "" {
		e.Topic = "gcppubsub://" + topic
		poison = cmp.Or(poison, path.Base(topic)+"-poison")
	}
	if poison != "" {
		e.PoisonName = poisonTopic(cmp.Or(topic, sub), poison)
		e.Poison = "gcppubsub://" + e.PoisonName
	}
	return e, nil
}

// poisonTopic is the path of poison topic name: as given when it is a
// path, else a topic in the project of near (a topic or subscription path,
// long or short form).
func poisonTopic(near, name string) string {
	if strings.Contains(name, "/") {
		return strings.TrimPrefix(name, "/")
	}
	dir := path.Dir(near)
	if path.Base(dir) == "subscriptions" {
		dir = path.Join(path.Dir(dir), "topics")
	}
	return path.Join(dir, name)
}

// attempts is Pub/Sub's DeliveryAttempt.
func attempts(m *gcpubsub.Message) (int64, bool) {
	var rm *pubsubpb.ReceivedMessage
	if m.As(&rm) && rm != nil && rm.DeliveryAttempt > 0 {
		return int64(rm.DeliveryAttempt), true
	}
	return 0, false
}

// sentTime is Pub/Sub's PublishTime.
func sentTime(m *gcpubsub.Message) time.Time {
	var pm *pubsubpb.PubsubMessage
	if m.As(&pm) && pm != nil && pm.PublishTime != nil {
		return pm.PublishTime.AsTime()
	}
	return time.Time{}
}
