package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"stq/engine"
	"stq/ipc"
)

// The cluster rows: two daemons, each on a home of its own as if on a host
// of its own, on one schema of Options.Store.

// crossWait bounds how long a cross-daemon latency sample may take to
// start before the row gives up on it.
const crossWait = 2 * time.Second

// crossQueue is the queue of the cross-daemon latency samples. The
// enqueuing daemon caps it at 1 and one long job of it runs throughout,
// so that daemon never starts a sample and the other one must.
const crossQueue = "remote"

// clusterGrace lets the daemons of the latency row stop at once: the long
// job that holds crossQueue's cap is still running then.
const clusterGrace = "[daemon]\ngrace = \"100ms\"\nkill_grace = \"100ms\"\n"

// withCluster runs fn against two daemons on one fresh schema, the first
// with config a and the second with config b. Both start before fn
// enqueues anything: on one host, a starting daemon would recover the
// other's RUNNING jobs as crashed.
func (r *runner) withCluster(ctx context.Context, a, b string, fn func(a, b *daemon) error) (err error) {
	schema, drop, err := r.newSchema()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop()) }()
	pa, removeA, err := tempHome(storeSection(r.opts.Store, schema) + a)
	if err != nil {
		return err
	}
	defer removeA()
	pb, removeB, err := tempHome(storeSection(r.opts.Store, schema) + b)
	if err != nil {
		return err
	}
	defer removeB()
	_, err = r.withHome(ctx, pa, poolWorkers, "", func(da *daemon) (float64, error) {
		return r.withHome(ctx, pb, poolWorkers, "", func(db *daemon) (float64, error) {
			return 0, fn(da, db)
		})
	})
	return err
}

// cluster measures two daemons on one schema: enqueues from 16 clients
// split between them, noop jobs drained by both, and enqueue->start
// latency when the job is enqueued through one daemon and started by the
// other. Only with Options.Store.
func (r *runner) cluster(ctx context.Context) error {
	if r.opts.Store == "" {
		return nil
	}
	var enq, noop []float64
	for range r.opts.Reps {
		if err := r.withCluster(ctx, "", "", func(a, b *daemon) error {
			v, err := bothFlood(ctx, a, b, r.opts.Jobs)
			enq = append(enq, v)
			return err
		}); err != nil {
			return err
		}
		if err := r.withCluster(ctx, "", "", func(a, b *daemon) error {
			v, err := bothDrain(ctx, a, b, r.opts.Jobs)
			noop = append(noop, v)
			return err
		}); err != nil {
			return err
		}
	}
	r.add(newRow("durable enqueues/s, 16 clients, 8 through each of 2 daemons", "jobs/s",
		fmt.Sprintf("%d jobs, one job per request, durability=%s", r.opts.Jobs, r.opts.Durability), enq))
	r.add(newRow("in-process noop jobs processed/s, 2 daemons x 4 workers", "jobs/s",
		fmt.Sprintf("%d jobs queued first through both, all due at one instant", r.opts.Jobs), noop))
	return r.withCluster(ctx, fmt.Sprintf("[queues.%s]\nconcurrency = 1\n%s", crossQueue, clusterGrace), clusterGrace, func(a, b *daemon) error {
		return r.crossLatency(ctx, a, b)
	})
}

// bothFlood sends n enqueues, half through each daemon from 8 clients
// each, all at once, and returns jobs per second over both.
func bothFlood(ctx context.Context, a, b *daemon, n int) (float64, error) {
	later := engine.Duration(time.Hour)
	req := engine.EnqueueRequest{Type: "noop", Delay: &later, Payload: savePayload()}
	return bothAt(ctx, a, b, n, req)
}

