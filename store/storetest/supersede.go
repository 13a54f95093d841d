package storetest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"stq/engine"
)

func testAutoGeneration(f *fx) {
	steps := []struct {
		queue, typ, subject string
		want                int64
	}{
		{"q", "t", "a", 1},
		{"q", "t", "a", 2},
		{"q", "t", "b", 1}, // other subject
		{"q", "u", "a", 1}, // other type
		{"r", "t", "a", 1}, // other queue
		{"q", "t", "a", 3},
		{"q", "t", "b", 2},
		{"q", "t", "", 0}, // no subject: no generation
		{"q", "t", "", 0},
	}
	for i, st := range steps {
		got := f.add(st.queue, st.typ, st.subject)
		if got.Generation != st.want {
			f.Fatalf("step %d: job of key %q/%q/%q got generation %d, want %d", i, st.queue, st.typ, st.subject, got.Generation, st.want)
		}
		if g := f.get(got.ID).Generation; g != st.want {
			f.Fatalf("step %d: stored generation %d, want %d", i, g, st.want)
		}
	}
	// Automatic numbering continues above an explicit generation.
	j := f.job("q", "t", "a")
	j.Generation = 10
	f.enqueue(j, true)
	if g := f.add("q", "t", "a").Generation; g != 11 {
		f.Fatalf("generation after explicit 10 = %d, want 11", g)
	}
}

func testExplicitOld(f *fx) {
	first := f.job("q", "t", "s")
	first.Generation = 5
	if st := f.enqueue(first, true).Job.State; st != engine.StateQueued {
		f.Fatalf("explicit generation 5 on a new key stored %s, want QUEUED", st)
	}
	for _, gen := range []int64{3, 5, 0} {
		j := f.job("q", "t", "s")
		j.Generation = gen
		at := t0.Add(time.Duration(gen) * time.Second)
		j.CreatedAt, j.RunAt = at, at
		res := f.enqueue(j, true)
		got := res.Job
		if got.State != engine.StateSuperseded || got.Generation != gen || got.Error == "" ||
			got.FinishedAt == nil || !got.FinishedAt.Equal(at) || len(res.Superseded) != 0 {
			f.Fatalf("explicit generation %d after 5: got state %s gen %d error %q finished %s superseded %v; want SUPERSEDED, an error, finished at creation",
				gen, got.State, got.Generation, got.Error, fmtTime(got.FinishedAt), res.Superseded)
		}
		stored := f.get(j.ID)
		f.wantJob("stored job superseded on arrival", stored, got)
	}
	f.wantState(first.ID, engine.StateQueued)
	if jobs := f.claim(t0.Add(time.Hour), 10); !slices.Equal(ids(jobs), []string{first.ID}) {
		f.Fatalf("claim got %v, want only %s", ids(jobs), first.ID)
	}
}

func testSupersede(f *fx) {
	g1 := f.add("q", "t", "s")
	other := f.add("q", "t", "other")
	later := t0.Add(time.Minute)
	j2 := f.job("q", "t", "s")
	j2.CreatedAt = later
	res := f.enqueue(j2, false)
	if res.Job.Generation != 2 || res.Job.State != engine.StateQueued {
		f.Fatalf("second job: generation %d state %s, want 2 QUEUED", res.Job.Generation, res.Job.State)
	}
	if !slices.Equal(res.Superseded, []string{g1.ID}) {
		f.Fatalf("superseded %v, want [%s]", res.Superseded, g1.ID)
	}
	old := f.get(g1.ID)
	if old.State != engine.StateSuperseded || old.FinishedAt == nil || !old.FinishedAt.Equal(later) || old.Error == "" {
		f.Fatalf("old job: state %s finished %s error %q, want SUPERSEDED at %s with an error", old.State, fmtTime(old.FinishedAt), old.Error, later)
	}
	f.wantState(other.ID, engine.StateQueued)

	// An explicit higher generation supersedes too.
	j9 := f.job("q", "t", "s")
	j9.Generation = 9
	res = f.enqueue(j9, true)
	if !slices.Equal(res.Superseded, []string{j2.ID}) || res.Job.Generation != 9 {
		f.Fatalf("explicit 9: superseded %v generation %d, want [%s] 9", res.Superseded, res.Job.Generation, j2.ID)
	}
	// A running older generation is left to finish.
	if got := f.claim(t0, 10); !slices.Equal(ids(got), []string{other.ID, j9.ID}) {
		f.Fatalf("claim got %v, want %s and %s", ids(got), other.ID, j9.ID)
	}
	res = f.enqueue(f.job("q", "t", "s"), false)
	if len(res.Superseded) != 0 || res.Job.Generation != 10 {
		f.Fatalf("enqueue while generation 9 runs: superseded %v generation %d, want none and 10", res.Superseded, res.Job.Generation)
	}
	f.wantState(j9.ID, engine.StateRunning)
}

