package engine_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"stq/engine"
	"stq/store/sqlite"
)

// fakeExec hands every attempt to the test, which decides how it ends.
type fakeExec struct {
	started chan *call
}

type call struct {
	run    *engine.Run
	ctx    context.Context
	result chan engine.Result
}

func (f *fakeExec) Execute(ctx context.Context, run *engine.Run) engine.Result {
	c := &call{run: run, ctx: ctx, result: make(chan engine.Result, 1)}
	f.started <- c
	select {
	case r := <-c.result:
		if r.Signal == "PANIC" {
			panic("boom")
		}
		return r
	case <-ctx.Done():
		// Like a process that dies of the SIGTERM it was sent.
		return engine.Result{Signal: "SIGTERM"}
	}
}

type fakeProcs struct {
	mu         sync.Mutex
	killed     []int
	killedJobs []string // jobs recovered by marker: no PID was recorded
}

func (p *fakeProcs) KillJob(jobID string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killedJobs = append(p.killedJobs, jobID)
	return true, nil
}

func (p *fakeProcs) KillGroup(pid int, pidStart int64) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killed = append(p.killed, pid)
	return true, nil
}

type bundle struct {
	eng   *engine.Engine
	store *sqlite.Store
	exec  *fakeExec
	clock *engine.ManualClock
	procs *fakeProcs
	stop  func()
	done  chan error
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, cfg engine.Config, before ...func(*sqlite.Store)) *bundle {
	t.Helper()
	return setupObserved(t, cfg, nil, before...)
}

// setupObserved is setup with an engine.Observer.
func setupObserved(t *testing.T, cfg engine.Config, obs engine.Observer, before ...func(*sqlite.Store)) *bundle {
	t.Helper()
	return setupWith(t, cfg, obs, nil, before...)
}

// setupWith is setupObserved with the engine's store wrapped by wrap (nil:
// not wrapped), for tests that step into the engine's store calls.
func setupWith(t *testing.T, cfg engine.Config, obs engine.Observer, wrap func(engine.Store) engine.Store, before ...func(*sqlite.Store)) *bundle {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "stq.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, f := range before {
		f(st)
	}
	b := &bundle{store: st, exec: &fakeExec{started: make(chan *call, 100)}, clock: engine.NewManualClock(t0), procs: &fakeProcs{}, done: make(chan error, 1)}
	reg := engine.NewRegistry()
	if cfg.Host == "" {
		cfg.Host = "localhost"
	}
	var es engine.Store = st
	if wrap != nil {
		es = wrap(st)
	}
	b.eng, err = engine.New(cfg, engine.Deps{Store: es, Subprocess: b.exec, InProcess: b.exec, Registry: reg, Processes: b.procs, Clock: b.clock, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go func() { b.done <- b.eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if !b.advanceUntilStopped(time.Hour) { // past any grace period
			t.Error("engine did not stop")
		}
	})
	return b
}

// advanceUntilStopped moves the clock on by step until Run returns, for
// at most 10s of wall time, and reports whether it did. Run arms its grace
// timer only once the dispatcher has stopped, a moment the test cannot
// see: on a slow machine that comes after a single move of the clock.
func (b *bundle) advanceUntilStopped(step time.Duration) bool {
	giveUp := time.After(10 * time.Second)
	for {
		b.clock.Advance(step)
		select {
		case <-b.done:
			return true
		case <-time.After(50 * time.Millisecond):
		case <-giveUp:
			return false
		}
	}
}

func (b *bundle) enqueue(t *testing.T, req engine.EnqueueRequest) *engine.Job {
	t.Helper()
	return enqueueThrough(t, b.eng, req, "enqueue")
}

