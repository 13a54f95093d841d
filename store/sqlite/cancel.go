package sqlite

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// ended is a job that has just reached a terminal state, as the cancel
// cascade needs it.
type ended struct {
	seq   int64
	id    string
	state engine.State
}

// cancelDependents cancels the QUEUED jobs that wait for any of roots, jobs
// that have just ended in a terminal state other than DONE, and then, level
// by level, the QUEUED jobs that wait for those. Each gets the error
// "dependency <id> ended <STATE>" naming the job it waited for directly,
// and finishes at now. It returns them in that order, each level in
// enqueue order, with their attempt history. A job is cancelled once
// however many of its dependencies end: the second finds it no longer
// QUEUED.
func (c *conn) cancelDependents(roots []ended, now time.Time) ([]*engine.Job, error) {
	var out []*engine.Job
	for len(roots) > 0 {
		var next []ended
		for _, root := range roots {
			err := c.endJobs(qCancelDependents, func(b *binder) {
				b.text(engine.DependencyError(root.id, root.state))
				b.time(now)
				b.int64(root.seq)
			}, engine.StateCancelled, &out, &next)
			if err != nil {
				return nil, fmt.Errorf("cancel dependents of %s: %w", root.id, err)
			}
		}
		roots = next
	}
	return out, nil
}

// endJobs runs a statement that moves QUEUED jobs to the end state state,
// RETURNING their jobCols, and appends them, in enqueue order and with
// their attempts, to jobs, and as roots of the cancel cascade to roots.
func (c *conn) endJobs(id stmtID, args func(*binder), state engine.State, jobs *[]*engine.Job, roots *[]ended) error {
	rows, err := c.queryRows(id, args)
	if err != nil {
		return err
	}
	// RETURNING has no defined order.
	slices.SortFunc(rows, func(a, b jobRow) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range rows {
		if err := c.loadAttempts(r); err != nil {
			return err
		}
		*jobs = append(*jobs, r.job)
		*roots = append(*roots, ended{seq: r.seq, id: r.job.ID, state: state})
	}
	return nil
}

// CancelQueued cancels the listed jobs that are still QUEUED and returns
// them, followed by their QUEUED dependents, which it cancels too (see
// cancelDependents); unknown ids and jobs in other states are left alone.
// A dependent that is itself listed counts as listed: it gets reason, not
// the dependency's error.
func (s *Store) CancelQueued(ctx context.Context, ids []string, reason string, now time.Time) ([]*engine.Job, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return nil, fmt.Errorf("cancel queued jobs: %w", err)
	}
	if len(ids) == 0 {
		return []*engine.Job{}, nil
	}
	ids = slices.Clone(ids)
	var jobs []*engine.Job
	err := s.write(ctx, func(c *conn) error {
		jobs = make([]*engine.Job, 0, len(ids))
		var roots []ended
		for _, id := range ids {
			err := c.endJobs(qCancelQueued, func(b *binder) {
				b.optText(reason)
				b.time(now)
				b.text(id)
			}, engine.StateCancelled, &jobs, &roots)
			if err != nil {
				return fmt.Errorf("cancel job %s: %w", id, err)
			}
		}
		deps, err := c.cancelDependents(roots, now)
		jobs = append(jobs, deps...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel queued jobs: %w", err)
	}
	return jobs, nil
}

// ExpireDue moves QUEUED jobs whose TTL has passed at now to EXPIRED and
// returns them, followed by their QUEUED dependents, which it cancels.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]*engine.Job, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return nil, fmt.Errorf("expire jobs: %w", err)
	}
	var jobs []*engine.Job
	err := s.write(ctx, func(c *conn) (err error) {
		jobs, err = c.expireDue(now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire jobs: %w", err)
	}
	return jobs, nil
}

func (c *conn) expireDue(now time.Time) ([]*engine.Job, error) {
	type due struct{ seq, ttl int64 }
	var dues []due
	err := c.queryEach(qExpireScan, func(b *binder) { b.time(now) }, func(st *sqlite3.Stmt) bool {
		dues = append(dues, due{st.ColumnInt64(0), st.ColumnInt64(1)})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("find expired jobs: %w", err)
	}
	jobs := make([]*engine.Job, 0, len(dues))
	var roots []ended
	for _, d := range dues {
		err := c.endJobs(qExpireJob, func(b *binder) {
			b.text(fmt.Sprintf("ttl of %s passed before the job started", time.Duration(d.ttl)))
			b.time(now)
			b.int64(d.seq)
		}, engine.StateExpired, &jobs, &roots)
		if err != nil {
			return nil, fmt.Errorf("expire job: %w", err)
		}
	}
	deps, err := c.cancelDependents(roots, now)
	return append(jobs, deps...), err
}
