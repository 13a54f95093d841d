package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
		var tail string
		var err error
		s, tail, err = c.db.PrepareFlags(sqlText[id], sqlite3.PREPARE_PERSISTENT)
		if err != nil {
			return nil, fmt.Errorf("prepare %.40q: %w", sqlText[id], err)
		}
		if s == nil || tail != "" {
			if s != nil {
				_ = s.Close()
			}
			return nil, fmt.Errorf("prepare %.40q: not exactly one statement", sqlText[id])
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

// exec runs a statement without parameters or result rows.
func (c *conn) exec(id stmtID) error {
	s, err := c.stmt(id)
	if err != nil {
		return err
	}
	return s.Exec()
}

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

// binder binds parameters 1, 2, 3... in order and keeps the first error, so
// statements with many parameters read as one list.
type binder struct {
	s   *sqlite3.Stmt
	i   int
	err error
}

func (b *binder) next() int {
	b.i++
	return b.i
}

func (b *binder) int64(v int64) {
	if i := b.next(); b.err == nil {
		b.err = b.s.BindInt64(i, v)
	}
}

func (b *binder) text(v string) {
	if i := b.next(); b.err == nil {
		b.err = b.s.BindText(i, v)
	}
}

// optText binds "" as NULL: optional text columns hold NULL, never "".
func (b *binder) optText(v string) {
	if v == "" {
		b.null()
		return
	}
	b.text(v)
}

// optBytes binds empty as NULL.
func (b *binder) optBytes(v []byte) {
	if len(v) == 0 {
		b.null()
		return
	}
	if i := b.next(); b.err == nil {
		b.err = b.s.BindBlob(i, v)
	}
}

// optJSONText binds JSON that is known to be UTF-8 text, empty as NULL.
func (b *binder) optJSONText(v []byte) {
	if len(v) == 0 {
		b.null()
		return
	}
	if i := b.next(); b.err == nil {
		b.err = b.s.BindRawText(i, v)
	}
}

func (b *binder) null() {
	if i := b.next(); b.err == nil {
		b.err = b.s.BindNull(i)
	}
}

// time binds the zero time as NULL, anything else as unix nanoseconds.
func (b *binder) time(t time.Time) {
	if t.IsZero() {
		b.null()
		return
	}
	b.int64(t.UnixNano())
}

func (b *binder) optInt(v *int) {
	if v == nil {
		b.null()
		return
	}
	b.int64(int64(*v))
}

// optInt64 binds 0 as NULL.
func (b *binder) optInt64(v int64) {
	if v == 0 {
		b.null()
		return
	}
	b.int64(v)
}

func (b *binder) bool(v bool) {
	if v {
		b.int64(1)
	} else {
		b.int64(0)
	}
}

func bind(s *sqlite3.Stmt) binder { return binder{s: s} }

// check returns the first bind error, or an error if fewer or more
// parameters were bound than the statement has.
func (b *binder) check() error {
	if b.err == nil {
		if n := b.s.BindCount(); b.i != n {
			b.err = fmt.Errorf("bound %d parameters of %d in %.40q", b.i, n, b.s.SQL())
		}
	}
	return b.err
}

// Representable times: unix nanoseconds in an int64.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checkTime rejects times an int64 of nanoseconds cannot hold (before 1678 or
// after 2262); the zero time is allowed where the field is optional.
func checkTime(field string, t time.Time, required bool) error {
	if t.IsZero() {
		if required {
			return fmt.Errorf("%w: %s is not set", engine.ErrInvalid, field)
		}
		return nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%w: %s %s is out of range (years 1678 to 2262)", engine.ErrInvalid, field, t.Format(time.RFC3339))
	}
	return nil
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
	s, err := c.stmt(qAttempts)
	if err != nil {
		return err
	}
	b := bind(s)
	b.int64(r.seq)
	if b.check() != nil {
		return b.err
	}
	r.job.Attempts = make([]engine.Attempt, 0, r.runs)
	for s.Step() {
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
	}
	if err := s.Reset(); err != nil {
		return fmt.Errorf("load attempts of job %s: %w", r.job.ID, err)
	}
	return nil
}

// queryRows runs a bound statement that selects jobCols and collects the
// rows; the statement is reset before it returns, so follow-up statements
// (attempts) never interleave with it.
func (c *conn) queryRows(s *sqlite3.Stmt) ([]jobRow, error) {
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
func (c *conn) queryJobs(s *sqlite3.Stmt, withAttempts bool) ([]*engine.Job, error) {
	rows, err := c.queryRows(s)
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

// isUnique reports a UNIQUE or PRIMARY KEY constraint failure.
func isUnique(err error) bool {
	return errors.Is(err, sqlite3.CONSTRAINT_UNIQUE) || errors.Is(err, sqlite3.CONSTRAINT_PRIMARYKEY)
}
