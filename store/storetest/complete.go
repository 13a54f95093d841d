package storetest

import (
	"errors"
	"slices"
	"strings"
	"time"

	"stq/engine"
)

func testComplete(f *fx) {
	exit := func(v int) *int { return &v }
	at := t0.Add(time.Minute)
	for _, tc := range []struct {
		name       string
		c          engine.Completion
		wantState  engine.State
		wantError  string
		wantRunAt  time.Time
		wantFinish bool
	}{
		{"done clears the error", engine.Completion{State: engine.StateDone, Outcome: engine.OutcomeSucceeded, Reason: "ignored", ExitCode: exit(0)},
			engine.StateDone, "", t0, true},
		{"failed keeps the reason", engine.Completion{State: engine.StateFailed, Outcome: engine.OutcomeFailed, Reason: "exit status 100 (permanent failure)", ExitCode: exit(100)},
			engine.StateFailed, "exit status 100 (permanent failure)", t0, true},
		{"cancelled", engine.Completion{State: engine.StateCancelled, Outcome: engine.OutcomeCancelled, Reason: "cancelled"},
			engine.StateCancelled, "cancelled", t0, true},
		{"a retry is queued at run_at", engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeFailed, Reason: "killed by signal KILL", RunAt: at.Add(time.Hour)},
			engine.StateQueued, "killed by signal KILL", at.Add(time.Hour), false},
	} {
		j := f.add("q", "t", "")
		run := f.claimOne(t0)
		c := tc.c
		c.ID, c.Attempt, c.FinishedAt = run.ID, run.Attempt, at
		got := f.complete(c)
		want := *j
		want.State, want.Attempt, want.Owner, want.StartedAt = tc.wantState, 1, "host/1", ptr(t0)
		want.Error, want.ExitCode, want.RunAt = tc.wantError, c.ExitCode, tc.wantRunAt
		if tc.wantFinish {
			want.FinishedAt = &at
		}
		want.Attempts = []engine.Attempt{{N: 1, StartedAt: t0, FinishedAt: &at, Outcome: c.Outcome, Reason: c.Reason, ExitCode: c.ExitCode}}
		f.wantJob(tc.name+": completed job", got, &want)
		f.wantJob(tc.name+": completed job read back", f.get(j.ID), &want)
		if tc.wantState != engine.StateQueued {
			continue
		}
		if early := f.claim(tc.wantRunAt.Add(-time.Nanosecond), 10); len(early) != 0 {
			f.Fatalf("%s: claimed %v before run_at", tc.name, ids(early))
		}
		again := f.claimOne(tc.wantRunAt)
		if again.ID != j.ID || again.Attempt != 2 || len(again.Attempts) != 2 || again.Attempts[1].N != 2 || again.ExitCode != nil {
			f.Fatalf("%s: second claim got %s attempt %d attempts %d exit %s", tc.name, again.ID, again.Attempt, len(again.Attempts), fmtInt(again.ExitCode))
		}
		f.complete(succeeded(again, tc.wantRunAt))
	}
}

func testRefund(f *fx) {
	j := f.add("q", "t", "s")
	run := f.claimOne(t0)
	at := t0.Add(time.Second)
	got := f.complete(engine.Completion{ID: j.ID, Attempt: 1, State: engine.StateQueued,
		Outcome: engine.OutcomeInterrupted, Reason: "interrupted by daemon shutdown",
		FinishedAt: at, RunAt: at, Refund: true})
	if got.State != engine.StateQueued || got.Attempt != 0 {
		f.Fatalf("after refund: state %s attempt %d, want QUEUED 0", got.State, got.Attempt)
	}
	again := f.claimOne(at)
	if again.ID != run.ID || again.Attempt != 1 {
		f.Fatalf("claim after refund: %s attempt %d, want attempt 1", again.ID, again.Attempt)
	}
	if len(again.Attempts) != 2 || again.Attempts[0].Outcome != engine.OutcomeInterrupted ||
		again.Attempts[0].N != 1 || again.Attempts[1].N != 1 || again.Attempts[1].Outcome != engine.OutcomeRunning {
		f.Fatalf("attempt history after refund: %+v", again.Attempts)
	}
	// The repeated attempt number is the current one.
	if err := f.s.MarkStarted(f.ctx, j.ID, 1, 77, 1); err != nil {
		f.Fatalf("mark started after refund: %v", err)
	}
	done := f.complete(succeeded(again, at.Add(time.Second)))
	if a := done.Attempts; a[0].PID != 0 || a[1].PID != 77 || a[1].Outcome != engine.OutcomeSucceeded || a[0].Outcome != engine.OutcomeInterrupted {
		f.Fatalf("attempt history after completion: %+v", a)
	}
}

