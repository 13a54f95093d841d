package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"time"

	"stq/engine"
)

func testRoundTrip(f *fx) {
	full := &engine.Job{
		ID: "full", Queue: "builds", Type: "compile", Subject: "repo/main",
		Priority: 7, MaxAttempts: 5,
		Payload: json.RawMessage(`{"ref":"abc123","flags":["-v","-race"],"n":1.5,"uni":"héllo ✓"}`),
		Command: []string{"/usr/bin/make", "all", "with space", "quote\"d", ""},
		Cwd:     "/srv/repo",
		Env:     map[string]string{"GOFLAGS": "-mod=mod", "EMPTY": "", "UNI": "ünï"},
		RunAt:   t0.Add(90 * time.Second), CreatedAt: t0,
		Deadline: engine.Duration(45 * time.Minute), TTL: engine.Duration(36 * time.Hour),
		Backoff:  engine.Duration(1500 * time.Millisecond),
		WaitIdle: true, RequireCharging: true, Replace: true,
		Debounce: engine.Duration(2500 * time.Millisecond),
	}
	bare := &engine.Job{ID: "bare", Queue: "q", Type: "t", CreatedAt: t0, RunAt: t0}
	for _, j := range []*engine.Job{full, bare} {
		in := *j
		res := f.enqueue(j, false)
		want := in
		want.State = engine.StateQueued
		want.Attempts = []engine.Attempt{}
		if j.Subject != "" {
			want.Generation = 1
		}
		f.wantJob("enqueue result of "+j.ID, res.Job, &want)
		if res.Job.Attempts == nil {
			f.Errorf("enqueue result of %s has nil Attempts, want an empty slice", j.ID)
		}
		if len(res.Superseded) != 0 {
			f.Errorf("enqueue of %s superseded %v", j.ID, res.Superseded)
		}
		f.wantJob("get of "+j.ID, f.get(j.ID), &want)
	}
	// The run-time fields of the job given to Enqueue are not taken over.
	dirty := f.job("q", "t", "")
	dirty.State, dirty.Attempt, dirty.Error, dirty.Owner = engine.StateDone, 2, "old", "someone"
	dirty.StartedAt, dirty.FinishedAt, dirty.ExitCode = ptr(t0), ptr(t0), ptr(3)
	dirty.Waiting = "idle" // computed on reads, never stored
	got := f.enqueue(dirty, false).Job
	want := *dirty
	want.State, want.Attempt, want.Error, want.Owner, want.Waiting = engine.StateQueued, 0, "", "", ""
	want.StartedAt, want.FinishedAt, want.ExitCode = nil, nil, nil
	want.Attempts = []engine.Attempt{}
	f.wantJob("job enqueued with run-time fields set", f.get(dirty.ID), &want)
	f.wantJob("enqueue result with run-time fields set", got, &want)
}

func testDuplicateID(f *fx) {
	j := f.job("q", "t", "")
	f.enqueue(j, false)
	again := *j
	if _, err := f.s.Enqueue(f.ctx, &again, false); err == nil {
		f.Fatal("second enqueue of the same id succeeded")
	}
	if n := len(f.list(engine.ListFilter{})); n != 1 {
		f.Fatalf("store holds %d jobs, want 1", n)
	}
}

