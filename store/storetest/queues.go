package storetest

import (
	"maps"
	"slices"

	"stq/engine"
)

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
