//go:build !linux

package tchannelmock

import "os/exec"

// setParentDeath: no such signal here; the stdin pipe is what the mock watches.
func setParentDeath(cmd *exec.Cmd) {}
