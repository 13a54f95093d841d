package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// EnqueueMany stores a batch of new jobs in one transaction, so the batch
// costs one commit (see engine.Store). Runs of plain jobs (no subject, no
// dependencies) go in with one COPY each; the others one by one, as
// Enqueue stores them. Without Atomic each job that is not part of a COPY
// runs in a savepoint of its own and fails alone.
func (s *Store) EnqueueMany(ctx context.Context, b engine.EnqueueBatch) (engine.EnqueueBatchResult, error) {
	if err := b.Check(); err != nil {
		return engine.EnqueueBatchResult{}, fmt.Errorf("enqueue batch: %w", err)
	}
	n := len(b.Jobs)
	op := &batchOp{atomic: b.Atomic, explicit: b.ExplicitGen, ins: make([]newJob, n), outs: make([]enqueued, n),
		encoded: make([]bool, n), encErrs: make([]error, n)}
	for i, j := range b.Jobs {
		var err error
		if op.ins[i], err = s.encode(j); err != nil {
			if b.Atomic {
				return engine.EnqueueBatchResult{}, &engine.BatchError{Index: i, Err: err}
			}
			op.encErrs[i] = fmt.Errorf("enqueue: %w", err)
			continue
		}
		op.encoded[i] = true
	}
	err := s.write(ctx, func(tx pgx.Tx) error { return op.run(ctx, s, tx) })
	if err != nil {
		var be *engine.BatchError
		if errors.As(err, &be) {
			return engine.EnqueueBatchResult{}, be
		}
		return engine.EnqueueBatchResult{}, fmt.Errorf("enqueue batch: %w", err)
	}
	res := engine.EnqueueBatchResult{Results: make([]engine.EnqueueResult, n), Errs: op.errs}
	var notices []engine.Notice
	for i := range b.Jobs {
		if op.ok[i] {
			res.Results[i] = storedResult(&op.ins[i], &op.outs[i])
			notices = append(notices, enqueueNotices(&op.ins[i], &op.outs[i])...)
		}
	}
	s.announce(notices...) // identical ones merge
	return res, nil
}

// batchOp is one EnqueueMany as its transaction runs it.
type batchOp struct {
	atomic   bool
	explicit []bool // nil: no job has an explicit generation
	ins      []newJob
	outs     []enqueued
	encoded  []bool
	encErrs  []error
	// Set afresh by each run of the transaction.
	ok   []bool
	errs []error
}

// minCopy is the shortest run of plain jobs worth a COPY; shorter runs go
// one by one.
const minCopy = 8

// plain reports whether storing the job is only its row: no supersede key
// to look up or update, no dependencies to resolve or record.
func (in *newJob) plain() bool { return in.subject == nil && len(in.job.After) == 0 }

func (op *batchOp) run(ctx context.Context, s *Store, tx pgx.Tx) error {
	n := len(op.ins)
	op.ok = slices.Clone(op.encoded)
	op.errs = slices.Clone(op.encErrs)
	for i := 0; i < n; {
		if !op.ok[i] {
			i++
			continue
		}
		end := i
		for end < n && op.ok[end] && op.ins[end].plain() {
			end++
		}
		if end-i < minCopy {
			if err := op.one(ctx, s, tx, i); err != nil {
				return err
			}
			i++
			continue
		}
		if err := op.copyRun(ctx, s, tx, i, end); err != nil {
			return err
		}
		i = end
	}
	return nil
}

// one stores job i as Enqueue does. A refusal fails an atomic batch whole;
// otherwise it undoes only job i and is kept at its index.
func (op *batchOp) one(ctx context.Context, s *Store, tx pgx.Tx, i int) error {
	explicit := op.explicit != nil && op.explicit[i]
	op.outs[i] = enqueued{}
	if op.atomic {
		if err := s.enqueue(ctx, tx, &op.ins[i], explicit, &op.outs[i]); err != nil {
			return &engine.BatchError{Index: i, Err: err}
		}
		return nil
	}
	failed, err := part(ctx, tx, func(sp pgx.Tx) error { return s.enqueue(ctx, sp, &op.ins[i], explicit, &op.outs[i]) })
	if err != nil {
		return err
	}
	if failed != nil {
		op.errs[i] = fmt.Errorf("enqueue: %w", failed)
		op.ok[i] = false
	}
	return nil
}

// copyRun stores the plain jobs [i, end) with one COPY. If the COPY fails
// (a duplicate id, say), its savepoint undoes it and the jobs are stored
// one by one, so each gets the outcome and error it gets alone.
func (op *batchOp) copyRun(ctx context.Context, s *Store, tx pgx.Tx, i, end int) error {
	failed, err := part(ctx, tx, func(sp pgx.Tx) error { return op.copyJobs(ctx, sp, i, end) })
	if err != nil {
		return err
	}
	if failed == nil {
		return nil
	}
	for k := i; k < end; k++ {
		if err := op.one(ctx, s, tx, k); err != nil {
			return err
		}
	}
	return nil
}

