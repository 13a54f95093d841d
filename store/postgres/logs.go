package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// AppendLog adds lines to a job's log and drops the oldest lines while the
// log holds more than maxBytes bytes, exactly as the SQLite store does (see
// its appendLog for the rules). The job's row is locked for the append, so
// appends of one job, from any daemon, take turns.
func (s *Store) AppendLog(ctx context.Context, id string, lines []engine.LogLine, maxBytes int64) error {
	if len(lines) == 0 {
		return nil
	}
	if err := engine.CheckLogLines(lines); err != nil {
		return fmt.Errorf("append log of job %s: %w", id, err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		return appendLog(ctx, tx, id, slices.Clone(lines), maxBytes)
	})
	if err != nil {
		return fmt.Errorf("append log of job %s: %w", id, err)
	}
	return nil
}

// logState is a job's log bookkeeping: the job's seq, the bytes its stored
// output lines count (text plus LogLineOverhead each, the note left out),
// the seq of its newest line, and how many lines it dropped in all.
type logState struct {
	seq, total, last, dropped int64
}

func appendLog(ctx context.Context, tx pgx.Tx, id string, lines []engine.LogLine, maxBytes int64) error {
	var ls logState
	err := tx.QueryRow(ctx, `SELECT seq, log_bytes, last_log_seq, log_dropped FROM jobs WHERE id = $1 FOR UPDATE`, id).
		Scan(&ls.seq, &ls.total, &ls.last, &ls.dropped)
	if err == pgx.ErrNoRows {
		return engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read log state: %w", err)
	}
	hadNote := ls.dropped > 0
	fresh, gapCut := engine.FreshLogLines(lines, ls.last)
	if len(fresh) == 0 {
		return nil
	}
	if gapCut > 0 {
		ls.dropped += gapCut - ls.last
	}
	added, err := insertLogLines(ctx, tx, ls.seq, fresh)
	if err != nil {
		return err
	}
	ls.total += added
	ls.last = fresh[len(fresh)-1].Seq
	if gapCut > 0 || ls.over(maxBytes) {
		if err := trimLog(ctx, tx, &ls, hadNote, gapCut, maxBytes, fresh[len(fresh)-1]); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, `UPDATE jobs SET log_bytes = $1, log_truncated = log_truncated OR $2,
		last_log_seq = greatest(last_log_seq, $3), log_dropped = $5 WHERE seq = $4`,
		ls.total, ls.dropped > 0, ls.last, ls.seq, ls.dropped)
	if err != nil {
		return fmt.Errorf("update log state: %w", err)
	}
	return nil
}

// over reports that the output lines and the note a log that dropped lines
// carries do not fit in maxBytes (0: no bound).
func (ls *logState) over(maxBytes int64) bool {
	return engine.LogOver(ls.total, ls.dropped, maxBytes)
}

// insertLogLines stores lines, sorted by seq and all newer than the log's
// newest, in one statement, and returns the bytes they count.
func insertLogLines(ctx context.Context, tx pgx.Tx, jobSeq int64, lines []engine.LogLine) (int64, error) {
	seqs := make([]int64, len(lines))
	ts := make([]*int64, len(lines))
	attempts := make([]int32, len(lines))
	streams := make([]string, len(lines))
	texts := make([]string, len(lines))
	var added int64
	for i, l := range lines {
		seqs[i], ts[i], attempts[i], streams[i], texts[i] = l.Seq, nanos(l.Time), int32(l.Attempt), l.Stream, l.Text
		added += int64(len(l.Text)) + engine.LogLineOverhead
	}
	// ON CONFLICT DO NOTHING makes a repeated append harmless; the lines
	// were all above last_log_seq under the row lock, so none conflicts
	// and added is exact.
	_, err := tx.Exec(ctx, `INSERT INTO job_logs (job_seq, seq, ts, attempt, stream, text)
		SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::integer[], $5::text[], $6::text[])
		ON CONFLICT DO NOTHING`, jobSeq, seqs, ts, attempts, streams, texts)
	if err != nil {
		return 0, fmt.Errorf("insert log lines: %w", err)
	}
	return added, nil
}

// trimLog drops the oldest lines, everything up to gapCut and then as many
// as the bound needs, in one range delete, and writes the one note in
// place of the newest dropped line.
func trimLog(ctx context.Context, tx pgx.Tx, ls *logState, hadNote bool, gapCut, maxBytes int64, newest engine.LogLine) error {
	rows, err := tx.Query(ctx, `SELECT seq, octet_length(text) + $2, ts, attempt FROM job_logs
		WHERE job_seq = $1 ORDER BY seq`, ls.seq, int64(engine.LogLineOverhead))
	if err != nil {
		return fmt.Errorf("measure log: %w", err)
	}
	var cut int64
	noteTime, noteAttempt := nanos(newest.Time), int32(newest.Attempt)
	skipNote := hadNote
	for rows.Next() {
		var seq, size int64
		var ts *int64
		var attempt int32
		if err := rows.Scan(&seq, &size, &ts, &attempt); err != nil {
			rows.Close()
			return fmt.Errorf("measure log: %w", err)
		}
		if skipNote {
			skipNote = false // its bytes are not in total
			continue
		}
		if seq > gapCut && !ls.over(maxBytes) {
			noteTime, noteAttempt = ts, attempt
			break
		}
		cut = seq
		ls.total -= size
		ls.dropped++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("measure log: %w", err)
	}
	if cut = max(cut, gapCut); cut == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM job_logs WHERE job_seq = $1 AND seq <= $2`, ls.seq, cut); err != nil {
		return fmt.Errorf("trim log: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO job_logs (job_seq, seq, ts, attempt, stream, text) VALUES ($1, $2, $3, $4, 'stq', $5)`,
		ls.seq, cut, noteTime, noteAttempt, engine.LogDropNote(ls.dropped, maxBytes))
	if err != nil {
		return fmt.Errorf("note dropped log lines: %w", err)
	}
	return nil
}
