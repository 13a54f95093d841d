package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// conn is one SQLite connection with its prepared statements. It is used by
// one goroutine at a time: the writer, or whoever holds it from the reader
// pool.
type conn struct {
	db    *sqlite3.Conn
	stmts [numStmts]*sqlite3.Stmt
	// names interns queue and type names, which repeat on nearly every row.
	names map[string]string
	// envs caches environments by id (see envMeta); nil until first use.
	envs map[int64]*engine.BaseEnv
	// binder is the one every statement is bound with (see bindAll); a
	// field, not a local, so that handing it to args does not allocate.
	binder binder
	// insertIx holds qInsertJob's parameter indexes once resolved (see
	// insertJob).
	insertIx insertIndex
	// paused is the paused queues as the writer's transaction sees them,
	// if pausedRead (see pausedNow).
	paused     map[string]bool
	pausedRead bool
}

func newConn(db *sqlite3.Conn) *conn {
	return &conn{db: db, names: make(map[string]string)}
}

// stmt returns the cached statement id, preparing it on first use. A
// statement left mid-iteration by an error path is reset here, so callers
// always get a fresh one.
func (c *conn) stmt(id stmtID) (*sqlite3.Stmt, error) {
	s := c.stmts[id]
	if s == nil {
		var err error
		if s, err = c.prepare(sqlText[id], sqlite3.PREPARE_PERSISTENT); err != nil {
			return nil, err
		}
		c.stmts[id] = s
		return s, nil
	}
	if s.Busy() {
		_ = s.Reset()
	}
	// No ClearBindings: it expires a statement whose plan used a bound value,
	// forcing a re-prepare (it more than doubled the cost of Get). Stale
	// values cannot leak instead because binder.check insists that every
	// parameter is bound on every use.
	return s, nil
}

// prepare compiles sql, which must be exactly one statement.
func (c *conn) prepare(sql string, flags sqlite3.PrepareFlag) (*sqlite3.Stmt, error) {
	s, tail, err := c.db.PrepareFlags(sql, flags)
	if err != nil {
		return nil, fmt.Errorf("prepare %.40q: %w", sql, err)
	}
	if s == nil || tail != "" {
		if s != nil {
			_ = s.Close()
		}
		return nil, fmt.Errorf("prepare %.40q: not exactly one statement", sql)
	}
	return s, nil
}

// exec runs a statement without parameters or result rows.
func (c *conn) exec(id stmtID) error { return c.run(id, nil) }

// resetAll stops every statement of the connection; ROLLBACK TO refuses to
// run while a write statement is still in progress.
func (c *conn) resetAll() {
	for _, s := range c.stmts {
		if s != nil && s.Busy() {
			_ = s.Reset()
		}
	}
}

func (c *conn) pragmaInt(name string) (int64, error) {
	s, _, err := c.db.Prepare("PRAGMA " + name)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var v int64
	if s.Step() {
		v = s.ColumnInt64(0)
	}
	return v, s.Err()
}

func (c *conn) pragmaText(sql string) (string, error) {
	s, _, err := c.db.Prepare(sql)
	if err != nil {
		return "", err
	}
	defer s.Close()
	var v string
	if s.Step() {
		v = s.ColumnText(0)
	}
	return v, s.Err()
}

func (c *conn) close() error {
	for i, s := range c.stmts {
		if s != nil {
			_ = s.Close()
			c.stmts[i] = nil
		}
	}
	return c.db.Close()
}

