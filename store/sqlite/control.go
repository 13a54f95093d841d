package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

const (
	// defaultPruneLimit applies when PruneRequest.Limit is zero: one call
	// deletes at most this many jobs, so that one transaction, and the
	// writes queued behind it, stays short.
	defaultPruneLimit = 10000
	// checkpointWait bounds how long a checkpoint waits for readers still
	// on an older snapshot. The writer waits with it, so it is short.
	checkpointWait = time.Second
)

// SetPaused pauses or resumes a queue. The setting is stored, so it
// survives restarts; claims skip the jobs of a paused queue. Pausing a queue
// that has no jobs is allowed: jobs enqueued later wait too.
func (s *Store) SetPaused(ctx context.Context, queue string, paused bool) error {
	if queue == "" {
		return fmt.Errorf("set paused: %w: no queue name", engine.ErrInvalid)
	}
	err := s.write(ctx, func(c *conn) error { return c.setPaused(queue, paused) })
	if err != nil {
		what := "resume"
		if paused {
			what = "pause"
		}
		return fmt.Errorf("%s queue %s: %w", what, queue, err)
	}
	return nil
}

// PausedQueues lists the paused queues in name order; never nil.
func (s *Store) PausedQueues(ctx context.Context) ([]string, error) {
	queues := []string{}
	err := s.read(ctx, func(c *conn) error {
		return c.queryEach(qPaused, nil, func(st *sqlite3.Stmt) bool {
			queues = append(queues, st.ColumnText(0))
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read paused queues: %w", err)
	}
	return queues, nil
}

// Retry starts a new attempt series for a FAILED, CANCELLED or EXPIRED job
// (see engine.Store): the job is QUEUED again, due at now, at attempt 0,
// with its error, exit code, start and finish times and owner cleared. Its
// attempt history stays, and the next attempt is numbered 1 again (attempts
// rows are keyed by run, so both series coexist).
//
// The rules the store adds:
//   - A retried job has no TTL expiry any more: the TTL runs from
//     created_at and guards only the first start, so keeping it would
//     expire most retries at once.
//   - A job of a key whose highest generation is newer than its own is
//     not retried (an error wrapping engine.ErrInvalid): it could never run.
//   - A job with a dependency that ended without succeeding is not retried
//     either (engine.ErrInvalid): retry the dependency first (a SUPERSEDED
//     one cannot be). A QUEUED job thus never waits for a job that will
//     not run.
//   - Retrying a job does not revive the dependents that were cancelled
//     when it ended; retry them as well, after it.
//
// Other states give an error wrapping engine.ErrInvalidTransition, an
// unknown id engine.ErrNotFound.
func (s *Store) Retry(ctx context.Context, id string, now time.Time) (*engine.Job, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return nil, fmt.Errorf("retry job %s: %w", id, err)
	}
	var job *engine.Job
	err := s.write(ctx, func(c *conn) (err error) {
		job, err = c.retry(id, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry job %s: %w", id, err)
	}
	return job, nil
}

func (c *conn) retry(id string, now time.Time) (*engine.Job, error) {
	cur, err := c.current(id)
	if err != nil {
		return nil, err
	}
	if err := engine.CheckRetryable(cur.state); err != nil {
		return nil, err
	}
	if cur.maxGen > cur.generation {
		return nil, fmt.Errorf("%w: a newer generation %d exists", engine.ErrInvalid, cur.maxGen)
	}
	failed, err := c.failedDep(cur.seq)
	if err != nil {
		return nil, err
	}
	if failed.id != "" {
		hint := "retry it first"
		if !engine.CanTransition(failed.state, engine.StateQueued) {
			hint = "it will not run again"
		}
		return nil, fmt.Errorf("%w: %s; %s", engine.ErrInvalid, engine.DependencyError(failed.id, failed.state), hint)
	}
	r, err := c.oneJob(qRetryJob, func(b *binder) {
		b.time(now)
		b.int64(cur.seq)
	})
	if err != nil {
		return nil, fmt.Errorf("requeue: %w", err)
	}
	return r.job, nil
}

// failedDep returns a dependency of the job that ended without succeeding,
// or zero.
func (c *conn) failedDep(seq int64) (ended, error) {
	var dep ended
	_, err := c.queryOne(qFailedDep, func(b *binder) { b.int64(seq) }, func(st *sqlite3.Stmt) {
		dep = ended{id: st.ColumnText(0), state: columnState(st, 1)}
	})
	if err != nil {
		return ended{}, fmt.Errorf("read dependencies: %w", err)
	}
	return dep, nil
}

// Prune deletes finished jobs (DONE, FAILED, CANCELLED, SUPERSEDED,
// EXPIRED) with their attempts, logs and dependency rows, and the captured
// environments that no job references any more: those finished
// before req.Before (zero: no age limit), and the oldest beyond the newest
// req.Keep finished jobs (zero: no count limit), oldest first and at most
// req.Limit of them (zero: 10,000). It returns how many it deleted; a
// caller with more to delete calls again. The counters stay exact and each
// key's highest generation stays, so automatic generations continue from
// it and an old generation never becomes new again.
//
// A QUEUED job whose dependency is pruned no longer waits for it: only a
// DONE dependency can be pruned while a job still waits (one that ended
// otherwise has cancelled its dependents), so that is the right answer.
func (s *Store) Prune(ctx context.Context, req engine.PruneRequest) (int, error) {
	none, err := req.Check()
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if none {
		return 0, nil // no limit asks for nothing
	}
	if req.Limit == 0 {
		req.Limit = defaultPruneLimit
	}
	var n int
	err = s.write(ctx, func(c *conn) (err error) {
		n, err = c.prune(req)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	return n, nil
}

func (c *conn) prune(req engine.PruneRequest) (int, error) {
	seqs, err := c.pruneCandidates(req)
	if err != nil {
		return 0, err
	}
	// envRefs counts the references to environments the deleted jobs held
	// (envs id -> jobs), given back once at the end.
	var envRefs map[int64]int64
	for _, seq := range seqs {
		_, err := c.queryOne(qPruneJob, func(b *binder) { b.int64(seq) }, func(del *sqlite3.Stmt) {
			if del.ColumnType(0) == sqlite3.NULL {
				return
			}
			if envRefs == nil {
				envRefs = make(map[int64]int64)
			}
			envRefs[del.ColumnInt64(0)]++
		})
		if err != nil {
			return 0, fmt.Errorf("delete job: %w", err)
		}
	}
	if err := c.unrefEnvs(envRefs); err != nil {
		return 0, err
	}
	return len(seqs), nil
}

// pruneCandidates returns the seqs of the finished jobs req selects,
// oldest first. They are collected before any is deleted: deleting rows of
// the index being walked is undefined.
//
// The finished jobs beyond the newest Keep are the oldest excess of them,
// and those finished before Before are the oldest too: both are a prefix
// of the walk in finish order, which therefore stops at the first job that
// neither selects.
func (c *conn) pruneCandidates(req engine.PruneRequest) ([]int64, error) {
	var excess int64
	if req.Keep > 0 {
		_, err := c.queryOne(qFinishedCount, nil, func(st *sqlite3.Stmt) { excess = st.ColumnInt64(0) - int64(req.Keep) })
		if err != nil {
			return nil, fmt.Errorf("count finished jobs: %w", err)
		}
	}
	if excess <= 0 && req.Before.IsZero() {
		return nil, nil
	}
	before := req.Before.UnixNano()
	var seqs []int64
	i := int64(0)
	err := c.queryEach(qPruneScan, func(b *binder) { b.int64(int64(req.Limit)) }, func(scan *sqlite3.Stmt) bool {
		old := !req.Before.IsZero() && scan.ColumnInt64(1) < before
		if i >= excess && !old {
			return false
		}
		seqs = append(seqs, scan.ColumnInt64(0))
		i++
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("find finished jobs: %w", err)
	}
	return seqs, nil
}

// Checkpoint copies the write-ahead log into the database and truncates
// it to zero bytes (PRAGMA wal_checkpoint(TRUNCATE)). The writer runs it
// between transactions, so it never races one of this store's writes.
//
// A checkpoint that a reader blocks (one still reading an older snapshot
// after checkpointWait) is not an error: it has copied what it could, and
// the next checkpoint, or SQLite's automatic ones, finish the job. Checkpoint
// then returns nil. Between checkpoints, journal_size_limit (set on open)
// keeps the WAL file from staying large after a burst.
func (s *Store) Checkpoint(ctx context.Context) error {
	err := s.writeDirect(ctx, func(c *conn) error { return c.checkpoint(ctx) })
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (c *conn) checkpoint(ctx context.Context) error {
	if ctx.Done() != nil {
		c.db.SetInterrupt(ctx)
		defer c.db.SetInterrupt(context.Background())
	}
	if err := c.db.BusyTimeout(checkpointWait); err != nil {
		return err
	}
	_, _, err := c.db.WALCheckpoint("main", sqlite3.CHECKPOINT_TRUNCATE)
	if rerr := c.db.BusyTimeout(busyTimeout); rerr != nil && err == nil {
		err = rerr
	}
	switch {
	case err == nil, errors.Is(err, sqlite3.BUSY):
		return nil
	case ctx.Err() != nil && errors.Is(err, sqlite3.INTERRUPT):
		return ctx.Err()
	}
	return err
}
