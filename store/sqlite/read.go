package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// Get returns a job with its attempt history, or an error wrapping
// engine.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*engine.Job, error) {
	var job *engine.Job
	err := s.read(ctx, func(c *conn) error {
		r, err := c.oneJob(qGetJob, func(b *binder) { b.text(id) })
		job = r.job
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return job, nil
}

// List returns a page of jobs matching f, newest first, without attempt
// history (Attempts is nil). A zero Limit means 100. The cursor is the seq
// of the page's last job: pages walk the rowid downwards, so jobs added
// meanwhile (higher seqs) never shift a later page.
func (s *Store) List(ctx context.Context, f engine.ListFilter) (engine.ListPage, error) {
	limit, err := f.PageSize()
	if err != nil {
		return engine.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	states := statesJSON(f.States)
	var before int64
	if f.Cursor != "" {
		if before, err = strconv.ParseInt(f.Cursor, 10, 64); err != nil || before <= 0 {
			return engine.ListPage{}, fmt.Errorf("list jobs: %w: cursor %q was not made by this store", engine.ErrInvalid, f.Cursor)
		}
	}
	id := qList
	if f.Queue != "" && f.Type != "" && f.Subject != "" {
		id = qListKey
	}
	var rows []jobRow
	err = s.read(ctx, func(c *conn) (err error) {
		rows, err = c.queryRows(id, func(b *binder) {
			b.optText(f.Queue)
			b.optText(f.Type)
			b.optText(f.Subject)
			b.optText(states)
			// One more than asked says whether another page follows.
			b.int64(int64(limit) + 1)
			b.optInt64(before)
		})
		return err
	})
	if err != nil {
		return engine.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	var page engine.ListPage
	if len(rows) > limit {
		rows = rows[:limit]
		page.Next = strconv.FormatInt(rows[limit-1].seq, 10)
	}
	page.Jobs = make([]*engine.Job, len(rows))
	for i, r := range rows {
		page.Jobs[i] = r.job
	}
	return page, nil
}

// statesJSON encodes a checked state filter (see ListFilter.PageSize) as
// the JSON array json_each reads; empty for no filter.
func statesJSON(states []engine.State) string {
	if len(states) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteByte('[')
	for i, st := range states {
		if i > 0 {
			sb.WriteByte(',')
		}
		// Valid states are plain upper-case words: no JSON escaping needed.
		sb.WriteString(`"` + string(st) + `"`)
	}
	sb.WriteByte(']')
	return sb.String()
}

// Running returns every RUNNING job with its attempt history, oldest first.
func (s *Store) Running(ctx context.Context) ([]*engine.Job, error) {
	var jobs []*engine.Job
	err := s.read(ctx, func(c *conn) (err error) {
		jobs, err = c.queryJobs(qRunning, nil, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list running jobs: %w", err)
	}
	return jobs, nil
}

// NextWake returns the earliest run_at after now and the earliest TTL expiry
// among QUEUED jobs. The expiry may be at or before now when ExpireDue has
// not run yet; that tells the caller to wake at once.
func (s *Store) NextWake(ctx context.Context, now time.Time) (engine.Wake, error) {
	if err := engine.CheckTime("now", now, true); err != nil {
		return engine.Wake{}, fmt.Errorf("next wake: %w", err)
	}
	var w engine.Wake
	err := s.read(ctx, func(c *conn) error {
		_, err := c.queryOne(qNextWake, func(b *binder) { b.time(now) }, func(st *sqlite3.Stmt) {
			w.NextRunAt = columnTime(st, 0)
			w.NextExpiry = columnTime(st, 1)
		})
		return err
	})
	if err != nil {
		return engine.Wake{}, fmt.Errorf("next wake: %w", err)
	}
	return w, nil
}

// Stats reads the per-queue state counters, which every state change keeps
// current, and the size of the database and its WAL.
func (s *Store) Stats(ctx context.Context) (engine.StoreStats, error) {
	stats := engine.StoreStats{Queues: make(map[string]map[engine.State]int64)}
	err := s.read(ctx, func(c *conn) error {
		err := c.queryEach(qStats, nil, func(st *sqlite3.Stmt) bool {
			q := c.name(st, 0)
			m := stats.Queues[q]
			if m == nil {
				m = make(map[engine.State]int64)
				stats.Queues[q] = m
			}
			m[columnState(st, 1)] = st.ColumnInt64(2)
			return true
		})
		if err != nil {
			return err
		}
		_, err = c.queryOne(qDBSize, nil, func(st *sqlite3.Stmt) { stats.DBBytes = st.ColumnInt64(0) })
		return err
	})
	if err != nil {
		return engine.StoreStats{}, fmt.Errorf("read stats: %w", err)
	}
	fi, err := os.Stat(s.path + "-wal")
	switch {
	case err == nil:
		stats.DBBytes += fi.Size()
	case !errors.Is(err, fs.ErrNotExist):
		return engine.StoreStats{}, fmt.Errorf("read stats: %w", err)
	}
	return stats, nil
}

// Logs returns up to limit lines of a job's log with Seq > afterSeq, oldest
// first; limit <= 0 means all of them. An unknown id is engine.ErrNotFound.
func (s *Store) Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]engine.LogLine, error) {
	lim := int64(limit)
	if lim <= 0 {
		lim = -1 // SQLite: no limit
	}
	var lines []engine.LogLine
	err := s.read(ctx, func(c *conn) error {
		seq, err := c.jobSeq(id)
		if err != nil {
			return err
		}
		lines = []engine.LogLine{}
		return c.queryEach(qLogs, func(b *binder) {
			b.int64(seq)
			b.int64(afterSeq)
			b.int64(lim)
		}, func(st *sqlite3.Stmt) bool {
			lines = append(lines, engine.LogLine{
				Seq:     st.ColumnInt64(0),
				Time:    columnTime(st, 1),
				Attempt: st.ColumnInt(2),
				Stream:  columnStream(st, 3),
				Text:    st.ColumnText(4),
			})
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", id, err)
	}
	return lines, nil
}

// LogSeqFromEnd returns the Seq of the n-th newest line (n >= 1) of a job's
// log among those with afterSeq < Seq < before (before <= 0: no upper
// bound), and false when the range holds fewer than n lines. It reads n
// entries of the log's index backwards, not the whole log.
func (s *Store) LogSeqFromEnd(ctx context.Context, id string, afterSeq, before int64, n int) (int64, bool, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	var seq int64
	found := false
	err := s.read(ctx, func(c *conn) error {
		jobSeq, err := c.jobSeq(id)
		if err != nil {
			return err
		}
		found, err = c.queryOne(qLogSeqFromEnd, func(b *binder) {
			b.int64(jobSeq)
			b.int64(afterSeq)
			b.int64(before)
			b.int64(int64(max(n, 1) - 1))
		}, func(st *sqlite3.Stmt) { seq = st.ColumnInt64(0) })
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("read log of job %s: %w", id, err)
	}
	return seq, found, nil
}

// maxRune sorts after every other character: a prefix followed by it is an
// upper bound of every string that starts with the prefix.
const maxRune = "\U0010FFFF"

// MatchIDs returns up to limit ids that start with prefix, in id order.
func (s *Store) MatchIDs(ctx context.Context, prefix string, limit int) ([]string, error) {
	var ids []string
	err := s.read(ctx, func(c *conn) error {
		return c.queryEach(qMatchIDs, func(b *binder) {
			b.text(prefix)
			b.text(prefix + maxRune)
			b.int64(int64(limit))
		}, func(st *sqlite3.Stmt) bool {
			ids = append(ids, st.ColumnText(0))
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("match ids %q: %w", prefix, err)
	}
	return ids, nil
}

// AdjacentIDs returns each id's neighbours in id order, in one snapshot.
func (s *Store) AdjacentIDs(ctx context.Context, ids []string) ([][2]string, error) {
	out := make([][2]string, len(ids))
	err := s.read(ctx, func(c *conn) error {
		for i, id := range ids {
			for k, q := range []stmtID{qIDBefore, qIDAfter} {
				_, err := c.queryOne(q, func(b *binder) { b.text(id) }, func(st *sqlite3.Stmt) { out[i][k] = st.ColumnText(0) })
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read neighbouring ids: %w", err)
	}
	return out, nil
}

// jobSeq returns the seq of the job with the given id, or
// engine.ErrNotFound.
func (c *conn) jobSeq(id string) (int64, error) {
	var seq int64
	found, err := c.queryOne(qJobSeq, func(b *binder) { b.text(id) }, func(st *sqlite3.Stmt) { seq = st.ColumnInt64(0) })
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, engine.ErrNotFound
	}
	return seq, nil
}
