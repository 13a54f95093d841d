package storetest

import (
	"slices"
	"time"

	"stq/engine"
)

func testFutureRunAt(f *fx) {
	j := f.job("q", "t", "")
	j.RunAt = t0.Add(time.Minute)
	f.enqueue(j, false)
	for _, at := range []time.Time{t0, t0.Add(time.Minute - time.Nanosecond)} {
		if got := f.claim(at, 10); len(got) != 0 {
			f.Fatalf("claim at %s took %v, due at %s", at, ids(got), j.RunAt)
		}
	}
	if got := f.claimOne(t0.Add(time.Minute)); got.ID != j.ID {
		f.Fatalf("claim at run_at got %s", got.ID)
	}
}

func testScheduledBecomeDue(f *fx) {
	mk := func(prio int, runIn, ttl time.Duration) *engine.Job {
		j := f.job("q", "t", "")
		j.Priority, j.RunAt, j.TTL = prio, t0.Add(runIn), engine.Duration(ttl)
		f.enqueue(j, false)
		return j
	}
	wantClaim := func(now time.Time, limit int, want ...*engine.Job) {
		f.Helper()
		if got := f.claim(now, limit); !slices.Equal(ids(got), ids(want)) {
			f.Fatalf("claim at t0+%s limit %d got %v, want %v", now.Sub(t0), limit, ids(got), ids(want))
		}
	}
	wantWake := func(now, want time.Time) {
		f.Helper()
		w, err := f.s.NextWake(f.ctx, now)
		if err != nil {
			f.Fatalf("next wake: %v", err)
		}
		if !w.NextRunAt.Equal(want) {
			f.Fatalf("next run at t0+%s is %s, want %s", now.Sub(t0), w.NextRunAt, want)
		}
	}
	a := mk(0, 0, 0)
	b := mk(5, time.Minute, 0)
	c := mk(5, 0, 0)
	d := mk(0, time.Minute, 0)
	e := mk(10, 2*time.Minute, 0)
	mk(0, time.Minute, 30*time.Second) // expires before it is due: never claimed
	g := mk(0, 0, 0)

	wantWake(t0, t0.Add(time.Minute))
	wantClaim(t0, 1, c)
	// A nanosecond early the priority-5 job b is not claimable, so the
	// claim falls through to the priority-0 jobs that are due.
	wantClaim(t0.Add(time.Minute-time.Nanosecond), 1, a)
	// On time, b and d take their places in (priority, enqueue order) among
	// the jobs that were due all along: d was enqueued before g.
	wantClaim(t0.Add(time.Minute), 2, b, d)
	wantWake(t0.Add(time.Minute), t0.Add(2*time.Minute))
	wantClaim(t0.Add(time.Minute), 10, g)
	wantClaim(t0.Add(2*time.Minute-time.Nanosecond), 10)
	wantClaim(t0.Add(2*time.Minute), 10, e)

	// A claim that finds two jobs due but may take one leaves the other
	// queued; if the clock then goes back, that job is not due any more:
	// it is not claimed before its run_at and still wakes the scheduler.
	h := mk(0, 3*time.Minute, 0)
	i := mk(0, 3*time.Minute, 0)
	wantClaim(t0.Add(3*time.Minute), 1, h)
	wantClaim(t0.Add(2*time.Minute), 10)
	wantWake(t0.Add(2*time.Minute), i.RunAt)
	wantClaim(t0.Add(3*time.Minute), 10, i)

	// The same holds for a job enqueued with a created_at later than the
	// now of the calls that follow, and for a retry finished later than
	// that: due by the clock that stored them, not by the earlier one.
	late := f.job("q", "t", "")
	late.CreatedAt, late.RunAt = t0.Add(5*time.Minute), t0.Add(4*time.Minute)
	f.enqueue(late, false)
	wantWake(t0.Add(3*time.Minute), late.RunAt)
	wantClaim(t0.Add(4*time.Minute-time.Nanosecond), 10)
	run := f.claimOne(t0.Add(4 * time.Minute))
	f.complete(retry(run, t0.Add(6*time.Minute), t0.Add(5*time.Minute)))
	wantWake(t0.Add(4*time.Minute), t0.Add(5*time.Minute))
	wantClaim(t0.Add(5*time.Minute-time.Nanosecond), 10)
	if got := f.claimOne(t0.Add(5 * time.Minute)); got.ID != late.ID || got.Attempt != 2 {
		f.Fatalf("claim of the retry got %s attempt %d, want %s attempt 2", got.ID, got.Attempt, late.ID)
	}
}

