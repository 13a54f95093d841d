package postgres

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"stq/engine"
)

// cycleJobs enqueues jobs for the pipelined cycle's tests, in seq order.
func cycleJobs(t *testing.T, s *Store, jobs ...*engine.Job) {
	t.Helper()
	for _, j := range jobs {
		if _, err := s.Enqueue(context.Background(), j, false); err != nil {
			t.Fatalf("enqueue %s: %v", j.ID, err)
		}
	}
}

func doneOf(jobs ...*engine.Job) []engine.Completion {
	out := make([]engine.Completion, len(jobs))
	for i, j := range jobs {
		out[i] = engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone,
			Outcome: engine.OutcomeSucceeded, FinishedAt: t0.Add(time.Second)}
	}
	return out
}

// pipelined runs one pipelined cycle, failing the test unless it
// committed: what it returns is the pipelined path's own work, not the
// unpipelined cycle's it falls back to.
func pipelined(t *testing.T, s *Store, done []engine.Completion, req engine.ClaimRequest) engine.CycleResult {
	t.Helper()
	a := &cycleArgs{done: done, checked: make([]error, len(done)), claiming: req.Limit > 0, req: &req}
	if !a.pipelinable() {
		t.Fatal("the cycle is not one the pipelined path takes")
	}
	res := a.result()
	if err := s.pipelinedCycle(context.Background(), a, &res); err != nil {
		t.Fatalf("pipelined cycle: %v", err)
	}
	return res
}

// claimTwoOfThree enqueues jobs a, b and c and claims two, a and b.
func claimTwoOfThree(t *testing.T, s *Store) (a, b *engine.Job) {
	t.Helper()
	cycleJobs(t, s, testJob("a", "q", ""), testJob("b", "q", ""), testJob("c", "q", ""))
	got, err := s.Claim(context.Background(), engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 2})
	if err != nil || len(got) != 2 {
		t.Fatalf("claim: %d jobs, %v", len(got), err)
	}
	return got[0], got[1]
}

func wantClaimed(t *testing.T, got []*engine.Job, want ...string) {
	t.Helper()
	ids := make([]string, len(got))
	for i, j := range got {
		ids[i] = j.ID
	}
	if len(ids) != len(want) {
		t.Fatalf("claimed %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("claimed %v, want %v", ids, want)
		}
	}
}

// TestPipelinedCycle: the pipelined cycle ends attempts and claims as the
// separate calls would, and returns the jobs as Get reads them after the
// commit: attempt histories of first runs and of reruns, environments
// with their variables, the key and cap rules.
func TestPipelinedCycle(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ctx := context.Background()
	rerun, k1 := testJob("r", "q", ""), testJob("k1", "q", "key")
	cycleJobs(t, s, rerun, k1)
	first, err := s.Claim(ctx, engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 2})
	if err != nil || len(first) != 2 {
		t.Fatalf("first claim: %d jobs, %v", len(first), err)
	}
	if _, err := s.Complete(ctx, engine.Completion{ID: rerun.ID, Attempt: 1, State: engine.StateQueued,
		Outcome: engine.OutcomeFailed, Reason: "boom", FinishedAt: t0, RunAt: t0}); err != nil {
		t.Fatalf("requeue %s: %v", rerun.ID, err)
	}
	env := engine.EncodeBaseEnv(map[string]string{"PATH": "/bin", "X": "y"})
	withEnv := testJob("e", "q", "")
	withEnv.BaseEnv = env
	// k2 waits while k1 runs; the cap lets one job of "cap" run.
	cycleJobs(t, s, testJob("a", "q", ""), withEnv, testJob("k2", "q", "key"), testJob("c1", "cap", ""), testJob("c2", "cap", ""))
	req := engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 10, QueueLimits: map[string]int{"cap": 1}}

	res := pipelined(t, s, doneOf(first[1]), req) // k1 ends; its key frees in the same commit
	if res.Errs[0] != nil || res.Completed[0].Job == nil || res.Completed[0].Job.State != engine.StateDone {
		t.Fatalf("completion of k1: %+v, %v", res.Completed[0], res.Errs[0])
	}
	if h := res.Completed[0].Job.Attempts; len(h) != 1 || h[0].Outcome != engine.OutcomeSucceeded || h[0].FinishedAt == nil {
		t.Fatalf("k1's history: %+v", h)
	}
	wantClaimed(t, res.Claimed, "r", "a", "e", "k2", "c1")
	for _, j := range res.Claimed {
		stored, err := s.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != engine.StateRunning || j.Attempt != stored.Attempt || len(j.Attempts) != len(stored.Attempts) {
			t.Fatalf("claimed %s: %s attempt %d, %d attempts; stored: %s attempt %d, %d attempts",
				j.ID, j.State, j.Attempt, len(j.Attempts), stored.State, stored.Attempt, len(stored.Attempts))
		}
	}
	if h := res.Claimed[0].Attempts; len(h) != 2 || h[0].Outcome != engine.OutcomeFailed || h[1].Outcome != engine.OutcomeRunning {
		t.Fatalf("the rerun's history: %+v", h)
	}
	if e := res.Claimed[2].BaseEnv; e == nil || e.SHA256 != env.SHA256 || len(e.List) != 2 {
		t.Fatalf("environment of the claimed job: %+v, want %s with its 2 variables", e, env.SHA256)
	}

	// c1's end frees the cap in the commit that claims c2.
	res = pipelined(t, s, doneOf(res.Claimed...), req)
	for i, e := range res.Errs {
		if e != nil {
			t.Fatalf("completion %d: %v", i, e)
		}
	}
	wantClaimed(t, res.Claimed, "c2")
}

