package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"golang.org/x/sync/errgroup"
)

// bench holds the pool every row shares and the rows measured so far.
type bench struct {
	opts    options
	pool    *pgxpool.Pool
	rows    []row
	schemas int
}

// row is one line of the report: a median over repetitions (or a
// percentile of samples) with the spread it came from.
type row struct {
	name, unit, note string
	value, min, max  float64
}

// poolConns is more than the 16 inserting clients of the enqueue row and
// River's own connections for 32 workers need at once.
const poolConns = 40

func newBench(ctx context.Context, opts options) (*bench, error) {
	cfg, err := pgxpool.ParseConfig(opts.url)
	if err != nil {
		return nil, fmt.Errorf("parse --store: %w", err)
	}
	cfg.MaxConns = poolConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &bench{opts: opts, pool: pool}, nil
}

func (b *bench) close() { b.pool.Close() }

// quiet keeps River's own logging out of the report.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// freshSchema creates a schema holding River's tables at their newest
// migration, as stq bench gives each daemon a fresh schema, and returns
// its name and what drops it.
func (b *bench) freshSchema(ctx context.Context) (string, func(), error) {
	b.schemas++
	name := fmt.Sprintf("riverbench_%d_%d", os.Getpid(), b.schemas)
	if _, err := b.pool.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		// The run's context may be done (an interrupt): drop anyway.
		_, _ = b.pool.Exec(context.Background(), "DROP SCHEMA "+name+" CASCADE")
	}
	m, err := rivermigrate.New(riverpgxv5.New(b.pool), &rivermigrate.Config{Schema: name, Logger: quiet()})
	if err == nil {
		_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("migrate: %w", err)
	}
	return name, drop, nil
}

// noopArgs carries what stq bench's enqueue rows carry (savePayload).
type noopArgs struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

func (noopArgs) Kind() string { return "noop" }

func saveArgs() noopArgs { return noopArgs{Path: "src/main.rs", Reason: "save"} }

// noopWorker does nothing; when started is set it reports each job's
// insert->start time as the database recorded both.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	started chan<- time.Duration
}

func (w *noopWorker) Work(ctx context.Context, job *river.Job[noopArgs]) error {
	if w.started != nil && job.AttemptedAt != nil {
		select {
		case w.started <- job.AttemptedAt.Sub(job.CreatedAt):
		case <-ctx.Done():
		}
	}
	return nil
}

// client is a River client on schema. With workers > 0 it works the
// default queue with that many workers and a 1 ms fetch cooldown (River's
// minimum; its default of 100 ms would cap 4 workers at 40 jobs/s);
// otherwise it only inserts.
func (b *bench) client(schema string, workers int, started chan<- time.Duration) (*river.Client[pgx.Tx], error) {
	ws := river.NewWorkers()
	river.AddWorker(ws, &noopWorker{started: started})
	cfg := &river.Config{Schema: schema, Logger: quiet(), Workers: ws, FetchCooldown: time.Millisecond}
	if workers > 0 {
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}}
	}
	c, err := river.NewClient(riverpgxv5.New(b.pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	return c, nil
}

// repeat runs one measurement per repetition, each on a fresh schema, and
// adds their median as a row.
func (b *bench) repeat(ctx context.Context, name, unit, note string, measure func(ctx context.Context, schema string) (float64, error)) error {
	var vals []float64
	for range b.opts.reps {
		schema, drop, err := b.freshSchema(ctx)
		if err != nil {
			return err
		}
		v, err := measure(ctx, schema)
		drop()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		vals = append(vals, v)
	}
	slices.Sort(vals)
	b.rows = append(b.rows, row{name: name, unit: unit, note: note, value: percentile(vals, 0.5), min: vals[0], max: vals[len(vals)-1]})
	fmt.Fprintf(os.Stderr, "  %-55s %10.1f %s\n", name, percentile(vals, 0.5), unit)
	return nil
}

// percentile of sorted values by nearest rank, ceil(p*n), as stq bench
// reports its own (bench/report.go; this module cannot import it): with
// rounding instead, the two would name different samples p99 for some
// sample counts (60 of them: the 59th against the 60th).
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// parallel runs n units of work from conns goroutines, each taking the
// next unit as it finishes its last, and returns how long they took.
func parallel(ctx context.Context, conns, n int, unit func(ctx context.Context, i int) error) (time.Duration, error) {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range conns {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return nil
				}
				if err := unit(gctx, i); err != nil {
					return err
				}
			}
		})
	}
	err := g.Wait()
	return time.Since(start), err
}

// print writes the rows tab-separated, in stq bench's columns.
func (b *bench) print(w io.Writer) {
	fmt.Fprintln(w, "WHAT\tMEDIAN\tSPREAD\tUNIT\tNOTE")
	for _, r := range b.rows {
		fmt.Fprintf(w, "%s\t%.1f\t%.1f-%.1f\t%s\t%s\n", r.name, r.value, r.min, r.max, r.unit, r.note)
	}
}

// addPercentiles adds the p50 and p99 rows of latency samples in ms.
func (b *bench) addPercentiles(lat []float64) {
	slices.Sort(lat)
	note := fmt.Sprintf("%d samples, one job at a time, 4 workers, fetch cooldown 1 ms", len(lat))
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		r := row{name: "river: insert->start latency " + p.name + ", idle client", unit: "ms", note: note,
			value: percentile(lat, p.q), min: lat[0], max: lat[len(lat)-1]}
		b.rows = append(b.rows, r)
		fmt.Fprintf(os.Stderr, "  %-55s %10.1f %s\n", r.name, r.value, r.unit)
	}
}
