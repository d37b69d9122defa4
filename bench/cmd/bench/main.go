// Command bench compares jobhost with plain client loops and Watermill on
// Azurite, in memory, RabbitMQ and NATS JetStream. See docs/performance.md.
//
//	go run ./cmd/bench [-quick] [-scenarios a,b,...] [-out results/latest.json] [-profile DIR]
package main

import (
	"os"

	"github.com/jobhost/jobhost/bench/internal/child"
	"github.com/jobhost/jobhost/bench/internal/harness"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		child.Main()
		return
	}
	os.Exit(harness.Main(os.Args[1:]))
}
