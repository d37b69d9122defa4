// Command worker is the sitemodify example's host: the jobhost command line
// with ProcessSiteModifyRequest compiled in.
//
//	go run ./examples/sitemodify/worker run --dev
package main

import (
	_ "github.com/jobhost/jobhost/examples/sitemodify"
	"github.com/jobhost/jobhost/runtime/cli"
)

func main() { cli.Main() }
