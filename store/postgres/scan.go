package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

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

// scanJobs reads every row of a jobCols query and closes rows.
func scanJobs(rows pgx.Rows) ([]jobRow, error) {
	defer rows.Close()
	var out []jobRow
	for rows.Next() {
		r, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func scanJob(row pgx.Row) (jobRow, error) {
	var (
		r                              jobRow
		subject, cwd, errText, owner   *string
		command, env, after            *string
		runAt, createdAt               int64
		startedAt, finishedAt          *int64
		exitCode                       *int32
		deadline, ttl, backoff, deb    int64
		attempt, maxAttempts, priority int32
		runs                           int32
		envID                          *int64
	)
	j := &engine.Job{}
	var payload []byte
	var state string
	err := row.Scan(&r.seq, &j.ID, &j.Queue, &j.Type, &subject, &j.Generation, &priority, &state,
		&attempt, &maxAttempts, &payload, &command, &cwd, &env, &runAt, &deadline, &ttl, &backoff,
		&createdAt, &startedAt, &finishedAt, &exitCode, &errText, &owner, &j.LogTruncated, &runs,
		&j.LogSeq, &j.WaitIdle, &j.RequireCharging, &deb, &j.Replace, &after, &envID)
	if err != nil {
		return r, fmt.Errorf("read job: %w", err)
	}
	j.Payload, j.State = payload, engine.State(state)
	j.Subject, j.Cwd, j.Error, j.Owner = deref(subject), deref(cwd), deref(errText), deref(owner)
	j.Priority, j.Attempt, j.MaxAttempts, r.runs = int(priority), int(attempt), int(maxAttempts), int64(runs)
	j.RunAt, j.CreatedAt = fromNanos(runAt), fromNanos(createdAt)
	j.StartedAt, j.FinishedAt = timePtr(startedAt), timePtr(finishedAt)
	if exitCode != nil {
		v := int(*exitCode)
		j.ExitCode = &v
	}
	j.Deadline, j.TTL, j.Backoff, j.Debounce = engine.Duration(deadline), engine.Duration(ttl), engine.Duration(backoff), engine.Duration(deb)
	for _, f := range []struct {
		name string
		src  *string
		dst  any
	}{{"command", command, &j.Command}, {"env", env, &j.Env}, {"after", after, &j.After}} {
		if f.src != nil && *f.src != "" {
			if err := json.Unmarshal([]byte(*f.src), f.dst); err != nil {
				return r, fmt.Errorf("decode %s of job %s: %w", f.name, j.ID, err)
			}
		}
	}
	if envID != nil {
		r.envID = *envID
	}
	r.job = j
	return r, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func fromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func timePtr(ns *int64) *time.Time {
	if ns == nil {
		return nil
	}
	t := fromNanos(*ns)
	return &t
}

// nanos is a time as stored: unix nanoseconds, the zero time as NULL.
func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixNano()
	return &v
}

// optText is an optional text column: "" is stored as NULL.
func optText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// finish fills in what a read returns besides the row: each job's
// environment (with its variables when full, for a job about to run) and,
// with attempts, its attempt history. It returns the jobs in row order.
func (s *Store) finish(ctx context.Context, tx querier, rows []jobRow, attempts, full bool) ([]*engine.Job, error) {
	jobs := make([]*engine.Job, len(rows))
	for i, r := range rows {
		jobs[i] = r.job
		if r.envID == 0 {
			continue
		}
		env, err := s.env(ctx, tx, r.envID, full)
		if err != nil {
			return nil, fmt.Errorf("read environment of job %s: %w", r.job.ID, err)
		}
		r.job.BaseEnv = env
	}
	if attempts && len(rows) > 0 {
		if err := loadAttempts(ctx, tx, rows); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

// loadAttempts fills the attempt history of every row, oldest first; never
// nil. One query for all of them.
func loadAttempts(ctx context.Context, tx querier, rows []jobRow) error {
	return loadAttemptsWith(ctx, tx, qAttempts, rows)
}

// loadAttemptsWith is loadAttempts running query: qAttempts, or in a
// claim's or a cycle's transaction qAttemptsInCycle (see qCyclePlans).
func loadAttemptsWith(ctx context.Context, tx querier, query string, rows []jobRow) error {
	bySeq, seqs := histories(rows)
	res, err := tx.Query(ctx, query, seqs)
	if err != nil {
		return fmt.Errorf("load attempts: %w", err)
	}
	return readAttempts(res, bySeq)
}

// qAttempts reads the attempt history of the jobs $1 (seqs) for
// readAttempts.
const qAttempts = `SELECT ` + attemptCols + ` FROM attempts WHERE job_seq = ANY($1) ORDER BY job_seq, run`

// histories readies rows for readAttempts: each job's history empty (not
// nil), and the jobs by seq.
func histories(rows []jobRow) (map[int64]*engine.Job, []int64) {
	bySeq := make(map[int64]*engine.Job, len(rows))
	seqs := make([]int64, len(rows))
	for i, r := range rows {
		r.job.Attempts = make([]engine.Attempt, 0, r.runs)
		bySeq[r.seq] = r.job
		seqs[i] = r.seq
	}
	return bySeq, seqs
}

// attemptCols are the columns of attempts readAttempts reads, in order.
const attemptCols = `job_seq, n, started_at, finished_at, outcome, reason, exit_code, pid, pid_start`

// readAttempts appends each row of an attemptCols query, ordered by
// job_seq then run, to the history of its job in bySeq, skipping jobs
// not in it, and closes res.
func readAttempts(res pgx.Rows, bySeq map[int64]*engine.Job) error {
	defer res.Close()
	for res.Next() {
		var (
			seq, started    int64
			n               int32
			finished, pidSt *int64
			outcome         string
			reason          *string
			exit, pid       *int32
		)
		if err := res.Scan(&seq, &n, &started, &finished, &outcome, &reason, &exit, &pid, &pidSt); err != nil {
			return fmt.Errorf("load attempts: %w", err)
		}
		a := engine.Attempt{N: int(n), StartedAt: fromNanos(started), FinishedAt: timePtr(finished),
			Outcome: engine.Outcome(outcome), Reason: deref(reason)}
		if exit != nil {
			v := int(*exit)
			a.ExitCode = &v
		}
		if pid != nil {
			a.PID = int(*pid)
		}
		if pidSt != nil {
			a.PIDStart = *pidSt
		}
		if j := bySeq[seq]; j != nil {
			j.Attempts = append(j.Attempts, a)
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("load attempts: %w", err)
	}
	return nil
}

// queryJobs runs a jobCols query in tx and finishes its jobs.
func (s *Store) queryJobs(ctx context.Context, tx querier, attempts, full bool, sql string, args ...any) ([]jobRow, []*engine.Job, error) {
	res, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, err
	}
	rows, err := scanJobs(res)
	if err != nil {
		return nil, nil, err
	}
	jobs, err := s.finish(ctx, tx, rows, attempts, full)
	return rows, jobs, err
}
