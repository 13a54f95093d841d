package postgres

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"
)

// The benchmarks measure the store alone against the test server; compare
// with pgbench on the same server (docs/SCALING.md has the recipe and the
// numbers). Each reports jobs/s, the figure the targets are stated in.

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), Options{URL: testURL(b), Schema: freshSchema(b), MaxConns: 32})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func plainJob(id string) *engine.Job {
	return &engine.Job{ID: id, Queue: "default", Type: "noop", MaxAttempts: 3, CreatedAt: t0, RunAt: t0,
		Deadline: engine.Duration(time.Minute), Payload: []byte(`{"n":1}`)}
}

// BenchmarkEnqueue16 is durable single-job enqueue from 16 goroutines, as
// 16 clients of one daemon (or of several) enqueue.
func BenchmarkEnqueue16(b *testing.B) {
	s := benchStore(b)
	var n atomic.Int64
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("e%012d", n.Add(1))
			if _, err := s.Enqueue(context.Background(), plainJob(id), false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkEnqueueMany1000 is bulk enqueue, batches of 1,000 plain jobs.
func BenchmarkEnqueueMany1000(b *testing.B) {
	s := benchStore(b)
	const batch = 1000
	var n int
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		jobs := make([]*engine.Job, batch)
		for i := range jobs {
			n++
			jobs[i] = plainJob(fmt.Sprintf("m%012d", n))
		}
		if _, err := s.EnqueueMany(context.Background(), engine.EnqueueBatch{Jobs: jobs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkClaimComplete is the noop processing loop of one daemon: 4
// goroutines, each completing the jobs it ran and claiming up to 8 more in
// one CompleteAndClaim, as the engine's worker loop does. b.N is jobs.
func BenchmarkClaimComplete(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for done := 0; done < b.N; done += 1000 {
		jobs := make([]*engine.Job, 0, 1000)
		for i := done; i < min(done+1000, b.N); i++ {
			jobs = append(jobs, plainJob(fmt.Sprintf("c%012d", i)))
		}
		if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs}); err != nil {
			b.Fatal(err)
		}
	}
	var claimed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	b.ResetTimer()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var done []engine.Completion
			for {
				res, err := s.CompleteAndClaim(ctx, engine.Cycle{Done: done, Claim: engine.ClaimRequest{
					Owner: fmt.Sprintf("bench/%d", w), Now: t0, Limit: 8}})
				if err != nil {
					b.Error(err)
					return
				}
				done = done[:0]
				for _, j := range res.Claimed {
					done = append(done, engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone,
						Outcome: engine.OutcomeSucceeded, FinishedAt: t0})
				}
				if len(res.Claimed) == 0 && claimed.Load() >= int64(b.N) {
					return
				}
				claimed.Add(int64(len(res.Claimed)))
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkEnqueueToStart is the store's share of enqueue->start latency on
// an idle queue: one enqueue, then one claim that takes it.
func BenchmarkEnqueueToStart(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t := time.Now()
		if _, err := s.Enqueue(ctx, plainJob(fmt.Sprintf("l%012d", i)), false); err != nil {
			b.Fatal(err)
		}
		got, err := s.Claim(ctx, engine.ClaimRequest{Owner: "bench/1", Now: t0, Limit: 1})
		if err != nil || len(got) != 1 {
			b.Fatalf("claim: %v, %d jobs", err, len(got))
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkClaimPastScheduledBacklog is one claim of a due job behind
// 10,000 jobs scheduled an hour later at a higher priority: what every
// claim paid for them before they were kept out of the walk (due.go).
func BenchmarkClaimPastScheduledBacklog(b *testing.B) {
	s := benchStore(b)
	storeBacklog(b, s, func(j *engine.Job) { j.Priority, j.RunAt = 5, t0.Add(time.Hour) })
	benchClaimBehind(b, s)
}

// BenchmarkClaimPastPausedBacklog is one claim of a job behind 10,000
// older jobs of a paused queue, the queue paused before its jobs were
// enqueued and after: what every claim paid for a paused backlog while
// its jobs stayed in the walk (held.go).
func BenchmarkClaimPastPausedBacklog(b *testing.B) {
	for _, when := range []string{"before", "after"} {
		b.Run("paused="+when, func(b *testing.B) {
			s := benchStore(b)
			pause := func() {
				if err := s.SetPaused(context.Background(), "held", true); err != nil {
					b.Fatal(err)
				}
			}
			if when == "before" {
				pause()
			}
			storeBacklog(b, s, func(j *engine.Job) { j.Queue = "held" })
			if when == "after" {
				pause()
			}
			benchClaimBehind(b, s)
		})
	}
}

// storeBacklog stores 10,000 plain jobs, each as edit makes it, ahead of
// what benchClaimBehind claims.
func storeBacklog(b *testing.B, s *Store, edit func(*engine.Job)) {
	b.Helper()
	for n := 0; n < 10000; n += 1000 {
		jobs := make([]*engine.Job, 1000)
		for i := range jobs {
			jobs[i] = plainJob(fmt.Sprintf("backlog%06d", n+i))
			edit(jobs[i])
		}
		if _, err := s.EnqueueMany(context.Background(), engine.EnqueueBatch{Jobs: jobs}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchClaimBehind times b.N claims, each of one plain job enqueued
// (untimed) just before it, behind the backlog.
func benchClaimBehind(b *testing.B, s *Store) {
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if _, err := s.Enqueue(ctx, plainJob(fmt.Sprintf("due%09d", i)), false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "bench", Now: t0, Limit: 1})
		if err != nil || len(jobs) != 1 || !strings.HasPrefix(jobs[0].ID, "due") {
			b.Fatalf("claim: %v, %v", jobs, err)
		}
	}
}

// BenchmarkEngineDrain is the engine on this store with in-process noop
// jobs, the bench's noop rows without the daemon and the socket: b.N jobs
// stored first, then drained by a pool of 4 workers, and of 32. It takes
// seconds where the bench's rows take minutes, for A/B runs of the
// dispatcher's cycle; use -benchtime 20000x.
func BenchmarkEngineDrain(b *testing.B) {
	for _, workers := range []int{4, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchDrain(b, workers)
		})
	}
}

func benchDrain(b *testing.B, workers int) {
	s := benchStore(b)
	ctx := context.Background()
	now := time.Now() // the engine runs on the wall clock, not on t0
	for done := 0; done < b.N; done += 1000 {
		jobs := make([]*engine.Job, 0, 1000)
		for i := done; i < min(done+1000, b.N); i++ {
			j := plainJob(fmt.Sprintf("d%012d", i))
			j.CreatedAt, j.RunAt = now, now
			jobs = append(jobs, j)
		}
		if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs}); err != nil {
			b.Fatal(err)
		}
	}
	reg := engine.NewRegistry()
	if err := reg.Register("noop", func(context.Context, *engine.Job) error { return nil }); err != nil {
		b.Fatal(err)
	}
	e, err := engine.New(engine.Config{Workers: workers}, engine.Deps{Store: s, InProcess: handlerExec{reg}, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { ran <- e.Run(runCtx) }()
	defer func() { // before the store closes, and after a failed poll too
		stop()
		if err := <-ran; err != nil {
			b.Error(err)
		}
	}()
	// Stats reads the schema's size too, about a millisecond of the
	// server's time: poll gently, so the measuring does not slow what it
	// measures. The rate comes out low by at most one interval, 50 ms of
	// a drain of seconds.
	for {
		st, err := s.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		q := st.Queues["default"]
		if q[engine.StateQueued]+q[engine.StateRunning] == 0 {
			if q[engine.StateDone] != int64(b.N) {
				b.Fatalf("drained, but %d of %d jobs DONE: %v", q[engine.StateDone], b.N, q)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	b.StopTimer()
}

// handlerExec runs a job's registered in-process handler, as the exec
// package's in-process executor does, without the rest of that package.
type handlerExec struct{ reg *engine.Registry }

func (h handlerExec) Execute(ctx context.Context, run *engine.Run) engine.Result {
	f, ok := h.reg.Lookup(run.Handler)
	if !ok {
		return engine.Result{Err: fmt.Errorf("no handler %q", run.Handler)}
	}
	return engine.Result{Err: f(ctx, run.Job)}
}
