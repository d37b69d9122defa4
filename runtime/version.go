package runtime

import (
	goruntime "runtime"
	"runtime/debug"
	"sync"
)

// VersionInfo says which jobhost build runs.
type VersionInfo struct {
	// Version is the jobhost module's version ("(devel)" in a build from
	// its own checkout).
	Version string
	// Revision is the VCS commit the binary was built from ("" if
	// unknown), with "-dirty" when the work tree had changes.
	Revision string
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// Module is jobhost's module path.
const Module = "github.com/jobhost/jobhost"

var version = sync.OnceValue(func() VersionInfo {
	v := VersionInfo{Version: "(devel)", GoVersion: goruntime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Path == Module {
		v.Version = bi.Main.Version
	} else {
		for _, d := range bi.Deps {
			if d.Path == Module {
				v.Version = d.Version
				if d.Replace != nil {
					v.Version = d.Replace.Version
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && v.Revision != "" {
		v.Revision += "-dirty"
	}
	return v
})

// Version returns the running build's version, read once from the
// binary's build information.
func Version() VersionInfo { return version() }
