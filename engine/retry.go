package engine

import (
	"errors"
	"fmt"
	"time"
)

// Retry policy defaults.
const (
	DefaultMaxAttempts = 3
	DefaultBackoff     = time.Second
	DefaultDeadline    = 60 * time.Second
	BackoffFactor      = 2.0
	BackoffJitter      = 0.25
	MaxBackoff         = time.Hour
)

// BackoffDelay is the wait before the attempt after attempt number `failed`
// (1-based): base * 2^(failed-1), jittered by ±25% and capped at MaxBackoff.
// rnd is a uniform value in [0, 1), passed in so the rule stays a pure
// function that tests can pin.
func BackoffDelay(base time.Duration, failed int, rnd float64) time.Duration {
	if base <= 0 {
		base = DefaultBackoff
	}
	if failed < 1 {
		failed = 1
	}
	d := float64(base)
	for i := 1; i < failed && d < float64(MaxBackoff); i++ {
		d *= BackoffFactor
	}
	if d > float64(MaxBackoff) {
		d = float64(MaxBackoff)
	}
	d *= 1 + BackoffJitter*(2*rnd-1)
	if d > float64(MaxBackoff) {
		d = float64(MaxBackoff)
	}
	return time.Duration(d)
}

// AttemptEnd is what the engine knows when an attempt stops.
type AttemptEnd struct {
	Result Result
	// Cause is context.Cause of the attempt's context, nil if the work ended
	// by itself.
	Cause error
}

// Stop causes: the reasons the engine ends an attempt early.
var (
	errDeadline    = errors.New("deadline exceeded")
	errCancelled   = errors.New(ReasonCancelled)
	errReplaced    = errors.New("replaced by a newer generation")
	errShutdown    = errors.New("daemon shutting down")
	errRecoverKill = errors.New("daemon crashed")
)

// ReasonCancelled is the note (Job.Error, Attempt.Reason) of a job a user
// cancelled, whether it was queued or running: one wording for one thing.
const ReasonCancelled = "cancelled by user"

// SupersededBy is the note of a job that a newer generation superseded,
// whether it was queued or, replaced, running.
func SupersededBy(generation int64, id string) string {
	return fmt.Sprintf("superseded by generation %d (job %s)", generation, id)
}

// supersededCause stops a running job that a newer generation replaces
// (errReplaced); its text is the attempt's reason.
type supersededCause string

func (c supersededCause) Error() string      { return string(c) }
func (supersededCause) Is(target error) bool { return target == errReplaced }

// Decide is the single place that turns how an attempt ended into what
// happens to the job next: DONE, a retry after backoff, FAILED, CANCELLED, or
// back to QUEUED without using up the attempt when the daemon was stopping.
func Decide(job *Job, end AttemptEnd, now time.Time, rnd float64) Completion {
	c := Completion{ID: job.ID, Attempt: job.Attempt, FinishedAt: now, ExitCode: end.Result.ExitCode}
	res := end.Result
	switch {
	case errors.Is(end.Cause, errCancelled):
		c.State, c.Outcome, c.Reason = StateCancelled, OutcomeCancelled, ReasonCancelled
		return c
	case errors.Is(end.Cause, errReplaced):
		c.State, c.Outcome = StateSuperseded, OutcomeSuperseded
		c.Reason = end.Cause.Error()
		return c
	case errors.Is(end.Cause, errShutdown):
		c.State, c.Outcome, c.Reason = StateQueued, OutcomeInterrupted, "interrupted by daemon shutdown"
		c.RunAt, c.Refund = now, true
		return c
	case end.Cause == nil && res.Err == nil && res.ExitCode != nil && *res.ExitCode == 0:
		c.State, c.Outcome = StateDone, OutcomeSucceeded
		return c
	case end.Cause == nil && res.Err == nil && res.ExitCode == nil && res.Signal == "":
		// In-process handler returned nil.
		c.State, c.Outcome = StateDone, OutcomeSucceeded
		return c
	}

	c.Outcome = OutcomeFailed
	permanent := false
	switch {
	case errors.Is(end.Cause, errDeadline):
		c.Reason = fmt.Sprintf("deadline of %s exceeded", job.Deadline)
	case errors.Is(end.Cause, errRecoverKill):
		c.Outcome, c.Reason = OutcomeCrashed, "daemon crashed"
	case errors.Is(end.Cause, errFenced):
		c.Outcome, c.Reason = OutcomeCrashed, errFenced.Error()
	case res.Err != nil:
		c.Reason = res.Err.Error()
		permanent = errors.Is(res.Err, ErrPermanent)
	case res.Signal != "":
		c.Reason = "killed by signal " + res.Signal
	case res.ExitCode != nil:
		c.Reason = fmt.Sprintf("exit status %d", *res.ExitCode)
		if *res.ExitCode == ExitPermanent {
			permanent = true
			c.Reason += " (permanent failure)"
		}
	default:
		c.Reason = "attempt failed"
	}
	if permanent || job.Attempt >= job.MaxAttempts {
		c.State = StateFailed
		return c
	}
	c.State = StateQueued
	c.RunAt = now.Add(BackoffDelay(time.Duration(job.Backoff), job.Attempt, rnd))
	return c
}
