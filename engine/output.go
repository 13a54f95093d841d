package engine

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// logFlushInterval bounds how long captured output stays only in memory.
const logFlushInterval = 250 * time.Millisecond

// output records one line a job printed: it goes to live subscribers at
// once and to the store with the next flush. The in-memory backlog is
// bounded by the log limit, oldest lines dropped first, so a job printing
// without end cannot grow the daemon's memory. Every line takes a seq,
// dropped or not: the store counts the seqs it never receives as dropped,
// and notes them (see Store.AppendLog).
func (e *Engine) output(a *activeJob, stream, text string) {
	now := e.clock.Now()
	a.mu.Lock()
	a.seq++
	line := LogLine{Seq: a.seq, Time: now, Attempt: a.job.Attempt, Stream: stream, Text: text}
	a.pending = append(a.pending, line)
	a.pendBytes += int64(len(text)) + LogLineOverhead
	for limit := e.conf().LogLimit; a.pendBytes > limit && len(a.pending) > 1; {
		a.pendBytes -= int64(len(a.pending[0].Text)) + LogLineOverhead
		a.pending[0] = LogLine{}
		a.pending = a.pending[1:]
	}
	a.mu.Unlock()
	if e.bus.active() {
		e.bus.publish(Event{Kind: EventLog, JobID: a.job.ID, Job: a.job, Line: &line})
	}
}

// flushJob writes a job's captured output to the store. Lines dropped from
// memory since the last flush are a gap in seq before the first line sent,
// which the store records as dropped (in log_truncated and the log's note).
func (e *Engine) flushJob(a *activeJob) {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	if len(a.pending) == 0 {
		a.mu.Unlock()
		return
	}
	lines := slices.Clone(a.pending)
	a.mu.Unlock()

	if err := e.store.AppendLog(context.Background(), a.job.ID, lines, e.conf().LogLimit); err != nil {
		e.log.Error("store job output", "job", a.job.ID, "err", err)
		return
	}
	last := lines[len(lines)-1].Seq
	a.mu.Lock()
	i := 0
	for i < len(a.pending) && a.pending[i].Seq <= last {
		a.pendBytes -= int64(len(a.pending[i].Text)) + LogLineOverhead
		i++
	}
	a.pending = slices.Delete(a.pending, 0, i)
	a.mu.Unlock()
}

// flushLoop writes the running jobs' captured output every
// logFlushInterval until ctx ends.
func (e *Engine) flushLoop(ctx context.Context) {
	t := e.clock.NewTimer(logFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		e.flushOnce()
		t.Reset(logFlushInterval)
	}
}

// flushOnce is one round of flushLoop: it writes the captured output of
// every job running now.
func (e *Engine) flushOnce() {
	e.mu.Lock()
	active := make([]*activeJob, 0, len(e.running))
	for _, a := range e.running {
		active = append(active, a)
	}
	e.mu.Unlock()
	for _, a := range active {
		e.flushJob(a)
	}
}

// Logs returns a job's output lines after afterSeq: those stored plus those
// still held in memory for a running job, without duplicates.
func (e *Engine) Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]LogLine, error) {
	if limit <= 0 {
		limit = 1000
	}
	j, err := e.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	id = j.ID
	// Memory first, then the store: a flush in between moves lines from
	// one to the other, and in this order each is seen at least once.
	// Only the first limit held lines can make the page.
	var held []LogLine
	if a := e.active(id); a != nil {
		a.mu.Lock()
		i := heldAfter(a.pending, afterSeq)
		held = slices.Clone(a.pending[i:min(len(a.pending), i+limit)])
		a.mu.Unlock()
	}
	lines, err := e.store.Logs(ctx, id, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", id, err)
	}
	last := afterSeq
	if n := len(lines); n > 0 {
		last = lines[n-1].Seq
	}
	for _, l := range held {
		if len(lines) >= limit {
			break
		}
		if l.Seq > last {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// LogStart returns the after_seq from which the newest n lines of a job's
// log among those after afterSeq are read: the Seq of the line just before
// them, or afterSeq when there are no more than n. Lines still held in
// memory for a running job count; the store is read backwards from its
// newest line, n lines at most.
func (e *Engine) LogStart(ctx context.Context, id string, afterSeq int64, n int) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("%w: the number of lines must not be negative, got %d", ErrInvalid, n)
	}
	n = min(n, math.MaxInt-1) // n+1 below must not overflow
	j, err := e.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	id = j.ID
	// As in Logs, memory before the store. before bounds the store's part
	// to the lines older than those held, which a flush may be storing now.
	var before int64
	held := 0
	if a := e.active(id); a != nil {
		a.mu.Lock()
		p := a.pending[heldAfter(a.pending, afterSeq):]
		held = len(p)
		switch {
		case held > n:
			start := p[held-n-1].Seq
			a.mu.Unlock()
			return start, nil
		case held > 0:
			before = p[0].Seq
		}
		a.mu.Unlock()
	}
	seq, ok, err := e.store.LogSeqFromEnd(ctx, id, afterSeq, before, n-held+1)
	if err != nil {
		return 0, fmt.Errorf("read logs of %s: %w", id, err)
	}
	if !ok {
		return afterSeq, nil
	}
	return seq, nil
}

// active returns the attempt of job id running in this daemon, or nil.
func (e *Engine) active(id string) *activeJob {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[id]
}

// heldAfter is the index of the first held line with Seq > afterSeq; held
// lines are in seq order.
func heldAfter(held []LogLine, afterSeq int64) int {
	i, _ := slices.BinarySearchFunc(held, afterSeq+1, func(l LogLine, seq int64) int { return cmp.Compare(l.Seq, seq) })
	return i
}
