package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"stq/engine"
)

// The queue-control rules: start conditions, dependencies and their cancel
// cascade, pause, per-queue caps, retry and prune.

func (f *fx) claimReq(req engine.ClaimRequest) []*engine.Job {
	f.Helper()
	if req.Owner == "" {
		req.Owner = "host/1"
	}
	if req.Now.IsZero() {
		req.Now = t0
	}
	jobs, err := f.s.Claim(f.ctx, req)
	if err != nil {
		f.Fatalf("claim %+v: %v", req, err)
	}
	return jobs
}

// after enqueues a job of queue that runs after deps.
func (f *fx) after(queue string, deps ...*engine.Job) *engine.Job {
	f.Helper()
	j := f.job(queue, "t", "")
	j.After = ids(deps)
	return f.enqueue(j, false).Job
}

func failed(j *engine.Job, at time.Time) engine.Completion {
	one := 1
	return engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateFailed,
		Outcome: engine.OutcomeFailed, Reason: "exit status 1", ExitCode: &one, FinishedAt: at}
}

func (f *fx) wantIDs(what string, got []*engine.Job, want ...*engine.Job) {
	f.Helper()
	if !slices.Equal(ids(got), ids(want)) {
		f.Fatalf("%s: got %v, want %v", what, ids(got), ids(want))
	}
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

func (f *fx) setPaused(queue string, paused bool) {
	f.Helper()
	if err := f.s.SetPaused(f.ctx, queue, paused); err != nil {
		f.Fatalf("set paused %s %v: %v", queue, paused, err)
	}
}

func (f *fx) wantPaused(want ...string) {
	f.Helper()
	got, err := f.s.PausedQueues(f.ctx)
	if err != nil {
		f.Fatal(err)
	}
	if !slices.Equal(got, want) {
		f.Fatalf("paused queues %v, want %v", got, want)
	}
}

func testPause(f *fx) {
	f.wantPaused()
	pa := f.add("p", "t", "")
	qa := f.add("q", "t", "")
	f.setPaused("p", true)
	f.setPaused("z", true)
	f.setPaused("p", true) // twice is fine
	f.setPaused("a", true)
	f.setPaused("a", false)
	f.wantPaused("p", "z")
	f.wantIDs("claim with p paused", f.claim(t0, 10), qa)
	pb := f.add("p", "t", "")
	f.wantIDs("claim of a job enqueued while paused", f.claim(t0, 10))
	f.setPaused("p", false)
	f.wantPaused("z")
	f.wantIDs("claim once p is resumed", f.claim(t0, 10), pa, pb)
}

func testIdleAndPower(f *fx) {
	mk := func(prio int, idle, ac bool) *engine.Job {
		j := f.job("q", "t", "")
		j.Priority, j.WaitIdle, j.RequireCharging = prio, idle, ac
		return f.enqueue(j, false).Job
	}
	idle := mk(3, true, false)
	ac := mk(2, false, true)
	both := mk(1, true, true)
	plain := mk(0, false, false)
	f.wantIDs("busy on battery", f.claimReq(engine.ClaimRequest{Limit: 10}), plain)
	f.wantIDs("idle on battery", f.claimReq(engine.ClaimRequest{Limit: 10, Idle: true}), idle)
	f.wantIDs("busy on ac", f.claimReq(engine.ClaimRequest{Limit: 10, OnAC: true}), ac)
	f.wantIDs("idle on ac", f.claimReq(engine.ClaimRequest{Limit: 10, Idle: true, OnAC: true}), both)
}

func testQueueLimits(f *fx) {
	q1 := f.add("q", "t", "")
	q2 := f.add("q", "t", "")
	r1 := f.add("r", "t", "")
	q3 := f.add("q", "t", "")
	r2 := f.add("r", "t", "")
	// Another daemon, which has no limit configured, runs one job of q.
	other := f.claimReq(engine.ClaimRequest{Owner: "host/2", Limit: 1})
	f.wantIDs("claim of the other owner", other, q1)
	limits := map[string]int{"q": 2}
	got := f.claimReq(engine.ClaimRequest{Limit: 10, QueueLimits: limits})
	f.wantIDs("claim with q limited to 2", got, q2, r1, r2)
	f.wantIDs("claim with q full", f.claimReq(engine.ClaimRequest{Limit: 10, QueueLimits: limits}))
	f.complete(succeeded(other[0], t0))
	f.wantIDs("claim once the other owner's job is done", f.claimReq(engine.ClaimRequest{Limit: 10, QueueLimits: limits}), q3)
}

func testQuota(f *fx) {
	byQueue := make(map[string][]*engine.Job)
	for range 5 {
		for _, q := range []string{"a", "b", "c"} {
			byQueue[q] = append(byQueue[q], f.add(q, "t", ""))
		}
	}
	count := func(jobs []*engine.Job) map[string]int {
		m := make(map[string]int)
		for _, j := range jobs {
			m[j.Queue]++
		}
		return m
	}
	got := f.claimReq(engine.ClaimRequest{Limit: 100, Quota: map[string]int{"a": 1, "b": 3}, DefaultQuota: 2})
	if c, want := count(got), map[string]int{"a": 1, "b": 3, "c": 2}; !maps.Equal(c, want) {
		f.Fatalf("claim with quotas took %v (%v), want %v", c, ids(got), want)
	}
	// Each queue's share is taken in claim order.
	f.wantIDs("claim with quotas", got, byQueue["a"][0], byQueue["b"][0], byQueue["c"][0], byQueue["b"][1], byQueue["c"][1], byQueue["b"][2])
	// Without a default quota the unlisted queues are not capped.
	got = f.claimReq(engine.ClaimRequest{Limit: 100, Quota: map[string]int{"a": 1}})
	if c, want := count(got), map[string]int{"a": 1, "b": 2, "c": 3}; !maps.Equal(c, want) {
		f.Fatalf("second claim took %v, want %v", c, want)
	}
	// The quota caps one call, not the queue.
	got = f.claimReq(engine.ClaimRequest{Limit: 100, Quota: map[string]int{"a": 1}})
	f.wantIDs("third claim", got, byQueue["a"][2])
}

func testSkippedDoNotBlock(f *fx) {
	full := f.add("full", "t", "")
	key := f.add("keys", "t", "k")
	f.wantIDs("setup claim", f.claim(t0, 10), full, key)
	f.setPaused("paused", true)
	hi := func(queue, subject string, set func(*engine.Job)) *engine.Job {
		j := f.job(queue, "t", subject)
		j.Priority = 9
		if set != nil {
			set(j)
		}
		return f.enqueue(j, false).Job
	}
	held := hi("paused", "", nil)
	hi("q", "", func(j *engine.Job) { j.WaitIdle = true })
	hi("q", "", func(j *engine.Job) { j.RequireCharging = true })
	hi("q", "", func(j *engine.Job) { j.After = []string{held.ID} })
	hi("full", "", nil)
	hi("keys", "k", nil) // its older generation runs
	quota1 := hi("quota", "", nil)
	hi("quota", "", nil)
	plain := f.add("open", "t", "")
	req := engine.ClaimRequest{Limit: 2, QueueLimits: map[string]int{"full": 1}, Quota: map[string]int{"quota": 1}}
	f.wantIDs("claim past every skipped job", f.claimReq(req), quota1, plain)
}

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
