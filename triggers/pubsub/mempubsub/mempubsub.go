// Package mempubsub registers the mem:// scheme: gocloud's in-process
// topics (gocloud.dev/pubsub/mempubsub) as triggers and outputs. Import it
// for its side effect:
//
//	import _ "github.com/jobhost/jobhost/triggers/pubsub/mempubsub"
//
// A trigger URL is mem://<topic>[?ackdeadline=<duration>][&poison=<topic>];
// retried copies go to <topic>, poisoned ones to <topic>-poison unless
// poison names another. An output URL is mem://<topic>. A mem://
// subscription sees only what is sent after it is opened, and topics live
// as long as the process: closing a driver or publisher leaves them open.
package mempubsub

import (
	"cmp"
	"errors"
	"net/url"

	_ "gocloud.dev/pubsub/mempubsub" // mem:// in gocloud's default mux

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

var kind = &pubsub.Kind{Scheme: "mem", Endpoints: endpoints, SharedTopics: true}

func init() {
	triggers.Register(triggers.Scheme{Name: kind.Scheme, Subscription: kind.OpenURL, Publisher: kind.OpenPublisher})
}

func endpoints(u *url.URL, _ url.Values, poison string) (pubsub.Endpoints, error) {
	name := u.Host + u.Path
	if name == "" {
		return pubsub.Endpoints{}, errors.New("want mem://<topic>")
	}
	e := pubsub.Endpoints{Name: name, Topic: "mem://" + name, PoisonName: cmp.Or(poison, name+"-poison")}
	e.Poison = "mem://" + e.PoisonName
	return e, nil
}