// bothAt floods both daemons at once with n copies of req, half each, and
// returns jobs per second over both.
func bothAt(ctx context.Context, a, b *daemon, n int, req engine.EnqueueRequest) (float64, error) {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	start := time.Now()
	for i, d := range []*daemon{a, b} {
		wg.Go(func() {
			_, errs[i] = d.floodWith(ctx, 8, n/2+i*(n%2), func(int) engine.EnqueueRequest { return req })
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

// bothDrain is drainRate with two daemons: n noop jobs, half enqueued
// through each, all due at one instant T; both wake at T (each read T from
// the schema after its own enqueues), and the rate is n / (last finish -
// T).
func bothDrain(ctx context.Context, a, b *daemon, n int) (float64, error) {
	// About drainRate's head start on PostgreSQL.
	due := time.Now().Add(2*time.Second + time.Duration(n)*time.Millisecond).UTC()
	req := engine.EnqueueRequest{Type: "noop", Payload: historyPayload(), RunAt: &due}
	if _, err := bothAt(ctx, a, b, n, req); err != nil {
		return 0, err
	}
	if time.Now().After(due) {
		return 0, errors.New("the enqueue flood outlasted the head start; rerun with fewer --jobs")
	}
	cl, err := a.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	// The counters are the schema's: they count both daemons' jobs.
	if _, err := waitCount(ctx, cl, n, drainPoll, engine.StateDone); err != nil {
		return 0, err
	}
	res, err := cl.List(ctx, ipc.ListParams{Limit: 1000})
	if err != nil {
		return 0, err
	}
	var last time.Time
	for _, j := range res.Jobs {
		if j.FinishedAt != nil && j.FinishedAt.After(last) {
			last = *j.FinishedAt
		}
	}
	return float64(n) / last.Sub(due).Seconds(), nil
}

// crossLatency measures created_at -> started_at of noop jobs enqueued
// one at a time through a and started by b, on an otherwise idle cluster.
// A sample that has not started after crossWait ends the row: a daemon
// that does not hear of the other's enqueues would never start it.
func (r *runner) crossLatency(ctx context.Context, a, b *daemon) error {
	ca, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, err := b.dial(ctx)
	if err != nil {
		return err
	}
	defer cb.Close()
	// The job that holds crossQueue at a's cap; the daemons kill it when
	// they stop.
	forever := engine.Duration(0) // no deadline
	hold, err := cb.Enqueue(ctx, engine.EnqueueRequest{Queue: crossQueue, Command: []string{"sleep", "3600"}, Cwd: "/", Deadline: &forever})
	if err != nil {
		return err
	}
	if _, err := startedWithin(ctx, cb, hold.Job.ID, 30*time.Second); err != nil {
		return fmt.Errorf("cross-daemon latency: the job holding the cap: %w", err)
	}
	stA, err := ca.Stats(ctx)
	if err != nil {
		return err
	}
	var lat []float64
	tried := 0
	for range r.opts.Samples {
		tried++
		res, err := ca.Enqueue(ctx, engine.EnqueueRequest{Queue: crossQueue, Type: "noop"})
		if err != nil {
			return err
		}
		// Read through a: a read through b could itself wake b.
		j, err := startedWithin(ctx, ca, res.Job.ID, crossWait)
		if errors.Is(err, errNotStarted) {
			break
		}
		if err != nil {
			return err
		}
		if j.Owner == stA.Owner {
			return fmt.Errorf("cross-daemon latency: job %s started on the daemon it was enqueued through", j.ID)
		}
		lat = append(lat, float64(j.StartedAt.Sub(j.CreatedAt).Microseconds())/1000)
	}
	if len(lat) < tried {
		r.add(newRow("enqueue->start across daemons: samples started", "jobs",
			fmt.Sprintf("of %d tried; stopped at the first not started within %s", tried, crossWait), []float64{float64(len(lat))}))
		return nil
	}
	slices.Sort(lat)
	note := fmt.Sprintf("%d samples, enqueued through one daemon, started by the other", len(lat))
	r.add(Row{Name: "enqueue->start latency p50, across daemons, idle cluster", Unit: "ms", Median: percentile(lat, 0.5), Min: lat[0], Max: lat[len(lat)-1], Note: note})
	r.add(Row{Name: "enqueue->start latency p99, across daemons, idle cluster", Unit: "ms", Median: percentile(lat, 0.99), Min: lat[0], Max: lat[len(lat)-1], Note: note})
	return nil
}

// errNotStarted: a job did not start in the time given.
var errNotStarted = errors.New("not started in time")

// startedWithin polls a job until it has started, for up to d. It polls
// rather than waits: a daemon hears of its own jobs' changes only, and the
// job may start on the other daemon.
func startedWithin(ctx context.Context, cl *ipc.Client, id string, d time.Duration) (*engine.Job, error) {
	deadline := time.Now().Add(d)
	for {
		j, err := cl.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.StartedAt != nil {
			return j, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("job %s: %w (%s)", id, errNotStarted, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// syncWriter makes one writer safe for the daemons that share it.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