// enqueueThrough enqueues req through eng, with a placeholder command when
// it has none; what names the step in a failure.
func enqueueThrough(t *testing.T, eng *engine.Engine, req engine.EnqueueRequest, what string) *engine.Job {
	t.Helper()
	if len(req.Command) == 0 {
		req.Command = []string{"work"}
	}
	res, err := eng.Enqueue(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return res.Job
}

// next returns the next attempt the engine started.
func (b *bundle) next(t *testing.T) *call {
	t.Helper()
	select {
	case c := <-b.exec.started:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt started")
		return nil
	}
}

func (b *bundle) wait(t *testing.T, id string) *engine.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := b.eng.Wait(ctx, []string{id})
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return js[0]
}

// waitState waits for a non-terminal state by watching job events.
func (b *bundle) waitState(t *testing.T, id string, want engine.State) *engine.Job {
	t.Helper()
	sub := b.eng.Subscribe(engine.EventFilter{JobID: id})
	defer sub.Close()
	timeout := time.After(10 * time.Second)
	for {
		j, err := b.eng.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == want {
			return j
		}
		select {
		case <-sub.C:
		case <-timeout:
			t.Fatalf("job %s stayed %s, want %s", id, j.State, want)
		}
	}
}

func exit(code int) engine.Result { return engine.Result{ExitCode: &code} }

func TestANewerGenerationWaitsForTheRunningOlderOne(t *testing.T) {
	b := setup(t, engine.Config{Workers: 4})
	g1 := b.enqueue(t, engine.EnqueueRequest{Subject: "src/a.rs"})
	c1 := b.next(t)
	if c1.run.Job.ID != g1.ID {
		t.Fatalf("started %s, want %s", c1.run.Job.ID, g1.ID)
	}
	g2 := b.enqueue(t, engine.EnqueueRequest{Subject: "src/a.rs"})
	// A later job without a subject starts; since claims go in enqueue order,
	// g2 was considered before it and passed over.
	other := b.enqueue(t, engine.EnqueueRequest{})
	if c := b.next(t); c.run.Job.ID != other.ID {
		t.Fatalf("started %s (gen %d) while generation 1 was running", c.run.Job.ID, c.run.Job.Generation)
	} else {
		c.result <- exit(0)
	}
	if j, _ := b.eng.Get(context.Background(), g2.ID); j.State != engine.StateQueued {
		t.Fatalf("generation 2 is %s while generation 1 runs", j.State)
	}
	c1.result <- exit(0)
	if c := b.next(t); c.run.Job.ID != g2.ID {
		t.Fatalf("after generation 1 ended, started %s", c.run.Job.ID)
	} else {
		c.result <- exit(0)
	}
	if j := b.wait(t, g2.ID); j.State != engine.StateDone {
		t.Fatalf("generation 2 ended %s", j.State)
	}
}

func TestDeadlineFailsTheAttemptAndRetriesAfterBackoff(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	dl := engine.Duration(10 * time.Second)
	bo := engine.Duration(4 * time.Second)
	j := b.enqueue(t, engine.EnqueueRequest{Deadline: &dl, Backoff: &bo})
	c := b.next(t)
	if want := []string{"STQ_JOB_ID=" + j.ID, "STQ_ATTEMPT=1"}; !strings.Contains(strings.Join(c.run.Env, " "), want[0]) || !strings.Contains(strings.Join(c.run.Env, " "), want[1]) {
		t.Fatalf("env %v lacks %v", c.run.Env, want)
	}
	b.clock.Advance(9 * time.Second)
	select {
	case <-c.ctx.Done():
		t.Fatal("attempt stopped before its deadline")
	default:
	}
	b.clock.Advance(time.Second)
	<-c.ctx.Done()
	got := b.waitState(t, j.ID, engine.StateQueued)
	if got.Error != "deadline of 10s exceeded" || got.Attempt != 1 {
		t.Fatalf("after deadline: attempt %d error %q", got.Attempt, got.Error)
	}
	delay := got.RunAt.Sub(b.clock.Now())
	if delay < 3*time.Second || delay > 5*time.Second {
		t.Fatalf("retry in %v, want 4s ±25%%", delay)
	}
	b.clock.Advance(delay)
	c2 := b.next(t)
	if c2.run.Job.Attempt != 2 {
		t.Fatalf("second start is attempt %d", c2.run.Job.Attempt)
	}
	c2.result <- exit(0)
	if j := b.wait(t, j.ID); j.State != engine.StateDone || len(j.Attempts) != 2 || j.Attempts[0].Outcome != engine.OutcomeFailed {
		t.Fatalf("job = %s, attempts %+v", j.State, j.Attempts)
	}
}

