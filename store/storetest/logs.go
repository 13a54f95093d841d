package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"stq/engine"
)

func textBytes(lines []engine.LogLine) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l.Text)) + engine.LogLineOverhead
	}
	return n
}

func testAppendLogTrim(f *fx) {
	j := f.add("q", "t", "")
	f.claimOne(t0)
	// Each line costs its text plus the overhead: room for four short
	// lines, or for two and the note a truncated log carries (its own text
	// plus the overhead).
	const o = engine.LogLineOverhead
	const maxBytes = 40 + 4*o
	var seq int64
	mk := func(texts ...string) []engine.LogLine {
		var out []engine.LogLine
		for _, s := range texts {
			seq++
			out = append(out, engine.LogLine{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Millisecond), Attempt: 1, Stream: "stdout", Text: s})
		}
		return out
	}
	for _, step := range []struct {
		lines    []engine.LogLine
		wantSeqs []int64 // with the note's, first, once lines were dropped
		dropped  int     // the note's count; 0: no note, not truncated
	}{
		{mk("0123456789", "0123456789"), []int64{1, 2}, 0},
		{mk("0123456789", "01234567"), []int64{1, 2, 3, 4}, 0}, // 38 + 4o: fits
		// 40 + 5o: dropping line 1 is not enough once the note needs room.
		{mk("ab"), []int64{3, 4, 5}, 3},
		{mk("x"), []int64{4, 5, 6}, 4},
		{mk(strings.Repeat("y", 19)), []int64{5, 6, 7}, 5},
		{mk("ééééé", "0123456789"), []int64{7, 8, 9}, 7}, // é is two bytes
		{mk(strings.Repeat("z", 39)), []int64{8, 9, 10}, 8},
		{mk("", "", "", "", "", ""), []int64{14, 15, 16}, 14}, // empty lines count too
	} {
		if err := f.s.AppendLog(f.ctx, j.ID, step.lines, maxBytes); err != nil {
			f.Fatalf("append: %v", err)
		}
		got, err := f.s.Logs(f.ctx, j.ID, 0, 0)
		if err != nil {
			f.Fatalf("logs: %v", err)
		}
		var seqs []int64
		for _, l := range got {
			seqs = append(seqs, l.Seq)
		}
		last := step.lines[len(step.lines)-1].Seq
		if !slices.Equal(seqs, step.wantSeqs) || textBytes(got) > maxBytes {
			f.Fatalf("after appending up to %d: lines %v (%d bytes with the note), want %v within %d bytes", last, seqs, textBytes(got), step.wantSeqs, maxBytes)
		}
		checkLogNote(f, got, step.dropped, maxBytes)
		if tr := f.get(j.ID).LogTruncated; tr != (step.dropped > 0) {
			f.Fatalf("after appending up to %d: truncated %v, want %v", last, tr, step.dropped > 0)
		}
	}
}

// checkLogNote checks that a log with dropped lines starts with the one
// note that counts them, and that a log without has none.
func checkLogNote(f *fx, lines []engine.LogLine, dropped int, maxBytes int64) {
	f.Helper()
	notes := 0
	for _, l := range lines {
		if l.Stream == "stq" {
			notes++
		}
	}
	if dropped == 0 {
		if notes != 0 {
			f.Fatalf("a log that dropped nothing has a note: %+v", lines)
		}
		return
	}
	what := "lines"
	if dropped == 1 {
		what = "line"
	}
	want := fmt.Sprintf("%d %s dropped: output over the %d-byte log limit", dropped, what, maxBytes)
	if len(lines) == 0 || lines[0].Stream != "stq" || lines[0].Text != want || notes != 1 {
		f.Fatalf("log %+v: want one note first, %q", lines, want)
	}
}

func testAppendLogGap(f *fx) {
	j := f.add("q", "t", "")
	f.claimOne(t0)
	const maxBytes = 1 << 20
	mk := func(seqs ...int64) []engine.LogLine {
		var out []engine.LogLine
		for _, s := range seqs {
			out = append(out, engine.LogLine{Seq: s, Time: t0.Add(time.Duration(s) * time.Millisecond), Attempt: 1, Stream: "stdout", Text: fmt.Sprint("line ", s)})
		}
		return out
	}
	for _, step := range []struct {
		what     string
		lines    []engine.LogLine
		wantSeqs []int64
		dropped  int
	}{
		{"lines 1-3 stored", mk(1, 2, 3), []int64{1, 2, 3}, 0},
		// 4-10 never arrive: the caller dropped them. The log keeps its
		// newest lines, so 1-3 go too, and the note takes 10's place.
		{"lines 11-12 after a gap", mk(11, 12), []int64{10, 11, 12}, 10},
		{"a resend of stored and dropped lines", mk(2, 11, 12), []int64{10, 11, 12}, 10},
		{"line 13 in order", mk(13), []int64{10, 11, 12, 13}, 10},
		{"line 16 after another gap", mk(16), []int64{15, 16}, 15},
	} {
		if err := f.s.AppendLog(f.ctx, j.ID, step.lines, maxBytes); err != nil {
			f.Fatalf("%s: append: %v", step.what, err)
		}
		got, err := f.s.Logs(f.ctx, j.ID, 0, 0)
		if err != nil {
			f.Fatal(err)
		}
		var seqs []int64
		for _, l := range got {
			seqs = append(seqs, l.Seq)
		}
		if !slices.Equal(seqs, step.wantSeqs) {
			f.Fatalf("%s: lines %v, want %v", step.what, seqs, step.wantSeqs)
		}
		checkLogNote(f, got, step.dropped, maxBytes)
		if got := f.get(j.ID); got.LogTruncated != (step.dropped > 0) || got.LogSeq != step.lines[len(step.lines)-1].Seq {
			f.Fatalf("%s: truncated %v, log seq %d", step.what, got.LogTruncated, got.LogSeq)
		}
	}
}

