package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"stq/engine"
	"stq/ipc"
	"stq/store/sqlite"

	"golang.org/x/sync/errgroup"
)

// bulkBatch is how many jobs one dev.enqueue_many.v1 call of the bulk row
// carries, and how many rows share a transaction in its baseline.
const bulkBatch = 1000

// bulkQuickJobs is the bulk row's job count under Quick: a full batch
// for each of the bulkConns connections and a short one, so the smoke
// run still sends batches of bulkBatch, from every connection, and the
// last batch's arithmetic is checked.
const bulkQuickJobs = bulkConns*bulkBatch + bulkBatch/2

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

// bulkConns is how many connections the second bulk row sends calls
// from at once: a loader with several connections keeps the daemon
// decoding one call while the server stores another, which one connection,
// waiting for each reply, cannot.
const bulkConns = 4

// bulk measures batched enqueues: dev.enqueue_many.v1 calls of bulkBatch
// noop jobs each (reply "brief": ids only, as a bulk loader asks), from one
// connection and from bulkConns at once, each on a fresh daemon. On SQLite
// it also runs a bare batched insert of as many rows through the store's
// own insert statement right after the one-connection run, and their ratio.
func (r *runner) bulk(ctx context.Context) error {
	jobs := r.opts.Jobs
	if r.opts.Quick {
		jobs = bulkQuickJobs
	}
	var one, many, bare []float64
	for rep := range r.opts.Reps {
		v, err := r.bulkRep(ctx, fmt.Sprintf("bulk-rep%d", rep), jobs, 1)
		if err != nil {
			return err
		}
		one = append(one, v)
		if r.opts.Store == "" { // the bare batched insert is SQLite's
			b, err := bareBatchedRate(ctx, r.opts.Durability, jobs)
			if err != nil {
				return err
			}
			bare = append(bare, b)
		}
		v, err = r.bulkRep(ctx, fmt.Sprintf("bulk%d-rep%d", bulkConns, rep), jobs, bulkConns)
		if err != nil {
			return err
		}
		many = append(many, v)
	}
	return r.addBulkRows(jobs, one, many, bare)
}

// bulkRep runs one repetition of a bulk row on a fresh daemon.
func (r *runner) bulkRep(ctx context.Context, name string, jobs, conns int) (float64, error) {
	return r.withConfiguredDaemon(ctx, bulkConfig, poolWorkers, name, func(d *daemon) (float64, error) {
		return d.bulkEnqueueRate(ctx, jobs, conns)
	})
}

func (r *runner) addBulkRows(jobs int, one, many, bare []float64) error {
	target := "; target >= 60,000 jobs/s"
	if r.opts.Store == "" {
		target = ""
	}
	notes := func(conns string) string {
		return fmt.Sprintf("%d noop jobs an hour out, %d per dev.enqueue_many.v1 call with reply \"brief\", %s; enqueue rate limits lifted to 1e9/s; durability=%s%s",
			jobs, bulkBatch, conns, r.opts.Durability, target)
	}
	r.add(newRow(fmt.Sprintf("bulk enqueue, batches of %s, one connection", thousands(bulkBatch)), "jobs/s",
		notes("one call at a time"), one))
	r.add(newRow(fmt.Sprintf("bulk enqueue, batches of %s, %d connections", thousands(bulkBatch), bulkConns), "jobs/s",
		notes(fmt.Sprintf("%d connections each sending its next call when its last is answered", bulkConns)), many))
	if r.opts.Store != "" {
		return nil
	}
	mode, err := syncPragma(r.opts.Durability)
	if err != nil {
		return err
	}
	r.add(newRow(fmt.Sprintf("bare batched insert, %s rows per transaction", thousands(bulkBatch)), "rows/s",
		fmt.Sprintf("%d rows, one single-row INSERT each (the store's own), into a fresh database with the store's schema and writer pragmas, synchronous=%s", jobs, mode), bare))
	r.add(newRow("bulk enqueue / bare batched insert", "%",
		"per repetition (one connection), each bare run right after its bulk run; targets: bulk >= 100,000 jobs/s, ratio >= 40%", ratio(one, bare)))
	return nil
}

// bulkEnqueueRate sends n noop jobs, scheduled an hour out, in
// dev.enqueue_many.v1 calls of bulkBatch jobs from conns connections at
// once, each sending its next call when its last one is answered, and
// returns jobs per second from the first call to the last reply. A
// rate-limited call fails the row rather than being retried.
func (d *daemon) bulkEnqueueRate(ctx context.Context, n, conns int) (float64, error) {
	clients, err := d.dialN(ctx, conns)
	defer closeAll(clients)
	if err != nil {
		return 0, err
	}
	later := engine.Duration(time.Hour)
	payload := savePayload()
	reqs := make([]engine.EnqueueRequest, min(n, bulkBatch))
	for i := range reqs {
		reqs[i] = engine.EnqueueRequest{Type: "noop", Delay: &later, Payload: payload}
	}
	var next atomic.Int64                // the first job of the next batch to send
	g, gctx := errgroup.WithContext(ctx) // one failed call stops the others
	send := func(cl *ipc.Client) error {
		for {
			done := int(next.Add(bulkBatch)) - bulkBatch
			if done >= n {
				return nil
			}
			batch := reqs[:min(bulkBatch, n-done)]
			res, err := cl.EnqueueManyBrief(gctx, nil, batch)
			if err != nil {
				return fmt.Errorf("enqueue many (jobs %d to %d): %w", done+1, done+len(batch), err)
			}
			if len(res) != len(batch) {
				return fmt.Errorf("enqueue many: %d results for %d jobs", len(res), len(batch))
			}
		}
	}
	start := time.Now()
	for _, cl := range clients {
		g.Go(func() error { return send(cl) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	// Every job must be stored, and queued, for the rate to count.
	st, err := clients[0].Stats(ctx)
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
