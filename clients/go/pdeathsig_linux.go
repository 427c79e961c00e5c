package tchannelmock

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel send SIGTERM to the mock when the thread
// that started it exits (the process dying included). Start keeps that thread
// for the mock's whole life.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
