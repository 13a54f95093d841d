package storetest

import (
	"maps"
	"time"

	"stq/engine"
)

// oracle counts jobs by queue and state by listing them all.
func (f *fx) oracle() map[string]map[engine.State]int64 {
	f.Helper()
	m := make(map[string]map[engine.State]int64)
	for _, j := range f.list(engine.ListFilter{Limit: 1 << 20}) {
		if m[j.Queue] == nil {
			m[j.Queue] = make(map[engine.State]int64)
		}
		m[j.Queue][j.State]++
	}
	return m
}

func (f *fx) wantStats(step string) {
	f.Helper()
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.Fatalf("%s: stats: %v", step, err)
	}
	want := f.oracle()
	if !maps.EqualFunc(st.Queues, want, maps.Equal) {
		f.Fatalf("%s: stats %v, want %v", step, st.Queues, want)
	}
}

func testStats(f *fx) {
	f.wantStats("empty")
	a1 := f.add("a", "t", "k")
	f.wantStats("enqueue")
	f.add("a", "t", "k") // supersedes a1
	f.wantStats("supersede")
	old := f.job("a", "t", "k")
	old.Generation = 1
	f.enqueue(old, true)
	f.wantStats("superseded on arrival")
	b := f.add("b", "t", "")
	run := f.claim(t0, 10)
	f.wantStats("claim")
	for _, j := range run {
		f.complete(retry(j, t0, t0))
	}
	f.wantStats("retry")
	run = f.claim(t0, 10)
	f.complete(succeeded(run[0], t0))
	f.complete(engine.Completion{ID: run[1].ID, Attempt: run[1].Attempt, State: engine.StateFailed, Outcome: engine.OutcomeFailed, Reason: "x", FinishedAt: t0})
	f.wantStats("done and failed")
	c := f.add("b", "t", "")
	f.enqueue(&engine.Job{ID: "exp", Queue: "c", Type: "t", CreatedAt: t0, RunAt: t0, TTL: engine.Duration(time.Second)}, false)
	if _, err := f.s.CancelQueued(f.ctx, []string{c.ID}, "x", t0); err != nil {
		f.Fatal(err)
	}
	f.wantStats("cancel")
	if _, err := f.s.ExpireDue(f.ctx, t0.Add(time.Second)); err != nil {
		f.Fatal(err)
	}
	f.wantStats("expire")
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.Fatal(err)
	}
	want := map[string]map[engine.State]int64{
		"a": {engine.StateSuperseded: 2, engine.StateDone: 1},
		"b": {engine.StateFailed: 1, engine.StateCancelled: 1},
		"c": {engine.StateExpired: 1},
	}
	if !maps.EqualFunc(st.Queues, want, maps.Equal) {
		f.Fatalf("final stats %v, want %v (jobs %s %s)", st.Queues, want, a1.ID, b.ID)
	}
}
