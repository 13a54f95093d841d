package sqlite

import (
	"context"
	"fmt"
	"slices"

	"stq/engine"
)

// CompleteAndClaim records start records and completions and claims jobs
// in one op, so they share one commit (see engine.Store). Each record,
// completion and the claim run in a savepoint of their own inside the op,
// so one stale completion does not undo the others.
func (s *Store) CompleteAndClaim(ctx context.Context, cy engine.Cycle) (engine.CycleResult, error) {
	// The writer works on its own copies, and fills res only for this
	// call: a caller whose context ends stops waiting while the op may
	// still run, and then gets nothing of res.
	started := slices.Clone(cy.Started)
	done := slices.Clone(cy.Done)
	req := cy.Claim
	res := engine.CycleResult{
		StartErrs: make([]error, len(started)),
		Completed: make([]engine.CompleteResult, len(done)),
		Errs:      make([]error, len(done)),
	}
	for i := range done {
		if err := checkCompletion(&done[i]); err != nil {
			res.Errs[i] = fmt.Errorf("complete job %s attempt %d: %w", done[i].ID, done[i].Attempt, err)
		}
	}
	claiming := req.Limit > 0
	if claiming {
		if err := req.Own(); err != nil {
			res.ClaimErr = fmt.Errorf("claim jobs: %w", err)
			claiming = false
		}
	}
	err := s.write(ctx, func(c *conn) error {
		for i, r := range started {
			failed, err := c.part(func() error { return c.markStarted(r.ID, r.Attempt, r.PID, r.PIDStart) })
			if err != nil {
				return err
			}
			if failed != nil {
				res.StartErrs[i] = fmt.Errorf("mark job %s attempt %d started: %w", r.ID, r.Attempt, failed)
			}
		}
		for i := range done {
			if res.Errs[i] != nil {
				continue // refused before the write
			}
			failed, err := c.part(func() (err error) {
				res.Completed[i], err = c.complete(&done[i])
				return err
			})
			if err != nil {
				return err
			}
			if failed != nil {
				res.Completed[i] = engine.CompleteResult{}
				res.Errs[i] = fmt.Errorf("complete job %s attempt %d: %w", done[i].ID, done[i].Attempt, failed)
			}
		}
		if !claiming {
			return nil
		}
		failed, err := c.part(func() (err error) {
			res.Claimed, err = c.claim(&req)
			return err
		})
		if failed != nil {
			res.Claimed, res.ClaimErr = nil, fmt.Errorf("claim jobs: %w", failed)
		} else if res.Claimed == nil {
			res.Claimed = []*engine.Job{}
		}
		return err
	})
	if err != nil {
		return engine.CycleResult{}, fmt.Errorf("complete and claim: %w", err)
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