func TestTTLExpiresAQueuedJobWhileEveryWorkerIsBusy(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	busy := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	ttl := engine.Duration(5 * time.Second)
	j := b.enqueue(t, engine.EnqueueRequest{TTL: &ttl})
	b.clock.Advance(5 * time.Second)
	if got := b.wait(t, j.ID); got.State != engine.StateExpired || got.Attempt != 0 {
		t.Fatalf("job = %s after attempt %d", got.State, got.Attempt)
	}
	c.result <- exit(0)
	b.wait(t, busy.ID)
}

func TestScheduledJobStartsWhenItsTimeComes(t *testing.T) {
	b := setup(t, engine.Config{Workers: 2})
	delay := engine.Duration(time.Minute)
	later := b.enqueue(t, engine.EnqueueRequest{Delay: &delay})
	now := b.enqueue(t, engine.EnqueueRequest{})
	if c := b.next(t); c.run.Job.ID != now.ID {
		t.Fatalf("started the scheduled job first")
	} else {
		c.result <- exit(0)
	}
	b.wait(t, now.ID)
	b.clock.Advance(time.Minute)
	if c := b.next(t); c.run.Job.ID != later.ID {
		t.Fatalf("started %s", c.run.Job.ID)
	} else {
		c.result <- exit(0)
	}
}

func TestShutdownRequeuesRunningJobsWithoutUsingAnAttempt(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1, Grace: 3 * time.Second})
	one := 1
	j := b.enqueue(t, engine.EnqueueRequest{MaxAttempts: &one})
	c := b.next(t)
	b.stop()
	select {
	case <-c.ctx.Done():
		t.Fatal("running job stopped before the grace period ended")
	case <-time.After(50 * time.Millisecond):
	}
	if !b.advanceUntilStopped(3 * time.Second) {
		t.Fatal("engine did not stop after the grace period")
	}
	got, err := b.store.Get(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != engine.StateQueued || got.Attempt != 0 || got.Attempts[0].Outcome != engine.OutcomeInterrupted {
		t.Fatalf("after shutdown: %s attempt %d %+v", got.State, got.Attempt, got.Attempts)
	}
	b.done <- nil // for the cleanup
}

// A service manager that stops the daemon may signal its jobs at the same
// moment (systemd's KillMode=control-group signals the whole unit): a job
// that dies of a signal during the grace period was stopped by the
// shutdown, not failed by itself. One that exits with a code still ends as
// its code says.
func TestSignalDeathDuringGraceIsAnInterruption(t *testing.T) {
	for _, tc := range []struct {
		name    string
		result  engine.Result
		state   engine.State
		outcome engine.Outcome
	}{
		{"killed by SIGTERM", engine.Result{Signal: "SIGTERM"}, engine.StateQueued, engine.OutcomeInterrupted},
		{"exits 3 on its own", exit(3), engine.StateFailed, engine.OutcomeFailed},
		{"exits 0", exit(0), engine.StateDone, engine.OutcomeSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, engine.Config{Workers: 1, Grace: time.Hour})
			one := 1
			j := b.enqueue(t, engine.EnqueueRequest{MaxAttempts: &one})
			c := b.next(t)
			b.stop()
			c.result <- tc.result
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				t.Fatal("engine did not stop once its only job ended")
			}
			got, err := b.store.Get(context.Background(), j.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.state || got.Attempts[0].Outcome != tc.outcome {
				t.Fatalf("after shutdown: %s, attempt %+v; want %s, %s", got.State, got.Attempts[0], tc.state, tc.outcome)
			}
			b.done <- nil // for the cleanup
		})
	}
}

