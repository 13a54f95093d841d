package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"stq/engine"
	"stq/store/sqlite"
)

// The engine's periodic services (retention, log flushing, expiry,
// recovery) each have a one-round method their loop calls on its tick.
// These tests call that round directly on an engine whose clock moves only
// by hand, so no loop and no sleep decides what they see.

// idle is an engine that was made but never Run: nothing happens in it but
// what the test calls.
type idle struct {
	eng   *engine.Engine
	store *sqlite.Store
	clock *engine.ManualClock
	procs *fakeProcs
}

func newIdle(t *testing.T, cfg engine.Config, obs engine.Observer) *idle {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "stq.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in := &idle{store: st, clock: engine.NewManualClock(t0), procs: &fakeProcs{}}
	if cfg.Host == "" {
		cfg.Host = "localhost"
	}
	in.eng, err = engine.New(cfg, engine.Deps{Store: st, Processes: in.procs, Clock: in.clock, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func (in *idle) enqueue(t *testing.T, req engine.EnqueueRequest) *engine.Job {
	t.Helper()
	req.Command = []string{"work"}
	res, err := in.eng.Enqueue(context.Background(), req)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return res.Job
}

func (in *idle) state(t *testing.T, id string) engine.State {
	t.Helper()
	j, err := in.eng.Get(context.Background(), id)
	if errors.Is(err, engine.ErrNotFound) {
		return "" // pruned
	}
	if err != nil {
		t.Fatal(err)
	}
	return j.State
}

func TestMaintainPrunesFinishedJobsInOneRound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retention engine.RetentionConfig
		pruned    []string // of "old", "recent"; "queued" is never pruned
	}{
		{"age: jobs that finished over MaxAge ago go", engine.RetentionConfig{MaxAge: 24 * time.Hour, Keep: -1}, []string{"old"}},
		{"count: all but the newest Keep go", engine.RetentionConfig{MaxAge: -1, Keep: 1}, []string{"old"}},
		{"both bounds: either one prunes", engine.RetentionConfig{MaxAge: 30 * time.Minute, Keep: 5}, []string{"old", "recent"}},
		{"no bounds: nothing goes", engine.RetentionConfig{MaxAge: -1, Keep: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := newIdle(t, engine.Config{Retention: tt.retention}, nil)
			ctx := context.Background()
			ids := map[string]string{}
			// old finishes at t0, recent 47h later, queued never; the
			// round runs at t0+48h.
			for _, name := range []string{"old", "recent"} {
				j := in.enqueue(t, engine.EnqueueRequest{})
				if _, err := in.eng.Cancel(ctx, engine.CancelRequest{ID: j.ID}); err != nil {
					t.Fatal(err)
				}
				ids[name] = j.ID
				in.clock.Advance(47 * time.Hour)
			}
			ids["queued"] = in.enqueue(t, engine.EnqueueRequest{}).ID
			in.clock.Set(t0.Add(48 * time.Hour))

			n, err := in.eng.Maintain(ctx)
			if err != nil || n != len(tt.pruned) {
				t.Fatalf("Maintain = %d, %v; want %d pruned", n, err, len(tt.pruned))
			}
			for name, id := range ids {
				gone := in.state(t, id) == ""
				if want := slices.Contains(tt.pruned, name); gone != want {
					t.Errorf("%s: pruned %v, want %v", name, gone, want)
				}
			}
			if n, err := in.eng.Maintain(ctx); err != nil || n != 0 {
				t.Fatalf("a second round at the same time = %d, %v; want nothing left to prune", n, err)
			}
		})
	}
}

func TestExpireOnceEndsOnlyJobsPastTheirTTL(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	in := newIdle(t, engine.Config{}, rec)
	ctx := context.Background()
	short, long := engine.Duration(5*time.Second), engine.Duration(time.Hour)
	soon := in.enqueue(t, engine.EnqueueRequest{TTL: &short})
	later := in.enqueue(t, engine.EnqueueRequest{TTL: &long})
	forever := in.enqueue(t, engine.EnqueueRequest{})

	in.eng.ExpireOnce(ctx, t0.Add(4*time.Second))
	for _, j := range []*engine.Job{soon, later, forever} {
		if s := in.state(t, j.ID); s != engine.StateQueued {
			t.Fatalf("before any TTL passed, %s is %s", j.ID, s)
		}
	}
	in.eng.ExpireOnce(ctx, t0.Add(5*time.Second))
	want := map[string]engine.State{soon.ID: engine.StateExpired, later.ID: engine.StateQueued, forever.ID: engine.StateQueued}
	for id, s := range want {
		if got := in.state(t, id); got != s {
			t.Errorf("after the 5s TTL passed, %s is %s, want %s", id, got, s)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.expired, []string{soon.ID}) {
		t.Errorf("the observer heard %v expire, want [%s]", rec.expired, soon.ID)
	}
}

func TestFlushOnceStoresHeldOutputExactlyOnce(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	ctx := context.Background()
	j := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	for _, text := range []string{"one", "two", "three"} {
		c.run.Output("stdout", text)
	}
	// The flush loop's timer runs on the manual clock, which has not
	// moved: the lines are only in memory until the round below.
	if stored, err := b.store.Logs(ctx, j.ID, 0, 100); err != nil || len(stored) != 0 {
		t.Fatalf("before a flush the store has %d lines (%v), want none", len(stored), err)
	}
	for round := range 2 {
		b.eng.FlushOnce()
		stored, err := b.store.Logs(ctx, j.ID, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, l := range stored {
			texts = append(texts, l.Text)
		}
		if !slices.Equal(texts, []string{"one", "two", "three"}) {
			t.Fatalf("after round %d the store has %q, want each line once", round+1, texts)
		}
	}
	c.result <- exit(0)
	b.wait(t, j.ID)
}

func TestRecoverOnceEndsACrashedAttemptAndThenFindsNothing(t *testing.T) {
	t.Parallel()
	in := newIdle(t, engine.Config{}, nil)
	ctx := context.Background()
	_, err := in.store.Enqueue(ctx, &engine.Job{ID: "crashed", Queue: "default", Type: "exec", Command: []string{"x"},
		State: engine.StateQueued, MaxAttempts: 3, Backoff: engine.Duration(time.Second), CreatedAt: t0, RunAt: t0}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.store.Claim(ctx, engine.ClaimRequest{Owner: "localhost/deadbeef", Now: t0, Limit: 1}); err != nil {
		t.Fatal(err)
	}

	rep, err := in.eng.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 1 || len(rep.Recovered) != 1 || rep.Recovered[0].ID != "crashed" || rep.Recovered[0].NewState != engine.StateQueued {
		t.Fatalf("first round: %+v, want the crashed job requeued", rep)
	}
	if s := in.state(t, "crashed"); s != engine.StateQueued {
		t.Fatalf("after recovery the job is %s, want QUEUED for its retry", s)
	}
	rep, err = in.eng.Recover(ctx)
	if err != nil || rep.Scanned != 0 || len(rep.Recovered) != 0 {
		t.Fatalf("second round: %+v, %v; want nothing left RUNNING", rep, err)
	}
}
