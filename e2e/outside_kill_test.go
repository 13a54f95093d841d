package e2e

// Fault class 2 of docs/RELIABILITY.md: a job's process killed from outside.

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReliabilityJobKilledFromOutsideFailsTheAttemptAndRetries(t *testing.T) {
	t.Parallel()
	needProc(t)
	e := newEnv(t)
	e.startDaemon("--workers", "2")
	for _, tc := range []struct {
		name  string
		group bool // kill -9 -PGID instead of kill -9 PID
	}{{"kill -9 PID", false}, {"kill -9 -PGID", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// The first attempt leaves a grandchild in its group and waits;
			// the second succeeds at once.
			script := `if [ "$STQ_ATTEMPT" = 1 ]; then echo $$ > ` + dir + `/leader; sleep 300 & echo $! > ` + dir + `/child; wait; fi; echo attempt $STQ_ATTEMPT ok`
			id := e.ok("enqueue", "--max-attempts", "3", "--backoff", "10ms", "--", "sh", "-c", script)
			leader, child := readPID(t, dir+"/leader"), readPID(t, dir+"/child")
			var j job
			waitFor(t, "the PID to be recorded", 30*time.Second, func() bool {
				j = e.show(id)
				return len(j.Attempts) == 1 && j.Attempts[0].PID == leader
			})
			target := leader
			if tc.group {
				target = -leader // the leader's PID is the group id
			}
			if err := syscall.Kill(target, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if r := e.run("wait", "--timeout", "60s", id); r.code != 0 {
				t.Fatalf("wait: exit %d %s %s", r.code, r.stdout, r.stderr)
			}
			j = e.show(id)
			if j.State != "DONE" || j.Attempt != 2 || len(j.Attempts) != 2 {
				t.Fatalf("job after its process was killed: %+v", j)
			}
			a := j.Attempts[0]
			if a.Outcome != "failed" || a.Reason != "killed by signal SIGKILL" || a.ExitCode != nil || a.PID != leader {
				t.Fatalf("killed attempt: %+v, want failed with \"killed by signal SIGKILL\"", a)
			}
			if j.Attempts[1].Outcome != "succeeded" {
				t.Fatalf("retry: %+v", j.Attempts[1])
			}
			log := e.ok("tail", id)
			if !strings.Contains(log, "attempt 1: killed by signal SIGKILL") || !strings.Contains(log, "attempt 2 ok") {
				t.Fatalf("log does not tell the story:\n%s", log)
			}
			// Whatever the killed leader left in its group is killed too.
			waitFor(t, "the grandchild to be killed", 10*time.Second, func() bool { return !processAlive(child) })
			report(t, "attempt 1 %s %q, attempt 2 %s; grandchild killed", a.Outcome, a.Reason, j.Attempts[1].Outcome)
		})
	}
}