// name returns the column as a string, sharing the allocation with earlier
// rows that had the same value.
func (c *conn) name(s *sqlite3.Stmt, col int) string {
	b := s.ColumnRawText(col)
	if v, ok := c.names[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(c.names) < 4096 {
		c.names[v] = v
	}
	return v
}

func columnTime(s *sqlite3.Stmt, col int) time.Time {
	if s.ColumnType(col) == sqlite3.NULL {
		return time.Time{}
	}
	return time.Unix(0, s.ColumnInt64(col)).UTC()
}

func columnTimePtr(s *sqlite3.Stmt, col int) *time.Time {
	if s.ColumnType(col) == sqlite3.NULL {
		return nil
	}
	t := time.Unix(0, s.ColumnInt64(col)).UTC()
	return &t
}

func columnIntPtr(s *sqlite3.Stmt, col int) *int {
	if s.ColumnType(col) == sqlite3.NULL {
		return nil
	}
	v := s.ColumnInt(col)
	return &v
}

// columnState maps the stored state to the engine's constant without
// allocating a string per row.
func columnState(s *sqlite3.Stmt, col int) engine.State {
	b := s.ColumnRawText(col)
	for _, st := range engine.States {
		if string(st) == string(b) {
			return st
		}
	}
	return engine.State(b)
}

var outcomes = []engine.Outcome{
	engine.OutcomeRunning, engine.OutcomeSucceeded, engine.OutcomeFailed,
	engine.OutcomeCancelled, engine.OutcomeSuperseded, engine.OutcomeInterrupted, engine.OutcomeCrashed,
}

func columnOutcome(s *sqlite3.Stmt, col int) engine.Outcome {
	b := s.ColumnRawText(col)
	for _, o := range outcomes {
		if string(o) == string(b) {
			return o
		}
	}
	return engine.Outcome(b)
}

var streams = []string{"stdout", "stderr", "stq"}

func columnStream(s *sqlite3.Stmt, col int) string {
	b := s.ColumnRawText(col)
	for _, v := range streams {
		if v == string(b) {
			return v
		}
	}
	return string(b)
}

// jobCols is the column list every job-returning statement selects, in the
// order scanJob reads it.
const jobCols = `seq, id, queue, type, subject, generation, priority, state, attempt, max_attempts,
	payload, command, cwd, env, run_at, deadline, ttl, backoff, created_at, started_at,
	finished_at, exit_code, error, owner, log_truncated, runs, last_log_seq,
	wait_idle, require_charging, debounce, replace_running, after_ids, env_id`

// jobRow is a scanned job with the row's internal keys.
type jobRow struct {
	job   *engine.Job
	seq   int64
	runs  int64
	envID int64 // 0: the daemon's environment
}

// scanJob reads the jobCols of the current row.
func (c *conn) scanJob(s *sqlite3.Stmt) (jobRow, error) {
	j := &engine.Job{
		ID:           s.ColumnText(1),
		Queue:        c.name(s, 2),
		Type:         c.name(s, 3),
		Subject:      s.ColumnText(4),
		Generation:   s.ColumnInt64(5),
		Priority:     s.ColumnInt(6),
		State:        columnState(s, 7),
		Attempt:      s.ColumnInt(8),
		MaxAttempts:  s.ColumnInt(9),
		Payload:      s.ColumnBlob(10, nil),
		Cwd:          s.ColumnText(12),
		RunAt:        columnTime(s, 14),
		Deadline:     engine.Duration(s.ColumnInt64(15)),
		TTL:          engine.Duration(s.ColumnInt64(16)),
		Backoff:      engine.Duration(s.ColumnInt64(17)),
		CreatedAt:    columnTime(s, 18),
		StartedAt:    columnTimePtr(s, 19),
		FinishedAt:   columnTimePtr(s, 20),
		ExitCode:     columnIntPtr(s, 21),
		Error:        s.ColumnText(22),
		Owner:        s.ColumnText(23),
		LogTruncated: s.ColumnBool(24),
		LogSeq:       s.ColumnInt64(26),

		WaitIdle:        s.ColumnBool(27),
		RequireCharging: s.ColumnBool(28),
		Debounce:        engine.Duration(s.ColumnInt64(29)),
		Replace:         s.ColumnBool(30),
	}
	r := jobRow{job: j, seq: s.ColumnInt64(0), runs: s.ColumnInt64(25)}
	if b := s.ColumnRawText(11); len(b) > 0 {
		if err := json.Unmarshal(b, &j.Command); err != nil {
			return r, fmt.Errorf("decode command of job %s: %w", j.ID, err)
		}
	}
	if b := s.ColumnRawText(13); len(b) > 0 {
		if err := json.Unmarshal(b, &j.Env); err != nil {
			return r, fmt.Errorf("decode env of job %s: %w", j.ID, err)
		}
	}
	if b := s.ColumnRawText(31); len(b) > 0 {
		if err := json.Unmarshal(b, &j.After); err != nil {
			return r, fmt.Errorf("decode after of job %s: %w", j.ID, err)
		}
	}
	if s.ColumnType(32) != sqlite3.NULL {
		r.envID = s.ColumnInt64(32)
		env, err := c.envMeta(r.envID)
		if err != nil {
			return r, fmt.Errorf("read environment of job %s: %w", j.ID, err)
		}
		j.BaseEnv = env
	}
	return r, s.Err()
}

// loadAttempts fills the job's attempt history, oldest first; never nil.
func (c *conn) loadAttempts(r jobRow) error {
	r.job.Attempts = make([]engine.Attempt, 0, r.runs)
	err := c.queryEach(qAttempts, func(b *binder) { b.int64(r.seq) }, func(s *sqlite3.Stmt) bool {
		r.job.Attempts = append(r.job.Attempts, engine.Attempt{
			N:          s.ColumnInt(0),
			StartedAt:  columnTime(s, 1),
			FinishedAt: columnTimePtr(s, 2),
			Outcome:    columnOutcome(s, 3),
			Reason:     s.ColumnText(4),
			ExitCode:   columnIntPtr(s, 5),
			PID:        s.ColumnInt(6),
			PIDStart:   s.ColumnInt64(7),
		})
		return true
	})
	if err != nil {
		return fmt.Errorf("load attempts of job %s: %w", r.job.ID, err)
	}
	return nil
}

// queryRows runs a statement that selects jobCols and collects the rows;
// the statement is reset before it returns, so follow-up statements
// (attempts) never interleave with it.
func (c *conn) queryRows(id stmtID, args func(*binder)) ([]jobRow, error) {
	s, err := c.bound(id, args)
	if err != nil {
		return nil, err
	}
	var rows []jobRow
	for s.Step() {
		r, err := c.scanJob(s)
		if err != nil {
			_ = s.Reset()
			return nil, err
		}
		rows = append(rows, r)
	}
	if err := s.Reset(); err != nil {
		return nil, err
	}
	return rows, nil
}

// queryJobs is queryRows returning jobs, with their attempts if asked.
func (c *conn) queryJobs(id stmtID, args func(*binder), withAttempts bool) ([]*engine.Job, error) {
	rows, err := c.queryRows(id, args)
	if err != nil {
		return nil, err
	}
	jobs := make([]*engine.Job, len(rows))
	for i, r := range rows {
		if withAttempts {
			if err := c.loadAttempts(r); err != nil {
				return nil, err
			}
		}
		jobs[i] = r.job
	}
	return jobs, nil
}

// oneJob runs a statement that selects or changes one job (jobCols,
// RETURNING them for a change) and returns it with its attempts;
// engine.ErrNotFound if there is no such row.
func (c *conn) oneJob(id stmtID, args func(*binder)) (jobRow, error) {
	rows, err := c.queryRows(id, args)
	if err != nil {
		return jobRow{}, err
	}
	if len(rows) != 1 {
		return jobRow{}, engine.ErrNotFound
	}
	if err := c.loadAttempts(rows[0]); err != nil {
		return jobRow{}, err
	}
	return rows[0], nil
}

// isUnique reports a UNIQUE or PRIMARY KEY constraint failure.
func isUnique(err error) bool {
	return errors.Is(err, sqlite3.CONSTRAINT_UNIQUE) || errors.Is(err, sqlite3.CONSTRAINT_PRIMARYKEY)
}
