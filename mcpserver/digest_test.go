package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"stq/engine"
	"stq/ipc"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short", "hello", 10, "hello"},
		{"exact", "hello", 5, "hello"},
		{"empty", "", 5, ""},
		{"cut", "hello world", 5, "hello…"},
		// "é" is two bytes: a cut between them backs off to before it.
		{"mid rune", "abcé", 4, "abc…"},
		{"after rune", "abcéd", 5, "abcé…"},
		{"all multibyte", "日本語", 4, "日…"},
		{"first rune too long", "日本語", 2, "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clip(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("clip(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("clip(%q, %d) = %q is not valid UTF-8", tt.in, tt.max, got)
			}
		})
	}
}

// logOf returns lines with seqs from..to, whose text is "line <seq>".
func logOf(from, to int64) []engine.LogLine {
	var lines []engine.LogLine
	for s := from; s <= to; s++ {
		lines = append(lines, engine.LogLine{Seq: s, Stream: "stdout", Text: fmt.Sprintf("line %d", s)})
	}
	return lines
}

func seqs(lines []logLine) []int64 {
	var out []int64
	for _, l := range lines {
		out = append(out, l.Seq)
	}
	return out
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestTailKeepsLastLines(t *testing.T) {
	tests := []struct {
		name        string
		n           int
		lines       int64
		want        []int64
		wantDropped bool
	}{
		{"empty", 5, 0, nil, false},
		{"fewer", 5, 3, seqRange(1, 3), false},
		{"exactly", 5, 5, seqRange(1, 5), false},
		{"one more", 5, 6, seqRange(2, 6), true},
		{"wraps many times", 5, 23, seqRange(19, 23), true},
		{"ring of one", 1, 7, []int64{7}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTail(tt.n)
			for _, l := range logOf(1, tt.lines) {
				tl.add(l)
			}
			if got := seqs(tl.lines()); !slices.Equal(got, tt.want) {
				t.Errorf("lines = %v, want %v", got, tt.want)
			}
			if tl.dropped() != tt.wantDropped {
				t.Errorf("dropped = %v, want %v", tl.dropped(), tt.wantDropped)
			}
		})
	}
}

func TestTailClipsLines(t *testing.T) {
	tl := newTail(2)
	tl.add(engine.LogLine{Seq: 1, Stream: "stderr", Text: strings.Repeat("x", 2000)})
	got := tl.lines()
	if len(got) != 1 || got[0].Stream != "stderr" {
		t.Fatalf("lines = %+v", got)
	}
	if want := strings.Repeat("x", digestLineBytes) + "…"; got[0].Text != want {
		t.Errorf("text is %d bytes, want %d", len(got[0].Text), len(want))
	}
}

// pager serves a log of total lines in pages of size lines, as the
// daemon's logs.tail.v1 does, and counts the calls.
type pager struct {
	total, size int64
	calls       int
}

func (p *pager) fetch(_ context.Context, after int64) (*ipc.LinesResult, error) {
	p.calls++
	if after >= p.total {
		return &ipc.LinesResult{}, nil
	}
	to := min(after+p.size, p.total)
	return &ipc.LinesResult{Lines: logOf(after+1, to), More: to < p.total}, nil
}

func TestReadTail(t *testing.T) {
	tests := []struct {
		name         string
		total, size  int64
		n            int
		want         []int64
		wantDropped  bool
		wantComplete bool
		wantCalls    int
	}{
		{"empty log", 0, 10, 5, nil, false, true, 1},
		{"one page", 8, 10, 5, seqRange(4, 8), true, true, 1},
		{"short log", 3, 10, 5, seqRange(1, 3), false, true, 1},
		{"across pages", 25, 10, 7, seqRange(19, 25), true, true, 3},
		{"last page full", 30, 10, 5, seqRange(26, 30), true, true, 3},
		{"n spans pages", 21, 10, 15, seqRange(7, 21), true, true, 3},
		{"page bound", 10 * maxDigestPages * 2, 10, 3, seqRange(10*maxDigestPages-2, 10*maxDigestPages), true, false, maxDigestPages},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &pager{total: tt.total, size: tt.size}
			tl, err := readTail(context.Background(), p.fetch, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(tl.lines()); !slices.Equal(got, tt.want) {
				t.Errorf("lines = %v, want %v", got, tt.want)
			}
			if tl.dropped() != tt.wantDropped || tl.complete != tt.wantComplete {
				t.Errorf("dropped, complete = %v, %v; want %v, %v", tl.dropped(), tl.complete, tt.wantDropped, tt.wantComplete)
			}
			if p.calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", p.calls, tt.wantCalls)
			}
		})
	}
}

