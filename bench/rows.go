package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"stq/engine"
	"stq/exec"
)

// stormDebounce is the window of the debounced supersede-storm row.
const stormDebounce = time.Second

// enqueue measures durable enqueues, one job per request, from 1 and 16
// clients; jobs are scheduled an hour out, so only the enqueue path runs.
// Each 1-client repetition is followed by the bare-SQLite baseline, and
// the baseline rows follow.
func (r *runner) enqueue(ctx context.Context) error {
	jobs := r.opts.Jobs
	for _, clients := range []int{1, 16} {
		var vals []float64
		for rep := range r.opts.Reps {
			v, err := r.withDaemon(ctx, fmt.Sprintf("enqueue-%dclients-rep%d", clients, rep), func(d *daemon) (float64, error) {
				return d.enqueueRate(ctx, clients, jobs)
			})
			if err != nil {
				return err
			}
			vals = append(vals, v)
			if r.opts.Store != "" {
				if err := r.pgbenchAfter(ctx, clients); err != nil {
					return err
				}
				continue
			}
			if clients == 1 {
				b, err := bareCommitRate(ctx, r.opts.Durability, bareCommits(jobs))
				if err != nil {
					return err
				}
				r.bare = append(r.bare, b)
			}
		}
		if clients == 1 {
			r.enq1 = vals
		} else {
			r.enq16 = vals
		}
		r.add(newRow(fmt.Sprintf("durable enqueues/s over the socket, %d client(s)", clients), "jobs/s",
			fmt.Sprintf("%d jobs, one job per request, durability=%s", jobs, r.opts.Durability), vals))
	}
	r.addBaselineRows()
	return nil
}

// manyWorkers is the noop group's second pool: short jobs drain as fast
// as a cycle (one transaction) can carry them, and a cycle carries at most
// one job per worker, so a pool for short jobs is sized for the
// throughput, not the cores.
const manyWorkers = 32

// noop measures how fast a pool of poolWorkers and one of manyWorkers
// drain in-process noop jobs, in turn in each repetition, and the
// database's size per finished job after the first.
func (r *runner) noop(ctx context.Context) error {
	var few, many, perJob []float64
	req := engine.EnqueueRequest{Type: "noop", Payload: historyPayload(), BaseEnv: shellEnv()}
	drain := func(workers int, profile string, sizes *[]float64) (float64, error) {
		return r.withConfiguredDaemon(ctx, "", workers, profile, func(d *daemon) (float64, error) {
			rate, b, err := d.drainRate(ctx, r.opts.Jobs, req)
			if sizes != nil {
				*sizes = append(*sizes, b)
			}
			return rate, err
		})
	}
	for rep := range r.opts.Reps {
		v, err := drain(poolWorkers, fmt.Sprintf("noop-rep%d", rep), &perJob)
		if err != nil {
			return err
		}
		few = append(few, v)
		if v, err = drain(manyWorkers, fmt.Sprintf("noop%d-rep%d", manyWorkers, rep), nil); err != nil {
			return err
		}
		many = append(many, v)
	}
	notes := fmt.Sprintf("%d jobs queued first, all due at one instant", r.opts.Jobs)
	fewNotes, manyNotes := notes, notes
	if r.opts.Store != "" {
		fewNotes += "; River v0.51.2 did 2,271 with 4 workers on this machine (issue 12); bench/river measures it now"
		manyNotes += "; target >= 5,000 jobs/s from one daemon"
	}
	r.add(newRow(fmt.Sprintf("in-process noop jobs processed/s, %d workers", poolWorkers), "jobs/s", fewNotes, few))
	r.add(newRow(fmt.Sprintf("in-process noop jobs processed/s, %d workers", manyWorkers), "jobs/s", manyNotes, many))
	size := "db + WAL size"
	if r.opts.Store != "" {
		size = "the schema's tables and indexes"
	}
	r.add(newRow("database bytes per finished job (100-byte payload)", "bytes",
		size+fmt.Sprintf(" / jobs, after the %d-worker noop run; the jobs share one 3 KB base environment", poolWorkers), perJob))
	return nil
}

