//go:build !linux

package chaos

import "os/exec"

// dieWithParent: only Linux can tie a child's life to its parent; elsewhere
// the tests' cleanups kill the workers.
func dieWithParent(cmd *exec.Cmd) {}