func TestRecoveryEndsCrashedAttemptsOfThisHostOnly(t *testing.T) {
	var crashed, foreign, unrecorded string
	seed := func(st *sqlite.Store) {
		ctx := context.Background()
		for i, owner := range []string{"localhost/deadbeef", "otherhost/cafe", "localhost/deadbeef"} {
			id := fmt.Sprintf("job%d", i)
			_, err := st.Enqueue(ctx, &engine.Job{ID: id, Queue: "default", Type: "exec", Command: []string{"x"}, State: engine.StateQueued,
				MaxAttempts: 3, Backoff: engine.Duration(time.Second), CreatedAt: t0, RunAt: t0}, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Claim(ctx, engine.ClaimRequest{Owner: owner, Now: t0, Limit: 1}); err != nil {
				t.Fatal(err)
			}
			if i == 2 {
				continue // died before its process was recorded
			}
			if err := st.MarkStarted(ctx, id, 1, 4242+i, 99); err != nil {
				t.Fatal(err)
			}
		}
		crashed, foreign, unrecorded = "job0", "job1", "job2"
	}
	b := setup(t, engine.Config{Workers: 1}, seed)
	// Run recovers before it dispatches, so the retry waits for its backoff.
	j := b.waitState(t, crashed, engine.StateQueued)
	if j.Attempts[0].Outcome != engine.OutcomeCrashed || j.Attempts[0].Reason != "daemon crashed" || j.Attempt != 1 {
		t.Fatalf("recovered job: %+v", j.Attempts)
	}
	b.waitState(t, unrecorded, engine.StateQueued)
	b.procs.mu.Lock()
	killed := append([]int(nil), b.procs.killed...)
	byMarker := append([]string(nil), b.procs.killedJobs...)
	b.procs.mu.Unlock()
	if len(killed) != 1 || killed[0] != 4242 {
		t.Fatalf("killed %v, want only the local crashed job's group 4242", killed)
	}
	slices.Sort(byMarker)
	if want := []string{crashed, unrecorded}; !slices.Equal(byMarker, want) {
		t.Fatalf("searched by marker for %v, want %v: the local jobs, whether or not a process was recorded", byMarker, want)
	}
	if f, _ := b.eng.Get(context.Background(), foreign); f.State != engine.StateRunning {
		t.Fatalf("a job of another host was touched: %s", f.State)
	}
	rep, err := b.eng.Recover(context.Background())
	if err != nil || len(rep.Recovered) != 0 {
		t.Fatalf("second recovery: %+v %v", rep, err)
	}
}

func TestAPanickingExecutorFailsOnlyThatAttempt(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	one := 1
	j := b.enqueue(t, engine.EnqueueRequest{MaxAttempts: &one})
	c := b.next(t)
	c.result <- engine.Result{Signal: "PANIC"}
	if got := b.wait(t, j.ID); got.State != engine.StateFailed || got.Error != "executor panicked: boom" {
		t.Fatalf("job = %s %q", got.State, got.Error)
	}
	k := b.enqueue(t, engine.EnqueueRequest{})
	b.next(t).result <- exit(0)
	if got := b.wait(t, k.ID); got.State != engine.StateDone {
		t.Fatalf("the engine stopped working after a failure: %s", got.State)
	}
}

func TestCancelARunningJob(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	j := b.enqueue(t, engine.EnqueueRequest{})
	b.next(t)
	jobs, err := b.eng.Cancel(context.Background(), engine.CancelRequest{ID: j.ID})
	if err != nil || len(jobs) != 1 || jobs[0].State != engine.StateCancelled {
		t.Fatalf("cancel = %+v, %v", jobs, err)
	}
	if _, err := b.eng.Cancel(context.Background(), engine.CancelRequest{ID: j.ID}); !errors.Is(err, engine.ErrFinished) {
		t.Fatalf("second cancel: %v", err)
	}
}

func TestOutputIsBoundedAndNotesTheDrop(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1, LogLimit: 1000})
	j := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	for i := 0; i < 5000; i++ {
		c.run.Output("stdout", fmt.Sprintf("line %05d", i))
	}
	c.result <- exit(0)
	b.wait(t, j.ID)
	lines, err := b.eng.Logs(context.Background(), j.ID, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range lines {
		total += len(l.Text)
	}
	if total > 1000 || lines[len(lines)-1].Text != "line 04999" {
		t.Fatalf("%d lines, %d bytes, first %q last %q", len(lines), total, lines[0].Text, lines[len(lines)-1].Text)
	}
	if got, _ := b.eng.Get(context.Background(), j.ID); !got.LogTruncated {
		t.Fatal("the job does not record that its log was truncated")
	}
}

