package storetest

import (
	"errors"
	"slices"
	"strings"
	"time"

	"stq/engine"
)

func testRetry(f *fx) {
	// A job that failed on its second attempt.
	j := f.job("q", "t", "")
	j.MaxAttempts, j.TTL = 2, engine.Duration(time.Hour)
	f.enqueue(j, false)
	run := f.claimOne(t0)
	f.complete(retry(run, t0.Add(time.Second), t0.Add(time.Second)))
	run = f.claimOne(t0.Add(time.Second))
	if err := f.s.AppendLog(f.ctx, j.ID, []engine.LogLine{{Seq: 4, Time: t0, Attempt: 2, Stream: "stdout", Text: "x"}}, 1<<20); err != nil {
		f.Fatal(err)
	}
	f.complete(failed(run, t0.Add(2*time.Second)))
	before := f.get(j.ID)

	now := t0.Add(2 * time.Hour) // past the TTL
	got, err := f.s.Retry(f.ctx, j.ID, now)
	if err != nil {
		f.Fatalf("retry: %v", err)
	}
	want := *before
	want.State, want.Attempt, want.RunAt, want.Error, want.Owner = engine.StateQueued, 0, now, "", ""
	want.ExitCode, want.StartedAt, want.FinishedAt = nil, nil, nil
	f.wantJob("retried job", got, &want)
	f.wantJob("retried job read back", f.get(j.ID), &want)
	if exp, err := f.s.ExpireDue(f.ctx, now.Add(time.Hour)); err != nil || len(exp) != 0 {
		f.Fatalf("a retried job expired: %v %v", ids(exp), err)
	}
	f.wantIDs("claim before the retry is due", f.claim(now.Add(-time.Nanosecond), 10))
	again := f.claimOne(now)
	// The series starts again (attempt 1), the history numbers on (n 3).
	if again.Attempt != 1 || len(again.Attempts) != 3 || again.Attempts[2].N != 3 || again.LogSeq != 4 ||
		again.Attempts[0].N != 1 || again.Attempts[1].N != 2 || again.Attempts[1].Outcome != engine.OutcomeFailed {
		f.Fatalf("claim of the retried job: attempt %d log seq %d attempts %+v", again.Attempt, again.LogSeq, again.Attempts)
	}
	f.complete(succeeded(again, now))

	// A job cancelled before it ever ran, and one that expired.
	c := f.add("q", "t", "")
	if _, err := f.s.CancelQueued(f.ctx, []string{c.ID}, "by user", t0); err != nil {
		f.Fatal(err)
	}
	e := f.job("q", "t", "")
	e.TTL = engine.Duration(time.Minute)
	f.enqueue(e, false)
	if exp, err := f.s.ExpireDue(f.ctx, t0.Add(time.Minute)); err != nil || len(exp) != 1 {
		f.Fatalf("expire: %v %v", ids(exp), err)
	}
	for _, id := range []string{c.ID, e.ID} {
		got, err := f.s.Retry(f.ctx, id, now)
		if err != nil || got.State != engine.StateQueued || got.Error != "" || got.FinishedAt != nil {
			f.Fatalf("retry %s: %+v %v", id, got, err)
		}
	}
	if exp, err := f.s.ExpireDue(f.ctx, now.Add(time.Hour)); err != nil || len(exp) != 0 {
		f.Fatalf("a retried expired job expired again: %v %v", ids(exp), err)
	}
	f.wantIDs("claim of the retried jobs", f.claim(now, 10), c, e)
	f.wantStats("after retries")
}

func testRetryNumbering(f *fx) {
	j := f.job("q", "t", "")
	j.MaxAttempts = 1
	f.enqueue(j, false)
	at := t0
	fail := func() {
		f.Helper()
		at = at.Add(time.Second)
		f.complete(failed(f.claimOne(at), at))
	}
	retryNow := func() {
		f.Helper()
		if _, err := f.s.Retry(f.ctx, j.ID, at); err != nil {
			f.Fatalf("retry: %v", err)
		}
	}
	fail()     // series 1: n 1
	retryNow() // series 2
	at = at.Add(time.Second)
	run := f.claimOne(at)
	f.complete(engine.Completion{ID: j.ID, Attempt: run.Attempt, State: engine.StateQueued,
		Outcome: engine.OutcomeInterrupted, Reason: "interrupted by daemon shutdown",
		FinishedAt: at, RunAt: at, Refund: true}) // n 2, given back
	fail()     // n 2 again
	retryNow() // series 3
	fail()     // n 3
	got := f.get(j.ID)
	var ns []int
	for _, a := range got.Attempts {
		ns = append(ns, a.N)
	}
	if !slices.Equal(ns, []int{1, 2, 2, 3}) || got.Attempt != 1 || got.State != engine.StateFailed {
		f.Fatalf("after two retries and a refund: attempt %d state %s, history numbered %v, want 1 FAILED [1 2 2 3]", got.Attempt, got.State, ns)
	}
}