func testNoSubject(f *fx) {
	var jobs []*engine.Job
	for range 3 {
		res := f.enqueue(f.job("q", "t", ""), false)
		if len(res.Superseded) != 0 || res.Job.Generation != 0 {
			f.Fatalf("subject-less enqueue: superseded %v generation %d", res.Superseded, res.Job.Generation)
		}
		jobs = append(jobs, res.Job)
	}
	for _, j := range jobs {
		f.wantState(j.ID, engine.StateQueued)
	}
	if got := f.claim(t0, 10); len(got) != 3 {
		f.Fatalf("claimed %v, want all three", ids(got))
	}
}

func testConcurrentEnqueue(f *fx) {
	const goroutines, each, keys = 16, 50, 5
	type result struct {
		id         string
		key        int
		gen        int64
		superseded []string
	}
	results := make([][]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				k := (g + i) % keys
				j := &engine.Job{ID: fmt.Sprintf("g%02d-%03d", g, i), Queue: "q", Type: "t",
					Subject: fmt.Sprintf("key%d", k), MaxAttempts: 1, CreatedAt: t0, RunAt: t0}
				res, err := f.s.Enqueue(f.ctx, j, false)
				if err != nil {
					f.Errorf("enqueue %s: %v", j.ID, err)
					return
				}
				results[g] = append(results[g], result{j.ID, k, res.Job.Generation, res.Superseded})
			}
		})
	}
	wg.Wait()
	if f.Failed() {
		return
	}
	gens := make([][]int64, keys)
	top := make([]string, keys)
	supersededBy := make(map[string]string)
	for _, rs := range results {
		for _, r := range rs {
			gens[r.key] = append(gens[r.key], r.gen)
			if r.gen == int64(goroutines*each/keys) {
				top[r.key] = r.id
			}
			for _, id := range r.superseded {
				if prev, dup := supersededBy[id]; dup {
					f.Errorf("job %s superseded twice, by %s and %s", id, prev, r.id)
				}
				supersededBy[id] = r.id
			}
		}
	}
	for k := range keys {
		slices.Sort(gens[k])
		for i, g := range gens[k] {
			if g != int64(i+1) {
				f.Fatalf("key %d generations %v, want 1..%d each once", k, gens[k], len(gens[k]))
			}
		}
		queued := f.list(engine.ListFilter{Queue: "q", Type: "t", Subject: fmt.Sprintf("key%d", k),
			States: []engine.State{engine.StateQueued}, Limit: 1000})
		if len(queued) != 1 || queued[0].ID != top[k] {
			f.Errorf("key %d: queued %v, want only its highest generation %s", k, ids(queued), top[k])
		}
	}
	if want := goroutines*each - keys; len(supersededBy) != want {
		f.Errorf("%d jobs reported superseded, want %d", len(supersededBy), want)
	}
}

func testRetrySuperseded(f *fx) {
	g1 := f.add("q", "t", "s")
	run := f.claimOne(t0)
	g2 := f.add("q", "t", "s")
	at := t0.Add(time.Second)
	got := f.complete(retry(run, at, at.Add(time.Minute)))
	if got.State != engine.StateSuperseded || got.FinishedAt == nil || !got.FinishedAt.Equal(at) || got.Error == "" {
		f.Fatalf("retry of generation 1: state %s finished %s error %q, want SUPERSEDED at %s", got.State, fmtTime(got.FinishedAt), got.Error, at)
	}
	if len(got.Attempts) != 1 || got.Attempts[0].Outcome != engine.OutcomeFailed {
		f.Fatalf("attempts %+v", got.Attempts)
	}
	f.wantState(g1.ID, engine.StateSuperseded)
	if next := f.claimOne(at.Add(time.Hour)); next.ID != g2.ID {
		f.Fatalf("claim got %s, want %s", next.ID, g2.ID)
	}
	// With no newer generation a retry stays queued.
	g3 := f.add("q", "t", "solo")
	run = f.claimOne(at)
	if run.ID != g3.ID {
		f.Fatalf("claimed %s", run.ID)
	}
	if st := f.complete(retry(run, at, at)).State; st != engine.StateQueued {
		f.Fatalf("retry without a newer generation is %s", st)
	}
}
