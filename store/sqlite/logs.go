package sqlite

import (
	"context"
	"fmt"
	"slices"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// AppendLog adds lines to a job's log and drops the oldest lines while the
// log holds more than maxBytes bytes; maxBytes <= 0 means no bound. Lines
// at or below the log's last Seq are ignored, so an append retried after a
// timeout neither duplicates output nor brings back dropped lines; a Seq gap
// before the first new line counts those lines as dropped (see appendLog).
func (s *Store) AppendLog(ctx context.Context, id string, lines []engine.LogLine, maxBytes int64) error {
	if len(lines) == 0 {
		return nil
	}
	if err := engine.CheckLogLines(lines); err != nil {
		return fmt.Errorf("append log of job %s: %w", id, err)
	}
	lines = slices.Clone(lines)
	err := s.write(ctx, func(c *conn) error { return c.appendLog(id, lines, maxBytes) })
	if err != nil {
		return fmt.Errorf("append log of job %s: %w", id, err)
	}
	return nil
}

func (c *conn) appendLog(id string, lines []engine.LogLine, maxBytes int64) error {
	ls, err := c.readLogState(id)
	if err != nil {
		return err
	}
	// hadNote: the log's oldest row is the note, not output. It was written
	// at the seq of the newest line dropped, after every row at or below it
	// was deleted, and rows added since are newer than last.
	hadNote := ls.dropped > 0

	// lines is AppendLog's clone: filtering and sorting it in place is safe,
	// and gives the same lines if the writer runs the op again.
	fresh, gapCut := engine.FreshLogLines(lines, ls.last)
	if len(fresh) == 0 {
		return nil
	}
	if gapCut > 0 {
		ls.dropped += gapCut - ls.last
	}
	added, err := c.insertLogLines(ls.seq, fresh)
	if err != nil {
		return err
	}
	ls.total += added
	ls.last = fresh[len(fresh)-1].Seq
	if gapCut > 0 || ls.over(maxBytes) {
		if err := c.trimLog(&ls, hadNote, gapCut, maxBytes, fresh[len(fresh)-1]); err != nil {
			return err
		}
	}
	return c.writeLogState(ls)
}

// logState is a job's log bookkeeping: the job's seq, the bytes its stored
// output lines count (text plus LogLineOverhead each, the note left out),
// the seq of its newest line, and how many lines it dropped in all.
type logState struct {
	seq, total, last, dropped int64
}

func (c *conn) readLogState(id string) (logState, error) {
	var ls logState
	found, err := c.queryOne(qJobLogState, func(b *binder) { b.text(id) }, func(st *sqlite3.Stmt) {
		ls = logState{seq: st.ColumnInt64(0), total: st.ColumnInt64(1), last: st.ColumnInt64(2), dropped: st.ColumnInt64(3)}
	})
	if err != nil {
		return logState{}, err
	}
	if !found {
		return logState{}, engine.ErrNotFound
	}
	return ls, nil
}

// over reports that the output lines and the note a log that dropped lines
// carries do not fit in maxBytes (0: no bound).
func (ls *logState) over(maxBytes int64) bool {
	return engine.LogOver(ls.total, ls.dropped, maxBytes)
}

// insertLogLines stores lines, sorted by seq and all newer than the log's
// newest, and returns the bytes they count.
func (c *conn) insertLogLines(jobSeq int64, lines []engine.LogLine) (int64, error) {
	var added int64
	for i := range lines {
		l := &lines[i]
		if err := c.insertLogLine(jobSeq, l); err != nil {
			return 0, fmt.Errorf("insert log line %d: %w", l.Seq, err)
		}
		if c.db.Changes() > 0 {
			added += int64(len(l.Text)) + engine.LogLineOverhead
		}
	}
	return added, nil
}

// insertLogLine stores one line of job jobSeq's log.
func (c *conn) insertLogLine(jobSeq int64, l *engine.LogLine) error {
	return c.run(qInsertLog, func(b *binder) {
		b.int64(jobSeq)
		b.int64(l.Seq)
		b.time(l.Time)
		b.int64(int64(l.Attempt))
		b.text(l.Stream)
		b.text(l.Text)
	})
}

// trimLog drops the oldest lines, everything up to gapCut and then as many
// as the bound needs, in one range delete, and writes the one note in
// place of the newest dropped line. The note carries the time and attempt
// of the oldest line kept, or of newest when none is.
func (c *conn) trimLog(ls *logState, hadNote bool, gapCut, maxBytes int64, newest engine.LogLine) error {
	var cut int64
	note := engine.LogLine{Time: newest.Time, Attempt: newest.Attempt, Stream: "stq"}
	skipNote := hadNote
	err := c.queryEach(qLogSizes, func(b *binder) { b.int64(ls.seq) }, func(sizes *sqlite3.Stmt) bool {
		if skipNote {
			skipNote = false // its bytes are not in total
			return true
		}
		s := sizes.ColumnInt64(0)
		if s > gapCut && !ls.over(maxBytes) {
			note.Time, note.Attempt = columnTime(sizes, 2), sizes.ColumnInt(3)
			return false
		}
		cut = s
		ls.total -= sizes.ColumnInt64(1)
		ls.dropped++
		return true
	})
	if err != nil {
		return fmt.Errorf("measure log: %w", err)
	}
	if cut = max(cut, gapCut); cut == 0 {
		return nil
	}
	// The range delete takes the old note too: it is older than cut.
	err = c.run(qTrimLog, func(b *binder) {
		b.int64(ls.seq)
		b.int64(cut)
	})
	if err != nil {
		return fmt.Errorf("trim log: %w", err)
	}
	note.Seq, note.Text = cut, engine.LogDropNote(ls.dropped, maxBytes)
	if err := c.insertLogLine(ls.seq, &note); err != nil {
		return fmt.Errorf("note dropped log lines: %w", err)
	}
	return nil
}

func (c *conn) writeLogState(ls logState) error {
	return c.run(qSetLogState, func(b *binder) {
		b.int64(ls.total)
		b.bool(ls.dropped > 0)
		b.int64(ls.last)
		b.int64(ls.seq)
		b.int64(ls.dropped)
	})
}
