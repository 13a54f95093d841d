package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"stq/engine"
)

// fx is one test's store and helpers. Helpers fail the test on error.
type fx struct {
	*testing.T
	s   engine.Store
	ctx context.Context
	n   int
}

// job returns a new job definition, due at t0, with a fresh id.
func (f *fx) job(queue, typ, subject string) *engine.Job {
	f.n++
	return &engine.Job{
		ID: fmt.Sprintf("job-%04d", f.n), Queue: queue, Type: typ, Subject: subject,
		MaxAttempts: 3, CreatedAt: t0, RunAt: t0,
		Deadline: engine.Duration(time.Minute), Backoff: engine.Duration(time.Second),
	}
}

func (f *fx) enqueue(j *engine.Job, explicitGen bool) engine.EnqueueResult {
	f.Helper()
	res, err := f.s.Enqueue(f.ctx, j, explicitGen)
	if err != nil {
		f.Fatalf("enqueue %s: %v", j.ID, err)
	}
	if res.Job == nil {
		f.Fatalf("enqueue %s: no job in the result", j.ID)
	}
	return res
}

// add enqueues a job of the key with automatic generation.
func (f *fx) add(queue, typ, subject string) *engine.Job {
	f.Helper()
	return f.enqueue(f.job(queue, typ, subject), false).Job
}

func (f *fx) claim(now time.Time, limit int) []*engine.Job {
	f.Helper()
	jobs, err := f.s.Claim(f.ctx, engine.ClaimRequest{Owner: "host/1", Now: now, Limit: limit})
	if err != nil {
		f.Fatalf("claim: %v", err)
	}
	return jobs
}

func (f *fx) claimOne(now time.Time) *engine.Job {
	f.Helper()
	jobs := f.claim(now, 1)
	if len(jobs) != 1 {
		f.Fatalf("claim at %s: got %v, want one job", now, ids(jobs))
	}
	return jobs[0]
}

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

func (f *fx) complete(c engine.Completion) *engine.Job {
	f.Helper()
	res, err := f.s.Complete(f.ctx, c)
	if err != nil {
		f.Fatalf("complete %s attempt %d: %v", c.ID, c.Attempt, err)
	}
	return res.Job
}

func (f *fx) get(id string) *engine.Job {
	f.Helper()
	j, err := f.s.Get(f.ctx, id)
	if err != nil {
		f.Fatalf("get %s: %v", id, err)
	}
	return j
}

func (f *fx) state(id string) engine.State {
	f.Helper()
	return f.get(id).State
}

func (f *fx) wantState(id string, want engine.State) {
	f.Helper()
	if got := f.state(id); got != want {
		f.Fatalf("job %s is %s, want %s", id, got, want)
	}
}

func (f *fx) list(filter engine.ListFilter) []*engine.Job {
	f.Helper()
	page, err := f.s.List(f.ctx, filter)
	if err != nil {
		f.Fatalf("list %+v: %v", filter, err)
	}
	return page.Jobs
}

func succeeded(j *engine.Job, at time.Time) engine.Completion {
	zero := 0
	return engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone,
		Outcome: engine.OutcomeSucceeded, ExitCode: &zero, FinishedAt: at}
}

func retry(j *engine.Job, at, runAt time.Time) engine.Completion {
	one := 1
	return engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateQueued,
		Outcome: engine.OutcomeFailed, Reason: "exit status 1", ExitCode: &one,
		FinishedAt: at, RunAt: runAt}
}

func failed(j *engine.Job, at time.Time) engine.Completion {
	one := 1
	return engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateFailed,
		Outcome: engine.OutcomeFailed, Reason: "exit status 1", ExitCode: &one, FinishedAt: at}
}

func ids(jobs []*engine.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func (f *fx) wantIDs(what string, got []*engine.Job, want ...*engine.Job) {
	f.Helper()
	if !slices.Equal(ids(got), ids(want)) {
		f.Fatalf("%s: got %v, want %v", what, ids(got), ids(want))
	}
}

func ptr[T any](v T) *T { return &v }
