package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"stq/engine"
)

// backlogSizes are the numbers of QUEUED jobs scheduled an hour out that
// the backlog benchmarks run against; a flat claim path costs the same at
// each.
var backlogSizes = []int{300, 1000, 20000}

// backlogSyncs: "full" is what a client of the daemon waits for; "normal"
// leaves out the fsync, whose noise on a shared disk can hide what the
// backlog itself costs.
var backlogSyncs = []string{"full", "normal"}

// runBacklog runs bench once per synchronous mode and backlog size.
func runBacklog(b *testing.B, bench func(b *testing.B, sync string, scheduled int)) {
	for _, sync := range backlogSyncs {
		for _, n := range backlogSizes {
			b.Run(fmt.Sprintf("sync=%s/scheduled=%d", sync, n), func(b *testing.B) { bench(b, sync, n) })
		}
	}
}

// seedScheduled writes n jobs scheduled an hour after t0 and then due jobs
// enqueued after them, straight through a writer connection in one
// transaction: through the Store each would cost an fsync, and setup would
// swamp the benchmark. The due jobs come last because that is the slow case
// for a claim that walks the queue in (priority, seq) order: everything
// scheduled before them is in the way.
func seedScheduled(tb testing.TB, path string, n, due int) {
	tb.Helper()
	if err := createPrivate(path); err != nil {
		tb.Fatal(err)
	}
	w, err := openWriter(path, "NORMAL")
	if err != nil {
		tb.Fatal(err)
	}
	defer w.close()
	if err := w.exec(qBegin); err != nil {
		tb.Fatal(err)
	}
	add := func(id string, runAt time.Time) {
		j := benchJob(id)
		j.RunAt = runAt
		in, err := encodeJob(j)
		if err != nil {
			tb.Fatal(err)
		}
		if err := w.enqueue(&in, false, &enqueued{}); err != nil {
			tb.Fatal(err)
		}
	}
	if n > 0 {
		// The first scheduled job goes through enqueue, which decides its
		// due flag; the rest are copies of its row, because 20,000 enqueue
		// calls take seconds under the race detector and one INSERT does not.
		add("sched-0", t0.Add(time.Hour))
		const cols = `queue, type, subject, generation, priority, state, max_attempts, payload, command,
			cwd, env, run_at, deadline, ttl, backoff, expires_at, created_at, finished_at, error, due`
		st, _, err := w.db.Prepare(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			INSERT INTO jobs (id, ` + cols + `) SELECT 'sched-' || i, ` + cols + `
			FROM n, jobs WHERE jobs.id = 'sched-0' ORDER BY i`)
		if err != nil {
			tb.Fatal(err)
		}
		defer st.Close()
		if err := st.BindInt(1, n-1); err != nil {
			tb.Fatal(err)
		}
		if err := st.Exec(); err != nil {
			tb.Fatalf("copy scheduled jobs: %v", err)
		}
	}
	for i := range due {
		add(fmt.Sprintf("due-%d", i), t0)
	}
	if err := w.exec(qCommit); err != nil {
		tb.Fatal(err)
	}
}

func openSeeded(b *testing.B, sync string, scheduled, due int) *Store {
	b.Helper()
	path := filepath.Join(b.TempDir(), "stq.db")
	seedScheduled(b, path, scheduled, due)
	s, err := Open(path, Options{Synchronous: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	return s
}

// BenchmarkClaimWithScheduledBacklog claims due jobs one at a time while a
// backlog of jobs scheduled for later waits in the queue.
func BenchmarkClaimWithScheduledBacklog(b *testing.B) {
	runBacklog(b, func(b *testing.B, sync string, n int) {
		s := openSeeded(b, sync, n, b.N)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "bench", Now: t0, Limit: 1})
			if err != nil || len(jobs) != 1 {
				b.Fatalf("claim: %d jobs, %v", len(jobs), err)
			}
		}
	})
}

// BenchmarkEnqueueWithScheduledBacklog is what one client's enqueue costs
// the daemon, which claims after every enqueue: the enqueue of a due job and
// the claim that picks it up, with a backlog of jobs scheduled for later.
func BenchmarkEnqueueWithScheduledBacklog(b *testing.B) {
	runBacklog(b, func(b *testing.B, sync string, n int) {
		s := openSeeded(b, sync, n, 0)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.Enqueue(ctx, benchJob(fmt.Sprint(i)), false); err != nil {
				b.Fatal(err)
			}
			jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "bench", Now: t0, Limit: 1})
			if err != nil || len(jobs) != 1 {
				b.Fatalf("claim: %d jobs, %v", len(jobs), err)
			}
		}
	})
}

// BenchmarkClaimPastPausedBacklog is one claim of a job behind 10,000
// older jobs of a paused queue, each stepped over by the claim (the
// PostgreSQL store holds them out of its walk instead; docs/SCALING.md).
func BenchmarkClaimPastPausedBacklog(b *testing.B) {
	path := filepath.Join(b.TempDir(), "stq.db")
	s, err := Open(path, Options{Synchronous: "normal"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if err := s.SetPaused(ctx, "held", true); err != nil {
		b.Fatal(err)
	}
	jobs := make([]*engine.Job, 10000)
	for i := range jobs {
		jobs[i] = benchJob(fmt.Sprintf("held%06d", i))
		jobs[i].Queue = "held"
	}
	if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if _, err := s.Enqueue(ctx, benchJob(fmt.Sprintf("run%09d", i)), false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := s.Claim(ctx, engine.ClaimRequest{Owner: "bench", Now: t0, Limit: 1})
		if err != nil || len(got) != 1 || got[0].Queue != "default" {
			b.Fatalf("claim: %v, %v", got, err)
		}
	}
}
