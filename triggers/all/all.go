// Package all links every trigger driver jobhost ships: a blank import
// registers each one's URL schemes.
//
//	import _ "github.com/jobhost/jobhost/triggers/all"
//
// A worker that uses one broker imports that driver's package instead and
// stays small: runtime itself links only Azure Storage Queues and memqueue.
package all

import (
	_ "github.com/jobhost/jobhost/triggers/jetstream"        // nats://
	_ "github.com/jobhost/jobhost/triggers/memqueue"         // memqueue://
	_ "github.com/jobhost/jobhost/triggers/postgres"         // postgres://
	_ "github.com/jobhost/jobhost/triggers/pubsub/awssqs"    // awssqs://
	_ "github.com/jobhost/jobhost/triggers/pubsub/gcppubsub" // gcppubsub://
	_ "github.com/jobhost/jobhost/triggers/pubsub/kafka"     // kafka://
	_ "github.com/jobhost/jobhost/triggers/pubsub/mempubsub" // mem://
	_ "github.com/jobhost/jobhost/triggers/rabbitmq"         // rabbit://
	_ "github.com/jobhost/jobhost/triggers/redis"            // redis://
	_ "github.com/jobhost/jobhost/triggers/servicebus"       // azuresb://
)
