package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"stq/engine"
)

// after enqueues a job of queue that runs after deps.
func (f *fx) after(queue string, deps ...*engine.Job) *engine.Job {
	f.Helper()
	j := f.job(queue, "t", "")
	j.After = ids(deps)
	return f.enqueue(j, false).Job
}

// cascaded is a job the cancel cascade should have cancelled because dep
// ended in state.
type cascaded struct {
	job   *engine.Job
	dep   *engine.Job
	state engine.State
}

// wantCascade checks the dependents a call reported, in order, and that the
// store holds them as reported.
func (f *fx) wantCascade(what string, got []*engine.Job, at time.Time, want ...cascaded) {
	f.Helper()
	var wantIDs []string
	for _, w := range want {
		wantIDs = append(wantIDs, w.job.ID)
	}
	if !slices.Equal(ids(got), wantIDs) {
		f.Fatalf("%s: cancelled %v, want %v", what, ids(got), wantIDs)
	}
	for i, w := range want {
		g := got[i]
		reason := fmt.Sprintf("dependency %s ended %s", w.dep.ID, w.state)
		if g.State != engine.StateCancelled || g.Error != reason || g.FinishedAt == nil || !g.FinishedAt.Equal(at) {
			f.Fatalf("%s: dependent %s is %s with error %q finished %s; want CANCELLED with %q at %s",
				what, g.ID, g.State, g.Error, fmtTime(g.FinishedAt), reason, at)
		}
		f.wantJob(what+": dependent read back", f.get(g.ID), g)
	}
}

func testQueueFieldsRoundTrip(f *fx) {
	p1 := f.add("q", "t", "")
	p2 := f.add("q", "t", "")
	for _, j := range f.claim(t0, 2) {
		f.complete(succeeded(j, t0))
	}
	j := f.job("q", "t", "s")
	j.WaitIdle, j.RequireCharging, j.Replace = true, true, true
	j.Debounce = engine.Duration(3*time.Second + 7)
	j.After = []string{p2.ID, p1.ID, p2.ID} // order and repeats kept as given
	want := *j
	want.After = slices.Clone(j.After)
	want.Generation, want.State, want.Attempts = 1, engine.StateQueued, []engine.Attempt{}
	res := f.enqueue(j, false)
	j.After[0] = "changed by the caller" // the store keeps its own copy
	f.wantJob("enqueue result", res.Job, &want)
	f.wantJob("get", f.get(j.ID), &want)
	listed := f.list(engine.ListFilter{Queue: "q", Type: "t", Subject: "s"})
	if len(listed) != 1 {
		f.Fatalf("list: %v", ids(listed))
	}
	wantListed := want
	wantListed.Attempts = nil
	f.wantJob("list", listed[0], &wantListed)

	now := t0.Add(time.Minute)
	got := f.claimReq(engine.ClaimRequest{Now: now, Limit: 5, Idle: true, OnAC: true})
	want.State, want.Attempt, want.Owner, want.StartedAt = engine.StateRunning, 1, "host/1", &now
	want.Attempts = []engine.Attempt{{N: 1, StartedAt: now, Outcome: engine.OutcomeRunning}}
	if len(got) != 1 {
		f.Fatalf("claim: %v, want %s", ids(got), j.ID)
	}
	f.wantJob("claimed", got[0], &want)
	running, err := f.s.Running(f.ctx)
	if err != nil || len(running) != 1 {
		f.Fatalf("running: %v %v", ids(running), err)
	}
	f.wantJob("running", running[0], &want)
}

func testAfterUnknown(f *fx) {
	p := f.add("q", "t", "")
	j := f.job("q", "t", "s")
	j.After = []string{p.ID, "no-such-job"}
	_, err := f.s.Enqueue(f.ctx, j, false)
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "no-such-job") {
		f.Fatalf("enqueue after an unknown job: %v, want ErrInvalid naming no-such-job", err)
	}
	if _, err := f.s.Get(f.ctx, j.ID); !errors.Is(err, engine.ErrNotFound) {
		f.Fatalf("the rejected job was stored: %v", err)
	}
	// Nothing of the key changed either.
	if g := f.add("q", "t", "s").Generation; g != 1 {
		f.Fatalf("first stored generation of the key is %d, want 1", g)
	}
	f.wantStats("after a rejected enqueue")
}

