package cli

import (
	"cmp"
	"fmt"

	"github.com/jobhost/jobhost/runtime"
)

// versionInfo is `jobhost version --output json`: the build that runs, as
// the start-up log line and the jobhost_build_info metric tell it.
type versionInfo struct {
	// Module is jobhost's module path.
	Module string `json:"module"`
	// Version is the jobhost module's version ("(devel)" from a checkout).
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from, "-dirty" when
	// the work tree had changes; "" when the build does not say.
	Commit string `json:"commit"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"goVersion"`
}

// version prints the build's version, commit and Go version.
func (c *command) version() int {
	if !c.parse(c.outputFlag) {
		return ExitUsage
	}
	v := runtime.Version()
	info := versionInfo{Module: runtime.Module, Version: v.Version, Commit: v.Revision, GoVersion: v.GoVersion}
	if c.output == "json" {
		c.printJSON(info)
		return ExitOK
	}
	fmt.Fprintf(c.Stdout, "jobhost %s\ncommit  %s\ngo      %s\n", info.Version, cmp.Or(info.Commit, "unknown"), info.GoVersion)
	return ExitOK
}
