// Command jobhost is the jobhost command line: validate host.json, list
// functions, send and peek messages, administer poison messages and run the
// host. It links every driver (triggers/all) and every operations store.
// This binary has no functions
// of its own; build a worker that registers yours and calls cli.Main (see
// examples/sitemodify/worker) to run them.
package main

import (
	_ "github.com/jobhost/jobhost/operations/pgstore"
	"github.com/jobhost/jobhost/runtime/cli"
	_ "github.com/jobhost/jobhost/timer/timerblob" // timers on Azure Storage
	_ "github.com/jobhost/jobhost/timer/timerpg"   // timers on PostgreSQL
	_ "github.com/jobhost/jobhost/tracing/otlp"    // OTLP trace export
	_ "github.com/jobhost/jobhost/triggers/all"
)

func main() { cli.Main() }