// TestPipelinedCycleFallsBack: a stale completion, or a claim that fails,
// undoes the pipelined transaction, and the unpipelined cycle then gives
// each entry its own outcome.
func TestPipelinedCycleFallsBack(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ctx := context.Background()
	a, b := claimTwoOfThree(t, s)
	stale := doneOf(a, b)
	stale[1].Attempt++

	args := &cycleArgs{done: stale, checked: make([]error, 2), req: &engine.ClaimRequest{Owner: "h/1", Now: t0}}
	res := args.result()
	err := s.pipelinedCycle(ctx, args, &res)
	var nc *notCommitted
	if !errors.As(err, &nc) || !errors.Is(err, errOneByOne) {
		t.Fatalf("pipelined cycle with a stale completion: %v, want errOneByOne, not committed", err)
	}
	if st, _ := s.Get(ctx, a.ID); st.State != engine.StateRunning {
		t.Fatalf("a after the rolled back cycle: %s, want RUNNING", st.State)
	}

	res, err = s.CompleteAndClaim(ctx, engine.Cycle{Done: stale, Claim: engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 1}})
	if err != nil || res.Errs[0] != nil || !errors.Is(res.Errs[1], engine.ErrStale) || res.ClaimErr != nil {
		t.Fatalf("cycle with a stale completion: %v, errs %v, claim %v", err, res.Errs, res.ClaimErr)
	}
	wantClaimed(t, res.Claimed, "c")

	// A claim that cannot run (its scan reads a table that is gone) fails
	// alone: the completion is stored.
	if _, err := s.pool.Exec(ctx, `ALTER TABLE queue_settings RENAME TO queue_settings_gone`); err != nil {
		t.Fatal(err)
	}
	fresh := openSchema(t, s.Schema()) // no statement of the claim prepared yet
	cycleJobs(t, fresh, testJob("d", "q", ""))
	res, err = fresh.CompleteAndClaim(ctx, engine.Cycle{Done: doneOf(b), Claim: engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 1}})
	if err != nil || res.Errs[0] != nil || res.ClaimErr == nil || len(res.Claimed) != 0 {
		t.Fatalf("cycle whose claim fails: %v, errs %v, claim %v, claimed %d", err, res.Errs, res.ClaimErr, len(res.Claimed))
	}
	for id, want := range map[string]engine.State{b.ID: engine.StateDone, "d": engine.StateQueued} {
		if st, err := fresh.Get(ctx, id); err != nil || st.State != want {
			t.Fatalf("%s: %v, %v; want %s", id, st, err, want)
		}
	}
}

