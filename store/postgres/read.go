package postgres

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// Get returns a job with its attempt history, or an error wrapping
// engine.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*engine.Job, error) {
	var job *engine.Job
	err := s.read(ctx, func(tx pgx.Tx) error {
		_, jobs, err := s.queryJobs(ctx, tx, true, false, `SELECT `+jobCols+` FROM jobs WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			return engine.ErrNotFound
		}
		job = jobs[0]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return job, nil
}

// List returns a page of jobs matching f, newest first, without attempt
// history. The cursor is the seq of the page's last job: pages walk seq
// downwards, so jobs added meanwhile never shift a later page.
func (s *Store) List(ctx context.Context, f engine.ListFilter) (engine.ListPage, error) {
	limit, err := f.PageSize()
	if err != nil {
		return engine.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	var states []string
	for _, st := range f.States {
		states = append(states, string(st))
	}
	var before *int64
	if f.Cursor != "" {
		v, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || v <= 0 {
			return engine.ListPage{}, fmt.Errorf("list jobs: %w: cursor %q was not made by this store", engine.ErrInvalid, f.Cursor)
		}
		before = &v
	}
	var rows []jobRow
	var jobs []*engine.Job
	err = s.read(ctx, func(tx pgx.Tx) (err error) {
		// One more than asked says whether another page follows.
		rows, jobs, err = s.queryJobs(ctx, tx, false, false, `SELECT `+jobCols+` FROM jobs
			WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR type = $2)
				AND ($3::text IS NULL OR subject = $3)
				AND ($4::text[] IS NULL OR state = ANY($4))
				AND ($6::bigint IS NULL OR seq < $6)
			ORDER BY seq DESC LIMIT $5`,
			optText(f.Queue), optText(f.Type), optText(f.Subject), states, limit+1, before)
		return err
	})
	if err != nil {
		return engine.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	var page engine.ListPage
	if len(rows) > limit {
		rows, jobs = rows[:limit], jobs[:limit]
		page.Next = strconv.FormatInt(rows[limit-1].seq, 10)
	}
	page.Jobs = jobs
	if page.Jobs == nil {
		page.Jobs = []*engine.Job{}
	}
	return page, nil
}

// Running returns every RUNNING job, of every daemon, with its attempt
// history, oldest first.
func (s *Store) Running(ctx context.Context) ([]*engine.Job, error) {
	var jobs []*engine.Job
	err := s.read(ctx, func(tx pgx.Tx) (err error) {
		_, jobs, err = s.queryJobs(ctx, tx, true, false, `SELECT `+jobCols+` FROM jobs WHERE state = 'RUNNING' ORDER BY seq`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list running jobs: %w", err)
	}
	return jobs, nil
}

// NextWake returns the earliest run_at after now and the earliest TTL
// expiry among QUEUED jobs. The run_at is looked for among the jobs not
// due and the due ones (stored due within dueHorizon of their run_at, or
// promoted by a host whose clock runs ahead), one range of jobs_run_at
// each.
func (s *Store) NextWake(ctx context.Context, now time.Time) (engine.Wake, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return engine.Wake{}, fmt.Errorf("next wake: %w", err)
	}
	var runAt, expiry *int64
	err := s.read(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT
			least((SELECT min(run_at) FROM jobs WHERE state = 'QUEUED' AND NOT due AND run_at > $1),
				(SELECT min(run_at) FROM jobs WHERE state = 'QUEUED' AND due AND run_at > $1)),
			(SELECT min(expires_at) FROM jobs WHERE state = 'QUEUED' AND expires_at IS NOT NULL)`,
			now.UnixNano()).Scan(&runAt, &expiry)
	})
	if err != nil {
		return engine.Wake{}, fmt.Errorf("next wake: %w", err)
	}
	var w engine.Wake
	if runAt != nil {
		w.NextRunAt = fromNanos(*runAt)
	}
	if expiry != nil {
		w.NextExpiry = fromNanos(*expiry)
	}
	return w, nil
}