func testEnqueueMany(f *fx) {
	old := f.add("q", "t", "a") // generation 1, superseded by the batch
	jobs := []*engine.Job{f.job("q", "t", "a"), f.job("q", "t", "b"), f.job("q", "t", "a"), f.job("q", "t", "")}
	explicitGen := jobs[3]
	explicitGen.Subject = "c"
	explicitGen.Generation = 7
	res, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: jobs, ExplicitGen: []bool{false, false, false, true}, Atomic: true})
	if err != nil {
		f.Fatalf("enqueue many: %v", err)
	}
	if len(res.Results) != 4 || len(res.Errs) != 4 {
		f.Fatalf("got %d results and %d errors, want 4 of each", len(res.Results), len(res.Errs))
	}
	for i, want := range []struct {
		gen        int64
		state      engine.State
		superseded []string
	}{
		{2, engine.StateQueued, []string{old.ID}},
		{1, engine.StateQueued, nil},
		{3, engine.StateQueued, []string{jobs[0].ID}},
		{7, engine.StateQueued, nil},
	} {
		if res.Errs[i] != nil {
			f.Fatalf("entry %d: %v", i, res.Errs[i])
		}
		got := res.Results[i]
		if got.Job.ID != jobs[i].ID || got.Job.Generation != want.gen || got.Job.State != want.state || !slices.Equal(got.Superseded, want.superseded) {
			f.Errorf("entry %d: got %s gen %d %s superseded %v, want %s gen %d %s superseded %v", i,
				got.Job.ID, got.Job.Generation, got.Job.State, got.Superseded, jobs[i].ID, want.gen, want.state, want.superseded)
		}
	}
	f.wantState(old.ID, engine.StateSuperseded)
	f.wantState(jobs[0].ID, engine.StateSuperseded)
	f.wantState(jobs[2].ID, engine.StateQueued)
	if got := f.get(jobs[3].ID).Generation; got != 7 {
		f.Errorf("explicit generation stored as %d, want 7", got)
	}
	// Stored in order: the claim takes them in enqueue order.
	claimed := f.claim(t0, 10)
	if want := []string{jobs[1].ID, jobs[2].ID, jobs[3].ID}; !slices.Equal(ids(claimed), want) {
		f.Errorf("claim order %v, want %v", ids(claimed), want)
	}
	// An empty batch is no error and stores nothing.
	if res, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Atomic: true}); err != nil || len(res.Results) != 0 {
		f.Errorf("empty batch: %d results, err %v", len(res.Results), err)
	}
}

func testEnqueueManyAtomic(f *fx) {
	before := f.add("q", "t", "a")
	bad := f.job("q", "t", "")
	bad.After = []string{"no-such-job"}
	dup := f.job("q", "t", "")
	dup.ID = before.ID
	for _, tc := range []struct {
		name  string
		bad   *engine.Job
		index int
	}{{"unknown dependency", bad, 2}, {"duplicate id", dup, 2}, {"missing id", &engine.Job{Queue: "q", Type: "t", CreatedAt: t0, RunAt: t0}, 2}} {
		jobs := []*engine.Job{f.job("q", "t", "a"), f.job("q", "t", "new"), tc.bad, f.job("q", "t", "z")}
		_, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true})
		var be *engine.BatchError
		if !errors.As(err, &be) || be.Index != tc.index || !errors.Is(err, engine.ErrInvalid) {
			f.Errorf("%s: got %v, want a batch error at entry %d wrapping ErrInvalid", tc.name, err, tc.index)
		}
		for _, j := range []*engine.Job{jobs[0], jobs[1], jobs[3]} {
			if _, err := f.s.Get(f.ctx, j.ID); !errors.Is(err, engine.ErrNotFound) {
				f.Errorf("%s: job %s of the refused batch: %v, want not found", tc.name, j.ID, err)
			}
		}
	}
	// Nothing the refused batches did shows: the older job is still queued
	// and the next generation of its key is 2.
	f.wantState(before.ID, engine.StateQueued)
	if g := f.add("q", "t", "a").Generation; g != 2 {
		f.Errorf("next generation after refused batches is %d, want 2", g)
	}
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.Fatal(err)
	}
	if n := st.Queues["q"][engine.StateQueued]; n != 1 {
		f.Errorf("queued count %d after refused batches, want 1", n)
	}
}

func testEnqueueManyEach(f *fx) {
	bad := f.job("q", "t", "")
	bad.After = []string{"no-such-job"}
	jobs := []*engine.Job{f.job("q", "t", "a"), bad, nil, f.job("q", "t", "a")}
	res, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: jobs})
	if err != nil {
		f.Fatalf("enqueue many: %v", err)
	}
	if res.Errs[0] != nil || res.Errs[3] != nil {
		f.Fatalf("good entries failed: %v, %v", res.Errs[0], res.Errs[3])
	}
	for _, i := range []int{1, 2} {
		if !errors.Is(res.Errs[i], engine.ErrInvalid) || res.Results[i].Job != nil {
			f.Errorf("entry %d: got %v and job %v, want ErrInvalid and no job", i, res.Errs[i], res.Results[i].Job)
		}
	}
	if _, err := f.s.Get(f.ctx, bad.ID); !errors.Is(err, engine.ErrNotFound) {
		f.Errorf("bad entry stored: %v", err)
	}
	if g := res.Results[3].Job.Generation; g != 2 || !slices.Equal(res.Results[3].Superseded, []string{jobs[0].ID}) {
		f.Errorf("last entry: generation %d superseded %v, want 2 superseding %s", g, res.Results[3].Superseded, jobs[0].ID)
	}
	f.wantState(jobs[0].ID, engine.StateSuperseded)
}
