package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// defaultPruneLimit applies when PruneRequest.Limit is zero.
const defaultPruneLimit = 10000

// CancelQueued cancels the listed jobs that are still QUEUED and returns
// them, followed by their QUEUED dependents, which it cancels too; unknown
// ids and jobs in other states are left alone.
func (s *Store) CancelQueued(ctx context.Context, ids []string, reason string, now time.Time) ([]*engine.Job, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return nil, fmt.Errorf("cancel queued jobs: %w", err)
	}
	if len(ids) == 0 {
		return []*engine.Job{}, nil
	}
	var jobs []*engine.Job
	err := s.write(ctx, func(tx pgx.Tx) error {
		jobs = make([]*engine.Job, 0, len(ids))
		var roots []ended
		for _, id := range ids {
			rows, got, err := s.queryJobs(ctx, tx, true, false, `UPDATE jobs SET state = 'CANCELLED', error = $1, finished_at = $2
				WHERE id = $3 AND state = 'QUEUED'
				RETURNING `+jobCols, optText(reason), now.UnixNano(), id)
			if err != nil {
				return fmt.Errorf("cancel job %s: %w", id, err)
			}
			for i, r := range rows {
				jobs = append(jobs, got[i])
				roots = append(roots, ended{seq: r.seq, id: r.job.ID, state: engine.StateCancelled})
			}
		}
		deps, err := s.cancelDependents(ctx, tx, roots, now.UnixNano())
		jobs = append(jobs, deps...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel queued jobs: %w", err)
	}
	notices := make([]engine.Notice, len(jobs))
	for i, j := range jobs {
		notices[i] = engine.Notice{Kind: engine.NoticeCancel, Queue: j.Queue, ID: j.ID}
	}
	s.announce(notices...)
	return jobs, nil
}

// ExpireDue moves QUEUED jobs whose TTL has passed at now to EXPIRED and
// returns them, followed by their QUEUED dependents, which it cancels.
// SKIP LOCKED: a job a claim holds is either being started (and then no
// longer expires) or is released within the claim; the next round sees it.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]*engine.Job, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return nil, fmt.Errorf("expire jobs: %w", err)
	}
	var jobs []*engine.Job
	err := s.write(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT seq, ttl FROM jobs
			WHERE state = 'QUEUED' AND expires_at IS NOT NULL AND expires_at <= $1
			ORDER BY expires_at, seq FOR UPDATE SKIP LOCKED`, now.UnixNano())
		if err != nil {
			return fmt.Errorf("find expired jobs: %w", err)
		}
		type due struct{ seq, ttl int64 }
		dues, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (due, error) {
			var d due
			return d, r.Scan(&d.seq, &d.ttl)
		})
		if err != nil {
			return fmt.Errorf("find expired jobs: %w", err)
		}
		jobs = make([]*engine.Job, 0, len(dues))
		var roots []ended
		for _, d := range dues {
			reason := fmt.Sprintf("ttl of %s passed before the job started", time.Duration(d.ttl))
			rows, got, err := s.queryJobs(ctx, tx, true, false, `UPDATE jobs SET state = 'EXPIRED', error = $1, finished_at = $2
				WHERE seq = $3 AND state = 'QUEUED'
				RETURNING `+jobCols, reason, now.UnixNano(), d.seq)
			if err != nil {
				return fmt.Errorf("expire job: %w", err)
			}
			for i, r := range rows {
				jobs = append(jobs, got[i])
				roots = append(roots, ended{seq: r.seq, id: r.job.ID, state: engine.StateExpired})
			}
		}
		deps, err := s.cancelDependents(ctx, tx, roots, now.UnixNano())
		jobs = append(jobs, deps...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire jobs: %w", err)
	}
	return jobs, nil
}

// SetPaused pauses or resumes a queue. The setting is stored, so every
// daemon sees it; claims that start after it commits skip the queue.
func (s *Store) SetPaused(ctx context.Context, queue string, paused bool) error {
	if queue == "" {
		return fmt.Errorf("set paused: %w: no queue name", engine.ErrInvalid)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO queue_settings (queue, paused) VALUES ($1, $2)
			ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused`, queue, paused); err != nil {
			return err
		}
		// Out of the claims' walk while paused, back in on resume (held.go).
		q := qReleaseQueue
		if paused {
			q = qHoldQueue
		}
		_, err := tx.Exec(ctx, q, queue)
		return err
	})
	if err != nil {
		what := "resume"
		if paused {
			what = "pause"
		}
		return fmt.Errorf("%s queue %s: %w", what, queue, err)
	}
	s.paused.mark(queue, paused)
	kind := engine.NoticeResume
	if paused {
		kind = engine.NoticePause
	}
	s.announce(engine.Notice{Kind: kind, Queue: queue})
	return nil
}

