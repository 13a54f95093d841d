package exec

import (
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// startGroup starts argv as the leader of a new process group.
func startGroup(t *testing.T, argv ...string) *osexec.Cmd {
	t.Helper()
	cmd := osexec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", argv, err)
	}
	return cmd
}

func mustStartTime(t *testing.T, pid int) int64 {
	t.Helper()
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if start <= 0 {
		t.Fatalf("StartTime(%d) = %d, want > 0", pid, start)
	}
	return start
}

func TestProcessesKillGroup(t *testing.T) {
	t.Parallel()

	t.Run("a live group whose leader's start time matches is killed", func(t *testing.T) {
		t.Parallel()
		pidFile := filepath.Join(t.TempDir(), "pid")
		cmd := startGroup(t, "sh", "-c", `sleep 30 & echo $! > "$1"; wait`, "sh", pidFile)
		grandchild := readPID(t, pidFile)
		killed, err := Processes{}.KillGroup(cmd.Process.Pid, mustStartTime(t, cmd.Process.Pid))
		if err != nil || !killed {
			t.Fatalf("KillGroup = %v, %v, want true, nil", killed, err)
		}
		var exitErr *osexec.ExitError
		if err := cmd.Wait(); !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("leader ended with %v, want SIGKILL", err)
		}
		waitGone(t, grandchild)
	})

	// This is the PID-reuse case: the recorded attempt's process is gone and
	// another process got its PID.
	for _, tt := range []struct {
		name   string
		offset int64 // recorded start time minus the process's
		zero   bool
	}{
		{name: "a process that started a minute after the recorded start is left alone", offset: -60_000},
		{name: "a process that started a minute before the recorded start is left alone", offset: 60_000},
		{name: "a process is left alone when no start time was recorded", zero: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := startGroup(t, "sleep", "30")
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			recorded := mustStartTime(t, cmd.Process.Pid) + tt.offset
			if tt.zero {
				recorded = 0
			}
			killed, err := Processes{}.KillGroup(cmd.Process.Pid, recorded)
			if err != nil || killed {
				t.Fatalf("KillGroup = %v, %v, want false, nil", killed, err)
			}
			if gone(cmd.Process.Pid) {
				t.Errorf("process %d was killed", cmd.Process.Pid)
			}
		})
	}

	t.Run("group members whose leader is gone are killed", func(t *testing.T) {
		t.Parallel()
		pidFile := filepath.Join(t.TempDir(), "pid")
		cmd := startGroup(t, "sh", "-c", `sleep 30 & echo $! > "$1"`, "sh", pidFile)
		leader := cmd.Process.Pid
		start := mustStartTime(t, leader)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("leader: %v", err)
		}
		grandchild := readPID(t, pidFile)
		killed, err := Processes{}.KillGroup(leader, start)
		if err != nil || !killed {
			t.Fatalf("KillGroup = %v, %v, want true, nil", killed, err)
		}
		waitGone(t, grandchild)
	})

	t.Run("a PID with neither a process nor a group kills nothing", func(t *testing.T) {
		t.Parallel()
		cmd := startGroup(t, "true")
		pid := cmd.Process.Pid
		start := mustStartTime(t, pid)
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		killed, err := Processes{}.KillGroup(pid, start)
		if err != nil || killed {
			t.Fatalf("KillGroup = %v, %v, want false, nil", killed, err)
		}
	})

	for _, pid := range []int{1, 0, -1} {
		t.Run("pid "+itoa(pid)+" is never signalled", func(t *testing.T) {
			t.Parallel()
			killed, err := Processes{}.KillGroup(pid, 1)
			if err == nil || killed {
				t.Fatalf("KillGroup(%d) = %v, %v, want false and an error", pid, killed, err)
			}
		})
	}
}

func TestStartTime(t *testing.T) {
	t.Parallel()

	t.Run("two readings for one process name the same process", func(t *testing.T) {
		t.Parallel()
		a := mustStartTime(t, os.Getpid())
		b := mustStartTime(t, os.Getpid())
		if !sameStart(a, b) {
			t.Errorf("readings %d and %d differ by more than %dms", a, b, StartTolerance)
		}
	})

	t.Run("a process that no longer exists has no start time", func(t *testing.T) {
		t.Parallel()
		cmd := startGroup(t, "true")
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if start, err := StartTime(cmd.Process.Pid); err == nil {
			t.Errorf("StartTime = %d, nil; want an error", start)
		}
	})
}
