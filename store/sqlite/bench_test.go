package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"stq/engine"
)

// The benchmarks use the default synchronous=FULL: every answered write has
// been fsynced, so they show what group commit buys.

func benchJob(id string) *engine.Job {
	return &engine.Job{ID: id, Queue: "default", Type: "exec", Subject: "", MaxAttempts: 3,
		Command: []string{"/bin/true", "--flag"}, Payload: []byte(`{"n":1}`), CreatedAt: t0, RunAt: t0}
}

func reportBatching(b *testing.B, s *Store, writes0, txns0 int64) {
	if txns := s.txns.Load() - txns0; txns > 0 {
		b.ReportMetric(float64(s.writes.Load()-writes0)/float64(txns), "writes/txn")
	}
}

func BenchmarkEnqueue(b *testing.B) {
	s, _ := openTest(b, Options{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Enqueue(ctx, benchJob(fmt.Sprint(i)), false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnqueueParallel(b *testing.B) {
	s, _ := openTest(b, Options{})
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16) // 16 × GOMAXPROCS callers, as a busy daemon's clients
	b.ReportAllocs()
	w0, t0 := s.writes.Load(), s.txns.Load()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// 64 subject keys: most enqueues supersede their key's last job.
			i := n.Add(1)
			j := benchJob(fmt.Sprint(i))
			j.Subject = fmt.Sprint(i % 64)
			if _, err := s.Enqueue(ctx, j, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportBatching(b, s, w0, t0)
}

func BenchmarkClaim(b *testing.B) {
	s, _ := openTest(b, Options{})
	ctx := context.Background()
	// Fill the queue through group commit, so setup stays quick.
	var wg sync.WaitGroup
	const fillers = 32
	for f := range fillers {
		wg.Go(func() {
			for i := f; i < b.N; i += fillers {
				if _, err := s.Enqueue(ctx, benchJob(fmt.Sprint(i)), false); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "bench", Now: t0, Limit: 1})
		if err != nil || len(jobs) != 1 {
			b.Fatalf("claim: %d jobs, %v", len(jobs), err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s, _ := openTest(b, Options{})
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, benchJob("a"), false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, "a"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCycle is a worker pool's steady state at batch sizes 4 and 64:
// each CompleteAndClaim stores the completions of the previous batch and
// claims the next. It is the store's floor for jobs processed per second
// with that many jobs per commit; ns/op is per job.
func BenchmarkCycle(b *testing.B) {
	for _, batch := range []int{4, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, _ := openTest(b, Options{})
			ctx := context.Background()
			var wg sync.WaitGroup
			const fillers = 32
			n := b.N + batch
			for f := range fillers {
				wg.Go(func() {
					for i := f; i < n; i += fillers {
						if _, err := s.Enqueue(ctx, benchJob(fmt.Sprint(i)), false); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportAllocs()
			txns0 := s.txns.Load()
			b.ResetTimer()
			var done []engine.Completion
			for left := b.N; left > 0; {
				res, err := s.CompleteAndClaim(ctx, engine.Cycle{Done: done, Claim: engine.ClaimRequest{Owner: "bench", Now: t0, Limit: min(batch, left)}})
				if err != nil || res.ClaimErr != nil || len(res.Claimed) == 0 {
					b.Fatalf("cycle: %d claimed, %v, %v", len(res.Claimed), err, res.ClaimErr)
				}
				done = done[:0]
				for _, j := range res.Claimed {
					done = append(done, engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone,
						Outcome: engine.OutcomeSucceeded, FinishedAt: t0})
				}
				left -= len(res.Claimed)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/float64(s.txns.Load()-txns0), "jobs/commit")
		})
	}
}
