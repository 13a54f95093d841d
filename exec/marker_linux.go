package exec

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"
)

// MarkerRecovery is true where Processes.KillJob can find an attempt's
// processes by the STQ_JOB_ID=<id> entry that every job process inherits in
// its environment. Recovery then finds them even when the daemon died before
// recording the PID, so the subprocess executor does not need the start gate
// (Subprocess.Gate) and saves its extra /bin/sh exec per attempt.
const MarkerRecovery = true

// markerVar is the environment variable that names a process's job. The
// engine sets it for every attempt, and children inherit it.
const markerVar = "STQ_JOB_ID"

// KillJob kills every process of this user whose environment holds exactly
// the entry STQ_JOB_ID=<jobID>, together with its process group, so that a
// crashed daemon's attempt can be stopped without its recorded PID. It
// reports whether any process was signalled.
//
// The environment read is the one the process was started with
// (/proc/<pid>/environ): a job process that unsets the variable before
// starting children, or overwrites its environment block (setproctitle), is
// only found through another member of its group. Processes whose
// environment cannot be read are skipped: other users', and zombies, which
// read as empty but are dead already.
//
// Between reading a process's environment and signalling it, the process
// may exit; its PID could then only be reused after it is reaped and the PID
// space has wrapped, in microseconds, so a stranger is not hit in practice.
// A marked process forked after the scan listed the PIDs is missed unless it
// is in a group that is signalled (the kernel does not let a fork escape a
// group kill), that is unless it has left its group meanwhile.
func (Processes) KillJob(jobID string) (bool, error) {
	if jobID == "" {
		// STQ_JOB_ID= would match processes that have no job at all.
		return false, errors.New("kill job: empty job id")
	}
	marker := markerVar + "=" + jobID
	pids, err := process.Pids()
	if err != nil {
		return false, fmt.Errorf("kill job %s: list processes: %w", jobID, err)
	}
	self, ownGroup, uid := os.Getpid(), unix.Getpgrp(), os.Getuid()
	var signalled bool
	var errs []error
	// Members of one group are usually all marked: the group is signalled
	// once.
	groups := make(map[int]bool)
	// A process in the middle of execve reads as having an empty
	// environment until the kernel has set up the new one; so does a
	// zombie. Those are read once more after the pass, by when an exec
	// that was under way has finished.
	var again []int32
	kill := func(pid32 int32, env []string) {
		pid := int(pid32)
		if !slices.Contains(env, marker) {
			return
		}
		p := &process.Process{Pid: pid32}
		// Readable is not enough when the daemon runs as root.
		if uids, err := p.Uids(); err != nil || len(uids) == 0 || int(uids[0]) != uid {
			return
		}
		pgid, err := unix.Getpgid(pid)
		if err != nil {
			return // it exited after we read its environment
		}
		// Signalling the group as well catches members that do not carry
		// the marker (they unset it). A process that leads the daemon's own
		// group is never the group signalled, whatever its environment
		// says: that would kill the daemon.
		if pgid > 1 && pgid != ownGroup && !groups[pgid] {
			groups[pgid] = true
			ok, err := sigkill(-pgid)
			signalled = signalled || ok
			if err != nil {
				errs = append(errs, fmt.Errorf("kill job %s: group %d: %w", jobID, pgid, err))
			}
		}
		// The process itself too: it may have left its group, or share
		// the daemon's.
		ok, err := sigkill(pid)
		signalled = signalled || ok
		if err != nil {
			errs = append(errs, fmt.Errorf("kill job %s: process %d: %w", jobID, pid, err))
		}
	}
	for _, pid32 := range pids {
		if pid := int(pid32); pid <= 1 || pid == self {
			continue
		}
		// A bare Process rather than process.Processes(): Environ needs only
		// the PID, and NewProcess would also stat the process, open a pidfd
		// and read its start time, several times the cost of this scan.
		env, err := (&process.Process{Pid: pid32}).Environ()
		if err != nil {
			// Gone meanwhile, another user's or not ours to read: none of
			// them is an attempt of ours that is still running.
			continue
		}
		if len(env) == 0 {
			again = append(again, pid32)
			continue
		}
		kill(pid32, env)
	}
	for _, pid32 := range again {
		if env, err := (&process.Process{Pid: pid32}).Environ(); err == nil {
			kill(pid32, env)
		}
	}
	return signalled, errors.Join(errs...)
}
