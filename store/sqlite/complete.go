package sqlite

import (
	"context"
	"fmt"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// current is the state of a job that a completion or MarkStarted checks.
type current struct {
	seq        int64
	state      engine.State
	attempt    int
	runs       int64
	generation int64
	maxGen     int64 // 0 when the job has no subject
}

func (c *conn) current(id string) (current, error) {
	var cur current
	found, err := c.queryOne(qJobForUpdate, func(b *binder) { b.text(id) }, func(st *sqlite3.Stmt) {
		cur = current{
			seq:        st.ColumnInt64(0),
			state:      columnState(st, 1),
			attempt:    st.ColumnInt(2),
			runs:       st.ColumnInt64(3),
			generation: st.ColumnInt64(4),
			maxGen:     st.ColumnInt64(5),
		}
	})
	if err != nil {
		return current{}, fmt.Errorf("read job: %w", err)
	}
	if !found {
		return current{}, engine.ErrNotFound
	}
	return cur, nil
}

// MarkStarted records the process of a running attempt. It returns an error
// wrapping engine.ErrStale unless attempt is the job's current RUNNING
// attempt, and engine.ErrNotFound for an unknown id.
func (s *Store) MarkStarted(ctx context.Context, id string, attempt int, pid int, pidStart int64) error {
	err := s.write(ctx, func(c *conn) error { return c.markStarted(id, attempt, pid, pidStart) })
	if err != nil {
		return fmt.Errorf("mark job %s attempt %d started: %w", id, attempt, err)
	}
	return nil
}

func (c *conn) markStarted(id string, attempt int, pid int, pidStart int64) error {
	cur, err := c.current(id)
	if err != nil {
		return err
	}
	if cur.state != engine.StateRunning || cur.attempt != attempt {
		return fmt.Errorf("%w: job is %s at attempt %d", engine.ErrStale, cur.state, cur.attempt)
	}
	return c.run(qMarkStarted, func(b *binder) {
		b.optInt64(int64(pid))
		b.optInt64(pidStart)
		b.int64(cur.seq)
		b.int64(cur.runs)
	})
}

// Complete ends a running attempt (see engine.Store). c.FinishedAt is
// required, and so is c.RunAt for a retry. A retry that finds a newer
// generation of its key becomes SUPERSEDED; Refund still gives the attempt
// back then. A job that ends FAILED, CANCELLED or SUPERSEDED takes its
// QUEUED dependents with it, cancelled at c.FinishedAt.
func (s *Store) Complete(ctx context.Context, c engine.Completion) (engine.CompleteResult, error) {
	if err := checkCompletion(&c); err != nil {
		return engine.CompleteResult{}, fmt.Errorf("complete job %s attempt %d: %w", c.ID, c.Attempt, err)
	}
	var res engine.CompleteResult
	err := s.write(ctx, func(w *conn) (err error) {
		res, err = w.complete(&c)
		return err
	})
	if err != nil {
		return engine.CompleteResult{}, fmt.Errorf("complete job %s attempt %d: %w", c.ID, c.Attempt, err)
	}
	return res, nil
}

// checkCompletion checks c and gives it its own ExitCode: the writer
// applies it after the caller may have stopped waiting.
func checkCompletion(c *engine.Completion) error {
	if err := c.Check(); err != nil {
		return err
	}
	if c.ExitCode != nil {
		v := *c.ExitCode
		c.ExitCode = &v
	}
	return nil
}

func (w *conn) complete(c *engine.Completion) (engine.CompleteResult, error) {
	r, err := w.completeJob(c)
	if err != nil {
		return engine.CompleteResult{}, err
	}
	res := engine.CompleteResult{Job: r.job}
	if st := r.job.State; st.Terminal() && st != engine.StateDone {
		root := ended{seq: r.seq, id: r.job.ID, state: st}
		if res.Cancelled, err = w.cancelDependents([]ended{root}, c.FinishedAt); err != nil {
			return engine.CompleteResult{}, err
		}
	}
	return res, nil
}

func (w *conn) completeJob(c *engine.Completion) (jobRow, error) {
	var none jobRow
	cur, err := w.current(c.ID)
	if err != nil {
		return none, err
	}
	if cur.state != engine.StateRunning || cur.attempt != c.Attempt {
		return none, fmt.Errorf("%w: job is %s at attempt %d", engine.ErrStale, cur.state, cur.attempt)
	}
	target, errText := c.Target(cur.generation, cur.maxGen)
	if err := engine.CheckTransition(cur.state, target); err != nil {
		return none, err
	}

	err = w.run(qFinishAttempt, func(b *binder) {
		b.time(c.FinishedAt)
		b.text(string(c.Outcome))
		b.optText(c.Reason)
		b.optInt(c.ExitCode)
		b.int64(cur.seq)
		b.int64(cur.runs)
	})
	if err != nil {
		return none, fmt.Errorf("end attempt: %w", err)
	}
	r, err := w.oneJob(qCompleteJob, func(b *binder) {
		b.text(string(target))
		b.bool(c.Refund && cur.attempt > 0)
		b.optText(errText)
		b.optInt(c.ExitCode)
		if target == engine.StateQueued {
			b.null() // a queued job has not finished
			b.time(c.RunAt)
			// An immediate retry or refund is due at once; a backed-off one
			// waits for a claim to promote it.
			b.bool(!c.RunAt.After(c.FinishedAt))
		} else {
			b.time(c.FinishedAt)
			b.null()      // keep run_at
			b.bool(false) // due means nothing outside QUEUED
		}
		b.int64(cur.seq)
	})
	if err != nil {
		return none, fmt.Errorf("update job: %w", err)
	}
	return r, nil
}
