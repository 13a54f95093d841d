package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// Complete ends a running attempt (see engine.Store). c.FinishedAt is
// required, and so is c.RunAt for a retry. A retry that finds a newer
// generation of its key becomes SUPERSEDED; Refund still gives the attempt
// back then. A job that ends FAILED, CANCELLED or SUPERSEDED takes its
// QUEUED dependents with it, cancelled at c.FinishedAt.
func (s *Store) Complete(ctx context.Context, c engine.Completion) (engine.CompleteResult, error) {
	if err := c.Check(); err != nil {
		return engine.CompleteResult{}, fmt.Errorf("complete job %s attempt %d: %w", c.ID, c.Attempt, err)
	}
	var res engine.CompleteResult
	err := s.write(ctx, func(tx pgx.Tx) (err error) {
		res, err = s.complete(ctx, tx, &c)
		return err
	})
	if err != nil {
		return engine.CompleteResult{}, fmt.Errorf("complete job %s attempt %d: %w", c.ID, c.Attempt, err)
	}
	s.announce(completeNotices(res.Job)...)
	return res, nil
}

// completeNotices are the notices an ended attempt sends: its key and its
// place under the queue's cap are free, and a requeued job is claimable.
func completeNotices(j *engine.Job) []engine.Notice {
	if j == nil {
		return nil
	}
	ns := []engine.Notice{{Kind: engine.NoticeFree, Queue: j.Queue}}
	if j.State == engine.StateQueued {
		ns = append(ns, engine.Notice{Kind: engine.NoticeEnqueue, Queue: j.Queue})
	}
	return ns
}

func (s *Store) complete(ctx context.Context, tx pgx.Tx, c *engine.Completion) (engine.CompleteResult, error) {
	r, job, err := s.completeJob(ctx, tx, c)
	if err != nil {
		return engine.CompleteResult{}, err
	}
	res := engine.CompleteResult{Job: job}
	if st := job.State; st.Terminal() && st != engine.StateDone {
		root := ended{seq: r.seq, id: job.ID, state: st}
		if res.Cancelled, err = s.cancelDependents(ctx, tx, []ended{root}, c.FinishedAt.UnixNano()); err != nil {
			return engine.CompleteResult{}, err
		}
	}
	return res, nil
}

// completeJob checks and ends the attempt with the job's row locked, so a
// completion is applied once: a second one for the same attempt, from any
// daemon, finds the job no longer RUNNING that attempt and is stale.
func (s *Store) completeJob(ctx context.Context, tx pgx.Tx, c *engine.Completion) (jobRow, *engine.Job, error) {
	cur, err := currentJob(ctx, tx, c.ID)
	if err != nil {
		return jobRow{}, nil, err
	}
	if cur.state != engine.StateRunning || cur.attempt != c.Attempt {
		return jobRow{}, nil, fmt.Errorf("%w: job is %s at attempt %d", engine.ErrStale, cur.state, cur.attempt)
	}
	if c.State == engine.StateQueued {
		if err := cur.keyGen(ctx, tx); err != nil {
			return jobRow{}, nil, err
		}
	}
	target, errText := c.Target(cur.generation, cur.maxGen)
	if err := engine.CheckTransition(cur.state, target); err != nil {
		return jobRow{}, nil, err
	}
	finished := c.FinishedAt.UnixNano()
	var exit *int
	if c.ExitCode != nil {
		v := *c.ExitCode
		exit = &v
	}
	_, err = tx.Exec(ctx, `UPDATE attempts SET finished_at = $1, outcome = $2, reason = $3, exit_code = $4
		WHERE job_seq = $5 AND run = $6`, finished, string(c.Outcome), optText(c.Reason), exit, cur.seq, cur.runs)
	if err != nil {
		return jobRow{}, nil, fmt.Errorf("end attempt: %w", err)
	}
	refund := 0
	if c.Refund && cur.attempt > 0 {
		refund = 1
	}
	var jobFinished, runAt *int64
	if target == engine.StateQueued {
		runAt = nanos(c.RunAt) // a queued job has not finished
	} else {
		jobFinished = &finished // and keeps its run_at
	}
	rows, jobs, err := s.queryJobs(ctx, tx, true, false, `UPDATE jobs SET state = $1, attempt = attempt - $2,
			error = $3, exit_code = $4, finished_at = $5, run_at = coalesce($6, run_at), due = $8,
			held = ($1 = 'QUEUED' AND `+heldNow+`)
		WHERE seq = $7
		RETURNING `+jobCols, string(target), refund, optText(errText), exit, jobFinished, runAt, cur.seq,
		runAt != nil && storedDue(*runAt, finished))
	if err != nil {
		return jobRow{}, nil, fmt.Errorf("update job: %w", err)
	}
	if len(rows) != 1 {
		return jobRow{}, nil, fmt.Errorf("update job: %w", engine.ErrNotFound)
	}
	return rows[0], jobs[0], nil
}
