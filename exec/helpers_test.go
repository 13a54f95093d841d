package exec

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"

	"stq/engine"
)

// collector records what an executor writes to run.Output.
type collector struct {
	mu    sync.Mutex
	lines map[string][]string
	// onLine, if set, sees every line as it arrives.
	onLine func(stream, text string)
}

func (c *collector) output(stream, text string) {
	c.mu.Lock()
	if c.lines == nil {
		c.lines = make(map[string][]string)
	}
	c.lines[stream] = append(c.lines[stream], text)
	on := c.onLine
	c.mu.Unlock()
	if on != nil {
		on(stream, text)
	}
}

func (c *collector) stream(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines[name])
}

// newRun returns a run of argv whose output goes to the returned collector.
func newRun(argv ...string) (*engine.Run, *collector) {
	c := &collector{}
	return &engine.Run{
		Job:     &engine.Job{ID: "job-1", Type: "test"},
		Command: argv,
		Output:  c.output,
	}, c
}

// gone reports whether pid no longer runs. A zombie counts as gone: an
// orphan is reaped by init, which may not be quick about it (or, in a
// container, may not do it at all).
func gone(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return errors.Is(err, process.ErrorProcessNotRunning)
	}
	status, err := p.Status()
	if err != nil {
		// The process vanished between the two looks.
		return unix.Kill(pid, 0) != nil
	}
	return slices.Contains(status, process.Zombie)
}

// waitGone fails the test unless pid is gone within a few seconds. Polling
// only observes a death that the code under test already caused.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killOnCleanup makes sure a process a test started does not outlive it.
func killOnCleanup(t *testing.T, pid int) {
	t.Helper()
	if pid <= 1 {
		t.Fatalf("refusing to register pid %d for cleanup", pid)
	}
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL) })
}

// readPID reads a PID that a test's shell script wrote to a file, waiting for
// the write to land.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 1 {
				t.Fatalf("read pid from %s: %q", path, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// atoiLine parses a PID printed by a test script.
func atoiLine(t *testing.T, lines []string, i int) int {
	t.Helper()
	if len(lines) <= i {
		t.Fatalf("want a pid on line %d, got %q", i, lines)
	}
	pid, err := strconv.Atoi(lines[i])
	if err != nil || pid <= 1 {
		t.Fatalf("line %d is not a pid: %q", i, lines[i])
	}
	return pid
}

// settledGoroutines returns the goroutine count once it stops falling:
// goroutines that have been joined may still be on their way out.
func settledGoroutines(want int) int {
	deadline := time.Now().Add(2 * time.Second)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }
