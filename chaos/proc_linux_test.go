package chaos

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the worker if the test binary dies
// first, so no worker outlives a crashed or timed-out test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
