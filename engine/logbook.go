package engine

import (
	"cmp"
	"fmt"
	"slices"
)

// A store keeps each job's log bounded by the same rules, whatever it is
// built on: these are them, so that the stores cannot drift apart on which
// lines a log keeps and what it says about the ones it dropped.

// FreshLogLines picks the lines of an append to a log whose newest stored
// line is last: those newer than last, sorted by Seq, each Seq once (the
// first given, as a repeated append would store it). It reorders and
// filters lines in place. Seqs are consecutive, so lines missing before the
// first fresh one were dropped before they reached the store; gapCut is
// the newest of them (0 when none is missing), and the log keeps its newest
// lines, so every stored line at or below gapCut goes too.
func FreshLogLines(lines []LogLine, last int64) (fresh []LogLine, gapCut int64) {
	fresh = slices.DeleteFunc(lines, func(l LogLine) bool { return l.Seq <= last })
	if len(fresh) == 0 {
		return nil, 0
	}
	bySeq := func(a, b LogLine) int { return cmp.Compare(a.Seq, b.Seq) }
	if !slices.IsSortedFunc(fresh, bySeq) {
		slices.SortStableFunc(fresh, bySeq)
	}
	fresh = slices.CompactFunc(fresh, func(a, b LogLine) bool { return a.Seq == b.Seq })
	if first := fresh[0].Seq; first > last+1 {
		gapCut = first - 1
	}
	return fresh, gapCut
}

// LogOver reports that a log's output bytes (total, each line's text plus
// LogLineOverhead) and the note a log that dropped lines carries do not
// fit in maxBytes (0 or less: no bound).
func LogOver(total, dropped, maxBytes int64) bool {
	if maxBytes <= 0 {
		return false
	}
	if dropped > 0 {
		total += LogDropNoteCost(dropped, maxBytes)
	}
	return total > maxBytes
}

// LogDropNote is the log line that stands where dropped lines were. It
// carries no "[stq]" of its own: readers show the stream.
func LogDropNote(dropped, maxBytes int64) string {
	what := "lines"
	if dropped == 1 {
		what = "line"
	}
	if maxBytes <= 0 {
		return fmt.Sprintf("%d %s dropped", dropped, what)
	}
	return fmt.Sprintf("%d %s dropped: output over the %d-byte log limit", dropped, what, maxBytes)
}

// LogDropNoteCost is what the note costs against the log's bound: a store
// counts only output in the log's size, so it keeps the note's room free.
func LogDropNoteCost(dropped, maxBytes int64) int64 {
	return int64(len(LogDropNote(dropped, maxBytes))) + LogLineOverhead
}