// TestPipelinedCycleRecordsStarts: start records go in the pipelined
// cycle's first round trip, before the completions, so a job can start
// and end in one cycle; a stale or unknown record sends the cycle the
// one-by-one way, which refuses it alone.
func TestPipelinedCycleRecordsStarts(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ctx := context.Background()
	a, b := claimTwoOfThree(t, s)
	req := engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 1}
	cy := &cycleArgs{
		started: []engine.StartRecord{{ID: a.ID, Attempt: 1, PID: 4242, PIDStart: 99}, {ID: b.ID, Attempt: 1}},
		done:    doneOf(b), checked: make([]error, 1), claiming: true, req: &req,
	}
	if !cy.pipelinable() {
		t.Fatal("the cycle is not one the pipelined path takes")
	}
	res := cy.result()
	if err := s.pipelinedCycle(ctx, cy, &res); err != nil {
		t.Fatalf("pipelined cycle: %v", err)
	}
	if res.StartErrs[0] != nil || res.StartErrs[1] != nil || res.Errs[0] != nil {
		t.Fatalf("start errors %v, completion error %v", res.StartErrs, res.Errs[0])
	}
	wantClaimed(t, res.Claimed, "c")
	for _, w := range []struct {
		id       string
		pid      int
		pidStart int64
		outcome  engine.Outcome
	}{{a.ID, 4242, 99, engine.OutcomeRunning}, {b.ID, 0, 0, engine.OutcomeSucceeded}} {
		j, err := s.Get(ctx, w.id)
		if err != nil {
			t.Fatal(err)
		}
		if h := j.Attempts; len(h) != 1 || h[0].PID != w.pid || h[0].PIDStart != w.pidStart || h[0].Outcome != w.outcome {
			t.Errorf("%s's attempt: %+v, want pid %d started at %d, %s", w.id, h, w.pid, w.pidStart, w.outcome)
		}
	}

	var nulls bool // no process is stored as NULL, as markStarted stores it
	if err := s.pool.QueryRow(ctx, `SELECT pid IS NULL AND pid_start IS NULL FROM attempts JOIN jobs ON seq = job_seq WHERE id = $1`, b.ID).Scan(&nulls); err != nil || !nulls {
		t.Errorf("b's attempt without a process: NULL pid and start %v, %v", nulls, err)
	}

	stale := []engine.StartRecord{{ID: a.ID, Attempt: 2, PID: 1}, {ID: "c", Attempt: 1, PID: 5}, {ID: "nope", Attempt: 1, PID: 6}}
	cy = &cycleArgs{started: stale, req: &engine.ClaimRequest{Owner: "h/1", Now: t0}}
	res = cy.result()
	if err := s.pipelinedCycle(ctx, cy, &res); !errors.Is(err, errOneByOne) {
		t.Fatalf("pipelined cycle with a stale start record: %v, want errOneByOne", err)
	}
	res, err := s.CompleteAndClaim(ctx, engine.Cycle{Started: stale, Claim: engine.ClaimRequest{Owner: "h/1", Now: t0}})
	if err != nil || !errors.Is(res.StartErrs[0], engine.ErrStale) || res.StartErrs[1] != nil || !errors.Is(res.StartErrs[2], engine.ErrNotFound) {
		t.Fatalf("cycle with a stale start record: %v, start errors %v", err, res.StartErrs)
	}
	if j, err := s.Get(ctx, "c"); err != nil || j.Attempts[0].PID != 5 {
		t.Fatalf("c after the one-by-one cycle: %+v, %v", j, err)
	}

	// A PID out of the column's range is refused, not wrapped around.
	huge := []engine.StartRecord{{ID: "c", Attempt: 1, PID: math.MaxInt32 + 6}}
	res, err = s.CompleteAndClaim(ctx, engine.Cycle{Started: huge, Claim: engine.ClaimRequest{Owner: "h/1", Now: t0}})
	if err != nil || res.StartErrs[0] == nil {
		t.Fatalf("cycle with a PID out of range: %v, start errors %v", err, res.StartErrs)
	}
	if j, err := s.Get(ctx, "c"); err != nil || j.Attempts[0].PID != 5 {
		t.Fatalf("c after a PID out of range: %+v, %v", j, err)
	}
}

// TestSplitDone holds the one-by-one cycle's sorting of completions and
// the pipelined cycle's choice to the same rule.
func TestSplitDone(t *testing.T) {
	c := func(id string, st engine.State) engine.Completion { return engine.Completion{ID: id, State: st} }
	refused := errors.New("refused")
	tests := []struct {
		name            string
		done            []engine.Completion
		refused         []error
		started         []string // ids of start records
		together, alone []int
		pipelinable     bool
	}{
		{name: "none", pipelinable: true},
		{name: "DONE, each job once", done: []engine.Completion{c("a", engine.StateDone), c("b", engine.StateDone)},
			refused: make([]error, 2), together: []int{0, 1}, pipelinable: true},
		{name: "a retry goes alone", done: []engine.Completion{c("a", engine.StateDone), c("b", engine.StateQueued), c("c", engine.StateFailed)},
			refused: make([]error, 3), together: []int{0}, alone: []int{1, 2}},
		{name: "a job named twice goes alone, both times", done: []engine.Completion{c("a", engine.StateDone), c("b", engine.StateDone), c("a", engine.StateDone)},
			refused: make([]error, 3), together: []int{1}, alone: []int{0, 2}},
		{name: "a refused completion is in neither", done: []engine.Completion{c("a", engine.StateDone), c("b", engine.StateDone)},
			refused: []error{nil, refused}, together: []int{0}},
		{name: "a start record", done: []engine.Completion{c("a", engine.StateDone)},
			refused: make([]error, 1), started: []string{"a"}, together: []int{0}, pipelinable: true},
		{name: "two start records of one job", done: []engine.Completion{c("a", engine.StateDone)},
			refused: make([]error, 1), started: []string{"b", "b"}, together: []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			together, alone := splitDone(tt.done, tt.refused)
			if !slices.Equal(together, tt.together) || !slices.Equal(alone, tt.alone) {
				t.Errorf("splitDone = %v, %v; want %v, %v", together, alone, tt.together, tt.alone)
			}
			a := &cycleArgs{done: tt.done, checked: tt.refused}
			for _, id := range tt.started {
				a.started = append(a.started, engine.StartRecord{ID: id})
			}
			if got := a.pipelinable(); got != tt.pipelinable {
				t.Errorf("pipelinable = %v, want %v", got, tt.pipelinable)
			}
		})
	}
}