func testCompleteStale(f *fx) {
	f.add("q", "t", "")
	queued := f.add("q", "t", "")
	running := f.claimOne(t0) // the first job; the second stays queued
	at := t0.Add(time.Second)
	c := succeeded(running, at)
	wrong := c
	wrong.Attempt = 2
	notRunning := succeeded(queued, at)
	notRunning.Attempt = 0
	unknown := c
	unknown.ID = "no-such-job"
	for _, tc := range []struct {
		name string
		c    engine.Completion
		want error
	}{
		{"wrong attempt", wrong, engine.ErrStale},
		{"job still queued", notRunning, engine.ErrStale},
		{"unknown id", unknown, engine.ErrNotFound},
	} {
		if _, err := f.s.Complete(f.ctx, tc.c); !errors.Is(err, tc.want) {
			f.Errorf("%s: complete returned %v, want %v", tc.name, err, tc.want)
		}
	}
	f.wantState(running.ID, engine.StateRunning)
	f.wantState(queued.ID, engine.StateQueued)
	f.complete(c)
	if _, err := f.s.Complete(f.ctx, c); !errors.Is(err, engine.ErrStale) {
		f.Errorf("second completion returned %v, want ErrStale", err)
	}
	f.wantState(running.ID, engine.StateDone)
}

func testCancelQueued(f *fx) {
	running := f.add("q", "t", "")
	f.claimOne(t0)
	done := f.add("q", "t", "")
	f.complete(succeeded(f.claimOne(t0), t0))
	queued := f.add("q", "t", "s")
	queued2 := f.add("r", "t", "")
	now := t0.Add(time.Minute)
	got, err := f.s.CancelQueued(f.ctx, []string{running.ID, done.ID, "unknown", queued.ID, queued2.ID, queued.ID}, "cancelled by user", now)
	if err != nil {
		f.Fatalf("cancel: %v", err)
	}
	slices.SortFunc(got, func(a, b *engine.Job) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(ids(got), []string{queued.ID, queued2.ID}) {
		f.Fatalf("cancelled %v, want %s and %s", ids(got), queued.ID, queued2.ID)
	}
	for _, j := range got {
		if j.State != engine.StateCancelled || j.Error != "cancelled by user" || j.FinishedAt == nil || !j.FinishedAt.Equal(now) {
			f.Fatalf("cancelled job %s: state %s error %q finished %s", j.ID, j.State, j.Error, fmtTime(j.FinishedAt))
		}
		f.wantJob("cancelled job read back", f.get(j.ID), j)
	}
	f.wantState(running.ID, engine.StateRunning)
	f.wantState(done.ID, engine.StateDone)
	if got, err := f.s.CancelQueued(f.ctx, []string{queued.ID}, "again", now); err != nil || len(got) != 0 {
		f.Fatalf("second cancel: %v %v", ids(got), err)
	}
}

func testMarkStarted(f *fx) {
	j := f.add("q", "t", "")
	run := f.claimOne(t0)
	const pid, pidStart = 4242, int64(1700000000123)
	if err := f.s.MarkStarted(f.ctx, j.ID, run.Attempt, pid, pidStart); err != nil {
		f.Fatalf("mark started: %v", err)
	}
	check := func(what string, got *engine.Job) {
		f.Helper()
		if len(got.Attempts) != 1 || got.Attempts[0].PID != pid || got.Attempts[0].PIDStart != pidStart {
			f.Fatalf("%s: attempts %+v, want pid %d started %d", what, got.Attempts, pid, pidStart)
		}
	}
	check("get", f.get(j.ID))
	rs, err := f.s.Running(f.ctx)
	if err != nil || len(rs) != 1 {
		f.Fatalf("running: %v %v", ids(rs), err)
	}
	check("running", rs[0])
	if err := f.s.MarkStarted(f.ctx, j.ID, 2, 1, 1); !errors.Is(err, engine.ErrStale) {
		f.Errorf("wrong attempt: %v, want ErrStale", err)
	}
	if err := f.s.MarkStarted(f.ctx, "unknown", 1, 1, 1); !errors.Is(err, engine.ErrNotFound) {
		f.Errorf("unknown job: %v, want ErrNotFound", err)
	}
	f.complete(succeeded(run, t0))
	if err := f.s.MarkStarted(f.ctx, j.ID, 1, 1, 1); !errors.Is(err, engine.ErrStale) {
		f.Errorf("finished job: %v, want ErrStale", err)
	}
	check("get after completion", f.get(j.ID))
}
