package bench

import (
	"context"
	"fmt"
	"time"

	"stq/engine"
	"stq/ipc"
	"stq/store/sqlite"
)

// flatConfig turns retention off, so the daemon keeps the seeded history
// for the whole measurement: keep = 0 is no count limit, max_age = "0" no
// age limit (the defaults would prune all but 100,000 finished jobs).
const flatConfig = "[retention]\nkeep = 0\nmax_age = \"0\"\n"

// flatSample is one history size's latency p50s (µs) and load time in one
// repetition.
type flatSample struct {
	enqueue, claim, stats float64
	load                  time.Duration
}

// flatMeasure is one latency the flat rows compare across history sizes.
type flatMeasure struct {
	what, how string
	of        func(flatSample) float64
}

func flatMeasures() []flatMeasure {
	return []flatMeasure{
		{"enqueue latency p50", "one client, one request at a time, jobs an hour out",
			func(s flatSample) float64 { return s.enqueue }},
		{"claim (enqueue->start) latency p50", "one noop job at a time on an idle daemon, started_at - created_at",
			func(s flatSample) float64 { return s.claim }},
		{"admin.stats.v1 latency p50", "one client, one request at a time",
			func(s flatSample) float64 { return s.stats }},
	}
}

// flat measures whether cost grows with history: enqueue, claim and stats
// latency on a daemon whose database holds few or many finished jobs,
// loaded before it starts, and the ratio between the two.
func (r *runner) flat(ctx context.Context) error {
	if r.opts.Store != "" {
		// The history is loaded straight into a SQLite file.
		if r.opts.Progress != nil {
			fmt.Fprintln(r.opts.Progress, "  (flat rows: SQLite only, skipped)")
		}
		return nil
	}
	sizes := [2]int{1000, 1000000}
	if r.opts.Quick {
		sizes[1] = 20000 // CI's smoke run stays fast
	}
	samples := max(r.opts.Samples, 300)
	var runs [2][]flatSample
	for range r.opts.Reps {
		for i, n := range sizes {
			s, err := r.flatRun(ctx, n, samples)
			if err != nil {
				return err
			}
			runs[i] = append(runs[i], s)
		}
	}
	pick := func(i int, of func(flatSample) float64) []float64 {
		v := make([]float64, len(runs[i]))
		for rep, s := range runs[i] {
			v[rep] = of(s)
		}
		return v
	}
	for _, m := range flatMeasures() {
		for i, n := range sizes {
			r.add(newRow(fmt.Sprintf("%s, %s jobs stored", m.what, thousands(n)), "µs",
				fmt.Sprintf("%d samples per repetition, %s; %s finished jobs loaded before start", samples, m.how, thousands(n)), pick(i, m.of)))
		}
		r.add(newRow(fmt.Sprintf("%s, %s / %s jobs stored", m.what, thousands(sizes[1]), thousands(sizes[0])), "%",
			"per repetition; target <= 130%", ratio(pick(1, m.of), pick(0, m.of))))
	}
	r.add(newRow(fmt.Sprintf("seconds to load %s finished jobs", thousands(sizes[1])), "s",
		"sqlite.LoadHistory, before the daemon starts; not a target", pick(1, func(s flatSample) float64 { return s.load.Seconds() })))
	return nil
}

// flatRun loads n finished jobs into a fresh home, starts a daemon on it
// and measures the p50 of each latency over samples requests.
func (r *runner) flatRun(ctx context.Context, n, samples int) (flatSample, error) {
	var out flatSample
	p, remove, err := tempHome(flatConfig)
	if err != nil {
		return out, err
	}
	defer remove()
	t0 := time.Now()
	if err := sqlite.LoadHistory(p.DB, n, historyPayload(), t0); err != nil {
		return out, err
	}
	out.load = time.Since(t0)
	_, err = r.withHome(ctx, p, poolWorkers, "", func(d *daemon) (float64, error) {
		return 0, d.flatLatencies(ctx, n, samples, &out)
	})
	return out, err
}

// flatLatencies fills in out's p50s on a daemon holding n finished jobs.
func (d *daemon) flatLatencies(ctx context.Context, n, samples int, out *flatSample) error {
	cl, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	// The history must be there, and stay there, for the numbers to
	// mean anything.
	if err := checkHistory(ctx, cl, n); err != nil {
		return err
	}
	claimMS, err := d.startLatency(ctx, samples)
	if err != nil {
		return err
	}
	claim := make([]float64, len(claimMS))
	for i, ms := range claimMS {
		claim[i] = ms * 1000
	}
	later := engine.Duration(time.Hour)
	enqueue, err := timeCalls(ctx, samples, func() error {
		_, err := cl.Enqueue(ctx, engine.EnqueueRequest{Type: "noop", Delay: &later, Payload: savePayload()})
		return err
	})
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	stats, err := timeCalls(ctx, samples, func() error {
		_, err := cl.Stats(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	if err := checkHistory(ctx, cl, n+samples); err != nil {
		return err
	}
	out.enqueue, out.claim, out.stats = p50(enqueue), p50(claim), p50(stats)
	return nil
}

// checkHistory fails unless the daemon counts at least n DONE jobs and
// runs with retention off.
func checkHistory(ctx context.Context, cl *ipc.Client, n int) error {
	st, err := cl.Stats(ctx)
	if err != nil {
		return err
	}
	if st.Retention.Keep != 0 || st.Retention.MaxAge != 0 {
		return fmt.Errorf("bench daemon prunes history (%+v); the flat rows need retention off", st.Retention)
	}
	if got := st.Queues[engine.DefaultQueue][engine.StateDone]; got < int64(n) {
		return fmt.Errorf("bench daemon holds %d finished jobs, want at least %d", got, n)
	}
	return nil
}

// timeCalls times n sequential calls of fn, in µs.
func timeCalls(ctx context.Context, n int, fn func() error) ([]float64, error) {
	out := make([]float64, 0, n)
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := fn(); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(t0).Nanoseconds())/1000)
	}
	return out, nil
}
