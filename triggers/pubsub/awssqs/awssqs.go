// Package awssqs registers the awssqs:// scheme: Amazon SQS queues through
// gocloud.dev/pubsub/awssnssqs, as triggers and outputs. Import it for its
// side effect:
//
//	import _ "github.com/jobhost/jobhost/triggers/pubsub/awssqs"
//
// A trigger URL is the queue's URL with the awssqs scheme, such as
// awssqs://sqs.us-east-2.amazonaws.com/123456789012/orders?region=us-east-2.
// The queue also receives retried copies; poisoned ones go to the queue
// <queue>-poison beside it, or to the one the poison parameter names (a
// bare name is a queue beside the source, a path is the whole queue path).
// visibilitytimeout=<duration> states the queue's visibility timeout (SQS's
// default: 30s), which the driver plans delayed retries by; it is not sent
// to SQS. An output URL is a queue URL. Credentials come from the AWS
// default chain. The delivery count and insertion time are SQS's
// ApproximateReceiveCount and SentTimestamp.
//
// Poison administration (the scheme's Poison opener) reads the poison queue
// over SQS's own API: Count is its ApproximateNumberOfMessages, List
// receives and makes the messages visible again at once, Requeue sends to
// the source queue and only then deletes, Purge deletes. Like the rest of
// this package it is unverified: no test has run it against SQS.
package awssqs

import (
	"errors"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	gcpubsub "gocloud.dev/pubsub"
	_ "gocloud.dev/pubsub/awssnssqs" // awssqs:// in gocloud's default mux

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// defaultVisibility is SQS's default visibility timeout.
const defaultVisibility = 30 * time.Second

var kind = &pubsub.Kind{Scheme: "awssqs", Endpoints: endpoints, Attempts: attempts, SentTime: sentTime, Poison: openPoison}

func init() {
	triggers.Register(triggers.Scheme{Name: kind.Scheme, Subscription: kind.OpenURL, Publisher: kind.OpenPublisher, Poison: kind.OpenPoison})
}

func endpoints(u *url.URL, q url.Values, poison string) (pubsub.Endpoints, error) {
	if u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return pubsub.Endpoints{}, errors.New("want awssqs://<sqs host>/<account>/<queue>")
	}
	visibility, err := pubsub.ParseAckDeadline(q, "visibilitytimeout", defaultVisibility)
	if err != nil {
		return pubsub.Endpoints{}, err
	}
	q.Del("visibilitytimeout")
	// The SQS queue is both the subscription and the topic.
	base := *u
	base.RawQuery = q.Encode()
	pu := base
	switch {
	case poison == "":
		pu.Path = u.Path + "-poison"
	case strings.Contains(poison, "/"):
		pu.Path = "/" + strings.TrimPrefix(poison, "/")
	default:
		pu.Path = path.Join(path.Dir(u.Path), poison)
	}
	return pubsub.Endpoints{
		Name: u.Host + u.Path, Topic: base.String(),
		PoisonName: pu.Host + pu.Path, Poison: pu.String(),
		AckDeadline: visibility,
	}, nil
}

// attempts is SQS's ApproximateReceiveCount.
func attempts(m *gcpubsub.Message) (int64, bool) {
	var sqs sqstypes.Message
	if m.As(&sqs) {
		if n, err := strconv.ParseInt(sqs.Attributes["ApproximateReceiveCount"], 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}

// sentTime is SQS's SentTimestamp.
func sentTime(m *gcpubsub.Message) time.Time {
	var sqs sqstypes.Message
	if m.As(&sqs) {
		if ms, err := strconv.ParseInt(sqs.Attributes["SentTimestamp"], 10, 64); err == nil {
			return time.UnixMilli(ms)
		}
	}
	return time.Time{}
}