func (op *batchOp) copyJobs(ctx context.Context, tx pgx.Tx, i, end int) error {
	// One reference count update per distinct environment of the run.
	counts := map[string]int64{}
	for k := i; k < end; k++ {
		if env := op.ins[k].job.BaseEnv; env != nil {
			counts[env.SHA256]++
		}
	}
	ids := map[string]int64{}
	for _, hash := range slices.Sorted(maps.Keys(counts)) {
		for k := i; k < end; k++ {
			if env := op.ins[k].job.BaseEnv; env != nil && env.SHA256 == hash {
				id, err := refEnv(ctx, tx, env, op.ins[k].envHash, counts[hash])
				if err != nil {
					return err
				}
				ids[hash] = id
				break
			}
		}
	}
	rows := newCopyRows(end - i)
	for k := i; k < end; k++ {
		in := &op.ins[k]
		if env := in.job.BaseEnv; env != nil {
			in.envID = ids[env.SHA256]
		}
		op.outs[k] = enqueued{generation: in.job.Generation, state: engine.StateQueued}
		rows.job(in, &op.outs[k])
	}
	if err := rows.copyFrom(ctx, tx.Conn().PgConn()); err != nil {
		return fmt.Errorf("insert jobs: %w", err)
	}
	return nil
}

// part runs fn inside a savepoint and undoes just fn's changes when it
// fails, returning fn's error as failed. err is set only when the
// savepoint itself could not be set up or undone: the transaction is then
// in an unknown state, and the whole call must fail.
func part(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) (failed, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	if failed = fn(sp); failed != nil {
		if err := sp.Rollback(ctx); err != nil {
			return failed, fmt.Errorf("roll back to savepoint: %w", err)
		}
		return failed, nil
	}
	if err := sp.Commit(ctx); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	return nil, nil
}

// CompleteAndClaim records start records and completions and claims jobs
// in one transaction, so they share one commit (see engine.Store). A
// stale completion or a failed claim does not undo the others (see
// runCycle).
func (s *Store) CompleteAndClaim(ctx context.Context, cy engine.Cycle) (engine.CycleResult, error) {
	started := slices.Clone(cy.Started)
	done := slices.Clone(cy.Done)
	req := cy.Claim
	checked := make([]error, len(done))
	for i := range done {
		if err := done[i].Check(); err != nil {
			checked[i] = fmt.Errorf("complete job %s attempt %d: %w", done[i].ID, done[i].Attempt, err)
		}
	}
	claiming := req.Limit > 0
	var claimErr error
	if claiming {
		if err := req.Own(); err != nil {
			claimErr = fmt.Errorf("claim jobs: %w", err)
			claiming = false
		}
	}
	res, err := s.runCycle(ctx, &cycleArgs{started: started, done: done, checked: checked,
		claiming: claiming, req: &req, claimErr: claimErr})
	if err != nil {
		return engine.CycleResult{}, fmt.Errorf("complete and claim: %w", err)
	}
	var notices []engine.Notice
	for _, c := range res.Completed {
		notices = append(notices, completeNotices(c.Job)...)
	}
	s.announce(notices...)
	return res, nil
}

func (s *Store) cycle(ctx context.Context, tx pgx.Tx, started []engine.StartRecord, done []engine.Completion,
	claiming bool, req *engine.ClaimRequest, res *engine.CycleResult) error {
	for i, r := range started {
		failed, err := part(ctx, tx, func(sp pgx.Tx) error { return markStarted(ctx, sp, r.ID, r.Attempt, r.PID, r.PIDStart) })
		if err != nil {
			return err
		}
		if failed != nil {
			res.StartErrs[i] = fmt.Errorf("mark job %s attempt %d started: %w", r.ID, r.Attempt, failed)
		}
	}
	doneIdx, others := splitDone(done, res.Errs)
	rest, err := s.completeDone(ctx, tx, done, doneIdx, res)
	if err != nil {
		return err
	}
	for _, i := range mergeSorted(rest, others) {
		if err := s.completeOne(ctx, tx, done, i, res); err != nil {
			return err
		}
	}
	if !claiming {
		return nil
	}
	failed, err := part(ctx, tx, func(sp pgx.Tx) (err error) {
		res.Claimed, err = s.claim(ctx, sp, req)
		return err
	})
	if failed != nil {
		res.Claimed, res.ClaimErr = nil, fmt.Errorf("claim jobs: %w", failed)
	} else if res.Claimed == nil {
		res.Claimed = []*engine.Job{}
	}
	return err
}

// splitDone sorts the completions a cycle stores: the DONE completions of
// jobs named once, which go first, all in one statement (together), and
// the others in the caller's order (alone). A job named twice goes the
// one-by-one way, so the second completion finds what the first did.
// Completions refused before the transaction (refused[i] != nil) are in
// neither list.
func splitDone(done []engine.Completion, refused []error) (together, alone []int) {
	named := make(map[string]int, len(done))
	for i := range done {
		named[done[i].ID]++
	}
	for i := range done {
		switch {
		case refused[i] != nil:
		case done[i].State == engine.StateDone && named[done[i].ID] == 1:
			together = append(together, i)
		default:
			alone = append(alone, i)
		}
	}
	return together, alone
}

// completeOne completes done[i] in a savepoint of its own, recording its
// result or error in res.
func (s *Store) completeOne(ctx context.Context, tx pgx.Tx, done []engine.Completion, i int, res *engine.CycleResult) error {
	failed, err := part(ctx, tx, func(sp pgx.Tx) (err error) {
		res.Completed[i], err = s.complete(ctx, sp, &done[i])
		return err
	})
	if err != nil {
		return err
	}
	if failed != nil {
		res.Completed[i] = engine.CompleteResult{}
		res.Errs[i] = fmt.Errorf("complete job %s attempt %d: %w", done[i].ID, done[i].Attempt, failed)
	}
	return nil
}

// mergeSorted merges two ascending index lists.
func mergeSorted(a, b []int) []int {
	out := make([]int, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0] < b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}
