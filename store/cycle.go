package store

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"stq/engine"
)

// CompleteAndClaim records start records and completions and claims jobs
// in one op, so they share one commit (see engine.Store). Each record,
// completion and the claim run in a savepoint of their own inside the op,
// so one stale completion does not undo the others.
func (s *Store) CompleteAndClaim(ctx context.Context, cy engine.Cycle) (engine.CycleResult, error) {
	// The writer works on its own copies: a caller whose context ends
	// stops waiting while the op may still run.
	started := slices.Clone(cy.Started)
	done := slices.Clone(cy.Done)
	req := cy.Claim
	res := engine.CycleResult{
		StartErrs: make([]error, len(started)),
		Completed: make([]engine.CompleteResult, len(done)),
		Errs:      make([]error, len(done)),
	}
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
	startErrs := make([]error, len(started))
	completed := make([]engine.CompleteResult, len(done))
	errs := make([]error, len(done))
	var claimed []*engine.Job
	var claimErr error
	err := s.write(ctx, func(c *conn) error {
		for i, r := range started {
			var err error
			if startErrs[i], err = c.part(func() error {
				return c.markStarted(r.ID, r.Attempt, r.PID, r.PIDStart)
			}); err != nil {
				return err
			}
		}
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
	for i, r := range started {
		if startErrs[i] != nil {
			res.StartErrs[i] = fmt.Errorf("mark job %s attempt %d started: %w", r.ID, r.Attempt, startErrs[i])
		}
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
