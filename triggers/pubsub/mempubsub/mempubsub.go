// Package mempubsub registers the mem:// scheme: gocloud's in-process
// topics (gocloud.dev/pubsub/mempubsub) as triggers and outputs. Import it
// for its side effect:
//
//	import _ "github.com/jobhost/jobhost/triggers/pubsub/mempubsub"
//
// A trigger URL is mem://<topic>[?ackdeadline=<duration>][&poison=<topic>];
// retried copies go to <topic>, poisoned ones to <topic>-poison unless
// poison names another. ackdeadline (gocloud's default: 1m) is also the ack
// deadline the driver plans delayed retries by. An output URL is
// mem://<topic>. A mem:// subscription sees only what is sent after it is
// opened, and topics live as long as the process: closing a driver or
// publisher leaves them open.
//
// Poison administration (the scheme's Poison opener) is per process: when a
// mem:// trigger opens, a collector subscribes to its poison topic and keeps
// every message poisoned from then on in memory; List, Requeue and Purge
// work on those, and Count is exact. Opening it for a poison topic that no
// trigger of the process uses fails, so the CLI, another process, says so
// instead of showing an empty topic.
package mempubsub

import (
	"cmp"
	"errors"
	"net/url"
	"time"

	_ "gocloud.dev/pubsub/mempubsub" // mem:// in gocloud's default mux

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

var kind = &pubsub.Kind{Scheme: "mem", Endpoints: endpoints, SharedTopics: true, Poison: openPoison, Prepare: prepare}

func init() {
	triggers.Register(triggers.Scheme{Name: kind.Scheme, Subscription: kind.OpenURL, Publisher: kind.OpenPublisher, Poison: kind.OpenPoison})
}

// defaultAckDeadline is gocloud's mem:// ack deadline.
const defaultAckDeadline = time.Minute

func endpoints(u *url.URL, q url.Values, poison string) (pubsub.Endpoints, error) {
	name := u.Host + u.Path
	if name == "" {
		return pubsub.Endpoints{}, errors.New("want mem://<topic>")
	}
	deadline, err := pubsub.ParseAckDeadline(q, "ackdeadline", defaultAckDeadline)
	if err != nil {
		return pubsub.Endpoints{}, err
	}
	e := pubsub.Endpoints{
		Name: name, Topic: "mem://" + name, PoisonName: cmp.Or(poison, name+"-poison"),
		AckDeadline: deadline,
	}
	e.Poison = "mem://" + e.PoisonName
	return e, nil
}
