package e2e

// Fault class 3 of docs/RELIABILITY.md: a job that prints without end.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// storedLog reads a job's whole stored log through `stq tail --json`:
// lines, bytes of text, and whether the store's "[stq] N lines dropped"
// note is among them.
func (e *testEnv) storedLog(id string) (lines int, textBytes int, dropNote bool) {
	e.t.Helper()
	out := e.ok("tail", "--json", id)
	for l := range strings.SplitSeq(out, "\n") {
		if l == "" {
			continue
		}
		var ev struct {
			Line struct {
				Stream string `json:"stream"`
				Text   string `json:"text"`
			} `json:"line"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			e.t.Fatalf("tail --json line %q: %v", l, err)
		}
		lines++
		textBytes += len(ev.Line.Text)
		if ev.Line.Stream == "stq" && strings.Contains(ev.Line.Text, "dropped") {
			dropNote = true
		}
	}
	return lines, textBytes, dropNote
}

func TestReliabilityEndlessOutputStaysBounded(t *testing.T) {
	t.Parallel()
	needProc(t)
	const (
		logLimit = 1 << 20 // the default, configured explicitly
		rssBound = 200.0   // MiB, under -race
	)
	runFor := scaled(4*time.Second, 30*time.Second)
	shortLines := "the log limit counts only text bytes, so a job printing short or empty lines " +
		"makes the daemon hold ~100+ bytes per line in memory (and on disk) far past log_limit; " +
		"fix in engine.output/flushJob and store.AppendLog (see docs/RELIABILITY.md)"
	for _, tc := range []struct {
		name       string
		cmd        []string
		knownIssue string
	}{
		{"100-byte lines", []string{"sh", "-c", "while :; do echo " + strings.Repeat("x", 99) + "; done"}, ""},
		{"1-byte lines (yes)", []string{"yes"}, shortLines},
		{"empty lines (yes '')", []string{"yes", ""}, shortLines},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.configure(fmt.Sprintf("[daemon]\nlog_limit = %d\n", logLimit))
			d := e.startDaemon("--workers", "1")
			base := d.rssMB()
			id := e.ok(append([]string{"enqueue", "--deadline", "0", "--max-attempts", "1", "--"}, tc.cmd...)...)
			e.waitState(id, "RUNNING")
			start := time.Now()
			peak := 0.0
			for time.Since(start) < runFor && peak <= rssBound {
				time.Sleep(100 * time.Millisecond)
				peak = max(peak, d.rssMB())
			}
			ran := time.Since(start)
			peak = max(peak, d.peakRSSMB())
			if peak > rssBound {
				// Stop here: waiting for the cancel of such a job takes
				// minutes (the daemon first stores a huge backlog of lines).
				procs := e.jobProcesses()
				d.kill()
				for _, p := range procs {
					_ = syscallKillGroup(p.pgid)
				}
				msg := fmt.Sprintf("daemon RSS reached %.0f MiB (from %.0f MiB at start) after %v of %s, over the %.0f MiB bound with log_limit = %d",
					peak, base, ran.Round(100*time.Millisecond), tc.name, rssBound, logLimit)
				report(t, "%s", msg)
				if tc.knownIssue != "" {
					knownIssue(t, knownIssueShortLines, "%s: %s", tc.knownIssue, msg)
				}
				t.Fatal(msg)
			}
			r, took, timedOut := e.runBounded(60*time.Second, "cancel", id)
			if timedOut || r.code != 0 {
				t.Fatalf("cancel of the printing job: exit %d after %v (timed out: %v): %s", r.code, took, timedOut, r.stderr)
			}
			j := e.show(id)
			var raw map[string]any
			if err := json.Unmarshal([]byte(e.ok("show", "--json", id)), &raw); err != nil {
				t.Fatal(err)
			}
			lines, text, note := e.storedLog(id)
			// The drop is recorded in log_truncated, which `stq tail` turns
			// into its first line.
			plain := e.ok("tail", id)
			if j.State != "CANCELLED" || raw["log_truncated"] != true || !strings.HasPrefix(plain, "[stq] earlier output was dropped") {
				t.Errorf("job %s, log_truncated %v, tail starts %q", j.State, raw["log_truncated"], plain[:min(len(plain), 80)])
			}
			if text > logLimit {
				t.Errorf("stored log holds %d bytes of text, over log_limit %d", text, logLimit)
			}
			// A stored line costs a row whatever its text: the budget must
			// count at least a little per line, or empty lines are free.
			if maxLines := logLimit/16 + 1; lines > maxLines {
				t.Errorf("stored log holds %d lines for %d bytes of text: over %d, so lines are not paid for", lines, text, maxLines)
			}
			dbBytes := fileSize(e.path("stq.db")) + fileSize(e.path("stq.db-wal"))
			report(t, "printed for %v: daemon RSS %.0f MiB at start, peak %.0f MiB (bound %.0f); stored log %d lines, %d bytes of text (log_limit %d), log_truncated %v, \"[stq] ... lines dropped\" line kept: %v; db+wal %.1f MiB; cancel took %v",
				ran.Round(100*time.Millisecond), base, peak, rssBound, lines, text, logLimit, raw["log_truncated"], note, mb(dbBytes), took.Round(time.Millisecond))
		})
	}
}
