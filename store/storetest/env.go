package storetest

import (
	"context"
	"slices"
	"time"

	"stq/engine"
)

// EnvCounter is what the suite needs besides engine.Store to see that a
// captured environment is stored once: how many distinct environments the
// store holds. Every store the suite runs on must implement it.
type EnvCounter interface {
	StoredEnvs(ctx context.Context) (int, error)
}

func (f *fx) storedEnvs() int {
	f.Helper()
	c, ok := f.s.(EnvCounter)
	if !ok {
		f.Fatalf("%T does not implement storetest.EnvCounter: the suite cannot check that environments are stored once", f.s)
	}
	n, err := c.StoredEnvs(f.ctx)
	if err != nil {
		f.Fatalf("stored environments: %v", err)
	}
	return n
}

func baseEnvEq(got, want *engine.BaseEnv) bool {
	if got == nil || want == nil {
		return got == want
	}
	return got.SHA256 == want.SHA256 && got.Vars == want.Vars
}

func testBaseEnvRoundTrip(f *fx) {
	env := engine.EncodeBaseEnv(map[string]string{"PATH": "/tools/bin:/usr/bin", "MY_VAR": "hello world", "EMPTY": "", "UNI": "ünï"})
	with := f.job("q", "t", "")
	with.BaseEnv = env
	res := f.enqueue(with, false)
	without := f.add("q", "t", "")
	empty := f.job("q", "t", "")
	empty.BaseEnv = engine.EncodeBaseEnv(map[string]string{})
	f.enqueue(empty, false)

	want := *with
	want.State, want.Attempts = engine.StateQueued, []engine.Attempt{}
	f.wantJob("enqueue result", res.Job, &want)
	f.wantJob("get", f.get(with.ID), &want)
	for _, j := range f.list(engine.ListFilter{Limit: 10}) {
		w := map[string]*engine.BaseEnv{with.ID: env, without.ID: nil, empty.ID: empty.BaseEnv}[j.ID]
		if !baseEnvEq(j.BaseEnv, w) {
			f.Errorf("list: %s has base environment %+v, want %+v", j.ID, j.BaseEnv, w)
		}
	}

	// A claim hands out the variables themselves, every attempt.
	wantList := []string{"EMPTY=", "MY_VAR=hello world", "PATH=/tools/bin:/usr/bin", "UNI=ünï"}
	for attempt := 1; attempt <= 2; attempt++ {
		now := t0.Add(time.Duration(attempt) * time.Minute)
		got := f.claim(now, 10)
		f.wantIDs("claim", got, with, without, empty)
		if !baseEnvEq(got[0].BaseEnv, env) || !slices.Equal(got[0].BaseEnv.List, wantList) {
			f.Fatalf("claimed base environment %+v, want %v", got[0].BaseEnv, wantList)
		}
		if got[1].BaseEnv != nil {
			f.Errorf("claimed job without a base environment has %+v", got[1].BaseEnv)
		}
		if e := got[2].BaseEnv; e == nil || e.Vars != 0 || e.List == nil || len(e.List) != 0 {
			f.Errorf("claimed job with an empty base environment has %+v, want an empty, non-nil List", e)
		}
		for _, j := range got {
			f.complete(retry(j, now, now))
		}
	}
}

func testBaseEnvStoredOnce(f *fx) {
	vars := map[string]string{"PATH": "/a/bin", "HOME": "/home/a"}
	// Encoded separately: the store goes by content, not by identity.
	a1, a2 := f.job("q", "t", ""), f.job("q", "t", "")
	a1.BaseEnv, a2.BaseEnv = engine.EncodeBaseEnv(vars), engine.EncodeBaseEnv(vars)
	b := f.job("q", "t", "")
	b.BaseEnv = engine.EncodeBaseEnv(map[string]string{"PATH": "/b/bin"})
	f.enqueue(a1, false)
	f.enqueue(a2, false)
	f.enqueue(b, false)
	if n := f.storedEnvs(); n != 2 {
		f.Fatalf("three jobs with two distinct environments: %d stored, want 2", n)
	}
	// A batch, with its many-row insert, counts its references as well.
	batch := make([]*engine.Job, 40)
	for i := range batch {
		batch[i] = f.job("q", "t", "")
		batch[i].BaseEnv = a1.BaseEnv
	}
	if _, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: batch, Atomic: true}); err != nil {
		f.Fatal(err)
	}
	if n := f.storedEnvs(); n != 2 {
		f.Fatalf("after a batch of the same environment: %d stored, want 2", n)
	}

	// Finish a1 at minute 1, b at 2, the batch at 3; a2 goes back to the queue.
	minute := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	for _, j := range f.claim(t0, 100) {
		at := minute(3)
		switch j.ID {
		case a1.ID:
			at = minute(1)
		case b.ID:
			at = minute(2)
		case a2.ID:
			f.complete(retry(j, t0, t0)) // queued again
			continue
		}
		f.complete(succeeded(j, at))
	}
	f.prune(engine.PruneRequest{Before: minute(2)}) // a1
	if n := f.storedEnvs(); n != 2 {
		f.Fatalf("after pruning one of the jobs of an environment: %d stored, want 2", n)
	}
	f.prune(engine.PruneRequest{Before: minute(3)}) // b, the last job of its environment
	if n := f.storedEnvs(); n != 1 {
		f.Fatalf("after pruning the last job of an environment: %d stored, want 1", n)
	}
	f.prune(engine.PruneRequest{Before: minute(4)}) // the batch; a2 still holds its environment
	if n := f.storedEnvs(); n != 1 {
		f.Fatalf("after pruning all but a queued job of an environment: %d stored, want 1", n)
	}
	run := f.claimOne(minute(5))
	if !slices.Equal(run.BaseEnv.List, []string{"HOME=/home/a", "PATH=/a/bin"}) {
		f.Fatalf("the remaining job's environment is %+v", run.BaseEnv)
	}
	f.complete(succeeded(run, minute(5)))
	f.prune(engine.PruneRequest{Before: minute(6)})
	if n := f.storedEnvs(); n != 0 {
		f.Fatalf("after pruning every job: %d environments stored, want 0", n)
	}
	// Stored again from scratch, it works as before.
	again := f.job("q", "t", "")
	again.BaseEnv = engine.EncodeBaseEnv(vars)
	f.enqueue(again, false)
	if n := f.storedEnvs(); n != 1 || !baseEnvEq(f.get(again.ID).BaseEnv, again.BaseEnv) {
		f.Fatalf("environment stored again: %d stored, job has %+v", n, f.get(again.ID).BaseEnv)
	}
}
