package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		base   time.Duration
		failed int
		rnd    float64
		want   time.Duration
	}{
		{"first retry without jitter is the base", time.Second, 1, 0.5, time.Second},
		{"second retry doubles", time.Second, 2, 0.5, 2 * time.Second},
		{"fifth retry is base times sixteen", time.Second, 5, 0.5, 16 * time.Second},
		{"lowest jitter takes a quarter off", time.Second, 1, 0, 750 * time.Millisecond},
		{"highest jitter adds almost a quarter", time.Second, 1, 0.999999, 1249999000 * time.Nanosecond},
		{"zero base falls back to the default", 0, 1, 0.5, DefaultBackoff},
		{"many failures are capped at an hour", time.Second, 40, 0.5, MaxBackoff},
		{"cap holds with jitter on top", time.Second, 40, 0.999, MaxBackoff},
		{"huge attempt count does not overflow", time.Minute, 1 << 30, 0.5, MaxBackoff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BackoffDelay(tt.base, tt.failed, tt.rnd)
			diff := got - tt.want
			if diff < -time.Microsecond || diff > time.Microsecond {
				t.Errorf("BackoffDelay(%v, %d, %v) = %v, want %v", tt.base, tt.failed, tt.rnd, got, tt.want)
			}
		})
	}
}

func TestBackoffJitterStaysWithinAQuarter(t *testing.T) {
	t.Parallel()
	for i := 0; i <= 100; i++ {
		rnd := float64(i) / 101
		d := BackoffDelay(4*time.Second, 3, rnd) // nominal 16s
		if d < 12*time.Second || d > 20*time.Second {
			t.Fatalf("rnd %v: delay %v outside 16s±25%%", rnd, d)
		}
	}
}

func intp(v int) *int { return &v }

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	job := func(attempt, max int) *Job {
		return &Job{ID: "j1", Attempt: attempt, MaxAttempts: max, Backoff: Duration(time.Second), Deadline: Duration(time.Minute)}
	}
	tests := []struct {
		name     string
		job      *Job
		end      AttemptEnd
		state    State
		outcome  Outcome
		reason   string
		runAt    time.Time
		refund   bool
		exitCode *int
	}{
		{"exit zero is done", job(1, 3), AttemptEnd{Result: Result{ExitCode: intp(0)}}, StateDone, OutcomeSucceeded, "", time.Time{}, false, intp(0)},
		{"handler returning nil is done", job(1, 3), AttemptEnd{}, StateDone, OutcomeSucceeded, "", time.Time{}, false, nil},
		{"non-zero exit with attempts left retries after backoff", job(1, 3), AttemptEnd{Result: Result{ExitCode: intp(3)}}, StateQueued, OutcomeFailed, "exit status 3", now.Add(time.Second), false, intp(3)},
		{"second failure waits twice as long", job(2, 3), AttemptEnd{Result: Result{ExitCode: intp(1)}}, StateQueued, OutcomeFailed, "exit status 1", now.Add(2 * time.Second), false, intp(1)},
		{"failure on the last attempt fails the job", job(3, 3), AttemptEnd{Result: Result{ExitCode: intp(1)}}, StateFailed, OutcomeFailed, "exit status 1", time.Time{}, false, intp(1)},
		{"the permanent exit code fails at once", job(1, 3), AttemptEnd{Result: Result{ExitCode: intp(ExitPermanent)}}, StateFailed, OutcomeFailed, "exit status 100 (permanent failure)", time.Time{}, false, intp(100)},
		{"a signal is a failure", job(1, 3), AttemptEnd{Result: Result{Signal: "SIGKILL"}}, StateQueued, OutcomeFailed, "killed by signal SIGKILL", now.Add(time.Second), false, nil},
		{"a handler error is a failure", job(1, 3), AttemptEnd{Result: Result{Err: errors.New("boom")}}, StateQueued, OutcomeFailed, "boom", now.Add(time.Second), false, nil},
		{"a permanent handler error fails at once", job(1, 3), AttemptEnd{Result: Result{Err: fmt.Errorf("bad input: %w", ErrPermanent)}}, StateFailed, OutcomeFailed, "bad input: permanent failure", time.Time{}, false, nil},
		{"a deadline is a failure that retries", job(1, 3), AttemptEnd{Result: Result{Signal: "SIGTERM"}, Cause: errDeadline}, StateQueued, OutcomeFailed, "deadline of 1m0s exceeded", now.Add(time.Second), false, nil},
		{"a cancel ends the job", job(1, 3), AttemptEnd{Result: Result{Signal: "SIGTERM"}, Cause: errCancelled}, StateCancelled, OutcomeCancelled, "cancelled by user", time.Time{}, false, nil},
		{"a cancel wins over a clean exit", job(1, 3), AttemptEnd{Result: Result{ExitCode: intp(0)}, Cause: errCancelled}, StateCancelled, OutcomeCancelled, "cancelled by user", time.Time{}, false, intp(0)},
		{"shutdown requeues now and refunds the attempt", job(3, 3), AttemptEnd{Result: Result{Signal: "SIGTERM"}, Cause: errShutdown}, StateQueued, OutcomeInterrupted, "interrupted by daemon shutdown", now, true, nil},
		{"a replacing newer generation supersedes the running job", job(1, 3), AttemptEnd{Result: Result{Signal: "SIGTERM"}, Cause: supersededCause(SupersededBy(4, "j9"))}, StateSuperseded, OutcomeSuperseded, "superseded by generation 4 (job j9)", time.Time{}, false, nil},
		{"a crash with attempts left retries", job(1, 3), AttemptEnd{Cause: errRecoverKill}, StateQueued, OutcomeCrashed, "daemon crashed", now.Add(time.Second), false, nil},
		{"a crash on the last attempt fails", job(3, 3), AttemptEnd{Cause: errRecoverKill}, StateFailed, OutcomeCrashed, "daemon crashed", time.Time{}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Decide(tt.job, tt.end, now, 0.5)
			if c.State != tt.state || c.Outcome != tt.outcome || c.Reason != tt.reason || !c.RunAt.Equal(tt.runAt) || c.Refund != tt.refund {
				t.Errorf("Decide = state %s outcome %s reason %q run_at %v refund %v; want %s %s %q %v %v",
					c.State, c.Outcome, c.Reason, c.RunAt, c.Refund, tt.state, tt.outcome, tt.reason, tt.runAt, tt.refund)
			}
			if (c.ExitCode == nil) != (tt.exitCode == nil) || (c.ExitCode != nil && *c.ExitCode != *tt.exitCode) {
				t.Errorf("exit code = %v, want %v", c.ExitCode, tt.exitCode)
			}
			if c.ID != "j1" || c.Attempt != tt.job.Attempt || !c.FinishedAt.Equal(now) {
				t.Errorf("completion identifies %s attempt %d at %v", c.ID, c.Attempt, c.FinishedAt)
			}
			if err := CheckTransition(StateRunning, c.State); err != nil {
				t.Errorf("decided an illegal transition: %v", err)
			}
		})
	}
}
