package engine

import (
	"fmt"
	"maps"
	"math"
	"time"
)

// The checks and rules in this file are the ones every Store applies the
// same way, whatever it is built on: keeping them here means a new store
// cannot drift from the others on what it accepts or decides.

// Representable times: stores hold a time as unix nanoseconds in an int64.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// CheckTime rejects times an int64 of nanoseconds cannot hold (before 1678
// or after 2262); the zero time is allowed where the field is optional.
func CheckTime(field string, t time.Time, required bool) error {
	if t.IsZero() {
		if required {
			return fmt.Errorf("%w: %s is not set", ErrInvalid, field)
		}
		return nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%w: %s %s is out of range (years 1678 to 2262)", ErrInvalid, field, t.Format(time.RFC3339))
	}
	return nil
}

// CheckNew rejects a job a store cannot take as a new job: none at all
// (j is nil), one without an id, or one whose creation or due time it
// cannot hold.
func (j *Job) CheckNew() error {
	if j == nil {
		return fmt.Errorf("%w: no job", ErrInvalid)
	}
	if j.ID == "" {
		return fmt.Errorf("%w: job has no id", ErrInvalid)
	}
	if err := CheckTime("created_at", j.CreatedAt, true); err != nil {
		return err
	}
	return CheckTime("run_at", j.RunAt, true)
}

// Check rejects a batch whose explicit-generation flags do not match its
// jobs one for one.
func (b *EnqueueBatch) Check() error {
	if b.ExplicitGen != nil && len(b.ExplicitGen) != len(b.Jobs) {
		return fmt.Errorf("%w: %d explicit-generation flags for %d jobs", ErrInvalid, len(b.ExplicitGen), len(b.Jobs))
	}
	return nil
}

// DefaultListLimit is the page size of a ListFilter without a Limit.
const DefaultListLimit = 100

// PageSize checks a filter's states and returns the page size it asks for.
// The cursor is left to the store that made it.
func (f *ListFilter) PageSize() (int, error) {
	for _, st := range f.States {
		if !st.Valid() {
			return 0, fmt.Errorf("%w: unknown state %q", ErrInvalid, st)
		}
	}
	if f.Limit <= 0 {
		return DefaultListLimit, nil
	}
	return f.Limit, nil
}

// DependencyError is the error of a job cancelled because a job it waits
// for (id) ended in state st without succeeding.
func DependencyError(id string, st State) string {
	return "dependency " + id + " ended " + string(st)
}

// Check rejects a completion a store cannot apply: times it cannot hold (a
// retry needs its RunAt), or no outcome for the attempt.
func (c *Completion) Check() error {
	if err := CheckTime("finished_at", c.FinishedAt, true); err != nil {
		return err
	}
	if err := CheckTime("run_at", c.RunAt, c.State == StateQueued); err != nil {
		return err
	}
	if c.Outcome == "" || c.Outcome == OutcomeRunning {
		return fmt.Errorf("%w: a completion needs the attempt's outcome, got %q", ErrInvalid, c.Outcome)
	}
	return nil
}

// Own checks a claim request a store is about to serve and gives it its
// own copies of the caller's maps: a store may serve it after the caller
// stops waiting (on a writer goroutine, or again when a transaction is
// retried), and must not read maps the caller may change by then.
func (r *ClaimRequest) Own() error {
	r.QueueLimits = maps.Clone(r.QueueLimits)
	r.Quota = maps.Clone(r.Quota)
	return CheckTime("now", r.Now, true)
}

// CheckLogLines rejects log lines with a time a store cannot hold.
func CheckLogLines(lines []LogLine) error {
	for i := range lines {
		if err := CheckTime("log time", lines[i].Time, false); err != nil {
			return err
		}
	}
	return nil
}

// Target is the state a completion moves its job to, and the job's error
// text there, given the job's generation and the newest generation of its
// key (0 without a key). A retry of a job whose key has a newer generation
// is SUPERSEDED rather than queued again: the newer request is the one that
// counts. The caller still checks the transition.
func (c *Completion) Target(generation, maxGen int64) (State, string) {
	switch {
	case c.State == StateDone:
		return c.State, ""
	case c.State == StateQueued && maxGen > generation:
		errText := fmt.Sprintf("superseded by generation %d before its retry", maxGen)
		if c.Reason != "" {
			errText += " (last attempt: " + c.Reason + ")"
		}
		return StateSuperseded, errText
	}
	return c.State, c.Reason
}

// CheckRetryable rejects a manual retry of a job in state st: only a job
// that ended without succeeding (and was not superseded) runs again.
func CheckRetryable(st State) error {
	switch st {
	case StateFailed, StateCancelled, StateExpired:
	default:
		return fmt.Errorf("%w: job is %s; only FAILED, CANCELLED or EXPIRED jobs can be retried", ErrInvalidTransition, st)
	}
	return CheckTransition(st, StateQueued)
}

// Check refuses a prune no store can serve, and reports whether it asks
// for nothing at all (neither an age nor a count limit).
func (r PruneRequest) Check() (none bool, err error) {
	if r.Keep < 0 || r.Limit < 0 {
		return false, fmt.Errorf("%w: keep and limit must not be negative", ErrInvalid)
	}
	if err := CheckTime("before", r.Before, false); err != nil {
		return false, err
	}
	return r.Before.IsZero() && r.Keep == 0, nil
}
