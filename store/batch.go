package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"stq/engine"
)

// EnqueueMany stores a batch of new jobs in one op, so the batch costs one
// commit (see engine.Store). An atomic batch runs as one unit: the op's own
// savepoint undoes all of it when one job fails. Otherwise each job runs in
// a savepoint of its own and fails alone.
func (s *Store) EnqueueMany(ctx context.Context, b engine.EnqueueBatch) (engine.EnqueueBatchResult, error) {
	n := len(b.Jobs)
	if b.ExplicitGen != nil && len(b.ExplicitGen) != n {
		return engine.EnqueueBatchResult{}, fmt.Errorf("enqueue batch: %w: %d explicit-generation flags for %d jobs", engine.ErrInvalid, len(b.ExplicitGen), n)
	}
	res := engine.EnqueueBatchResult{Results: make([]engine.EnqueueResult, n), Errs: make([]error, n)}
	ins := make([]newJob, n)
	ok := make([]bool, n)
	for i, j := range b.Jobs {
		err := fmt.Errorf("%w: no job", engine.ErrInvalid)
		if j != nil {
			ins[i], err = encodeJob(j)
		}
		if err != nil {
			err = fmt.Errorf("enqueue job %d: %w", i, err)
			if b.Atomic {
				return engine.EnqueueBatchResult{}, &engine.BatchError{Index: i, Err: err}
			}
			res.Errs[i] = err
			continue
		}
		ok[i] = true
	}
	outs := make([]enqueued, n)
	explicit := func(i int) bool { return b.ExplicitGen != nil && b.ExplicitGen[i] }
	err := s.write(ctx, func(c *conn) error {
		for i := range ins {
			if !ok[i] {
				continue
			}
			if b.Atomic {
				if err := c.enqueue(&ins[i], explicit(i), &outs[i]); err != nil {
					return &engine.BatchError{Index: i, Err: err} // the index names it; its id was never stored
				}
				continue
			}
			failed, err := c.part(func() error { return c.enqueue(&ins[i], explicit(i), &outs[i]) })
			if err != nil {
				return err
			}
			if failed != nil {
				res.Errs[i] = fmt.Errorf("enqueue job %s: %w", ins[i].id, failed)
				ok[i] = false
			}
		}
		return nil
	})
	if err != nil {
		var be *engine.BatchError
		if errors.As(err, &be) {
			return engine.EnqueueBatchResult{}, be
		}
		return engine.EnqueueBatchResult{}, fmt.Errorf("enqueue batch: %w", err)
	}
	for i, j := range b.Jobs {
		if ok[i] {
			res.Results[i] = storedResult(j, &ins[i], &outs[i])
		}
	}
	return res, nil
}

// storedResult is the EnqueueResult of a job the writer stored: the
// definition as given, with what the writer decided.
func storedResult(job *engine.Job, in *newJob, out *enqueued) engine.EnqueueResult {
	stored := &engine.Job{
		ID: job.ID, Queue: job.Queue, Type: job.Type, Subject: job.Subject,
		Priority: job.Priority, MaxAttempts: job.MaxAttempts,
		Payload: json.RawMessage(in.payload), Command: slices.Clone(job.Command),
		Cwd: job.Cwd, Env: maps.Clone(job.Env), RunAt: job.RunAt.UTC(),
		Deadline: job.Deadline, TTL: job.TTL, Backoff: job.Backoff,
		CreatedAt: job.CreatedAt.UTC(), Attempts: []engine.Attempt{},
		WaitIdle: job.WaitIdle, RequireCharging: job.RequireCharging,
		Debounce: job.Debounce, Replace: job.Replace, After: slices.Clone(in.after),
		Generation: out.generation, State: out.state, Error: out.errText,
	}
	if out.state != engine.StateQueued {
		t := stored.CreatedAt
		stored.FinishedAt = &t
	}
	return engine.EnqueueResult{Job: stored, Superseded: out.superseded, Cancelled: out.cancelled}
}