func testRetryRefused(f *fx) {
	running := f.add("q", "t", "")
	f.claimOne(t0)
	done := f.add("q", "t", "")
	f.complete(succeeded(f.claimOne(t0), t0))
	queued := f.add("q", "t", "")
	s1 := f.add("q", "t", "s")
	f.add("q", "t", "s")
	now := t0.Add(time.Hour)
	for _, j := range []*engine.Job{queued, running, done, s1} {
		st := f.state(j.ID)
		_, err := f.s.Retry(f.ctx, j.ID, now)
		if !errors.Is(err, engine.ErrInvalidTransition) || !strings.Contains(err.Error(), string(st)) {
			f.Fatalf("retry of a %s job: %v, want ErrInvalidTransition naming the state", st, err)
		}
		f.wantState(j.ID, st)
	}
	if _, err := f.s.Retry(f.ctx, "no-such-job", now); !errors.Is(err, engine.ErrNotFound) {
		f.Fatalf("retry of an unknown job: %v", err)
	}

	// Generation 1 fails while 2 waits: 1 must never run again.
	g1 := f.add("q", "t", "g")
	var run *engine.Job
	for _, j := range f.claim(t0, 10) {
		if j.ID == g1.ID {
			run = j
		}
	}
	if run == nil {
		f.Fatalf("%s was not claimed", g1.ID)
	}
	g2 := f.add("q", "t", "g")
	f.complete(failed(run, t0))
	_, err := f.s.Retry(f.ctx, g1.ID, now)
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "generation 2") {
		f.Fatalf("retry of an outdated generation: %v, want ErrInvalid naming generation 2", err)
	}
	f.wantState(g1.ID, engine.StateFailed)
	// The newest generation can be retried once it has ended.
	if _, err := f.s.CancelQueued(f.ctx, []string{g2.ID}, "by user", t0); err != nil {
		f.Fatal(err)
	}
	if _, err := f.s.Retry(f.ctx, g1.ID, now); !errors.Is(err, engine.ErrInvalid) {
		f.Fatalf("retry of an outdated generation after the newer one ended: %v", err)
	}
	if got, err := f.s.Retry(f.ctx, g2.ID, now); err != nil || got.State != engine.StateQueued {
		f.Fatalf("retry of the newest generation: %v", err)
	}
	f.wantStats("after refused retries")
}

func testRetryDependencies(f *fx) {
	a := f.add("q", "t", "")
	run := f.claimOne(t0)
	b := f.after("q", a)
	c := f.after("q", b)
	res, err := f.s.Complete(f.ctx, failed(run, t0))
	if err != nil {
		f.Fatal(err)
	}
	f.wantIDs("cancelled dependents", res.Cancelled, b, c)
	now := t0.Add(time.Hour)
	_, err = f.s.Retry(f.ctx, b.ID, now)
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), a.ID) || !strings.Contains(err.Error(), "FAILED") {
		f.Fatalf("retry of a job whose dependency failed: %v, want ErrInvalid naming %s FAILED", err, a.ID)
	}
	if _, err := f.s.Retry(f.ctx, a.ID, now); err != nil {
		f.Fatal(err)
	}
	f.wantState(b.ID, engine.StateCancelled)
	f.wantState(c.ID, engine.StateCancelled)
	// Retried in turn, the dependents wait for their dependencies again.
	for _, j := range []*engine.Job{b, c} {
		if _, err := f.s.Retry(f.ctx, j.ID, now); err != nil {
			f.Fatalf("retry %s: %v", j.ID, err)
		}
	}
	for _, want := range []*engine.Job{a, b, c} {
		got := f.claim(now, 10)
		f.wantIDs("claim", got, want)
		f.complete(succeeded(got[0], now))
	}
}