func testAfterAlreadyFailed(f *fx) {
	done := f.add("q", "t", "")
	f.complete(succeeded(f.claimOne(t0), t0))
	fail := f.add("q", "t", "")
	f.complete(failed(f.claimOne(t0), t0))
	cancelled := f.add("q", "t", "")
	if _, err := f.s.CancelQueued(f.ctx, []string{cancelled.ID}, "by user", t0); err != nil {
		f.Fatal(err)
	}
	expiring := f.job("q", "t", "")
	expiring.TTL = engine.Duration(time.Second)
	f.enqueue(expiring, false)
	if exp, err := f.s.ExpireDue(f.ctx, t0.Add(time.Second)); err != nil || len(exp) != 1 {
		f.Fatalf("expire: %v %v", ids(exp), err)
	}
	superseded := f.add("q", "t", "k")
	newest := f.add("q", "t", "k")
	f.wantState(superseded.ID, engine.StateSuperseded)

	at := t0.Add(time.Hour)
	for _, tc := range []struct {
		after []*engine.Job
		dep   *engine.Job
		state engine.State
	}{
		{[]*engine.Job{done, fail}, fail, engine.StateFailed},
		{[]*engine.Job{cancelled}, cancelled, engine.StateCancelled},
		{[]*engine.Job{done, expiring}, expiring, engine.StateExpired},
		{[]*engine.Job{superseded, done}, superseded, engine.StateSuperseded},
		// The first one in the list that ended unsuccessfully is named.
		{[]*engine.Job{done, cancelled, fail}, cancelled, engine.StateCancelled},
	} {
		j := f.job("q", "t", "")
		j.CreatedAt, j.RunAt, j.After = at, at, ids(tc.after)
		res := f.enqueue(j, false)
		reason := fmt.Sprintf("dependency %s ended %s", tc.dep.ID, tc.state)
		got := res.Job
		if got.State != engine.StateCancelled || got.Error != reason || got.FinishedAt == nil || !got.FinishedAt.Equal(at) ||
			!slices.Equal(got.After, ids(tc.after)) || len(res.Superseded) != 0 || len(res.Cancelled) != 0 {
			f.Fatalf("job after %v: %s error %q finished %s after %v; want CANCELLED with %q at %s",
				ids(tc.after), got.State, got.Error, fmtTime(got.FinishedAt), got.After, reason, at)
		}
		f.wantJob("job cancelled on arrival read back", f.get(j.ID), got)
	}
	ok := f.job("q", "t", "")
	ok.After = []string{done.ID}
	if st := f.enqueue(ok, false).Job.State; st != engine.StateQueued {
		f.Fatalf("job after a DONE job is %s, want QUEUED", st)
	}
	f.wantIDs("claim", f.claim(at, 10), newest, ok)
	f.wantStats("after jobs cancelled on arrival")
}

func testDependentWaits(f *fx) {
	a := f.add("q", "t", "")
	b := f.add("q", "t", "")
	child := f.job("q", "t", "")
	child.Priority, child.After = 10, []string{a.ID, b.ID}
	f.enqueue(child, false)
	plain := f.add("q", "t", "")
	run := f.claim(t0, 10)
	f.wantIDs("claim while both dependencies are queued", run, a, b, plain)
	f.complete(succeeded(run[0], t0.Add(time.Second)))
	f.wantIDs("claim while one dependency runs", f.claim(t0.Add(time.Second), 10))
	// A dependency that goes back to QUEUED for a retry is still not DONE.
	f.complete(retry(run[1], t0.Add(2*time.Second), t0.Add(2*time.Second)))
	again := f.claim(t0.Add(2*time.Second), 10)
	f.wantIDs("claim while one dependency waits for its retry", again, b)
	f.complete(succeeded(again[0], t0.Add(3*time.Second)))
	got := f.claim(t0.Add(3*time.Second), 10)
	f.wantIDs("claim once every dependency is done", got, child)
	if !slices.Equal(got[0].After, []string{a.ID, b.ID}) {
		f.Fatalf("claimed dependent has After %v", got[0].After)
	}
}

func testCascadeComplete(f *fx) {
	a := f.add("q", "t", "")
	x := f.add("q", "t", "")
	z := f.add("q", "t", "")
	run := f.claim(t0, 3)
	f.wantIDs("claim", run, a, x, z)
	b := f.after("q", a)
	c := f.after("q", b)
	d := f.after("q", b, a)
	e := f.after("q", a)
	if _, err := f.s.CancelQueued(f.ctx, []string{e.ID}, "by user", t0); err != nil {
		f.Fatal(err)
	}
	y := f.after("q", x)
	w := f.after("q", z)
	other := f.add("q", "t", "")

	at := t0.Add(time.Minute)
	res, err := f.s.Complete(f.ctx, failed(run[0], at))
	if err != nil || res.Job.State != engine.StateFailed {
		f.Fatalf("fail %s: %v", a.ID, err)
	}
	// Level by level: a's dependents, then theirs. d waits for both a and
	// b and is cancelled once, for a.
	f.wantCascade("dependents of a failed job", res.Cancelled, at,
		cascaded{b, a, engine.StateFailed}, cascaded{d, a, engine.StateFailed}, cascaded{c, b, engine.StateCancelled})
	if got := f.get(e.ID); got.State != engine.StateCancelled || got.Error != "by user" {
		f.Fatalf("a dependent already cancelled is %s with %q, want left as it was", got.State, got.Error)
	}

	cancelled := engine.Completion{ID: x.ID, Attempt: 1, State: engine.StateCancelled,
		Outcome: engine.OutcomeCancelled, Reason: "cancelled", FinishedAt: at.Add(time.Second)}
	res, err = f.s.Complete(f.ctx, cancelled)
	if err != nil {
		f.Fatal(err)
	}
	f.wantCascade("dependents of a cancelled running job", res.Cancelled, at.Add(time.Second), cascaded{y, x, engine.StateCancelled})

	res, err = f.s.Complete(f.ctx, succeeded(run[2], at))
	if err != nil || len(res.Cancelled) != 0 {
		f.Fatalf("done job cancelled %v (%v)", ids(res.Cancelled), err)
	}
	f.wantState(w.ID, engine.StateQueued)
	f.wantState(other.ID, engine.StateQueued)
	f.wantStats("after the cascades")
}

