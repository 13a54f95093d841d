package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"stq/engine"
	"stq/store/sqlite"
)

// bulkBatch is how many jobs one dev.enqueue_many.v1 call of the bulk row
// carries, and how many rows share a transaction in its baseline.
const bulkBatch = 1000

// bulkQuickJobs is the bulk row's job count under Quick: two full
// batches, so the smoke run still sends batches of bulkBatch.
const bulkQuickJobs = 2 * bulkBatch

// bulkConfig lifts the daemon's enqueue rate limits far above anything the
// bulk row reaches. The defaults (5,000/s and a burst of 10,000 per
// connection) would hold one connection to 5,000 jobs/s; config.toml takes
// no negative values, so the limits are made huge rather than turned off.
const bulkConfig = `[limits]
enqueue_rate = 1e9
enqueue_burst = 1e9
conn_enqueue_rate = 1e9
conn_enqueue_burst = 1e9
`

// bulk measures batched enqueues: one connection sending
// dev.enqueue_many.v1 calls of bulkBatch noop jobs each (reply "brief": ids
// only, as a bulk loader asks), against a bare
// batched insert of as many rows through the store's own insert statement,
// run right after it in the same repetition, and their ratio.
func (r *runner) bulk(ctx context.Context) error {
	jobs := r.opts.Jobs
	if r.opts.Quick {
		jobs = bulkQuickJobs
	}
	var bulk, bare []float64
	for rep := range r.opts.Reps {
		v, err := r.withConfiguredDaemon(ctx, bulkConfig, fmt.Sprintf("bulk-rep%d", rep), func(d *daemon) (float64, error) {
			return d.bulkEnqueueRate(ctx, jobs)
		})
		if err != nil {
			return err
		}
		bulk = append(bulk, v)
		if r.opts.Store != "" {
			continue // the bare batched insert is SQLite's
		}
		b, err := bareBatchedRate(ctx, r.opts.Durability, jobs)
		if err != nil {
			return err
		}
		bare = append(bare, b)
	}
	if r.opts.Store != "" {
		r.add(newRow(fmt.Sprintf("bulk enqueue, batches of %s, one connection", thousands(bulkBatch)), "jobs/s",
			fmt.Sprintf("%d noop jobs an hour out, %d per dev.enqueue_many.v1 call with reply \"brief\"; enqueue rate limits lifted to 1e9/s; durability=%s; target >= 60,000 jobs/s", jobs, bulkBatch, r.opts.Durability), bulk))
		return nil
	}
	mode, err := syncPragma(r.opts.Durability)
	if err != nil {
		return err
	}
	r.add(newRow(fmt.Sprintf("bulk enqueue, batches of %s, one connection", thousands(bulkBatch)), "jobs/s",
		fmt.Sprintf("%d noop jobs an hour out, %d per dev.enqueue_many.v1 call with reply \"brief\"; enqueue rate limits lifted to 1e9/s; durability=%s", jobs, bulkBatch, r.opts.Durability), bulk))
	r.add(newRow(fmt.Sprintf("bare batched insert, %s rows per transaction", thousands(bulkBatch)), "rows/s",
		fmt.Sprintf("%d rows, one single-row INSERT each (the store's own), into a fresh database with the store's schema and writer pragmas, synchronous=%s", jobs, mode), bare))
	r.add(newRow("bulk enqueue / bare batched insert", "%",
		"per repetition, each bare run right after its bulk run; targets: bulk >= 100,000 jobs/s, ratio >= 40%", ratio(bulk, bare)))
	return nil
}

// bulkEnqueueRate sends n noop jobs, scheduled an hour out, from one
// connection in dev.enqueue_many.v1 calls of bulkBatch jobs, one call at a
// time, and returns jobs per second from the first call to the last reply.
// A rate-limited call fails the row rather than being retried.
func (d *daemon) bulkEnqueueRate(ctx context.Context, n int) (float64, error) {
	cl, err := d.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	later := engine.Duration(time.Hour)
	payload := savePayload()
	reqs := make([]engine.EnqueueRequest, min(n, bulkBatch))
	for i := range reqs {
		reqs[i] = engine.EnqueueRequest{Type: "noop", Delay: &later, Payload: payload}
	}
	start := time.Now()
	for done := 0; done < n; done += bulkBatch {
		batch := reqs[:min(bulkBatch, n-done)]
		res, err := cl.EnqueueManyBrief(ctx, nil, batch)
		if err != nil {
			return 0, fmt.Errorf("enqueue many (jobs %d to %d): %w", done+1, done+len(batch), err)
		}
		if len(res) != len(batch) {
			return 0, fmt.Errorf("enqueue many: %d results for %d jobs", len(res), len(batch))
		}
	}
	elapsed := time.Since(start)
	// Every job must be stored, and queued, for the rate to count.
	st, err := cl.Stats(ctx)
	if err != nil {
		return 0, err
	}
	if got := st.Queues[engine.DefaultQueue][engine.StateQueued]; got != int64(n) {
		return 0, fmt.Errorf("bulk row: the daemon holds %d queued jobs, want %d", got, n)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// bareBatchedRate runs sqlite.BareBatchedInsert of n rows, bulkBatch per
// transaction, on a fresh file in the same temporary directory as the bench
// homes, and returns rows per second.
func bareBatchedRate(ctx context.Context, durability string, n int) (float64, error) {
	if _, err := syncPragma(durability); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return 0, fmt.Errorf("bare batched insert: %w", err)
	}
	defer os.RemoveAll(dir)
	return sqlite.BareBatchedInsert(ctx, filepath.Join(dir, "bare.db"), durability, n, bulkBatch, savePayload())
}