func TestUnknownTypeIsRejectedAtEnqueue(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	_, err := b.eng.Enqueue(context.Background(), engine.EnqueueRequest{Type: "INDEX_FILE"})
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "[handlers.INDEX_FILE]") {
		t.Fatalf("enqueue of a type without handler: %v", err)
	}
}

func TestDebounceRunsOnlyTheLastOfQuickGenerations(t *testing.T) {
	b := setup(t, engine.Config{Workers: 2})
	window := engine.Duration(2 * time.Second)
	var last *engine.Job
	for i := 0; i < 10; i++ {
		last = b.enqueue(t, engine.EnqueueRequest{Subject: "src/main.rs", Debounce: &window})
		b.clock.Advance(200 * time.Millisecond) // a save every 200ms
	}
	// 1.8s after the last save: still inside its window.
	b.clock.Advance(1600 * time.Millisecond)
	if j, _ := b.eng.Get(context.Background(), last.ID); j.State != engine.StateQueued || j.Waiting != engine.WaitRunAt {
		t.Fatalf("last generation is %s (waiting %q) inside its window", j.State, j.Waiting)
	}
	b.clock.Advance(200 * time.Millisecond)
	c := b.next(t)
	if c.run.Job.ID != last.ID || c.run.Job.Generation != 10 {
		t.Fatalf("started generation %d, want the last (10)", c.run.Job.Generation)
	}
	c.result <- exit(0)
	b.wait(t, last.ID)
	done, err := b.eng.List(context.Background(), engine.ListFilter{States: []engine.State{engine.StateDone}})
	if err != nil || len(done.Jobs) != 1 {
		t.Fatalf("%d jobs ran, want 1 (%v)", len(done.Jobs), err)
	}
}

func TestReplaceStopsTheRunningOlderGeneration(t *testing.T) {
	b := setup(t, engine.Config{Workers: 2})
	old := b.enqueue(t, engine.EnqueueRequest{Subject: "build"})
	c1 := b.next(t)
	yes := true
	newer := b.enqueue(t, engine.EnqueueRequest{Subject: "build", Replace: &yes})
	<-c1.ctx.Done() // the older attempt is told to stop
	c2 := b.next(t)
	if c2.run.Job.ID != newer.ID {
		t.Fatalf("started %s, want the replacing job", c2.run.Job.ID)
	}
	c2.result <- exit(0)
	got := b.wait(t, old.ID)
	if got.State != engine.StateSuperseded || got.Attempts[0].Outcome != engine.OutcomeSuperseded || !strings.Contains(got.Error, newer.ID) {
		t.Fatalf("replaced job: %s %q %+v", got.State, got.Error, got.Attempts)
	}
	if j := b.wait(t, newer.ID); j.State != engine.StateDone {
		t.Fatalf("replacing job ended %s", j.State)
	}
}

func TestWithoutReplaceANewerGenerationWaits(t *testing.T) {
	b := setup(t, engine.Config{Workers: 2})
	b.enqueue(t, engine.EnqueueRequest{Subject: "build"})
	c1 := b.next(t)
	newer := b.enqueue(t, engine.EnqueueRequest{Subject: "build"})
	if j, _ := b.eng.Get(context.Background(), newer.ID); j.Waiting != engine.WaitOlderGen {
		t.Fatalf("newer generation waiting %q, want %q", j.Waiting, engine.WaitOlderGen)
	}
	select {
	case <-c1.ctx.Done():
		t.Fatal("the older generation was stopped without --replace")
	default:
	}
	c1.result <- exit(0)
	b.next(t).result <- exit(0)
	b.wait(t, newer.ID)
}

