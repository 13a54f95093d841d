package engine_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

// dropNote reads a log whose oldest lines were dropped: the one note of
// stream "stq" that comes first and the count it gives, and the output
// lines after it.
func dropNote(t *testing.T, lines []engine.LogLine, limit int64) (dropped int, kept []engine.LogLine) {
	t.Helper()
	if len(lines) == 0 || lines[0].Stream != "stq" {
		t.Fatalf("the log does not start with a note of what was dropped: %d lines, first %+v", len(lines), lines[:min(len(lines), 1)])
	}
	if _, err := fmt.Sscanf(lines[0].Text, "%d lines dropped", &dropped); err != nil {
		t.Fatalf("note %q: %v", lines[0].Text, err)
	}
	if want := fmt.Sprintf("%d lines dropped: output over the %d-byte log limit", dropped, limit); lines[0].Text != want {
		t.Fatalf("note %q, want %q (said once, with no prefix of its own)", lines[0].Text, want)
	}
	if next := lines[1:]; len(next) > 0 && lines[0].Seq != next[0].Seq-1 {
		t.Fatalf("the note has seq %d, not the one just before the first kept line (%d)", lines[0].Seq, next[0].Seq)
	}
	return dropped, lines[1:]
}

// logBytes is what lines cost against the log limit.
func logBytes(lines []engine.LogLine) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l.Text)) + engine.LogLineOverhead
	}
	return n
}

func TestOutputDroppedFromMemoryIsRecordedAndCountedExactly(t *testing.T) {
	// Lines of 100 bytes: six fit in memory under the limit, and before the
	// fix the engine's note, shorter than the line it replaced, left the
	// log under the limit, so the store never trimmed and never marked the
	// log truncated.
	const limit = 1000
	b := setup(t, engine.Config{Workers: 1, LogLimit: limit})
	j := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	const printed = 5000
	for i := range printed {
		c.run.Output("stdout", fmt.Sprintf("%05d %s", i, strings.Repeat("x", 94)))
	}
	c.result <- exit(0)
	b.wait(t, j.ID)

	if got, _ := b.eng.Get(context.Background(), j.ID); !got.LogTruncated {
		t.Fatal("log_truncated is false though lines were dropped")
	}
	lines, err := b.eng.Logs(context.Background(), j.ID, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	dropped, kept := dropNote(t, lines, limit)
	if dropped+len(kept) != printed {
		t.Fatalf("the note says %d lines dropped and %d are kept, of %d printed", dropped, len(kept), printed)
	}
	for i, l := range kept {
		if want := fmt.Sprintf("%05d ", dropped+i); !strings.HasPrefix(l.Text, want) || l.Seq != int64(dropped+i+1) {
			t.Fatalf("kept line %d is seq %d %q, want the newest lines in order", i, l.Seq, l.Text[:6])
		}
	}
	if n := logBytes(lines); n > limit {
		t.Fatalf("the log holds %d bytes with its note, over the %d-byte limit", n, limit)
	}
}

func TestDropsOfSeveralFlushesAddUpInOneNote(t *testing.T) {
	// Attempt 1 prints a burst and fails; its output is stored before the
	// retry starts. Attempt 2 prints another burst. Before the fix each
	// flush wrote a note counting only its own drops, the store's trim
	// deleted the first note with the lines, and the lines it trimmed were
	// never counted.
	const limit = 4000
	b := setup(t, engine.Config{Workers: 1, LogLimit: limit})
	bo := engine.Duration(time.Second)
	j := b.enqueue(t, engine.EnqueueRequest{Backoff: &bo})
	const burst = 3000
	c := b.next(t)
	for i := range burst {
		c.run.Output("stdout", fmt.Sprintf("one %04d", i))
	}
	c.result <- exit(1)
	got := b.waitState(t, j.ID, engine.StateQueued)
	b.clock.Advance(got.RunAt.Sub(b.clock.Now()))
	c = b.next(t)
	for i := range burst {
		c.run.Output("stderr", fmt.Sprintf("two %04d", i))
	}
	c.result <- exit(0)
	b.wait(t, j.ID)

	if got, _ := b.eng.Get(context.Background(), j.ID); !got.LogTruncated {
		t.Fatal("log_truncated is false though lines were dropped")
	}
	lines, err := b.eng.Logs(context.Background(), j.ID, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	// Printed: both bursts and the daemon's line saying why attempt 1
	// failed.
	const printed = 2*burst + 1
	dropped, kept := dropNote(t, lines, limit)
	if dropped+len(kept) != printed {
		t.Fatalf("the note says %d lines dropped and %d are kept, of %d printed", dropped, len(kept), printed)
	}
	if last := kept[len(kept)-1]; last.Text != fmt.Sprintf("two %04d", burst-1) || last.Seq != printed {
		t.Fatalf("last line seq %d %q", last.Seq, last.Text)
	}
	if n := logBytes(lines); n > limit {
		t.Fatalf("the log holds %d bytes with its note, over the %d-byte limit", n, limit)
	}
}

func TestLogStartCountsLinesStillInMemory(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	j := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	for i := 1; i <= 20; i++ {
		c.run.Output("stdout", fmt.Sprint("line ", i))
	}
	// Nothing is stored yet (the clock does not move, so no flush runs):
	// the newest lines come from memory.
	ctx := context.Background()
	for _, tc := range []struct {
		after int64
		n     int
		want  int64
	}{
		{0, 10, 10}, {0, 0, 20}, {0, 20, 0}, {0, 25, 0}, {15, 3, 17}, {15, 10, 15}, {0, math.MaxInt, 0},
	} {
		if got, err := b.eng.LogStart(ctx, j.ID, tc.after, tc.n); err != nil || got != tc.want {
			t.Errorf("running: LogStart(after %d, last %d) = %d, %v; want %d", tc.after, tc.n, got, err, tc.want)
		}
	}
	c.result <- exit(0)
	b.wait(t, j.ID)
	// Stored now: the same answers from the store.
	for _, tc := range []struct {
		after int64
		n     int
		want  int64
	}{
		{0, 10, 10}, {0, 0, 20}, {0, 20, 0}, {15, 3, 17}, {0, math.MaxInt, 0},
	} {
		if got, err := b.eng.LogStart(ctx, j.ID, tc.after, tc.n); err != nil || got != tc.want {
			t.Errorf("done: LogStart(after %d, last %d) = %d, %v; want %d", tc.after, tc.n, got, err, tc.want)
		}
	}
}
