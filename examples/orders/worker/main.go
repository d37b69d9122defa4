// Command worker runs the orders example; the app setting
// OrdersSubscription chooses the broker.
package main

import (
	_ "github.com/jobhost/jobhost/examples/orders"
	"github.com/jobhost/jobhost/runtime/cli"
)

func main() { cli.Main() }
