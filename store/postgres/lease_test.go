package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"stq/engine"
)

// expireLease moves owner's lease into the past on the database's clock,
// as if its daemon had stopped renewing a while ago.
func expireLease(t *testing.T, s *Store, owner string) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), `UPDATE daemons SET expires = now() - interval '1 second' WHERE owner = $1`, owner); err != nil {
		t.Fatal(err)
	}
}

func daemonOwners(t *testing.T, s *Store) []string {
	t.Helper()
	ds, err := s.Daemons(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var owners []string
	for _, d := range ds {
		owners = append(owners, d.Owner)
	}
	return owners
}

func TestLeasesJoinRenewExpireAndForget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	started := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := a.Join(ctx, engine.DaemonInfo{Owner: "ha/1", Host: "ha", PID: 42, PIDStart: 777, Version: "v1", Started: started}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(ctx, engine.DaemonInfo{Owner: "hb/1", Host: "hb", PID: 43, Version: "v2", Started: started}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(ctx, engine.DaemonInfo{Owner: "hb/1", Host: "hb"}, time.Minute); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("second join of one owner: %v, want ErrInvalid", err)
	}
	ds, err := b.Daemons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Owner != "ha/1" || ds[0].Host != "ha" || ds[0].PID != 42 || ds[0].PIDStart != 777 || ds[0].Version != "v1" || !ds[0].Started.Equal(started) {
		t.Fatalf("daemons = %+v", ds)
	}
	if d := ds[0].Expires.Sub(ds[0].Heartbeat); d != time.Minute {
		t.Errorf("lease runs %s past the heartbeat, want 1m", d)
	}
	if err := a.Renew(ctx, "ha/1", time.Minute); err != nil {
		t.Fatalf("renew a live lease: %v", err)
	}

	// A claims a job, then stops renewing: its lease expires.
	if _, err := a.Enqueue(ctx, testJob("j1", "q", ""), false); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Claim(ctx, engine.ClaimRequest{Owner: "ha/1", Now: t0, Limit: 1}); err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	expireLease(t, a, "ha/1")
	if got := daemonOwners(t, b); len(got) != 1 || got[0] != "hb/1" {
		t.Errorf("live daemons after A's lease expired = %v, want [hb/1]", got)
	}
	if err := a.Renew(ctx, "ha/1", time.Minute); !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("renew an expired lease: %v, want ErrLeaseLost", err)
	}
	// Its job is still RUNNING: the row stays until it is recovered.
	if n, err := b.ForgetExpired(ctx); err != nil || n != 0 {
		t.Fatalf("forget with A's job still running: %d %v, want 0", n, err)
	}
	if _, err := b.Complete(ctx, engine.Completion{ID: "j1", Attempt: 1, State: engine.StateQueued,
		Outcome: engine.OutcomeCrashed, Reason: "daemon crashed", FinishedAt: t0, RunAt: t0}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ForgetExpired(ctx); err != nil || n != 1 {
		t.Fatalf("forget once A's job was recovered: %d %v, want 1", n, err)
	}
	if err := a.Renew(ctx, "ha/1", time.Minute); !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("renew a forgotten lease: %v, want ErrLeaseLost", err)
	}
	if err := b.Leave(ctx, "hb/1"); err != nil {
		t.Fatal(err)
	}
	if got := daemonOwners(t, a); len(got) != 0 {
		t.Errorf("daemons after both left = %v", got)
	}
}

// A fenced or paused daemon's completion that arrives after its job was
// recovered and claimed again elsewhere is refused, and never overwrites
// the newer attempt.
func TestALateCompletionOfARecoveredAttemptIsStale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	if _, err := a.Enqueue(ctx, testJob("j1", "q", "k"), false); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Claim(ctx, engine.ClaimRequest{Owner: "ha/1", Now: t0, Limit: 1}); err != nil || len(got) != 1 {
		t.Fatalf("claim on A: %v %v", got, err)
	}
	// B recovers A's attempt 1 as crashed, then claims attempt 2.
	if _, err := b.Complete(ctx, engine.Completion{ID: "j1", Attempt: 1, State: engine.StateQueued,
		Outcome: engine.OutcomeCrashed, Reason: "daemon crashed", FinishedAt: t0, RunAt: t0}); err != nil {
		t.Fatal(err)
	}
	late := engine.Completion{ID: "j1", Attempt: 1, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: t0.Add(time.Second)}
	if _, err := a.Complete(ctx, late); !errors.Is(err, engine.ErrStale) {
		t.Fatalf("A's late completion while the job is QUEUED again: %v, want ErrStale", err)
	}
	got, err := b.Claim(ctx, engine.ClaimRequest{Owner: "hb/1", Now: t0, Limit: 1})
	if err != nil || len(got) != 1 || got[0].Attempt != 2 {
		t.Fatalf("claim on B: %v %v", got, err)
	}
	if _, err := a.Complete(ctx, late); !errors.Is(err, engine.ErrStale) {
		t.Fatalf("A's late completion while B runs attempt 2: %v, want ErrStale", err)
	}
	j, err := b.Get(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if j.State != engine.StateRunning || j.Owner != "hb/1" || j.Attempt != 2 {
		t.Fatalf("after A's late completion: state %s owner %s attempt %d, want RUNNING hb/1 2", j.State, j.Owner, j.Attempt)
	}
	if _, err := b.Complete(ctx, engine.Completion{ID: "j1", Attempt: 2, State: engine.StateDone,
		Outcome: engine.OutcomeSucceeded, FinishedAt: t0.Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	j, err = b.Get(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Attempts) != 2 || j.Attempts[0].Outcome != engine.OutcomeCrashed || j.Attempts[1].Outcome != engine.OutcomeSucceeded {
		t.Errorf("attempts = %+v, want crashed then succeeded", j.Attempts)
	}
}