// Stats adds up the per-queue state counters and the deltas not folded
// into them yet; DBBytes is the size of the schema's tables and indexes.
func (s *Store) Stats(ctx context.Context) (engine.StoreStats, error) {
	stats := engine.StoreStats{Queues: make(map[string]map[engine.State]int64)}
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT queue, state, sum(n)::bigint FROM (
				SELECT queue, state, n FROM counts UNION ALL SELECT queue, state, n FROM count_deltas) AS c
			GROUP BY queue, state HAVING sum(n) > 0`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var q, st string
			var n int64
			if err := rows.Scan(&q, &st, &n); err != nil {
				return err
			}
			m := stats.Queues[q]
			if m == nil {
				m = make(map[engine.State]int64)
				stats.Queues[q] = m
			}
			m[engine.State(st)] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
			FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind = 'r'`, s.schema).Scan(&stats.DBBytes)
	})
	if err != nil {
		return engine.StoreStats{}, fmt.Errorf("read stats: %w", err)
	}
	return stats, nil
}

// maxRune sorts after every other character: a prefix followed by it is
// an upper bound of every string that starts with the prefix.
const maxRune = "\U0010FFFF"

// MatchIDs returns up to limit ids that start with prefix, in id order.
// Ids compare bytewise (COLLATE "C"), as in the SQLite store, whatever the
// database's collation.
func (s *Store) MatchIDs(ctx context.Context, prefix string, limit int) ([]string, error) {
	var ids []string
	err := s.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM jobs WHERE id >= $1 AND id < $2
			ORDER BY id LIMIT $3`, prefix, prefix+maxRune, limit)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("match ids %q: %w", prefix, err)
	}
	return ids, nil
}

// AdjacentIDs returns each id's neighbours in id order, in one snapshot.
func (s *Store) AdjacentIDs(ctx context.Context, ids []string) ([][2]string, error) {
	out := make([][2]string, len(ids))
	err := s.read(ctx, func(tx pgx.Tx) error {
		for i, id := range ids {
			var before, after *string
			err := tx.QueryRow(ctx, `SELECT
				(SELECT max(id) FROM jobs WHERE id < $1),
				(SELECT min(id) FROM jobs WHERE id > $1)`, id).Scan(&before, &after)
			if err != nil {
				return err
			}
			out[i] = [2]string{deref(before), deref(after)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read neighbouring ids: %w", err)
	}
	return out, nil
}

// Logs returns up to limit lines of a job's log with Seq > afterSeq, oldest
// first; limit <= 0 means all of them. An unknown id is engine.ErrNotFound.
func (s *Store) Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]engine.LogLine, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	lines := []engine.LogLine{}
	err := s.read(ctx, func(tx pgx.Tx) error {
		seq, err := jobSeq(ctx, tx, id)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT seq, ts, attempt, stream, text FROM job_logs
			WHERE job_seq = $1 AND seq > $2 ORDER BY seq LIMIT $3`, seq, afterSeq, lim)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l engine.LogLine
			var ts *int64
			var attempt int32
			if err := rows.Scan(&l.Seq, &ts, &attempt, &l.Stream, &l.Text); err != nil {
				return err
			}
			if ts != nil {
				l.Time = fromNanos(*ts)
			}
			l.Attempt = int(attempt)
			lines = append(lines, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", id, err)
	}
	return lines, nil
}

// LogSeqFromEnd returns the Seq of the n-th newest line (n >= 1) of a job's
// log among those with afterSeq < Seq < before (before <= 0: no bound),
// and false when the range holds fewer than n lines.
func (s *Store) LogSeqFromEnd(ctx context.Context, id string, afterSeq, before int64, n int) (int64, bool, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	var seq int64
	found := false
	err := s.read(ctx, func(tx pgx.Tx) error {
		jseq, err := jobSeq(ctx, tx, id)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT seq FROM job_logs WHERE job_seq = $1 AND seq > $2 AND seq < $3
			ORDER BY seq DESC LIMIT 1 OFFSET $4`, jseq, afterSeq, before, max(n, 1)-1).Scan(&seq)
		switch {
		case err == pgx.ErrNoRows:
			return nil
		case err != nil:
			return err
		}
		found = true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("read log of job %s: %w", id, err)
	}
	return seq, found, nil
}

// jobSeq returns the seq of the job with the given id, or
// engine.ErrNotFound.
func jobSeq(ctx context.Context, tx pgx.Tx, id string) (int64, error) {
	var seq int64
	err := tx.QueryRow(ctx, `SELECT seq FROM jobs WHERE id = $1`, id).Scan(&seq)
	if err == pgx.ErrNoRows {
		return 0, engine.ErrNotFound
	}
	return seq, err
}
