package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// completeDone ends the DONE completions at the indexes idx of done, each
// of a job named once in done, with one statement: the common case of a
// worker pool's cycle, one round trip for all of them instead of several
// each. A DONE job cancels no dependents and is never superseded, so
// nothing else is to decide. It returns the indexes it did not complete (a
// stale or unknown attempt), which the caller then completes one by one,
// so each gets the outcome and error Complete gives it.
func (s *Store) completeDone(ctx context.Context, tx pgx.Tx, done []engine.Completion, idx []int, res *engine.CycleResult) ([]int, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	// The jobs' rows are locked in id order, as a lone Complete locks its
	// one row, and only jobs still RUNNING the attempt named are ended: the
	// rest are left to the one-by-one path to refuse. No savepoint: the
	// statement fails only as the transaction does (a lost connection, a
	// deadlock, which runs the whole transaction again), and a savepoint
	// costs two round trips per cycle.
	rows, jobs, err := s.queryJobs(ctx, tx, false, false, qCompleteDone, doneColumns(done, idx)...)
	if err != nil {
		return nil, fmt.Errorf("complete jobs: %w", err)
	}
	if len(rows) > 0 {
		if err := loadAttemptsWith(ctx, tx, qAttemptsInCycle, rows); err != nil {
			return nil, err
		}
	}
	return doneResults(done, idx, jobs, res), nil
}

// qCompleteDone is completeDone's statement; its arguments are
// doneColumns.
var qCompleteDone = `WITH c AS (
			SELECT * FROM unnest($1::text[], $2::integer[], $3::integer[], $4::text[], $5::text[], $6::integer[], $7::bigint[])
				AS c (id, attempt, refund, outcome, reason, exit_code, finished_at)),
		j AS (
			SELECT jobs.seq, jobs.runs, c.* FROM jobs JOIN c ON c.id = jobs.id
			WHERE jobs.state = 'RUNNING' AND jobs.attempt = c.attempt
			ORDER BY jobs.id FOR UPDATE OF jobs),
		a AS (
			UPDATE attempts SET finished_at = j.finished_at, outcome = j.outcome,
				reason = nullif(j.reason, ''), exit_code = j.exit_code
			FROM j WHERE attempts.job_seq = j.seq AND attempts.run = j.runs)
		UPDATE jobs SET state = 'DONE', attempt = jobs.attempt - least(j.refund, jobs.attempt),
			error = NULL, exit_code = j.exit_code, finished_at = j.finished_at
		FROM j WHERE jobs.seq = j.seq
		RETURNING ` + qualified("jobs", jobCols)

// doneResults records in res the completions at idx that qCompleteDone
// ended (jobs), and returns the indexes of the others.
func doneResults(done []engine.Completion, idx []int, jobs []*engine.Job, res *engine.CycleResult) []int {
	byID := make(map[string]*engine.Job, len(jobs))
	for _, j := range jobs {
		byID[j.ID] = j
	}
	var rest []int
	for _, i := range idx {
		if j, ok := byID[done[i].ID]; ok {
			res.Completed[i] = engine.CompleteResult{Job: j}
			continue
		}
		rest = append(rest, i)
	}
	return rest
}

// doneColumns are completeDone's completions as its statement's column
// arrays: id, attempt, refund, outcome, reason, exit code, finished at.
func doneColumns(done []engine.Completion, idx []int) []any {
	ids := make([]string, len(idx))
	attempts, refunds := make([]int32, len(idx)), make([]int32, len(idx))
	outcomes, reasons := make([]string, len(idx)), make([]string, len(idx))
	exits := make([]*int32, len(idx))
	finished := make([]int64, len(idx))
	for k, i := range idx {
		c := &done[i]
		ids[k], attempts[k] = c.ID, int32(c.Attempt)
		if c.Refund {
			refunds[k] = 1
		}
		outcomes[k], reasons[k] = string(c.Outcome), c.Reason
		if c.ExitCode != nil {
			v := int32(*c.ExitCode)
			exits[k] = &v
		}
		finished[k] = c.FinishedAt.UnixNano()
	}
	return []any{ids, attempts, refunds, outcomes, reasons, exits, finished}
}

// qualified prefixes every column of a jobCols-style list with table, for
// statements that join jobs with tables sharing its column names.
func qualified(table, cols string) string {
	out := make([]byte, 0, len(cols)*2)
	start := true
	for i := 0; i < len(cols); i++ {
		ch := cols[i]
		if start && ch != ' ' && ch != '\t' && ch != '\n' {
			out = append(out, table...)
			out = append(out, '.')
			start = false
		}
		out = append(out, ch)
		if ch == ',' {
			start = true
		}
	}
	return string(out)
}
