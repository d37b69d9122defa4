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
// names, else KAFKA_BROKERS. Kafka has no ack deadline: a delayed retry is
// held in the driver for its delay.
package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"

	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/kafkapubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// BrokersSetting is the app setting read for the brokers when the binding
// names no connection.
const BrokersSetting = "KAFKA_BROKERS"

const scheme = "kafka"

var kind = &pubsub.Kind{Scheme: scheme, Endpoints: endpoints, Mux: mux}

func init() {
	triggers.Register(triggers.Scheme{Name: kind.Scheme, Subscription: kind.OpenURL, Publisher: kind.OpenPublisher})
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

// mux returns a URL mux whose kafka:// opener uses the brokers from the
// app settings.
func mux(_ *url.URL, o triggers.OpenOptions) (*gcpubsub.URLMux, error) {
	brokers, ok := triggers.LookupSetting(o.Lookup, o.Connection, BrokersSetting)
	if !ok {
		return nil, fmt.Errorf("kafka: no brokers: set %s", cmp.Or(o.Connection, BrokersSetting))
	}
	m := new(gcpubsub.URLMux)
	ko := &kafkapubsub.URLOpener{Brokers: strings.Split(brokers, ","), Config: kafkapubsub.MinimalConfig()}
	m.RegisterTopic(scheme, ko)
	m.RegisterSubscription(scheme, ko)
	return m, nil
}
