// Package bench is what `stq bench` runs: it starts real daemons on
// temporary homes, drives them over the socket and reports each measured
// quantity as a Row, median and spread; docs/PERFORMANCE.md explains them.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Options say what to measure, how much and how often.
type Options struct {
	// Binary is the stq executable whose `daemon` subcommand is measured
	// and whose `enqueue` the process row times.
	Binary string
	// Jobs per throughput run, repetitions of each row, samples for the
	// latency rows; each at least 1.
	Jobs, Reps, Samples int
	// Durability is the daemon's durability mode, "full" or "normal".
	Durability string
	// Quick shrinks the bulk and flat rows to a smoke run's sizes; the
	// caller picks small Jobs, Reps and Samples to go with it.
	Quick bool
	// ProfileDir, when set, receives a CPU profile of each row's daemon
	// (ROW.pprof).
	ProfileDir string
	// Only names the row groups to run (see Groups); empty runs them all.
	Only []string
	// Progress receives one line per row as it is measured; nil for none.
	Progress io.Writer
	// DaemonStderr receives the stderr of every daemon under test; nil
	// discards it.
	DaemonStderr io.Writer
	// Store, when set, is a PostgreSQL URL: each daemon under test keeps
	// its jobs in a fresh schema of it, pgbench on that server is the
	// baseline, and the cluster group runs. Empty: the SQLite file.
	Store string
}

// ErrDurability: Options.Durability names no durability mode.
var ErrDurability = errors.New(`durability must be "full" or "normal"`)

// ErrClusterNeedsStore: the cluster group was asked for without
// Options.Store; several daemons share only a PostgreSQL store.
var ErrClusterNeedsStore = errors.New("the cluster rows need a PostgreSQL store (--store URL)")

// group is a set of rows measured together; --only picks groups by name.
type group struct {
	name string
	run  func(context.Context) error
}

// groups are in the order their rows are reported. The baseline group
// follows enqueue because the enqueue rows measure the baseline too, in
// the same repetitions, for their ratio.
func (r *runner) groups() []group {
	return []group{
		{"enqueue", r.enqueue}, {"baseline", r.baseline}, {"bulk", r.bulk},
		{"noop", r.noop}, {"subprocess", r.subprocess}, {"storm", r.storm},
		{"rss", r.rss}, {"latency", r.latency}, {"process", r.process}, {"flat", r.flat},
		{"cluster", r.cluster},
	}
}

// Groups name the groups of rows Options.Only can pick, in report order.
func Groups() []string {
	var names []string
	for _, g := range (&runner{}).groups() {
		names = append(names, g.name)
	}
	return names
}

// Run measures the rows of the chosen groups, one fresh daemon per
// repetition, and returns them in report order.
func Run(ctx context.Context, opts Options) ([]Row, error) {
	if opts.Jobs < 1 || opts.Reps < 1 || opts.Samples < 1 {
		return nil, errors.New("bench: jobs, reps and samples must be at least 1")
	}
	for _, g := range opts.Only {
		if !slices.Contains(Groups(), g) {
			return nil, fmt.Errorf("bench: unknown row group %q (have %s)", g, strings.Join(Groups(), ", "))
		}
	}
	if opts.Store == "" && slices.Contains(opts.Only, "cluster") {
		return nil, ErrClusterNeedsStore
	}
	if opts.ProfileDir != "" {
		// Each daemon's --cpu-profile only creates its file; a new
		// directory named here would fail the first row's daemon start.
		if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: make the profile directory: %w", err)
		}
	}
	if opts.DaemonStderr != nil {
		// The cluster rows run two daemons at once.
		opts.DaemonStderr = &syncWriter{w: opts.DaemonStderr}
	}
	r := &runner{opts: opts}
	for _, g := range r.groups() {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, g.name) {
			continue
		}
		if err := g.run(ctx); err != nil {
			return nil, err
		}
	}
	return r.rows, nil
}

// runner holds one Run's options and what it has measured so far.
type runner struct {
	opts Options
	rows []Row
	// bare holds the bare-SQLite baseline of each repetition and enq1 the
	// 1-client enqueue rate of the same repetition, for their ratio.
	bare, enq1 []float64
	// With Options.Store: pgbench's rates at 1 and 16 clients, and the
	// 16-client enqueue rate, per repetition.
	pgb1, pgb16, enq16 []float64
}

func (r *runner) add(row Row) {
	if r.opts.Store != "" {
		row.Note = strings.TrimPrefix(row.Note+"; ", "; ") + "store: PostgreSQL"
	}
	r.rows = append(r.rows, row)
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "  %-44s %12.1f %s\n", row.Name, row.Median, row.Unit)
	}
}

// profile is where the daemon of a row's run writes its CPU profile; ""
// for none (no profile directory, or a row that is not profiled).
func (r *runner) profile(row string) string {
	if r.opts.ProfileDir == "" || row == "" {
		return ""
	}
	return filepath.Join(r.opts.ProfileDir, row+".pprof")
}