func testCascadeCancelQueued(f *fx) {
	a := f.add("q", "t", "")
	b := f.after("q", a)
	c := f.after("r", b)
	d := f.after("q", a)
	now := t0.Add(time.Minute)
	got, err := f.s.CancelQueued(f.ctx, []string{a.ID, d.ID}, "by user", now)
	if err != nil {
		f.Fatal(err)
	}
	if len(got) < 2 {
		f.Fatalf("cancelled %v", ids(got))
	}
	// The jobs named come first, with the caller's reason, even d, which
	// also waits for a.
	f.wantIDs("jobs cancelled directly", got[:2], a, d)
	for _, j := range got[:2] {
		if j.Error != "by user" || j.State != engine.StateCancelled {
			f.Fatalf("job %s: %s %q", j.ID, j.State, j.Error)
		}
	}
	f.wantCascade("dependents of cancelled jobs", got[2:], now,
		cascaded{b, a, engine.StateCancelled}, cascaded{c, b, engine.StateCancelled})
	f.wantStats("after cancel")
}

func testCascadeExpire(f *fx) {
	a := f.job("q", "t", "")
	a.TTL = engine.Duration(time.Minute)
	f.enqueue(a, false)
	b := f.after("q", a)
	c := f.after("q", b)
	keep := f.add("q", "t", "")
	now := t0.Add(time.Minute)
	got, err := f.s.ExpireDue(f.ctx, now)
	if err != nil {
		f.Fatal(err)
	}
	if len(got) == 0 || got[0].ID != a.ID || got[0].State != engine.StateExpired {
		f.Fatalf("expired %v, want %s first", ids(got), a.ID)
	}
	f.wantCascade("dependents of an expired job", got[1:], now,
		cascaded{b, a, engine.StateExpired}, cascaded{c, b, engine.StateCancelled})
	f.wantState(keep.ID, engine.StateQueued)
	f.wantStats("after expiry")
}

func testCascadeSuperseded(f *fx) {
	// A retry that finds a newer generation ends SUPERSEDED.
	h1 := f.add("q", "t", "h")
	run := f.claimOne(t0)
	d := f.after("q", h1)
	f.add("q", "t", "h") // generation 2 waits while 1 runs
	at := t0.Add(time.Second)
	res, err := f.s.Complete(f.ctx, retry(run, at, at))
	if err != nil || res.Job.State != engine.StateSuperseded {
		f.Fatalf("retry of an outdated generation: %v %v", res.Job, err)
	}
	f.wantCascade("dependents of a job superseded at its retry", res.Cancelled, at, cascaded{d, h1, engine.StateSuperseded})

	// An enqueue supersedes the older QUEUED generation.
	g1 := f.add("q", "t", "k")
	b := f.after("q", g1)
	c := f.after("q", b)
	later := t0.Add(time.Minute)
	g2 := f.job("q", "t", "k")
	g2.CreatedAt, g2.RunAt = later, later
	er := f.enqueue(g2, false)
	if !slices.Equal(er.Superseded, []string{g1.ID}) {
		f.Fatalf("superseded %v, want [%s]", er.Superseded, g1.ID)
	}
	f.wantCascade("dependents of a job superseded by an enqueue", er.Cancelled, later,
		cascaded{b, g1, engine.StateSuperseded}, cascaded{c, b, engine.StateCancelled})
	f.wantStats("after supersede")
}

func testPrunedDependency(f *fx) {
	a := f.add("q", "t", "")
	f.complete(succeeded(f.claimOne(t0), t0.Add(time.Second)))
	c := f.add("q", "t", "")
	b := f.after("q", a, c)
	if n, err := f.s.Prune(f.ctx, engine.PruneRequest{Before: t0.Add(time.Hour)}); err != nil || n != 1 {
		f.Fatalf("prune: %d %v, want 1", n, err)
	}
	if _, err := f.s.Get(f.ctx, a.ID); !errors.Is(err, engine.ErrNotFound) {
		f.Fatalf("pruned dependency: %v", err)
	}
	now := t0.Add(time.Hour)
	f.wantIDs("claim while c is queued", f.claim(now, 10), c)
	f.complete(succeeded(f.get(c.ID), now))
	got := f.claim(now, 10)
	f.wantIDs("claim once c is done and a is pruned", got, b)
	if !slices.Equal(got[0].After, []string{a.ID, c.ID}) {
		f.Fatalf("After of the dependent is %v after pruning, want it as given", got[0].After)
	}
}