func testLogSeqFromEnd(f *fx) {
	j := f.add("q", "t", "")
	var lines []engine.LogLine
	for s := int64(1); s <= 10; s++ {
		lines = append(lines, engine.LogLine{Seq: s, Time: t0, Attempt: 1, Stream: "stdout", Text: "x"})
	}
	if err := f.s.AppendLog(f.ctx, j.ID, lines, 1<<20); err != nil {
		f.Fatal(err)
	}
	for _, tc := range []struct {
		after, before int64
		n             int
		want          int64
		ok            bool
	}{
		{0, 0, 1, 10, true},
		{0, 0, 3, 8, true},
		{0, 0, 10, 1, true},
		{0, 0, 11, 0, false},
		{5, 0, 5, 6, true},
		{5, 0, 6, 0, false},
		{0, 8, 1, 7, true}, // below a bound: the lines from 8 on are held elsewhere
		{0, 8, 7, 1, true},
		{0, 8, 8, 0, false},
	} {
		got, ok, err := f.s.LogSeqFromEnd(f.ctx, j.ID, tc.after, tc.before, tc.n)
		if err != nil || got != tc.want || ok != tc.ok {
			f.Errorf("log_seq_from_end(after %d, before %d, n %d) = %d, %v, %v; want %d, %v", tc.after, tc.before, tc.n, got, ok, err, tc.want, tc.ok)
		}
	}
	if _, _, err := f.s.LogSeqFromEnd(f.ctx, "no-such-job", 0, 0, 1); !errors.Is(err, engine.ErrNotFound) {
		f.Errorf("unknown job: %v, want ErrNotFound", err)
	}
}

func testLogsPaging(f *fx) {
	j := f.add("q", "t", "")
	var lines []engine.LogLine
	streams := []string{"stdout", "stderr", "stq"}
	for i := range 10 {
		lines = append(lines, engine.LogLine{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Second),
			Attempt: 1 + i/5, Stream: streams[i%3], Text: fmt.Sprintf("line %d ✓", i+1)})
	}
	if err := f.s.AppendLog(f.ctx, j.ID, lines[:4], 1<<20); err != nil {
		f.Fatal(err)
	}
	if err := f.s.AppendLog(f.ctx, j.ID, lines[4:], 1<<20); err != nil {
		f.Fatal(err)
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []engine.LogLine
	}{
		{0, 4, lines[:4]},
		{4, 4, lines[4:8]},
		{8, 4, lines[8:]},
		{10, 4, nil},
		{3, 0, lines[3:]},
	} {
		got, err := f.s.Logs(f.ctx, j.ID, tc.after, tc.limit)
		if err != nil {
			f.Fatalf("logs after %d: %v", tc.after, err)
		}
		eq := slices.EqualFunc(got, tc.want, func(a, b engine.LogLine) bool {
			return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.Attempt == b.Attempt && a.Stream == b.Stream && a.Text == b.Text
		})
		if !eq {
			f.Fatalf("logs after %d limit %d: got %+v, want %+v", tc.after, tc.limit, got, tc.want)
		}
	}
	if f.get(j.ID).LogTruncated {
		f.Fatal("log marked truncated though nothing was dropped")
	}
}

func testLogSeq(f *fx) {
	j := f.add("q", "t", "")
	if got := f.claimOne(t0); got.LogSeq != 0 {
		f.Fatalf("a new job has log seq %d", got.LogSeq)
	}
	lines := []engine.LogLine{
		{Seq: 1, Time: t0, Attempt: 1, Stream: "stdout", Text: "a"},
		{Seq: 7, Time: t0, Attempt: 1, Stream: "stdout", Text: "b"},
	}
	// A tiny limit trims line 7's predecessors, never the remembered seq.
	if err := f.s.AppendLog(f.ctx, j.ID, lines, 1); err != nil {
		f.Fatal(err)
	}
	f.complete(engine.Completion{ID: j.ID, Attempt: 1, State: engine.StateQueued, Outcome: engine.OutcomeFailed,
		Reason: "x", FinishedAt: t0, RunAt: t0})
	if got := f.claimOne(t0); got.LogSeq != 7 {
		f.Fatalf("second attempt starts with log seq %d, want 7", got.LogSeq)
	}
	if got := f.get(j.ID); got.LogSeq != 7 {
		f.Fatalf("get reports log seq %d, want 7", got.LogSeq)
	}
}
