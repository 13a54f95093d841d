package exec

import (
	"errors"

	"golang.org/x/sys/unix"
)

// waitExit blocks until process pid has exited but leaves it unreaped
// (WNOWAIT). While the zombie exists its PID, and so its process group ID,
// cannot be reused, which makes signalling the group afterwards safe; the
// caller reaps it with cmd.Wait.
func waitExit(pid int) error {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
