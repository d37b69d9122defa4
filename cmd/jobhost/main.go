// Command jobhost is the jobhost command line: validate host.json, list
// functions, send and peek messages, and run the host. This binary has no
// functions of its own; build a worker that registers yours and calls
// cli.Main (see examples/sitemodify/worker) to run them.
package main

import "github.com/jobhost/jobhost/runtime/cli"

func main() { cli.Main() }
