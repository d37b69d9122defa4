// Command worker runs the orders example; the app setting
// OrdersSubscription chooses the broker. It links the two brokers the
// example runs on besides Storage Queues; a worker for one broker imports
// only that driver.
package main

import (
	_ "github.com/jobhost/jobhost/examples/orders"
	"github.com/jobhost/jobhost/runtime/cli"
	_ "github.com/jobhost/jobhost/triggers/jetstream" // nats://
	_ "github.com/jobhost/jobhost/triggers/rabbitmq"  // rabbit://
)

func main() { cli.Main() }
