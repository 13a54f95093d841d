package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"

	"stq/bench"
	"stq/ipc"
)

func (a *app) benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure stq on this machine against a fresh daemon in a temporary home",
		Description: "Starts `stq daemon` on a temporary home, drives it over the socket and prints\n" +
			"medians with their spread (min-max over the repetitions). Durable mode unless\n" +
			"--durability normal. See docs/PERFORMANCE.md.\n\n" +
			"--store URL runs the daemons on PostgreSQL instead, each in a fresh schema\n" +
			"dropped afterwards, with pgbench on the same server as the baseline and the\n" +
			"cluster rows (two daemons on one schema). See docs/SCALING.md.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "jobs", Value: 20000, Usage: "jobs per throughput run"},
			&cli.IntFlag{Name: "reps", Value: 3, Usage: "repetitions of each row"},
			&cli.IntFlag{Name: "samples", Value: 300, Usage: "samples for latency rows"},
			&cli.StringFlag{Name: "durability", Value: "full", Usage: "daemon durability mode"},
			&cli.BoolFlag{Name: "quick", Usage: "a smoke run: few jobs, one repetition (CI uses it so the benchmark cannot rot)"},
			&cli.BoolFlag{Name: "json", Usage: "print the rows as JSON"},
			&cli.StringFlag{Name: "profile-dir", Usage: "write a CPU profile of each row's daemon to DIR (ROW.pprof), making DIR if missing"},
			&cli.StringSliceFlag{Name: "only", Usage: "run only these row groups: " + strings.Join(bench.Groups(), ", ")},
			&cli.StringFlag{Name: "store", Usage: "a PostgreSQL URL (postgres://...): measure the daemons on it, in fresh schemas"},
		},
		Action: a.bench,
	}
}

func (a *app) bench(ctx context.Context, c *cli.Command) error {
	opts, err := a.benchOptions(c)
	if err != nil {
		return err
	}
	rows, err := bench.Run(ctx, opts)
	switch {
	case errors.Is(err, bench.ErrDurability):
		return usageErrorf("--durability must be \"full\" or \"normal\"")
	case errors.Is(err, bench.ErrClusterNeedsStore):
		return usageErrorf("--only cluster needs --store URL: several daemons share only a PostgreSQL store")
	case errors.Is(err, ipc.ErrSocketPathTooLong):
		return &exitError{code: ExitUsage, err: err, hint: "use a shorter --home / STQ_HOME"}
	case err != nil:
		return err
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, rows)
	}
	headers, cells := bench.Table(rows)
	a.styles().writeTable(a.stdout, headers, cells, -1)
	return nil
}

// benchOptions reads bench's flags; --quick overrides the sizes.
func (a *app) benchOptions(c *cli.Command) (bench.Options, error) {
	o := bench.Options{
		Jobs: c.Int("jobs"), Reps: c.Int("reps"), Samples: c.Int("samples"),
		Durability: c.String("durability"), Quick: c.Bool("quick"),
		ProfileDir: c.String("profile-dir"), Only: c.StringSlice("only"),
		DaemonStderr: a.stderr, Store: c.String("store"),
	}
	if o.Store != "" && !strings.HasPrefix(o.Store, "postgres://") && !strings.HasPrefix(o.Store, "postgresql://") {
		return o, usageErrorf("--store must be a postgres:// or postgresql:// URL")
	}
	if o.Quick {
		o.Jobs, o.Reps, o.Samples = 300, 1, 30
	}
	if o.Jobs < 1 || o.Reps < 1 || o.Samples < 1 {
		return o, usageErrorf("--jobs, --reps and --samples must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return o, fmt.Errorf("find own binary: %w", err)
	}
	o.Binary = self
	for _, g := range o.Only {
		if !slices.Contains(bench.Groups(), g) {
			return o, usageErrorf("--only: unknown row group %q (have %s)", g, strings.Join(bench.Groups(), ", "))
		}
	}
	if !c.Bool("json") {
		o.Progress = a.stderr
	}
	return o, nil
}
