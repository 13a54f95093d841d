package mcpserver

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"stq/engine"
	"stq/ipc"
)

// Line clipping: a single minified-JS or progress-bar line can be
// megabytes, and an agent reads the digest to decide what to do next, not
// to see every byte.
const (
	digestLineBytes = 500
	windowLineBytes = 4096
)

// maxDigestPages bounds the log pages wait reads looking for the end of a
// log. The daemon bounds each job's stored log (1 MiB by default, at most
// ~16k lines) and a page holds up to ipc.MaxTailLines, so a log takes a
// page or two; the bound only bites with a huge configured log limit, and
// keeps a misbehaving daemon from making wait loop.
const maxDigestPages = 64

// clip cuts s to at most max bytes on a rune boundary, marking the cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// tail keeps the last n lines of a log read page by page. Lines are
// clipped only when taken out, so the lines a later page pushes out cost
// no copy.
type tail struct {
	ring []engine.LogLine
	n    int
	// next is where the next line goes once the ring is full, which is
	// also where the oldest kept line is.
	next int
	seen int64
	// lastSeq is the seq of the last line read; complete says the read
	// reached the end of the log rather than the page bound.
	lastSeq  int64
	complete bool
}

func newTail(n int) *tail {
	return &tail{ring: make([]engine.LogLine, 0, n), n: n}
}

func (t *tail) add(l engine.LogLine) {
	t.seen++
	t.lastSeq = l.Seq
	if len(t.ring) < t.n {
		t.ring = append(t.ring, l)
		return
	}
	t.ring[t.next] = l
	t.next = (t.next + 1) % t.n
}

// lines returns the kept lines, oldest first, clipped.
func (t *tail) lines() []logLine {
	out := make([]logLine, 0, len(t.ring))
	for i := range len(t.ring) {
		l := t.ring[(t.next+i)%len(t.ring)]
		out = append(out, logLine{Seq: l.Seq, Stream: l.Stream, Text: clip(l.Text, digestLineBytes)})
	}
	return out
}

// dropped reports whether lines before the kept ones were read.
func (t *tail) dropped() bool { return t.seen > int64(len(t.ring)) }

// pageFunc fetches the stored log lines after a seq, as (*ipc.Client).Logs
// does for one job.
type pageFunc func(ctx context.Context, afterSeq int64) (*ipc.LinesResult, error)

// readTail pages through a log from its start, keeping its last n lines.
// The API has no way to read a log backwards, so the pages before the end
// are read and thrown away; maxDigestPages bounds that.
func readTail(ctx context.Context, fetch pageFunc, n int) (*tail, error) {
	t := newTail(n)
	var after int64
	for range maxDigestPages {
		res, err := fetch(ctx, after)
		if err != nil {
			return nil, err
		}
		for _, l := range res.Lines {
			t.add(l)
		}
		if !res.More || len(res.Lines) == 0 {
			t.complete = true
			return t, nil
		}
		last := res.Lines[len(res.Lines)-1].Seq
		if last <= after {
			return nil, fmt.Errorf("read log: the daemon sent seq %d after asking for lines after %d", last, after)
		}
		after = last
	}
	return t, nil
}

// digest is wait's result: the job's outcome and the end of its log.
func digest(j *engine.Job, timedOut bool, t *tail) waitOut {
	o := waitOut{
		ID:           j.ID,
		State:        string(j.State),
		TimedOut:     timedOut,
		ExitCode:     j.ExitCode,
		Error:        j.Error,
		Attempt:      j.Attempt,
		MaxAttempts:  j.MaxAttempts,
		Waiting:      j.Waiting,
		Lines:        t.lines(),
		LogTruncated: j.LogTruncated || t.dropped(),
	}
	if j.State.Terminal() && j.StartedAt != nil && j.FinishedAt != nil {
		o.Duration = roundDuration(j.FinishedAt.Sub(*j.StartedAt)).String()
	}
	if !t.complete {
		o.LogTruncated = true
		o.Note = fmt.Sprintf("the log is too long to scan to its end: these lines end at seq %d; "+
			"read on with logs and offset %d", t.lastSeq, t.lastSeq)
	}
	return o
}

// roundDuration drops the digits no one reads: "1.234s", not
// "1.234567891s".
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d >= time.Second:
		return d.Round(time.Millisecond)
	default:
		return d.Round(time.Microsecond)
	}
}