// fakeProbe is a machine whose idleness and power the test sets.
type fakeProbe struct {
	mu   sync.Mutex
	idle bool
	ac   bool
}

func (p *fakeProbe) Idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle
}

func (p *fakeProbe) Power() engine.PowerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return engine.PowerState{OnAC: p.ac, Known: true}
}

func (p *fakeProbe) set(idle, ac bool) {
	p.mu.Lock()
	p.idle, p.ac = idle, ac
	p.mu.Unlock()
}

func TestConditionalJobsWaitForTheMachineAndNeverBlockOthers(t *testing.T) {
	probe := &fakeProbe{}
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "stq.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := &bundle{store: st, exec: &fakeExec{started: make(chan *call, 100)}, clock: engine.NewManualClock(t0), procs: &fakeProcs{}, done: make(chan error, 1)}
	b.eng, err = engine.New(engine.Config{Workers: 2, Host: "localhost"}, engine.Deps{Store: st, Subprocess: b.exec, InProcess: b.exec, Processes: b.procs, Probe: probe, Clock: b.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { b.done <- b.eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); b.clock.Advance(time.Hour); <-b.done })

	yes := true
	idleJob := b.enqueue(t, engine.EnqueueRequest{WaitIdle: &yes})
	acJob := b.enqueue(t, engine.EnqueueRequest{RequireCharging: &yes})
	plain := b.enqueue(t, engine.EnqueueRequest{})
	if c := b.next(t); c.run.Job.ID != plain.ID {
		t.Fatalf("started %s before the unconditional job", c.run.Job.ID)
	} else {
		c.result <- exit(0)
	}
	b.wait(t, plain.ID)
	for id, want := range map[string]string{idleJob.ID: engine.WaitIdle, acJob.ID: engine.WaitPower} {
		if j, _ := b.eng.Get(context.Background(), id); j.State != engine.StateQueued || j.Waiting != want {
			t.Fatalf("job %s is %s waiting %q, want %q", id, j.State, j.Waiting, want)
		}
	}
	probe.set(true, false) // the machine goes idle, still on battery
	if c := b.advanceUntilStarted(t, time.Second); c.run.Job.ID != idleJob.ID {
		t.Fatalf("started %s when the machine went idle", c.run.Job.ID)
	} else {
		c.result <- exit(0)
	}
	probe.set(true, true) // plugged in
	if c := b.advanceUntilStarted(t, time.Second); c.run.Job.ID != acJob.ID {
		t.Fatalf("started %s on AC", c.run.Job.ID)
	} else {
		c.result <- exit(0)
	}
	b.wait(t, acJob.ID)
}

