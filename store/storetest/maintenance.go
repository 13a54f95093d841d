package storetest

import (
	"errors"
	"time"

	"stq/engine"
)

func (f *fx) prune(req engine.PruneRequest) int {
	f.Helper()
	n, err := f.s.Prune(f.ctx, req)
	if err != nil {
		f.Fatalf("prune %+v: %v", req, err)
	}
	return n
}

func (f *fx) wantGone(jobs ...*engine.Job) {
	f.Helper()
	for _, j := range jobs {
		if _, err := f.s.Get(f.ctx, j.ID); !errors.Is(err, engine.ErrNotFound) {
			f.Fatalf("job %s after prune: %v, want not found", j.ID, err)
		}
		if _, err := f.s.Logs(f.ctx, j.ID, 0, 0); !errors.Is(err, engine.ErrNotFound) {
			f.Fatalf("log of job %s after prune: %v, want not found", j.ID, err)
		}
	}
}

func testPruneByAge(f *fx) {
	minute := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	d1 := f.add("q", "t", "")
	f.claimOne(t0)
	if err := f.s.AppendLog(f.ctx, d1.ID, []engine.LogLine{{Seq: 1, Time: t0, Attempt: 1, Stream: "stdout", Text: "x"}}, 1<<20); err != nil {
		f.Fatal(err)
	}
	f.complete(succeeded(f.get(d1.ID), minute(1)))
	f1 := f.add("r", "t", "")
	f.complete(failed(f.claimOne(t0), minute(2)))
	c1 := f.add("q", "t", "")
	if _, err := f.s.CancelQueued(f.ctx, []string{c1.ID}, "by user", minute(3)); err != nil {
		f.Fatal(err)
	}
	e1 := f.job("q", "t", "")
	e1.TTL = engine.Duration(time.Second)
	f.enqueue(e1, false)
	if _, err := f.s.ExpireDue(f.ctx, minute(4)); err != nil {
		f.Fatal(err)
	}
	s1 := f.add("q", "t", "k")
	s2 := f.job("q", "t", "k")
	s2.CreatedAt = minute(5)
	f.enqueue(s2, false)
	d2 := f.add("q", "t", "")
	run := f.claim(minute(6), 10)
	f.wantIDs("claim", run, s2, d2)
	f.complete(succeeded(run[1], minute(10)))
	queued := f.add("q", "t", "") // created at t0, long before the cutoff
	f.wantStats("before prune")

	if n := f.prune(engine.PruneRequest{Before: minute(5)}); n != 4 {
		f.Fatalf("prune before t0+5m deleted %d, want 4", n)
	}
	f.wantGone(d1, f1, c1, e1)
	for _, j := range []*engine.Job{s1, s2, d2, queued} {
		f.get(j.ID)
	}
	f.wantStats("after prune")
	if n := f.prune(engine.PruneRequest{Before: minute(5)}); n != 0 {
		f.Fatalf("second prune deleted %d", n)
	}
	// Finished exactly at the cutoff is not before it.
	if n := f.prune(engine.PruneRequest{Before: minute(5).Add(time.Nanosecond)}); n != 1 {
		f.Fatalf("prune just after t0+5m deleted %d, want 1", n)
	}
	f.wantGone(s1)
	if n := f.prune(engine.PruneRequest{}); n != 0 {
		f.Fatalf("prune without limits deleted %d", n)
	}
	f.wantStats("after the second prune")
}

func testPruneByCount(f *fx) {
	var jobs []*engine.Job
	for range 10 {
		jobs = append(jobs, f.add("q", "t", ""))
	}
	run := f.claim(t0, 10)
	f.wantIDs("claim", run, jobs...)
	// Finish order is the reverse of enqueue order: prune goes by finish.
	for i, j := range run {
		f.complete(succeeded(j, t0.Add(time.Duration(10-i)*time.Minute)))
	}
	running := f.add("q", "t", "")
	f.claimOne(t0)
	queued := f.add("q", "t", "")

	if n := f.prune(engine.PruneRequest{Keep: 7, Limit: 2}); n != 2 {
		f.Fatalf("prune keep 7 limit 2 deleted %d", n)
	}
	f.wantGone(jobs[9], jobs[8])
	if n := f.prune(engine.PruneRequest{Keep: 7}); n != 1 {
		f.Fatalf("prune keep 7 deleted %d, want 1", n)
	}
	f.wantGone(jobs[7])
	if n := f.prune(engine.PruneRequest{Keep: 7}); n != 0 {
		f.Fatalf("prune keep 7 again deleted %d", n)
	}
	// Both rules at once delete what either selects: the 4 beyond the
	// newest 3, and the 5 finished before t0+9m.
	if n := f.prune(engine.PruneRequest{Keep: 3, Before: t0.Add(9 * time.Minute)}); n != 5 {
		f.Fatalf("prune keep 3 before t0+9m deleted %d, want 5", n)
	}
	f.wantGone(jobs[2:7]...)
	for _, j := range []*engine.Job{jobs[0], jobs[1], running, queued} {
		f.get(j.ID)
	}
	f.wantStats("after prune")
}

func testPruneKeepsGeneration(f *fx) {
	f.add("q", "t", "k")
	g2 := f.add("q", "t", "k")
	f.complete(succeeded(f.claimOne(t0), t0))
	if n := f.prune(engine.PruneRequest{Before: t0.Add(time.Hour)}); n != 2 {
		f.Fatalf("prune deleted %d, want both generations", n)
	}
	f.wantGone(g2)
	if g := f.add("q", "t", "k").Generation; g != 3 {
		f.Fatalf("generation after pruning 1 and 2 is %d, want 3", g)
	}
	old := f.job("q", "t", "k")
	old.Generation = 2
	if st := f.enqueue(old, true).Job.State; st != engine.StateSuperseded {
		f.Fatalf("explicit generation 2 after pruning is %s, want SUPERSEDED", st)
	}
	f.wantStats("after prune")
}

func testCheckpoint(f *fx) {
	for range 20 {
		f.add("q", "t", "")
	}
	if err := f.s.Checkpoint(f.ctx); err != nil {
		f.Fatalf("checkpoint: %v", err)
	}
	if n := len(f.claim(t0, 100)); n != 20 {
		f.Fatalf("claimed %d after a checkpoint, want 20", n)
	}
}
