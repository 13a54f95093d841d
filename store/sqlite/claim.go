package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// Claim starts the next attempt of up to req.Limit due jobs (see
// engine.Store). The returned jobs carry their attempt history.
//
// A QueueLimits or Quota entry of zero or less means no cap, as for
// DefaultQuota; an entry in Quota, even zero, overrides DefaultQuota for its
// queue.
func (s *Store) Claim(ctx context.Context, req engine.ClaimRequest) ([]*engine.Job, error) {
	if err := req.Own(); err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	if req.Limit <= 0 {
		return []*engine.Job{}, nil
	}
	var jobs []*engine.Job
	err := s.write(ctx, func(c *conn) (err error) {
		jobs, err = c.claim(&req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	return jobs, nil
}

// claim starts the next attempt of up to req.Limit due jobs: it brings
// the due flags up to req.Now, walks the due jobs in claim order (see
// qClaimScan) taking those the caps and keys allow, then starts each.
// The jobs are taken before any is updated: changing rows of the index a
// statement is walking has undefined results in SQLite.
func (c *conn) claim(req *engine.ClaimRequest) ([]*engine.Job, error) {
	if err := c.setDue(qDemote, req.Now); err != nil {
		return nil, fmt.Errorf("demote jobs not yet due: %w", err)
	}
	if err := c.setDue(qPromote, req.Now); err != nil {
		return nil, fmt.Errorf("promote jobs that came due: %w", err)
	}
	if req.Limit <= 0 {
		return []*engine.Job{}, nil
	}
	// seqs is filled here, not by the walk: kept in this frame it stays
	// off the heap on the claim's hot path.
	seqs := make([]int64, 0, min(req.Limit, 64))
	w := claimWalk{c: c, req: req, capped: len(req.QueueLimits) > 0 || len(req.Quota) > 0 || req.DefaultQuota > 0}
	err := c.queryEach(qClaimScan, func(b *binder) {
		b.time(req.Now)
		b.bool(req.Idle)
		b.bool(req.OnAC)
	}, func(scan *sqlite3.Stmt) bool {
		if w.take(scan) {
			seqs = append(seqs, scan.ColumnInt64(0))
		}
		return w.err == nil && len(seqs) < req.Limit
	})
	if err != nil {
		return nil, fmt.Errorf("find due jobs: %w", err)
	}
	if w.err != nil {
		return nil, w.err
	}
	jobs := make([]*engine.Job, 0, len(seqs))
	for _, seq := range seqs {
		job, err := c.startJob(seq, req)
		if err != nil {
			return nil, err
		}
		if job != nil {
			jobs = append(jobs, job)
		}
	}
	return jobs, nil
}

// setDue runs qDemote or qPromote for now, so that the due flags match now
// before a claim walks the due jobs.
func (c *conn) setDue(id stmtID, now time.Time) error {
	return c.run(id, func(b *binder) { b.time(now) })
}

// claimWalk is what a claim remembers while it walks the due jobs.
type claimWalk struct {
	c      *conn
	req    *engine.ClaimRequest
	capped bool // the request caps some queue
	queues map[string]*queueUse
	keys   map[engine.Key]struct{} // of the jobs taken
	err    error                   // what stopped the walk early
}

// queueUse is what a claim knows about one queue while it walks.
type queueUse struct {
	running int64 // RUNNING jobs of all owners before this claim; -1: not read yet
	taken   int   // jobs this claim has taken
}

// take reports whether the claim takes the due job at scan, which it does
// unless its queue's caps or its key forbid. A job a cap or its key
// rejects is stepped over, so it never blocks the jobs behind it.
func (w *claimWalk) take(scan *sqlite3.Stmt) bool {
	var use *queueUse
	if w.capped {
		var room bool
		if use, room = w.queueRoom(scan); !room {
			return false
		}
	}
	if scan.ColumnType(3) != sqlite3.NULL {
		// Supersede leaves at most one QUEUED job per key, but a claim
		// must not start two of one key even if that ever failed to hold.
		k := engine.Key{Queue: w.c.name(scan, 1), Type: w.c.name(scan, 2), Subject: scan.ColumnText(3)}
		if w.keys == nil {
			w.keys = make(map[engine.Key]struct{})
		}
		if _, dup := w.keys[k]; dup {
			return false
		}
		w.keys[k] = struct{}{}
	}
	if use != nil {
		use.taken++
	}
	return true
}

// queueRoom returns the use of the queue of the job at scan, and whether
// the queue's quota for this claim and its limit on RUNNING jobs leave
// room for the job. Caps change as the claim takes jobs, so they are
// applied here rather than in the scan's SQL.
func (w *claimWalk) queueRoom(scan *sqlite3.Stmt) (*queueUse, bool) {
	q := w.c.name(scan, 1)
	use := w.queues[q]
	if use == nil {
		if w.queues == nil {
			w.queues = make(map[string]*queueUse)
		}
		use = &queueUse{running: -1}
		w.queues[q] = use
	}
	quota, listed := w.req.Quota[q]
	if !listed {
		quota = w.req.DefaultQuota
	}
	if quota > 0 && use.taken >= quota {
		return use, false
	}
	if ceiling := w.req.QueueLimits[q]; ceiling > 0 {
		if use.running < 0 {
			var err error
			if use.running, err = w.c.queueRunning(q); err != nil {
				w.err = err
				return use, false
			}
		}
		if use.running+int64(use.taken) >= int64(ceiling) {
			return use, false
		}
	}
	return use, true
}

// queueRunning reads how many jobs of a queue are RUNNING, for every owner,
// from the counters the triggers keep.
func (c *conn) queueRunning(queue string) (int64, error) {
	var n int64
	_, err := c.queryOne(qQueueRunning, func(b *binder) { b.text(queue) }, func(st *sqlite3.Stmt) { n = st.ColumnInt64(0) })
	if err != nil {
		return 0, fmt.Errorf("count running jobs of queue %s: %w", queue, err)
	}
	return n, nil
}

// startJob starts job seq's next attempt and returns the job, with its
// attempts and, if it has one, its whole environment: it is about to run.
// It returns nil if the job is no longer QUEUED.
func (c *conn) startJob(seq int64, req *engine.ClaimRequest) (*engine.Job, error) {
	rows, err := c.queryRows(qClaimJob, func(b *binder) {
		b.time(req.Now)
		b.optText(req.Owner)
		b.int64(seq)
	})
	if err != nil {
		return nil, fmt.Errorf("start job: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	r := rows[0]
	if err := c.insertAttempt(r, req.Now); err != nil {
		return nil, fmt.Errorf("start job %s: %w", r.job.ID, err)
	}
	if err := c.loadAttempts(r); err != nil {
		return nil, err
	}
	if r.envID != 0 {
		if r.job.BaseEnv, err = c.envFull(r.envID); err != nil {
			return nil, fmt.Errorf("start job %s: read its environment: %w", r.job.ID, err)
		}
	}
	return r.job, nil
}

// insertAttempt records the attempt a claim has just started. Its run is
// the job's runs counter, which the claim has just incremented; its number
// n goes on from the attempts of earlier series (see qInsertAttempt).
func (c *conn) insertAttempt(r jobRow, now time.Time) error {
	return c.run(qInsertAttempt, func(b *binder) {
		b.int64(r.seq)
		b.int64(r.runs)
		b.int64(int64(r.job.Attempt))
		b.time(now)
	})
}
