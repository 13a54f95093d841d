package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// bulkBatch and bulkConns are stq bench's bulk row's batch size and its
// second row's connection count.
const (
	bulkBatch = 1000
	bulkConns = 4
)

// later schedules the insert rows' jobs an hour out, as stq bench's, so
// that nothing works them.
func later() *river.InsertOpts { return &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)} }

// saveBatch is one InsertManyFast call's jobs, made once before a row is
// timed and sent again for every call, as stq bench's bulk row makes its
// requests once.
func saveBatch(opts *river.InsertOpts) []river.InsertManyParams {
	batch := make([]river.InsertManyParams, bulkBatch)
	for i := range batch {
		batch[i] = river.InsertManyParams{Args: saveArgs(), InsertOpts: opts}
	}
	return batch
}

// insertAll inserts the row's jobs with InsertManyFast calls of batch
// from conns goroutines, and checks that schema then holds them all.
func (b *bench) insertAll(ctx context.Context, c *river.Client[pgx.Tx], schema string, conns int, batch []river.InsertManyParams) (time.Duration, error) {
	calls := (b.opts.jobs + bulkBatch - 1) / bulkBatch
	took, err := parallel(ctx, conns, calls, func(ctx context.Context, i int) error {
		_, err := c.InsertManyFast(ctx, batch[:min(bulkBatch, b.opts.jobs-i*bulkBatch)])
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("insert jobs: %w", err)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.river_job`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count jobs: %w", err)
	}
	if n != b.opts.jobs {
		return 0, fmt.Errorf("%d jobs stored, want %d", n, b.opts.jobs)
	}
	return took, nil
}

// enqueue mirrors stq bench's 16-client row: one Insert (one transaction)
// per job from 16 goroutines.
func (b *bench) enqueue(ctx context.Context) error {
	const clients = 16
	return b.repeat(ctx, "river: Insert, 16 goroutines", "jobs/s",
		fmt.Sprintf("%d jobs an hour out, one Insert each; stq's row: durable enqueues/s over the socket, 16 clients", b.opts.jobs),
		func(ctx context.Context, schema string) (float64, error) {
			c, err := b.client(schema, 0, nil)
			if err != nil {
				return 0, err
			}
			opts := later()
			took, err := parallel(ctx, clients, b.opts.jobs, func(ctx context.Context, _ int) error {
				_, err := c.Insert(ctx, saveArgs(), opts)
				return err
			})
			return float64(b.opts.jobs) / took.Seconds(), err
		})
}

// bulk mirrors stq bench's bulk rows: InsertManyFast (COPY) batches of
// 1,000 from one goroutine, then from four.
func (b *bench) bulk(ctx context.Context) error {
	for _, conns := range []int{1, bulkConns} {
		name := fmt.Sprintf("river: InsertManyFast, batches of 1,000, %d goroutine(s)", conns)
		err := b.repeat(ctx, name, "jobs/s",
			fmt.Sprintf("%d jobs an hour out; stq's row: bulk enqueue, batches of 1,000, same connection count", b.opts.jobs),
			func(ctx context.Context, schema string) (float64, error) {
				return b.bulkRun(ctx, schema, conns)
			})
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) bulkRun(ctx context.Context, schema string, conns int) (float64, error) {
	c, err := b.client(schema, 0, nil)
	if err != nil {
		return 0, err
	}
	took, err := b.insertAll(ctx, c, schema, conns, saveBatch(later()))
	return float64(b.opts.jobs) / took.Seconds(), err
}

// noop mirrors stq bench's noop rows: jobs inserted first, then worked
// by one client with 4 workers, then (a fresh schema) with 32.
func (b *bench) noop(ctx context.Context) error {
	for _, workers := range []int{4, 32} {
		name := fmt.Sprintf("river: noop jobs worked/s, %d workers", workers)
		err := b.repeat(ctx, name, "jobs/s",
			fmt.Sprintf("%d jobs inserted first, then the client started; jobs / (last finalized_at - start); fetch cooldown 1 ms", b.opts.jobs),
			func(ctx context.Context, schema string) (float64, error) {
				return b.drain(ctx, schema, workers)
			})
		if err != nil {
			return err
		}
	}
	return nil
}

// drainPoll is how often drain counts completed jobs; the rate is read
// from the jobs' finalized_at, so the poll does not round it.
const drainPoll = 250 * time.Millisecond

func (b *bench) drain(ctx context.Context, schema string, workers int) (float64, error) {
	if err := b.fill(ctx, schema); err != nil {
		return 0, err
	}
	c, err := b.client(schema, workers, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return 0, fmt.Errorf("start client: %w", err)
	}
	defer func() { _ = c.Stop(context.Background()) }()
	q := fmt.Sprintf(`SELECT count(*), max(finalized_at) FROM %s.river_job WHERE state = 'completed'`, schema)
	for {
		var n int
		var last *time.Time
		if err := b.pool.QueryRow(ctx, q).Scan(&n, &last); err != nil {
			return 0, fmt.Errorf("count completed jobs: %w", err)
		}
		if n >= b.opts.jobs && last != nil {
			return float64(n) / last.Sub(start).Seconds(), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(drainPoll):
		}
	}
}

// fill inserts the drain's jobs, available now, before any client works
// the schema.
func (b *bench) fill(ctx context.Context, schema string) error {
	c, err := b.client(schema, 0, nil)
	if err != nil {
		return err
	}
	_, err = b.insertAll(ctx, c, schema, 1, saveBatch(nil))
	return err
}

// latency mirrors stq bench's idle-daemon latency rows: one job at a
// time into an idle client with 4 workers, created_at -> attempted_at as
// the database recorded them.
func (b *bench) latency(ctx context.Context) error {
	schema, drop, err := b.freshSchema(ctx)
	if err != nil {
		return err
	}
	defer drop()
	started := make(chan time.Duration)
	c, err := b.client(schema, 4, started)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("start client: %w", err)
	}
	defer func() { _ = c.Stop(context.Background()) }()
	lat := make([]float64, 0, b.opts.samples)
	for range b.opts.samples {
		if _, err := c.Insert(ctx, saveArgs(), nil); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		select {
		case d := <-started:
			lat = append(lat, float64(d.Microseconds())/1000)
		case <-time.After(10 * time.Second):
			return errors.New("a job did not start within 10 s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.addPercentiles(lat)
	return nil
}
