package store

import (
	"context"
	"fmt"
	"maps"

	"stq/engine"
)

// CompleteAndClaim records completions and claims jobs in one op, so they
// share one commit (see engine.Store). Each completion and the claim run
// in a savepoint of their own inside the op, so one stale completion does
// not undo the others.
func (s *Store) CompleteAndClaim(ctx context.Context, done []engine.Completion, req engine.ClaimRequest) (engine.CycleResult, error) {
	res := engine.CycleResult{
		Completed: make([]engine.CompleteResult, len(done)),
		Errs:      make([]error, len(done)),
	}
	// The writer works on its own copies: a caller whose context ends
	// stops waiting while the op may still run.
	done = append([]engine.Completion(nil), done...)
	valid := make([]bool, len(done))
	for i := range done {
		if err := checkCompletion(&done[i]); err != nil {
			res.Errs[i] = fmt.Errorf("complete job %s attempt %d: %w", done[i].ID, done[i].Attempt, err)
			continue
		}
		valid[i] = true
	}
	claiming := req.Limit > 0
	if claiming {
		if err := checkTime("now", req.Now, true); err != nil {
			res.ClaimErr = fmt.Errorf("claim jobs: %w", err)
			claiming = false
		}
		req.QueueLimits = maps.Clone(req.QueueLimits)
		req.Quota = maps.Clone(req.Quota)
	}
	completed := make([]engine.CompleteResult, len(done))
	errs := make([]error, len(done))
	var claimed []*engine.Job
	var claimErr error
	err := s.write(ctx, func(c *conn) error {
		for i := range done {
			if !valid[i] {
				continue
			}
			var err error
			errs[i], err = c.part(func() (err error) {
				completed[i], err = c.complete(&done[i])
				return err
			})
			if err != nil {
				return err
			}
		}
		if claiming {
			var err error
			if claimErr, err = c.part(func() (err error) {
				claimed, err = c.claim(&req)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return engine.CycleResult{}, fmt.Errorf("complete and claim: %w", err)
	}
	for i := range done {
		if !valid[i] {
			continue
		}
		if errs[i] != nil {
			res.Errs[i] = fmt.Errorf("complete job %s attempt %d: %w", done[i].ID, done[i].Attempt, errs[i])
			continue
		}
		res.Completed[i] = completed[i]
	}
	if claimErr != nil {
		res.ClaimErr = fmt.Errorf("claim jobs: %w", claimErr)
	}
	res.Claimed = claimed
	if res.Claimed == nil && claiming {
		res.Claimed = []*engine.Job{}
	}
	return res, nil
}

// part runs fn inside a savepoint of its own and undoes just fn's changes
// when it fails, returning fn's error as failed. err is set only when the
// savepoint itself could not be set up or undone: the transaction is then
// in an unknown state, and the whole op must fail.
func (c *conn) part(fn func() error) (failed, err error) {
	if err := c.exec(qPartSavepoint); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	if failed = fn(); failed != nil {
		c.resetAll()
		if err := c.exec(qPartRollbackTo); err != nil {
			return failed, fmt.Errorf("roll back to savepoint: %w", err)
		}
	}
	if err := c.exec(qPartRelease); err != nil {
		return failed, fmt.Errorf("release savepoint: %w", err)
	}
	return failed, nil
}