// PausedQueues lists the paused queues in name order; never nil.
func (s *Store) PausedQueues(ctx context.Context) ([]string, error) {
	queues := []string{}
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT queue FROM queue_settings WHERE paused ORDER BY queue COLLATE "C"`)
		if err != nil {
			return err
		}
		queues, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read paused queues: %w", err)
	}
	if queues == nil {
		queues = []string{}
	}
	return queues, nil
}

// Retry starts a new attempt series for a FAILED, CANCELLED or EXPIRED job,
// with the rules of the SQLite store's Retry.
func (s *Store) Retry(ctx context.Context, id string, now time.Time) (*engine.Job, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return nil, fmt.Errorf("retry job %s: %w", id, err)
	}
	var job *engine.Job
	err := s.write(ctx, func(tx pgx.Tx) (err error) {
		job, err = s.retry(ctx, tx, id, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry job %s: %w", id, err)
	}
	s.announce(engine.Notice{Kind: engine.NoticeEnqueue, Queue: job.Queue})
	return job, nil
}

func (s *Store) retry(ctx context.Context, tx pgx.Tx, id string, now time.Time) (*engine.Job, error) {
	cur, err := currentJob(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if err := engine.CheckRetryable(cur.state); err != nil {
		return nil, err
	}
	// Under the key's share lock, as a retrying completion: an enqueue of
	// a newer generation either is seen here or supersedes the job after.
	if err := cur.keyGen(ctx, tx); err != nil {
		return nil, err
	}
	if cur.maxGen > cur.generation {
		return nil, fmt.Errorf("%w: a newer generation %d exists", engine.ErrInvalid, cur.maxGen)
	}
	var failed ended
	var st string
	err = tx.QueryRow(ctx, `SELECT p.id, p.state FROM job_deps AS d JOIN jobs AS p ON p.seq = d.dep_seq
		WHERE d.job_seq = $1 AND p.state NOT IN ('QUEUED', 'RUNNING', 'DONE')
		ORDER BY d.dep_seq LIMIT 1 FOR SHARE OF p`, cur.seq).Scan(&failed.id, &st)
	switch {
	case err == nil:
		failed.state = engine.State(st)
		hint := "retry it first"
		if !engine.CanTransition(failed.state, engine.StateQueued) {
			hint = "it will not run again"
		}
		return nil, fmt.Errorf("%w: %s; %s", engine.ErrInvalid, engine.DependencyError(failed.id, failed.state), hint)
	case err != pgx.ErrNoRows:
		return nil, fmt.Errorf("read dependencies: %w", err)
	}
	rows, jobs, err := s.queryJobs(ctx, tx, true, false, `UPDATE jobs SET state = 'QUEUED',
			attempt_base = attempt_base + attempt, attempt = 0, run_at = $1, due = true, held = `+heldNow+`,
			expires_at = NULL, started_at = NULL, finished_at = NULL, exit_code = NULL, error = NULL, owner = NULL
		WHERE seq = $2
		RETURNING `+jobCols, now.UnixNano(), cur.seq)
	if err != nil {
		return nil, fmt.Errorf("requeue: %w", err)
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("requeue: %w", engine.ErrNotFound)
	}
	return jobs[0], nil
}

// Prune deletes finished jobs with their attempts, logs and dependency
// rows, and the environments nothing references any more, as the SQLite
// store's Prune does. Prunes of one schema take turns under an advisory
// lock, so daemons running retention at once never count the same jobs
// against Keep twice.
func (s *Store) Prune(ctx context.Context, req engine.PruneRequest) (int, error) {
	none, err := req.Check()
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if none {
		return 0, nil
	}
	if req.Limit == 0 {
		req.Limit = defaultPruneLimit
	}
	var n int
	err = s.write(ctx, func(tx pgx.Tx) (err error) {
		n, err = s.prune(ctx, tx, req)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	return n, nil
}

func (s *Store) prune(ctx context.Context, tx pgx.Tx, req engine.PruneRequest) (int, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(s.schema, "prune")); err != nil {
		return 0, fmt.Errorf("wait for the prune lock: %w", err)
	}
	var excess int64
	if req.Keep > 0 {
		err := tx.QueryRow(ctx, `SELECT coalesce(sum(n), 0) FROM (
				SELECT n FROM counts WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED')
				UNION ALL
				SELECT n FROM count_deltas WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED')) AS c`).Scan(&excess)
		if err != nil {
			return 0, fmt.Errorf("count finished jobs: %w", err)
		}
		excess -= int64(req.Keep)
	}
	if excess <= 0 && req.Before.IsZero() {
		return 0, nil
	}
	var before *int64
	if !req.Before.IsZero() {
		before = nanos(req.Before)
	}
	// The jobs beyond Keep and those before Before are both a prefix of
	// the history in finish order: the union is the longer prefix.
	rows, err := tx.Query(ctx, `WITH f AS (
			SELECT seq, finished_at, row_number() OVER (ORDER BY finished_at, seq) AS i FROM (
				SELECT seq, finished_at FROM jobs
				WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED')
				ORDER BY finished_at, seq LIMIT $1) AS o)
		DELETE FROM jobs WHERE seq IN (SELECT seq FROM f WHERE i <= $2 OR finished_at < $3)
		RETURNING env_id`, req.Limit, excess, before)
	if err != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", err)
	}
	envIDs, err := pgx.CollectRows(rows, pgx.RowTo[*int64])
	if err != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", err)
	}
	var refs map[int64]int64
	for _, id := range envIDs {
		if id != nil {
			if refs == nil {
				refs = make(map[int64]int64)
			}
			refs[*id]++
		}
	}
	if err := s.unrefEnvs(ctx, tx, refs); err != nil {
		return 0, err
	}
	return len(envIDs), nil
}

// Checkpoint folds the count deltas into the counters. PostgreSQL manages
// its own write-ahead log; there is nothing else to fold.
func (s *Store) Checkpoint(ctx context.Context) error {
	if err := s.fold(ctx); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}
