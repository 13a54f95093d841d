//go:build linux

package exec

import (
	"crypto/rand"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/shirou/gopsutil/v4/process"
)

// newJobID returns a job id that no other process on the machine carries,
// so that a test's KillJob cannot touch what it did not start, even with
// other packages' tests running at once.
func newJobID() string {
	return "test-" + rand.Text()
}

// startMarked starts `sh -c script sh pidFile` with the given environment
// additions, in a new process group unless sameGroup, and returns it with
// the PID the script writes to pidFile ($1). Whatever the test leaves of the
// process is killed and reaped at cleanup.
//
// The script's fd 3 is a pipe that nothing is written to: `read -r _ <&3`
// blocks until cleanup closes it. Scripts wait that way, and start their
// children as subshells, rather than exec sleep, because a process in the
// middle of execve reads as having an empty environment (the kernel sets
// its bounds late in the exec, after os/exec's Start has returned), which
// would make the outcome depend on timing. Reading the PID from the file
// shows that the shell is past its own exec.
func startMarked(t *testing.T, env []string, sameGroup bool, script string) (*osexec.Cmd, int) {
	t.Helper()
	hold, held, err := os.Pipe()
	if err != nil {
		t.Fatalf("create pipe: %v", err)
	}
	t.Cleanup(func() {
		_ = hold.Close()
		_ = held.Close()
	})
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := osexec.Command("sh", "-c", script, "sh", pidFile)
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = []*os.File{hold} // fd 3
	if !sameGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	t.Cleanup(func() {
		// Through a pidfd: after the test's own Wait this is a no-op, never
		// a signal to a process that reused the PID.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, readPID(t, pidFile)
}

// waiter is a script that reports its PID and waits.
const waiter = `echo $$ > "$1"; read -r _ <&3`

// holdForCleanup makes sure a process that a test's script started does not
// outlive the test. It is not the test's child, so it is held by a pidfd,
// which makes a late kill safe against PID reuse.
func holdForCleanup(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatalf("find process %d: %v", pid, err)
	}
	t.Cleanup(func() {
		_ = p.Kill()
		_ = p.Release()
	})
}

func wantKilled(t *testing.T, cmd *osexec.Cmd) {
	t.Helper()
	var exitErr *osexec.ExitError
	err := cmd.Wait()
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("process %d ended with %v, want SIGKILL", cmd.Process.Pid, err)
	}
}

func TestProcessesKillJob(t *testing.T) {
	t.Parallel()

	t.Run("a marked group is killed and near-miss markers are left alone", func(t *testing.T) {
		t.Parallel()
		id, other := newJobID(), newJobID()
		leader, child := startMarked(t, []string{"STQ_JOB_ID=" + id}, false,
			`(read -r _ <&3) & echo $! > "$1"; read -r _ <&3`)
		holdForCleanup(t, child)
		decoys := map[string]int{}
		for name, entry := range map[string]string{
			"longer id":        "STQ_JOB_ID=" + id + "x",
			"shorter id":       "STQ_JOB_ID=" + id[:len(id)-1],
			"another job":      "STQ_JOB_ID=" + other,
			"in another value": "NOT_STQ_JOB_ID=STQ_JOB_ID=" + id,
		} {
			_, decoys[name] = startMarked(t, []string{entry}, false, waiter)
		}

		killed, err := Processes{}.KillJob(id)
		if err != nil || !killed {
			t.Fatalf("KillJob = %v, %v, want true, nil", killed, err)
		}
		wantKilled(t, leader)
		waitGone(t, child)
		for name, pid := range decoys {
			if gone(pid) {
				t.Errorf("the process with the %s was killed", name)
			}
		}
	})

	t.Run("members of a marked group whose leader has exited are killed", func(t *testing.T) {
		t.Parallel()
		id := newJobID()
		leader, child := startMarked(t, []string{"STQ_JOB_ID=" + id}, false,
			`(read -r _ <&3) & echo $! > "$1"`)
		holdForCleanup(t, child)
		if err := leader.Wait(); err != nil {
			t.Fatalf("leader: %v", err)
		}

		killed, err := Processes{}.KillJob(id)
		if err != nil || !killed {
			t.Fatalf("KillJob = %v, %v, want true, nil", killed, err)
		}
		waitGone(t, child)
	})

	// Were the caller's group signalled, this test binary would die with it.
	t.Run("a marked process in the caller's group is killed but not the group", func(t *testing.T) {
		t.Parallel()
		id := newJobID()
		marked, _ := startMarked(t, []string{"STQ_JOB_ID=" + id}, true, waiter)
		_, unmarked := startMarked(t, nil, true, waiter)

		killed, err := Processes{}.KillJob(id)
		if err != nil || !killed {
			t.Fatalf("KillJob = %v, %v, want true, nil", killed, err)
		}
		wantKilled(t, marked)
		if gone(unmarked) {
			t.Error("an unmarked process in the caller's group was killed")
		}
	})

	t.Run("an id that no process carries kills nothing", func(t *testing.T) {
		t.Parallel()
		killed, err := Processes{}.KillJob(newJobID())
		if err != nil || killed {
			t.Fatalf("KillJob = %v, %v, want false, nil", killed, err)
		}
	})

	t.Run("an empty id is refused", func(t *testing.T) {
		t.Parallel()
		killed, err := Processes{}.KillJob("")
		if err == nil || killed {
			t.Fatalf("KillJob(\"\") = %v, %v, want false and an error", killed, err)
		}
	})
}

// BenchmarkKillJobScan measures one recovery scan of every process on the
// machine for a job that has none; procs is how many processes there were.
func BenchmarkKillJobScan(b *testing.B) {
	pids, err := process.Pids()
	if err != nil {
		b.Fatal(err)
	}
	id := newJobID()
	for b.Loop() {
		if killed, err := (Processes{}).KillJob(id); err != nil || killed {
			b.Fatalf("KillJob = %v, %v, want false, nil", killed, err)
		}
	}
	b.ReportMetric(float64(len(pids)), "procs")
}
