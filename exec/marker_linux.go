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
	pids, err := process.Pids()
	if err != nil {
		return false, fmt.Errorf("kill job %s: list processes: %w", jobID, err)
	}
	k := &jobKill{jobID: jobID, marker: markerVar + "=" + jobID, ownGroup: unix.Getpgrp(), uid: os.Getuid(), groups: make(map[int]bool)}
	self := os.Getpid()
	// A process in the middle of execve reads as having an empty
	// environment until the kernel has set up the new one; so does a
	// zombie. Those are read once more after the pass, by when an exec
	// that was under way has finished.
	var again []int32
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
		k.kill(pid32, env)
	}
	for _, pid32 := range again {
		if env, err := (&process.Process{Pid: pid32}).Environ(); err == nil {
			k.kill(pid32, env)
		}
	}
	return k.signalled, errors.Join(k.errs...)
}

// jobKill is one KillJob pass: what it looks for and what it has done.
type jobKill struct {
	jobID, marker string
	ownGroup, uid int
	// groups signalled so far: members of one group are usually all
	// marked, and the group is signalled once.
	groups    map[int]bool
	signalled bool
	errs      []error
}

// kill signals the process pid32 and its group if env holds the job's
// marker and the process is this user's.
func (k *jobKill) kill(pid32 int32, env []string) {
	pid := int(pid32)
	if !slices.Contains(env, k.marker) {
		return
	}
	p := &process.Process{Pid: pid32}
	// Readable is not enough when the daemon runs as root.
	if uids, err := p.Uids(); err != nil || len(uids) == 0 || int(uids[0]) != k.uid {
		return
	}
	pgid, err := unix.Getpgid(pid)
	if err != nil {
		return // it exited after we read its environment
	}
	// Signalling the group as well catches members that do not carry the
	// marker (they unset it). A process that leads the daemon's own group
	// is never the group signalled, whatever its environment says: that
	// would kill the daemon.
	if pgid > 1 && pgid != k.ownGroup && !k.groups[pgid] {
		k.groups[pgid] = true
		k.signal(-pgid, fmt.Sprintf("group %d", pgid))
	}
	// The process itself too: it may have left its group, or share the
	// daemon's.
	k.signal(pid, fmt.Sprintf("process %d", pid))
}

func (k *jobKill) signal(pid int, what string) {
	ok, err := sigkill(pid)
	k.signalled = k.signalled || ok
	if err != nil {
		k.errs = append(k.errs, fmt.Errorf("kill job %s: %s: %w", k.jobID, what, err))
	}
}
