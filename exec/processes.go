package exec

import (
	"errors"
	"fmt"
	"math"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"

	"stq/engine"
)

// StartTolerance is how far apart, in milliseconds, two readings of one
// process's start time may be and still name the same process.
//
// Readings are not exact on Linux: gopsutil adds the process's start offset
// (exact, in clock ticks) to a boot time in whole seconds, which it takes
// from /proc/stat or, inside a container (as where the tests run), from now
// minus /proc/uptime. That estimate carries the 10ms quantisation of
// /proc/uptime, so when the true boot time lies within 10ms of a whole
// second, readings flip between two values exactly one second apart; the
// daemon that records a start and the one that recovers it after a crash
// may well see different ones. A larger gap (a step of the wall clock in
// between) makes recovery leave the group alone, which is the safe error.
//
// The tolerance costs little: a PID is only reused after its process is
// gone, so a stranger matching within one second needs an attempt that
// lived under a second and a full wrap of the PID space meanwhile.
const StartTolerance = 1000

// StartTime returns the start time of process pid in milliseconds since the
// epoch, as gopsutil reports it. The subprocess executor records it at start
// and Processes compares it before killing anything.
func StartTime(pid int) (int64, error) {
	if pid <= 0 || pid > math.MaxInt32 {
		return 0, fmt.Errorf("read start time of process %d: invalid pid", pid)
	}
	// A bare Process: NewProcess would first check that the PID exists
	// (a pidfd) and read the start time once more, and this runs for
	// every job start. A missing process fails the read below.
	p := &process.Process{Pid: int32(pid)}
	t, err := p.CreateTime()
	if err != nil {
		return 0, fmt.Errorf("read start time of process %d: %w", pid, err)
	}
	return t, nil
}

// Processes kills the process groups of attempts that a crashed daemon left
// running.
type Processes struct{}

var _ engine.Processes = Processes{}

// KillGroup kills the process group that the attempt recorded as (pid,
// pidStart) left behind:
//   - a live process pid started at pidStart is the attempt's leader: its
//     group and itself are killed;
//   - a live process pid started at another time is a stranger that reused
//     the PID: nothing is signalled (a pidStart of 0, recorded when the start
//     time could not be read, never matches, so it is never guessed at);
//   - with no process pid, the leader is gone but members of its group may
//     remain, and they are killed.
//
// It reports whether any process was signalled.
func (Processes) KillGroup(pid int, pidStart int64) (bool, error) {
	if pid <= 1 {
		return false, fmt.Errorf("kill group %d: refusing to signal pid <= 1", pid)
	}
	start, err := StartTime(pid)
	switch {
	case err == nil:
		if !sameStart(start, pidStart) {
			return false, nil
		}
		return killLeader(pid)
	case !exists(pid):
		// The leader is gone (perhaps between the two checks). Signalling
		// its group ID is still safe: the kernel keeps a PID allocated while
		// any process uses it as its process group (or session) ID, so
		// while members of the old group survive, no new process can get
		// this PID, nor lead a new group with this ID; XNU's allocator
		// skips such IDs too. Only once the group is empty can the number
		// be reused, and then a stranger would have to make itself leader
		// of a new group and die leaving members for this to hit them.
		return killGroupID(pid)
	default:
		return false, fmt.Errorf("kill group %d: %w", pid, err)
	}
}

// sameStart reports whether two start-time readings name one process.
func sameStart(a, b int64) bool {
	if a <= 0 || b <= 0 {
		return false
	}
	d := a - b
	return -StartTolerance <= d && d <= StartTolerance
}

// killLeader kills the group led by pid and pid itself, in case the leader
// moved to another group.
func killLeader(pid int) (bool, error) {
	groupErr := unix.Kill(-pid, unix.SIGKILL)
	leaderErr := unix.Kill(pid, unix.SIGKILL)
	if groupErr == nil || leaderErr == nil {
		return true, nil
	}
	// Both failed. ESRCH means the process died meanwhile: nothing to do.
	for _, err := range []error{groupErr, leaderErr} {
		if !errors.Is(err, unix.ESRCH) {
			return false, fmt.Errorf("kill group %d: %w", pid, err)
		}
	}
	return false, nil
}

func killGroupID(pgid int) (bool, error) {
	ok, err := sigkill(-pgid)
	if err != nil {
		return false, fmt.Errorf("kill group %d: %w", pgid, err)
	}
	return ok, nil
}

// sigkill sends SIGKILL to pid (a group when negative). ESRCH means the
// target died meanwhile: nothing was signalled, and nothing is wrong.
func sigkill(pid int) (bool, error) {
	err := unix.Kill(pid, unix.SIGKILL)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ESRCH):
		return false, nil
	default:
		return false, err
	}
}

// exists reports whether a process pid exists (EPERM: it does, as another
// user's).
func exists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
