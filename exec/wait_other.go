//go:build !linux

package exec

import "errors"

// waitExit is not available here: the caller falls back to cmd.Wait, which
// reaps the leader before its group is signalled. The window in which the
// group ID could be reused is then the few microseconds between the two.
func waitExit(pid int) error {
	return errors.ErrUnsupported
}
