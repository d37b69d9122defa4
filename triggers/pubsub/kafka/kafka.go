// Package kafka registers the kafka:// scheme: Kafka topics through
// gocloud.dev/pubsub/kafkapubsub, as triggers and outputs. Import it for
// its side effect:
//
//	import _ "github.com/jobhost/jobhost/triggers/pubsub/kafka"
//
// A trigger URL is kafka://<consumer group>?topic=<topic>[&poison=<topic>];
// retried copies go to <topic>, poisoned ones to <topic>-poison unless
// poison names another. An output URL is kafka://<topic>. The brokers
// (comma-separated) come from the app setting the binding's connection
// names, else KAFKA_BROKERS. A new consumer group starts at the oldest
// offset (offset=newest in the trigger URL starts it at the newest, as
// sarama would). Kafka has no ack deadline: a delayed retry is held in the
// driver for its delay, and a message is redelivered only to the next
// member that takes its partition, from the group's last committed offset
// (a restarted worker). The insertion time is the record's timestamp.
//
// Poison administration (the scheme's Poison opener) reads the poison topic
// by offset, never joining a group, from a cursor kept as the committed
// offsets of the consumer group PoisonGroup ("jobhost-poison"). Count is
// exact (the offsets from the cursor to the end, less those removed ahead
// of it). List reads without committing: it changes nothing. Requeue
// publishes each record to <topic> (body and headers, without jobhost's
// bookkeeping headers) and only then moves the cursor past it; Purge moves
// the cursor. Kafka cannot delete one record: what is behind the cursor
// stays in the topic until its retention removes it, and other readers of
// the poison topic still see it. A record requeued or purged while older
// ones stay is recorded in the commit metadata (a few hundred at most).
// A requeued copy goes to the topic, so every consumer group reading it
// gets it, not only the trigger's.
package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/IBM/sarama"
	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/kafkapubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// BrokersSetting is the app setting read for the brokers when the binding
// names no connection.
const BrokersSetting = "KAFKA_BROKERS"

const scheme = "kafka"

var kind = &pubsub.Kind{Scheme: scheme, Endpoints: endpoints, Mux: mux, SentTime: sentTime, Poison: openPoison}

func init() {
	triggers.Register(triggers.Scheme{Name: kind.Scheme, Subscription: kind.OpenURL, Publisher: kind.OpenPublisher, Poison: kind.OpenPoison})
}

func endpoints(u *url.URL, q url.Values, poison string) (pubsub.Endpoints, error) {
	topic := q.Get("topic")
	if topic == "" || u.Host == "" {
		return pubsub.Endpoints{}, errors.New("want kafka://<consumer group>?topic=<topic>")
	}
	e := pubsub.Endpoints{
		Name:        topic + " (group " + u.Host + ")",
		Topic:       "kafka://" + topic,
		PoisonName:  cmp.Or(poison, topic+"-poison"),
		AckDeadline: pubsub.NoAckDeadline,
	}
	e.Poison = "kafka://" + e.PoisonName
	return e, nil
}

// sentTime is the record's timestamp: its producer's create time, or the
// broker's append time on a topic with message.timestamp.type=LogAppendTime.
func sentTime(m *gcpubsub.Message) time.Time {
	var cm *sarama.ConsumerMessage
	if m.As(&cm) && cm != nil && !cm.Timestamp.IsZero() && cm.Timestamp.Unix() > 0 {
		return cm.Timestamp
	}
	return time.Time{}
}

// Config returns the sarama configuration the driver opens its producer and
// consumer group with: kafkapubsub's minimal one (Kafka 0.11 protocol, for
// headers), with a new group starting at the oldest offset. sarama's
// default, the newest, skips what was sent to the topic before the group
// first joined, and after a restart of a group that never committed, what
// was sent before the restart: a worker started after its producers lost
// those messages. A URL's offset=newest still asks for that.
func Config() *sarama.Config {
	c := kafkapubsub.MinimalConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

// mux returns a URL mux whose kafka:// opener uses the brokers from the
// app settings.
func mux(_ *url.URL, o triggers.OpenOptions) (*gcpubsub.URLMux, error) {
	brokers, ok := triggers.LookupSetting(o.Lookup, o.Connection, BrokersSetting)
	if !ok {
		return nil, fmt.Errorf("kafka: no brokers: set %s", cmp.Or(o.Connection, BrokersSetting))
	}
	m := new(gcpubsub.URLMux)
	ko := &kafkapubsub.URLOpener{Brokers: strings.Split(brokers, ","), Config: Config()}
	m.RegisterTopic(scheme, ko)
	m.RegisterSubscription(scheme, ko)
	return m, nil
}