// advanceUntilStarted moves the clock a step at a time until an attempt
// starts. Stepping (rather than one jump) does not depend on when the
// dispatcher armed its timer; the test still fails if nothing starts.
func (b *bundle) advanceUntilStarted(t *testing.T, step time.Duration) *call {
	t.Helper()
	for i := 0; i < 100; i++ {
		b.clock.Advance(step)
		select {
		case c := <-b.exec.started:
			return c
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("no attempt started")
	return nil
}

func TestClockJumpsNeitherLoseNorDoubleRunScheduledJobs(t *testing.T) {
	b := setup(t, engine.Config{Workers: 2})
	in := engine.Duration(10 * time.Minute)
	scheduled := b.enqueue(t, engine.EnqueueRequest{Delay: &in})
	bo := engine.Duration(time.Minute)
	backedOff := b.enqueue(t, engine.EnqueueRequest{Backoff: &bo})
	c := b.next(t)
	c.result <- exit(1) // fails; retries after about a minute
	b.waitState(t, backedOff.ID, engine.StateQueued)

	// The wall clock jumps back an hour: nothing is due, nothing is lost.
	b.clock.Set(t0.Add(-time.Hour))
	for _, id := range []string{scheduled.ID, backedOff.ID} {
		if j, _ := b.eng.Get(context.Background(), id); j.State != engine.StateQueued {
			t.Fatalf("job %s is %s after the clock went back", id, j.State)
		}
	}
	select {
	case c := <-b.exec.started:
		t.Fatalf("job %s started after the clock went back", c.run.Job.ID)
	case <-time.After(100 * time.Millisecond):
	}

	// Then forward two hours: each job runs exactly once.
	b.clock.Set(t0.Add(2 * time.Hour))
	seen := map[string]int{}
	for i := 0; i < 2; i++ {
		c := b.next(t)
		seen[c.run.Job.ID]++
		c.result <- exit(0)
	}
	b.wait(t, scheduled.ID)
	b.wait(t, backedOff.ID)
	select {
	case c := <-b.exec.started:
		t.Fatalf("job %s ran a second time", c.run.Job.ID)
	case <-time.After(100 * time.Millisecond):
	}
	if seen[scheduled.ID] != 1 || seen[backedOff.ID] != 1 {
		t.Fatalf("runs after the jumps: %v", seen)
	}
}

// A retry's completion and its next claim can share a commit, so the next
// attempt may be registered before the worker of the last one has
// finished: that worker must not unregister it, and a cancel must reach
// the new attempt rather than report it lost. A 1ns backoff comes out as
// 0 or 1ns after jitter, so about half the rounds take the shared commit
// (due at once) and the rest the next one (due when the clock moves).
func TestARetryStaysCancellable(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	for round := range 40 {
		tiny, many := engine.Duration(time.Nanosecond), 3
		j := b.enqueue(t, engine.EnqueueRequest{Backoff: &tiny, MaxAttempts: &many})
		b.next(t).result <- exit(1) // a retryable failure
		// The worker reads the clock when the attempt ends, which may be
		// after an advance: move it until the retry comes due.
		var second *call
		for second == nil {
			b.clock.Advance(time.Millisecond)
			select {
			case second = <-b.exec.started:
			case <-time.After(50 * time.Millisecond):
				if b.clock.Now().Sub(t0) > time.Minute {
					t.Fatalf("round %d: the retry never started", round)
				}
			}
		}
		if second.run.Job.ID != j.ID || second.run.Job.Attempt != 2 {
			t.Fatalf("round %d: started %s attempt %d, want %s attempt 2", round, second.run.Job.ID, second.run.Job.Attempt, j.ID)
		}
		if st, err := b.eng.Stats(context.Background()); err != nil || st.Running != 1 {
			t.Fatalf("round %d: stats say %d running (%v), want the retry", round, st.Running, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := b.eng.Cancel(ctx, engine.CancelRequest{ID: j.ID})
		cancel()
		if err != nil || len(got) != 1 || got[0].State != engine.StateCancelled {
			t.Fatalf("round %d: cancel of the running retry: %+v, %v", round, got, err)
		}
	}
}

// Enqueues only wake the dispatcher for jobs that could start before it
// next looks on its own; a job due before the armed timer must still wake
// it, or it would wait for the later job's time.
func TestAJobDueBeforeTheArmedTimerStillStartsOnTime(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	hour, minute := engine.Duration(time.Hour), engine.Duration(time.Minute)
	far := b.enqueue(t, engine.EnqueueRequest{Delay: &hour})
	// Let the dispatcher settle with its timer armed for the far job.
	now := b.enqueue(t, engine.EnqueueRequest{})
	b.next(t).result <- exit(0)
	b.wait(t, now.ID)
	near := b.enqueue(t, engine.EnqueueRequest{Delay: &minute})
	b.clock.Advance(time.Minute)
	if c := b.next(t); c.run.Job.ID != near.ID {
		t.Fatalf("started %s, want the job due in a minute", c.run.Job.ID)
	} else {
		c.result <- exit(0)
	}
	if j, _ := b.eng.Get(context.Background(), far.ID); j.State != engine.StateQueued {
		t.Fatalf("the job due in an hour is %s", j.State)
	}
}