// subprocess measures subprocess `true` jobs against a fork/exec loop of
// `true` run just before, in the same repetition.
func (r *runner) subprocess(ctx context.Context) error {
	subJobs := min(r.opts.Jobs, 2000)
	var subs, forks []float64
	for rep := range r.opts.Reps {
		f, err := forkRate(ctx, subJobs)
		if err != nil {
			return err
		}
		forks = append(forks, f)
		v, err := r.withDaemon(ctx, fmt.Sprintf("subprocess-rep%d", rep), func(d *daemon) (float64, error) {
			rate, _, err := d.drainRate(ctx, subJobs, engine.EnqueueRequest{Command: []string{"true"}, Cwd: "/"})
			return rate, err
		})
		if err != nil {
			return err
		}
		subs = append(subs, v)
	}
	gate := "no start gate: recovery finds processes by STQ_JOB_ID"
	if !exec.MarkerRecovery {
		gate = "start gate included"
	}
	r.add(newRow("subprocess `true` jobs processed/s, 4 workers", "jobs/s", fmt.Sprintf("%d jobs; %s", subJobs, gate), subs))
	r.add(newRow("fork/exec loop of `true`, 4 goroutines (baseline)", "runs/s", fmt.Sprintf("%d runs, same run", subJobs), forks))
	r.add(newRow("subprocess jobs / fork loop ratio", "%", "per repetition, each subprocess run right after its fork loop; target >= 70%", ratio(subs, forks)))
	return nil
}

// storm measures a supersede storm twice: as enqueued by default (every
// generation may start at once), and with --debounce, which is how a user
// asks for one run per burst. The window must outlast the gap between two
// generations of one subject, here 1,000 enqueues.
func (r *runner) storm(ctx context.Context) error {
	n := r.opts.Jobs * 5
	for _, debounce := range []time.Duration{0, stormDebounce} {
		var took, runs []float64
		for rep := range r.opts.Reps {
			var ran int64
			v, err := r.withDaemon(ctx, fmt.Sprintf("storm-debounce%s-rep%d", debounce, rep), func(d *daemon) (float64, error) {
				secs, got, err := d.storm(ctx, n, 1000, debounce)
				ran = got
				return secs, err
			})
			if err != nil {
				return err
			}
			took = append(took, v)
			runs = append(runs, float64(ran))
		}
		how := "no debounce"
		if debounce > 0 {
			how = "--debounce " + debounce.String()
		}
		r.add(newRow(fmt.Sprintf("supersede storm: %d enqueues over 1,000 subjects, 16 clients, %s", n, how), "s", "until every job ended", took))
		r.add(newRow("supersede storm, "+how+": jobs that ran", "jobs", "the rest were superseded", runs))
	}
	return nil
}

// rss measures the daemon's memory idle, half a second after start, and
// at its peak under 16 enqueuing clients.
func (r *runner) rss(ctx context.Context) error {
	var idle, loaded []float64
	for range r.opts.Reps {
		if _, err := r.withDaemon(ctx, "", func(d *daemon) (float64, error) {
			time.Sleep(500 * time.Millisecond)
			mb, err := d.rssMB()
			if err != nil {
				return 0, err
			}
			idle = append(idle, mb)
			stop := make(chan struct{})
			peak := d.peakRSS(stop)
			_, err = d.enqueueRate(ctx, 16, r.opts.Jobs)
			close(stop)
			loaded = append(loaded, <-peak)
			return 0, err
		}); err != nil {
			return err
		}
	}
	r.add(newRow("daemon RSS, idle", "MB", "VmRSS half a second after start", idle))
	r.add(newRow("daemon RSS, peak under 16 enqueuing clients", "MB", fmt.Sprintf("%d durable enqueues", r.opts.Jobs), loaded))
	return nil
}

// latency measures enqueue->start latency on an idle daemon: p50 and p99
// over all samples, the spread being the samples' min-max.
func (r *runner) latency(ctx context.Context) error {
	var lat []float64
	if _, err := r.withDaemon(ctx, "", func(d *daemon) (float64, error) {
		var err error
		lat, err = d.startLatency(ctx, r.opts.Samples)
		return 0, err
	}); err != nil {
		return err
	}
	slices.Sort(lat)
	note := fmt.Sprintf("%d samples", len(lat))
	r.add(Row{Name: "enqueue->start latency p50, idle daemon", Unit: "ms", Median: percentile(lat, 0.5), Min: lat[0], Max: lat[len(lat)-1], Note: note})
	r.add(Row{Name: "enqueue->start latency p99, idle daemon", Unit: "ms", Median: percentile(lat, 0.99), Min: lat[0], Max: lat[len(lat)-1], Note: note})
	return nil
}

// process measures the wall time of whole `stq enqueue` processes, with
// fork/exec of `true` as the baseline.
func (r *runner) process(ctx context.Context) error {
	var procs, forks []float64
	if _, err := r.withDaemon(ctx, "", func(d *daemon) (float64, error) {
		var err error
		procs, forks, err = d.processWallTime(ctx, r.opts.Samples)
		return 0, err
	}); err != nil {
		return err
	}
	r.add(newRow("one `stq enqueue` process, wall time", "ms", fmt.Sprintf("%d runs; spread is min-max", len(procs)), procs))
	r.add(newRow("`true` via fork/exec, wall time (baseline)", "ms", fmt.Sprintf("%d runs", len(forks)), forks))
	return nil
}
