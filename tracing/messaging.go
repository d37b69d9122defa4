package tracing

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Values of messaging.system for the brokers the semantic conventions do
// not name (Azure Storage Queues, NATS, Redis, PostgreSQL and the
// in-process queues): jobhost's own, documented in docs/observability.md.
const (
	SystemStorageQueue = "azure_storage_queue"
	SystemNATS         = "nats"
	SystemRedis        = "redis"
	SystemPostgreSQL   = "postgresql"
	SystemMemQueue     = "memqueue"
	SystemMemPubSub    = "mempubsub"
)

// System returns the messaging.system of a trigger or target URL's
// scheme; "" is a Storage Queue. The conventions' values where they have
// one (rabbitmq, servicebus, kafka, aws_sqs, gcp_pubsub), else jobhost's
// (azure_storage_queue, nats, redis, postgresql, memqueue, mempubsub); an
// unknown scheme is its own name.
func System(scheme string) string {
	switch scheme {
	case "":
		return SystemStorageQueue
	case "rabbit":
		return "rabbitmq"
	case "azuresb":
		return "servicebus"
	case "kafka":
		return "kafka"
	case "awssqs":
		return "aws_sqs"
	case "gcppubsub":
		return "gcp_pubsub"
	case "nats":
		return SystemNATS
	case "redis":
		return SystemRedis
	case "postgres":
		return SystemPostgreSQL
	case "memqueue":
		return SystemMemQueue
	case "mem":
		return SystemMemPubSub
	}
	return scheme
}

// Destination returns the messaging.destination.name of a queue: a Storage
// Queue's name as it is, a URL (already without credentials or query)
// without its scheme: rabbit://orders is "orders".
func Destination(name string) string {
	if i := strings.Index(name, "://"); i >= 0 {
		return strings.TrimSuffix(name[i+3:], "/")
	}
	return name
}

// Attribute keys jobhost adds besides the semantic conventions'.
const (
	// AttrOutcome is how the host settles the invocation's message as the
	// function's run decides it: succeeded, failed (retried), poisoned,
	// cancelled (the host stopped) or operation-canceled.
	AttrOutcome = attribute.Key("jobhost.invocation.outcome")
	// AttrDequeueCount is the delivery's attempt number (1 on the first),
	// on every broker (the conventions name it only for Service Bus and
	// Pub/Sub, which get theirs too).
	AttrDequeueCount = attribute.Key("jobhost.message.dequeue_count")
	// AttrLinked is true on a consumer span that starts a trace of its own
	// linked to the producer's, because the message waited longer than
	// LinkAfter.
	AttrLinked = attribute.Key("jobhost.trace.linked")
)

// DeliveryAttempt returns the conventions' attribute for a delivery's
// attempt number on system, if they have one (Service Bus's delivery
// count, Pub/Sub's delivery attempt).
func DeliveryAttempt(system string, n int64) (attribute.KeyValue, bool) {
	switch system {
	case "servicebus":
		return semconv.MessagingServiceBusMessageDeliveryCount(int(n)), true
	case "gcp_pubsub":
		return semconv.MessagingGCPPubSubMessageDeliveryAttempt(int(n)), true
	}
	return attribute.KeyValue{}, false
}
