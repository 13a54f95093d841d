package storetest

import (
	"errors"
	"time"

	"stq/engine"
)

// testCompleteAndClaim: start records, completions and a claim in one step
// behave as the separate calls would, a bad record or completion fails
// alone, and a claim sees the completions made before it in the same step.
func testCompleteAndClaim(f *fx) {
	at := t0.Add(time.Minute)
	a, b := f.add("q", "t", "k"), f.add("q", "t", "")
	runA, runB := f.claimOne(t0), f.claimOne(t0)
	if runA.ID != a.ID || runB.ID != b.ID {
		f.Fatalf("claimed %s, %s; want %s, %s", runA.ID, runB.ID, a.ID, b.ID)
	}
	// The next generation of a's key waits while a runs: only the step's
	// own completion of a lets its claim take it.
	next := f.add("q", "t", "k")
	later := f.add("q", "t", "")

	res, err := f.s.CompleteAndClaim(f.ctx, engine.Cycle{
		Started: []engine.StartRecord{
			{ID: b.ID, Attempt: runB.Attempt, PID: 4242, PIDStart: 99},
			{ID: a.ID, Attempt: runA.Attempt + 1, PID: 1, PIDStart: 1}, // stale
		},
		Done: []engine.Completion{
			{ID: a.ID, Attempt: runA.Attempt, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: at},
			{ID: b.ID, Attempt: runB.Attempt + 1, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: at}, // stale
			{ID: "no-such-job", Attempt: 1, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: at},
			{ID: b.ID, Attempt: runB.Attempt, State: engine.StateFailed, Outcome: engine.OutcomeFailed, Reason: "boom"}, // no finished_at
		},
		Claim: engine.ClaimRequest{Owner: "host/1", Now: at, Limit: 5},
	})
	if err != nil {
		f.Fatalf("complete and claim: %v", err)
	}
	if len(res.StartErrs) != 2 || res.StartErrs[0] != nil || !errors.Is(res.StartErrs[1], engine.ErrStale) {
		f.Fatalf("start records: %v; want ok, then ErrStale", res.StartErrs)
	}
	if got := f.get(b.ID).Attempts; len(got) != 1 || got[0].PID != 4242 || got[0].PIDStart != 99 {
		f.Fatalf("attempts of %s after its start record: %+v", b.ID, got)
	}
	if len(res.Completed) != 4 || len(res.Errs) != 4 {
		f.Fatalf("got %d results and %d errors, want 4 of each", len(res.Completed), len(res.Errs))
	}
	if res.Errs[0] != nil || res.Completed[0].Job == nil || res.Completed[0].Job.State != engine.StateDone {
		f.Fatalf("completion of %s: %+v, %v; want DONE", a.ID, res.Completed[0], res.Errs[0])
	}
	if !errors.Is(res.Errs[1], engine.ErrStale) {
		f.Fatalf("stale completion: got %v, want ErrStale", res.Errs[1])
	}
	if !errors.Is(res.Errs[2], engine.ErrNotFound) {
		f.Fatalf("unknown job: got %v, want ErrNotFound", res.Errs[2])
	}
	if res.Errs[3] == nil {
		f.Fatal("a completion without finished_at was accepted")
	}
	if res.ClaimErr != nil {
		f.Fatalf("claim: %v", res.ClaimErr)
	}
	f.wantIDs("claimed after the completions", res.Claimed, next, later)
	f.wantState(a.ID, engine.StateDone)
	f.wantState(b.ID, engine.StateRunning) // every completion of b failed
	f.wantStats("after complete and claim")

	// Only completions (limit 0) claim nothing; nothing at all is a no-op.
	res, err = f.s.CompleteAndClaim(f.ctx, engine.Cycle{
		Done: []engine.Completion{
			{ID: b.ID, Attempt: runB.Attempt, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: at},
		},
		Claim: engine.ClaimRequest{Owner: "host/1", Now: at},
	})
	if err != nil || res.Errs[0] != nil || len(res.Claimed) != 0 {
		f.Fatalf("completion alone: %+v, %v", res, err)
	}
	f.wantState(b.ID, engine.StateDone)
	if _, err := f.s.CompleteAndClaim(f.ctx, engine.Cycle{Claim: engine.ClaimRequest{Owner: "host/1", Now: at}}); err != nil {
		f.Fatalf("empty step: %v", err)
	}
	f.wantStats("after the last step")
}
