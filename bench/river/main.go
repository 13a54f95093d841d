// Command river measures River (github.com/riverqueue/river) on the
// PostgreSQL server `stq bench --store` measures stq on, with the shapes of
// stq's own rows, so that the two can be compared within one session on a
// machine whose speed moves with its neighbours' load (docs/SCALING.md).
//
// It is a module of its own so that stq's binary and go.mod never link
// River; run it from this directory: `go run . --store URL`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "river bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var opts options
	var only string
	flag.StringVar(&opts.url, "store", os.Getenv("STQ_TEST_DATABASE_URL"), "PostgreSQL URL (default $STQ_TEST_DATABASE_URL)")
	flag.IntVar(&opts.jobs, "jobs", 20000, "jobs per throughput run")
	flag.IntVar(&opts.reps, "reps", 3, "repetitions of each row")
	flag.IntVar(&opts.samples, "samples", 300, "samples for the latency rows")
	flag.StringVar(&only, "only", "enqueue,bulk,noop,latency", "row groups to run, comma-separated")
	flag.BoolVar(&opts.quick, "quick", false, "a smoke run: few jobs, one repetition")
	flag.Parse()
	if opts.url == "" {
		return fmt.Errorf("no server: pass --store URL or set STQ_TEST_DATABASE_URL")
	}
	if opts.quick {
		opts.jobs, opts.reps, opts.samples = 2000, 1, 20
	}
	if opts.jobs < 1 || opts.reps < 1 || opts.samples < 1 {
		return fmt.Errorf("--jobs, --reps and --samples must be at least 1")
	}
	groups := strings.Split(only, ",")
	all := rowGroups()
	for _, g := range groups {
		if !slices.ContainsFunc(all, func(rg rowGroup) bool { return rg.name == g }) {
			return fmt.Errorf("unknown row group %q (have enqueue, bulk, noop, latency)", g)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	b, err := newBench(ctx, opts)
	if err != nil {
		return err
	}
	defer b.close()
	for _, rg := range all {
		if !slices.Contains(groups, rg.name) {
			continue
		}
		if err := rg.run(b, ctx); err != nil {
			return fmt.Errorf("%s: %w", rg.name, err)
		}
	}
	b.print(os.Stdout)
	return nil
}

type options struct {
	url                 string
	jobs, reps, samples int
	quick               bool
}

// rowGroup is a group of rows, named as stq bench's --only names the
// group it mirrors.
type rowGroup struct {
	name string
	run  func(*bench, context.Context) error
}

func rowGroups() []rowGroup {
	return []rowGroup{
		{"enqueue", (*bench).enqueue},
		{"bulk", (*bench).bulk},
		{"noop", (*bench).noop},
		{"latency", (*bench).latency},
	}
}