func TestReadTailErrors(t *testing.T) {
	boom := errors.New("boom")
	failing := func(context.Context, int64) (*ipc.LinesResult, error) { return nil, boom }
	if _, err := readTail(context.Background(), failing, 5); !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
	// A daemon that keeps saying "more" without moving on must not make
	// readTail loop.
	stuck := func(context.Context, int64) (*ipc.LinesResult, error) {
		return &ipc.LinesResult{Lines: logOf(1, 1), More: true}, nil
	}
	if _, err := readTail(context.Background(), stuck, 5); err == nil {
		t.Error("readTail of a log whose seq does not advance: no error")
	}
	// A page that says "more" but is empty ends the read.
	empty := func(context.Context, int64) (*ipc.LinesResult, error) { return &ipc.LinesResult{More: true}, nil }
	tl, err := readTail(context.Background(), empty, 5)
	if err != nil || !tl.complete || len(tl.lines()) != 0 {
		t.Errorf("readTail of empty pages = %+v, %v", tl, err)
	}
}

func TestDigest(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := start.Add(d); return &v }
	zero, one := 0, 1
	tailOf := func(total int64, n int, complete bool) *tail {
		tl := newTail(n)
		for _, l := range logOf(1, total) {
			tl.add(l)
		}
		tl.complete = complete
		return tl
	}
	tests := []struct {
		name     string
		job      engine.Job
		timedOut bool
		tail     *tail
		want     waitOut
	}{
		{
			name: "done",
			job:  engine.Job{ID: "j1", State: engine.StateDone, Attempt: 1, MaxAttempts: 3, StartedAt: at(0), FinishedAt: at(1500*time.Millisecond + 1234), ExitCode: &zero},
			tail: tailOf(3, 5, true),
			want: waitOut{ID: "j1", State: "DONE", ExitCode: &zero, Duration: "1.5s", Attempt: 1, MaxAttempts: 3},
		},
		{
			name: "failed with lines left out",
			job:  engine.Job{ID: "j2", State: engine.StateFailed, Attempt: 3, MaxAttempts: 3, StartedAt: at(0), FinishedAt: at(250 * time.Microsecond), ExitCode: &one, Error: "exit status 1"},
			tail: tailOf(10, 5, true),
			want: waitOut{ID: "j2", State: "FAILED", ExitCode: &one, Error: "exit status 1", Duration: "250µs", Attempt: 3, MaxAttempts: 3, LogTruncated: true},
		},
		{
			name: "daemon dropped output",
			job:  engine.Job{ID: "j3", State: engine.StateDone, StartedAt: at(0), FinishedAt: at(2 * time.Minute), ExitCode: &zero, LogTruncated: true},
			tail: tailOf(2, 5, true),
			want: waitOut{ID: "j3", State: "DONE", ExitCode: &zero, Duration: "2m0s", LogTruncated: true},
		},
		{
			// A running job has a start but no end, and no run time yet.
			name:     "timed out while running",
			job:      engine.Job{ID: "j4", State: engine.StateRunning, Attempt: 1, MaxAttempts: 3, StartedAt: at(0)},
			timedOut: true,
			tail:     tailOf(1, 5, true),
			want:     waitOut{ID: "j4", State: "RUNNING", TimedOut: true, Attempt: 1, MaxAttempts: 3},
		},
		{
			name:     "timed out while waiting",
			job:      engine.Job{ID: "j5", State: engine.StateQueued, Waiting: "queue paused"},
			timedOut: true,
			tail:     tailOf(0, 5, true),
			want:     waitOut{ID: "j5", State: "QUEUED", TimedOut: true, Waiting: "queue paused"},
		},
		{
			name: "log too long to scan",
			job:  engine.Job{ID: "j6", State: engine.StateDone, ExitCode: &zero},
			tail: tailOf(4, 5, false),
			want: waitOut{ID: "j6", State: "DONE", ExitCode: &zero, LogTruncated: true,
				Note: "the log is too long to scan to its end: these lines end at seq 4; read on with logs and offset 4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := digest(&tt.job, tt.timedOut, tt.tail)
			tt.want.Lines = tt.tail.lines()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("digest =\n%+v\nwant\n%+v", got, tt.want)
			}
			if got.Lines == nil {
				t.Error("lines is nil; the result would say null instead of []")
			}
		})
	}
}
