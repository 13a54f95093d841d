package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"stq/engine"
)

// EnqueueMany stores a batch of new jobs in one op, so the batch costs one
// commit (see engine.Store). An atomic batch runs as one unit: the op's own
// savepoint undoes all of it when one job fails. Otherwise each job runs in
// a savepoint of its own and fails alone.
func (s *Store) EnqueueMany(ctx context.Context, b engine.EnqueueBatch) (engine.EnqueueBatchResult, error) {
	if err := b.Check(); err != nil {
		return engine.EnqueueBatchResult{}, fmt.Errorf("enqueue batch: %w", err)
	}
	op, err := newBatchOp(b)
	if err != nil {
		return engine.EnqueueBatchResult{}, err
	}
	if err := s.write(ctx, op.run); err != nil {
		var be *engine.BatchError
		if errors.As(err, &be) {
			return engine.EnqueueBatchResult{}, be
		}
		return engine.EnqueueBatchResult{}, fmt.Errorf("enqueue batch: %w", err)
	}
	res := engine.EnqueueBatchResult{Results: make([]engine.EnqueueResult, len(b.Jobs)), Errs: op.errs}
	for i, j := range b.Jobs {
		if op.ok[i] {
			res.Results[i] = storedResult(j, &op.ins[i], &op.outs[i])
		}
	}
	return res, nil
}

// batchOp is one EnqueueMany as the writer runs it. The jobs are encoded
// on the caller's goroutine; the writer only binds and steps.
type batchOp struct {
	atomic   bool
	explicit []bool // nil: no job has an explicit generation
	ins      []newJob
	outs     []enqueued
	ok       []bool  // encoded, and not refused by the writer
	errs     []error // the refusal of each job that is not ok
	// runs[i] is how many jobs from i on are ok and plain (see plain), so
	// that runs of them can share a multi-row insert.
	runs []int
}

// newBatchOp encodes the batch's jobs. An atomic batch with a job that
// cannot be encoded is refused whole, naming the job's index.
func newBatchOp(b engine.EnqueueBatch) (*batchOp, error) {
	n := len(b.Jobs)
	op := &batchOp{atomic: b.Atomic, explicit: b.ExplicitGen, ins: make([]newJob, n), outs: make([]enqueued, n),
		ok: make([]bool, n), errs: make([]error, n), runs: make([]int, n+1)}
	for i, j := range b.Jobs {
		var err error
		if op.ins[i], err = encodeJob(j); err != nil {
			if b.Atomic {
				return nil, &engine.BatchError{Index: i, Err: err} // the index names it
			}
			op.errs[i] = fmt.Errorf("enqueue: %w", err) // at its index; no id: it was never stored
			continue
		}
		op.ok[i] = true
	}
	for i := n - 1; i >= 0; i-- {
		if op.ok[i] && op.ins[i].plain() {
			op.runs[i] = op.runs[i+1] + 1
		}
	}
	return op, nil
}

// run stores the batch in the writer's transaction: runs of insertRun
// plain jobs share a multi-row insert, the others go one by one.
func (op *batchOp) run(c *conn) error {
	var many *multiInsert
	defer func() {
		if many != nil {
			_ = many.st.Close()
		}
	}()
	for i := 0; i < len(op.ins); {
		switch {
		case !op.ok[i]:
			i++
		case op.runs[i] < insertRun:
			if err := op.one(c, i); err != nil {
				return err
			}
			i++
		default:
			if many == nil {
				var err error
				if many, err = c.prepareInsertMany(insertRun); err != nil {
					return err
				}
			}
			if err := op.many(c, many, i); err != nil {
				return err
			}
			i += insertRun
		}
	}
	return nil
}

// one stores job i as Enqueue does. A refusal fails an atomic batch whole;
// otherwise it undoes only job i and is kept at its index.
func (op *batchOp) one(c *conn, i int) error {
	explicit := op.explicit != nil && op.explicit[i]
	if op.atomic {
		if err := c.enqueue(&op.ins[i], explicit, &op.outs[i]); err != nil {
			return &engine.BatchError{Index: i, Err: err} // the index names it; its id was never stored
		}
		return nil
	}
	failed, err := c.part(func() error { return c.enqueue(&op.ins[i], explicit, &op.outs[i]) })
	if err != nil {
		return err
	}
	if failed != nil {
		op.errs[i] = fmt.Errorf("enqueue: %w", failed) // its id was never stored
		op.ok[i] = false
	}
	return nil
}

// many stores the insertRun plain jobs from i with one run of the
// multi-row insert. If that insert fails, SQLite has undone it and its jobs
// are stored one by one, so each gets the outcome and error it gets alone.
func (op *batchOp) many(c *conn, m *multiInsert, i int) error {
	err := c.insertPlain(m, op.ins[i:i+insertRun], op.outs[i:i+insertRun])
	switch {
	case err == nil:
		return nil
	case c.db.GetAutocommit():
		// The transaction itself is gone; so is the op.
		if op.atomic {
			return &engine.BatchError{Index: i, Err: err}
		}
		return err
	}
	for j := i; j < i+insertRun; j++ {
		if err := op.one(c, j); err != nil {
			return err
		}
	}
	return nil
}

// storedResult is the EnqueueResult of a job the writer stored: the
// definition as given, with what the writer decided.
func storedResult(job *engine.Job, in *newJob, out *enqueued) engine.EnqueueResult {
	stored := job.Stored(json.RawMessage(in.payload), out.generation, out.state, out.errText)
	return engine.EnqueueResult{Job: stored, Superseded: out.superseded, Cancelled: out.cancelled}
}

// insertRun is how many plain jobs of a batch share one multi-row INSERT.
// SQLite's fixed cost per statement run (opening cursors, the statement
// journal a trigger needs, the list behind the jobs_finished index's IN
// test) is then paid once per insertRun jobs rather than per job: it about
// halves the SQLite CPU per job of a 1,000-job batch. The statement is
// prepared once per batch op (about 0.1-1 ms), so only batches with a run
// of at least insertRun plain jobs use it.
const insertRun = 32

// plain reports whether storing the job is only its row: no supersede key
// to look up or update, no dependencies to resolve or record. Such a job is
// stored QUEUED with the generation it came with, whatever else is in the
// batch.
func (in *newJob) plain() bool { return in.subject == "" && len(in.after) == 0 }

// insertPlain stores plain jobs (see plain) with one run of m, a
// prepareInsertMany statement for len(ins) rows, as enqueue stores each of
// them. An error leaves none of them stored, unless the transaction is gone
// too.
//
// Jobs with a base environment count their references first, one
// statement per distinct environment; a savepoint then takes those back
// if the insert fails, since the statement only undoes itself.
func (c *conn) insertPlain(m *multiInsert, ins []newJob, outs []enqueued) error {
	for k := range ins {
		if ins[k].base == nil {
			continue
		}
		failed, err := c.part(func() error {
			if err := c.refEnvs(ins); err != nil {
				return err
			}
			return c.insertRows(m, ins, outs)
		})
		if err != nil {
			return err
		}
		return failed
	}
	return c.insertRows(m, ins, outs)
}
