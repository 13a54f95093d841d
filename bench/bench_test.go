package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRunRefusesBadOptionsBeforeStartingAnything(t *testing.T) {
	t.Parallel()
	ok := Options{Binary: "/nonexistent/stq", Jobs: 1, Reps: 1, Samples: 1, Durability: "full"}
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no jobs", func(o *Options) { o.Jobs = 0 }, "jobs, reps and samples must be at least 1"},
		{"no repetitions", func(o *Options) { o.Reps = 0 }, "jobs, reps and samples must be at least 1"},
		{"negative samples", func(o *Options) { o.Samples = -1 }, "jobs, reps and samples must be at least 1"},
		{"an unknown group", func(o *Options) { o.Only = []string{"enqueue", "bogus"} }, `unknown row group "bogus" (have enqueue, baseline,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			var progress bytes.Buffer
			o.Progress = &progress
			rows, err := Run(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || rows != nil || progress.Len() != 0 {
				t.Fatalf("rows %v, progress %q, err %v; want an error saying %q", rows, progress.String(), err, tt.want)
			}
		})
	}
}

func TestBaselineGroupMeasuresRealSQLite(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	rows, err := Run(context.Background(), Options{Jobs: 50, Reps: 2, Samples: 1, Durability: "normal",
		Only: []string{"baseline"}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("want the baseline row alone (no enqueue rows to compare with), got %+v", rows)
	}
	r := rows[0]
	if r.Unit != "commits/s" || len(r.Values) != 2 || r.Min <= 0 || r.Min > r.Median || r.Median > r.Max ||
		r.Note != "50 commits, one row each, WAL, synchronous=NORMAL" {
		t.Fatalf("baseline row: %+v", r)
	}
	if !strings.HasPrefix(progress.String(), "  bare SQLite one-row durable commits/s (baseline) ") || strings.Count(progress.String(), "\n") != 1 {
		t.Fatalf("progress: %q", progress.String())
	}
}

func TestAnUnknownDurabilityIsErrDurability(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Options{Jobs: 5, Reps: 1, Samples: 1, Durability: "fast", Only: []string{"baseline"}})
	if !errors.Is(err, ErrDurability) || !strings.Contains(err.Error(), `"fast"`) {
		t.Fatalf("err %v; want ErrDurability naming the mode", err)
	}
}

func TestGroupsAreInReportOrder(t *testing.T) {
	t.Parallel()
	want := []string{"enqueue", "baseline", "bulk", "noop", "subprocess", "storm", "rss", "latency", "process", "flat", "cluster"}
	if got := Groups(); !slices.Equal(got, want) {
		t.Fatalf("Groups() = %v, want %v", got, want)
	}
}

func TestRowsSummariseTheirRepetitions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		vals             []float64
		median, min, max float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2, 1, 4}, // nearest rank: the lower middle
	}
	for _, tt := range tests {
		r := newRow("x", "u", "", tt.vals)
		if r.Median != tt.median || r.Min != tt.min || r.Max != tt.max || !slices.Equal(r.Values, tt.vals) {
			t.Errorf("newRow(%v) = %+v; want median %v, spread %v-%v, values as measured", tt.vals, r, tt.median, tt.min, tt.max)
		}
	}
	if r := newRow("x", "u", "", nil); r.Median != 0 || r.Values != nil {
		t.Errorf("no values: %+v", r)
	}
	if !math.IsNaN(percentile(nil, 0.5)) {
		t.Error("percentile of nothing should be NaN")
	}
	if got := percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99); got != 10 {
		t.Errorf("p99 of 1..10 = %v, want 10", got)
	}
}

func TestTableAndFormatting(t *testing.T) {
	t.Parallel()
	headers, cells := Table([]Row{{Name: "rate", Unit: "jobs/s", Median: 1234.56, Min: 1000, Max: 1500.04, Note: "n"}})
	if strings.Join(headers, "|") != "WHAT|MEDIAN|SPREAD|UNIT|NOTE" || strings.Join(cells[0], "|") != "rate|1234.6|1000.0-1500.0|jobs/s|n" {
		t.Fatalf("table: %q %q", headers, cells)
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 20000: "20,000", 1000000: "1,000,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	if got := ratio([]float64{50, 30}, []float64{100, 60}); !slices.Equal(got, []float64{50, 50}) {
		t.Errorf("ratio = %v", got)
	}
}

// TestRowsAgainstARealDaemon builds the stq binary and measures the cheap
// rows against real daemons on temporary homes: the harness starts and
// stops them, and the rows come back in order with sane numbers.
func TestRowsAgainstARealDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the stq binary and starts daemons")
	}
	bin := filepath.Join(t.TempDir(), "stq")
	build := exec.Command("go", "build", "-o", bin, "stq")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stq: %v\n%s", err, out)
	}
	var daemonErr bytes.Buffer
	rows, err := Run(context.Background(), Options{Binary: bin, Jobs: 1, Reps: 1, Samples: 5, Durability: "normal",
		Only: []string{"latency", "process"}, DaemonStderr: &daemonErr})
	if err != nil {
		t.Fatalf("%v\ndaemon stderr: %s", err, daemonErr.String())
	}
	want := []string{"enqueue->start latency p50, idle daemon", "enqueue->start latency p99, idle daemon",
		"one `stq enqueue` process, wall time", "`true` via fork/exec, wall time (baseline)"}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
		if r.Unit != "ms" || r.Min < 0 || r.Min > r.Median || r.Median > r.Max || r.Max <= 0 {
			t.Errorf("row %q: %+v", r.Name, r)
		}
	}
	if !slices.Equal(names, want) {
		t.Fatalf("rows %q, want %q", names, want)
	}
	if len(rows[2].Values) != 5 || rows[0].Note != "5 samples" {
		t.Errorf("want 5 samples per row: %+v", rows)
	}
	if daemonErr.Len() != 0 {
		t.Errorf("the daemons said: %s", daemonErr.String())
	}
	checkBulkRows(t, bin, "")
	checkNoopRows(t, bin, "")
}

// checkNoopRows runs the noop group with a few jobs on store ("": SQLite)
// and checks that both pools' rows come back with jobs drained (a drain
// that falls short fails the row).
func checkNoopRows(t *testing.T, bin, store string) {
	t.Helper()
	var daemonErr bytes.Buffer
	rows, err := Run(context.Background(), Options{Binary: bin, Jobs: 40, Reps: 1, Samples: 1, Durability: "normal",
		Only: []string{"noop"}, DaemonStderr: &daemonErr, Store: store})
	if err != nil {
		t.Fatalf("noop rows: %v\ndaemon stderr: %s", err, daemonErr.String())
	}
	want := []string{"in-process noop jobs processed/s, 4 workers", "in-process noop jobs processed/s, 32 workers",
		"database bytes per finished job (100-byte payload)"}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
		if r.Median <= 0 {
			t.Errorf("noop row %q: %+v", r.Name, r)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("noop rows %q, want %q", names, want)
	}
	if daemonErr.Len() != 0 {
		t.Errorf("the noop rows' daemons said: %s", daemonErr.String())
	}
}

// checkBulkRows runs the bulk group quickly on store ("": SQLite) and
// checks that its rows come back, the 4-connection one included, with
// jobs stored (a short count fails the row).
func checkBulkRows(t *testing.T, bin, store string) {
	t.Helper()
	var daemonErr bytes.Buffer
	// A profile directory that does not exist yet: Run makes it.
	profiles := filepath.Join(t.TempDir(), "profiles", "bulk")
	rows, err := Run(context.Background(), Options{Binary: bin, Jobs: 1, Reps: 1, Samples: 1, Durability: "normal", Quick: true,
		Only: []string{"bulk"}, DaemonStderr: &daemonErr, Store: store, ProfileDir: profiles})
	if err != nil {
		t.Fatalf("bulk rows: %v\ndaemon stderr: %s", err, daemonErr.String())
	}
	want := map[string]string{
		"bulk enqueue, batches of 1,000, one connection": "jobs/s",
		"bulk enqueue, batches of 1,000, 4 connections":  "jobs/s",
	}
	if store == "" {
		want["bare batched insert, 1,000 rows per transaction"] = "rows/s"
		want["bulk enqueue / bare batched insert"] = "%"
	}
	if len(rows) != len(want) {
		t.Errorf("bulk rows: %d, want %d: %+v", len(rows), len(want), rows)
	}
	for _, r := range rows {
		if unit, ok := want[r.Name]; !ok || r.Unit != unit || r.Median <= 0 {
			t.Errorf("bulk row %q: %+v", r.Name, r)
		}
	}
	if daemonErr.Len() != 0 {
		t.Errorf("the bulk rows' daemons said: %s", daemonErr.String())
	}
	for _, name := range []string{"bulk-rep0.pprof", "bulk4-rep0.pprof"} {
		if fi, err := os.Stat(filepath.Join(profiles, name)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}