func testTTL(f *fx) {
	j := f.job("q", "t", "s")
	j.TTL = engine.Duration(time.Minute)
	keep := f.job("q", "t", "keep")
	keep.TTL = engine.Duration(time.Hour)
	f.enqueue(j, false)
	f.enqueue(keep, false)
	if got := f.claim(t0.Add(time.Minute), 1); len(got) != 1 || got[0].ID != keep.ID {
		f.Fatalf("claim at expiry got %v, want only %s", ids(got), keep.ID)
	}
	exp, err := f.s.ExpireDue(f.ctx, t0.Add(time.Minute-time.Nanosecond))
	if err != nil || len(exp) != 0 {
		f.Fatalf("expire before the ttl: %v %v", ids(exp), err)
	}
	now := t0.Add(time.Minute)
	exp, err = f.s.ExpireDue(f.ctx, now)
	if err != nil || len(exp) != 1 || exp[0].ID != j.ID {
		f.Fatalf("expire at the ttl: %v %v, want [%s]", ids(exp), err, j.ID)
	}
	if e := exp[0]; e.State != engine.StateExpired || e.FinishedAt == nil || !e.FinishedAt.Equal(now) || e.Error == "" {
		f.Fatalf("expired job: state %s finished %s error %q", e.State, fmtTime(e.FinishedAt), e.Error)
	}
	f.wantJob("expired job read back", f.get(j.ID), exp[0])
	if exp, _ := f.s.ExpireDue(f.ctx, now.Add(time.Hour)); len(exp) != 0 {
		f.Fatalf("second expire returned %v", ids(exp))
	}
}

func testTTLAfterStart(f *fx) {
	j := f.job("q", "t", "")
	j.TTL = engine.Duration(time.Minute)
	f.enqueue(j, false)
	run := f.claimOne(t0)
	f.complete(retry(run, t0.Add(time.Second), t0.Add(2*time.Minute)))
	if exp, err := f.s.ExpireDue(f.ctx, t0.Add(time.Hour)); err != nil || len(exp) != 0 {
		f.Fatalf("expire of a retried job: %v %v", ids(exp), err)
	}
	if got := f.claimOne(t0.Add(time.Hour)); got.ID != j.ID || got.Attempt != 2 {
		f.Fatalf("claim got %s attempt %d", got.ID, got.Attempt)
	}
}

func testNextWake(f *fx) {
	wake := func(now time.Time) engine.Wake {
		f.Helper()
		w, err := f.s.NextWake(f.ctx, now)
		if err != nil {
			f.Fatalf("next wake: %v", err)
		}
		return w
	}
	if w := wake(t0); !w.NextRunAt.IsZero() || !w.NextExpiry.IsZero() {
		f.Fatalf("empty store: %+v, want zero times", w)
	}
	at := func(j *engine.Job, runIn, ttl time.Duration) *engine.Job {
		j.RunAt, j.TTL = t0.Add(runIn), engine.Duration(ttl)
		f.enqueue(j, false)
		return j
	}
	at(f.job("q", "t", ""), 0, 0)                     // due now: not a future wake
	at(f.job("q", "t", ""), 5*time.Minute, 0)         // later
	late := at(f.job("q", "t", ""), 2*time.Minute, 0) // earliest future run
	ttl := at(f.job("q", "t", ""), 10*time.Minute, 7*time.Minute)
	at(f.job("q", "t", ""), 10*time.Minute, 9*time.Minute)
	w := wake(t0)
	if !w.NextRunAt.Equal(late.RunAt) || !w.NextExpiry.Equal(t0.Add(7*time.Minute)) {
		f.Fatalf("wake %+v, want run %s expiry %s", w, late.RunAt, t0.Add(7*time.Minute))
	}
	// At exactly a run_at that job is due, not in the future.
	if w := wake(late.RunAt); !w.NextRunAt.Equal(t0.Add(5 * time.Minute)) {
		f.Fatalf("wake at %s: run %s, want %s", late.RunAt, w.NextRunAt, t0.Add(5*time.Minute))
	}
	if _, err := f.s.CancelQueued(f.ctx, []string{ttl.ID}, "x", t0); err != nil {
		f.Fatal(err)
	}
	if w := wake(t0); !w.NextExpiry.Equal(t0.Add(9 * time.Minute)) {
		f.Fatalf("expiry after cancel %s, want %s", w.NextExpiry, t0.Add(9*time.Minute))
	}
	if w := wake(t0.Add(time.Hour)); !w.NextRunAt.IsZero() {
		f.Fatalf("nothing is due after an hour, got %s", w.NextRunAt)
	}
}
