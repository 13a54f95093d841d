package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"stq/engine"
	"stq/store/sqlite"
)

// fakeLeases is an engine.Leaser on a manual clock, standing in for the
// database's: a lease is live while its expiry is after the clock's now.
// down makes renewals fail, as a network partition would.
type fakeLeases struct {
	clock  *engine.ManualClock
	st     engine.Store
	mu     sync.Mutex
	leases map[string]engine.DaemonInfo
	down   bool
}

func (f *fakeLeases) Join(_ context.Context, d engine.DaemonInfo, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	d.Heartbeat, d.Expires = now, now.Add(ttl)
	f.leases[d.Owner] = d
	return nil
}

func (f *fakeLeases) Renew(_ context.Context, owner string, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("connection refused")
	}
	now := f.clock.Now()
	d, ok := f.leases[owner]
	if !ok || !d.Expires.After(now) {
		return engine.ErrLeaseLost
	}
	d.Heartbeat, d.Expires = now, now.Add(ttl)
	f.leases[owner] = d
	return nil
}

func (f *fakeLeases) Leave(_ context.Context, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, owner)
	return nil
}

func (f *fakeLeases) Daemons(context.Context) ([]engine.DaemonInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ds []engine.DaemonInfo
	for _, d := range f.leases {
		if d.Expires.After(f.clock.Now()) {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

func (f *fakeLeases) ForgetExpired(ctx context.Context) (int, error) {
	running, err := f.st.Running(ctx)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for owner, d := range f.leases {
		busy := false
		for _, j := range running {
			busy = busy || j.Owner == owner
		}
		if !d.Expires.After(f.clock.Now()) && !busy {
			delete(f.leases, owner)
			n++
		}
	}
	return n, nil
}

func (f *fakeLeases) has(owner string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.leases[owner]
	return ok
}

func (f *fakeLeases) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// leasedStore is the SQLite store with fake leases: a shared store as the
// engine sees it.
type leasedStore struct {
	*sqlite.Store
	*fakeLeases
}

// leasedSetup opens a store with fake leases on a manual clock; engines
// started with startLeased share both, as daemons share a database.
func leasedSetup(t *testing.T) (*leasedStore, *engine.ManualClock) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "stq.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := engine.NewManualClock(t0)
	return &leasedStore{Store: st, fakeLeases: &fakeLeases{clock: clock, st: st, leases: map[string]engine.DaemonInfo{}}}, clock
}

func startLeased(t *testing.T, st *leasedStore, clock *engine.ManualClock, cfg engine.Config) *bundle {
	t.Helper()
	b := &bundle{store: st.Store, exec: &fakeExec{started: make(chan *call, 100)}, clock: clock, procs: &fakeProcs{}, done: make(chan error, 1)}
	var err error
	b.eng, err = engine.New(cfg, engine.Deps{Store: st, Subprocess: b.exec, InProcess: b.exec, Processes: b.procs, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go func() { b.done <- b.eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if !b.advanceUntilStopped(time.Hour) {
			t.Error("engine did not stop")
		}
	})
	return b
}

// advanceUntil moves the clock by step, pausing a moment of wall time
// after each so the engine's loops take their timers, until cond holds;
// it fails the test after 200 steps.
func advanceUntil(t *testing.T, clock *engine.ManualClock, step time.Duration, cond func() bool) {
	t.Helper()
	for range 200 {
		if cond() {
			return
		}
		clock.Advance(step)
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met by %s", clock.Now().Sub(t0))
}

func jobState(t *testing.T, st engine.Store, id string) *engine.Job {
	t.Helper()
	j, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A daemon killed with SIGKILL leaves its job RUNNING and its lease
// unrenewed: once the lease expires, a daemon on another host ends the
// attempt as crashed, runs the job again, and forgets the dead lease; a
// live daemon's job is never touched.
func TestAnExpiredDaemonsJobRunsAgainOnAnotherHost(t *testing.T) {
	st, clock := leasedSetup(t)
	ctx := context.Background()
	const lease = 6 * time.Second
	for _, owner := range []string{"ha/dead", "hc/live"} {
		if err := st.Join(ctx, engine.DaemonInfo{Owner: owner}, lease); err != nil {
			t.Fatal(err)
		}
		id := "job-" + owner[:2]
		if _, err := st.Enqueue(ctx, &engine.Job{ID: id, Queue: "default", Type: "exec", Command: []string{"x"}, State: engine.StateQueued,
			MaxAttempts: 3, Backoff: engine.Duration(time.Second), CreatedAt: t0, RunAt: t0}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Claim(ctx, engine.ClaimRequest{Owner: owner, Now: t0, Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkStarted(ctx, id, 1, 4242, 99); err != nil {
			t.Fatal(err)
		}
	}
	b := startLeased(t, st, clock, engine.Config{Workers: 1, Host: "hb", Lease: lease})
	// Before the lease runs out the job is left alone.
	clock.Advance(lease / 2)
	if rep, err := b.eng.Recover(ctx); err != nil || len(rep.Recovered) != 0 {
		t.Fatalf("recovery before the lease expired: %+v %v", rep, err)
	}
	var c *call
	advanceUntil(t, clock, 250*time.Millisecond, func() bool {
		_ = st.Renew(ctx, "hc/live", lease) // the live daemon keeps renewing
		select {
		case c = <-b.exec.started:
			return true
		default:
			return false
		}
	})
	if c.run.Job.ID != "job-ha" || c.run.Job.Attempt != 2 {
		t.Fatalf("started %s attempt %d, want job-ha attempt 2", c.run.Job.ID, c.run.Job.Attempt)
	}
	c.result <- exit(0)
	j := b.wait(t, "job-ha")
	if j.State != engine.StateDone || len(j.Attempts) != 2 || j.Attempts[0].Outcome != engine.OutcomeCrashed ||
		j.Attempts[0].Reason != "daemon crashed" || j.Attempts[1].Outcome != engine.OutcomeSucceeded {
		t.Fatalf("recovered job: %s %+v", j.State, j.Attempts)
	}
	if j.Owner != b.eng.Owner() {
		t.Errorf("owner %q, want the recovering daemon %q", j.Owner, b.eng.Owner())
	}
	if live := jobState(t, st, "job-hc"); live.State != engine.StateRunning || live.Owner != "hc/live" {
		t.Errorf("a live daemon's job was touched: %s %s", live.State, live.Owner)
	}
	b.procs.mu.Lock()
	killed := len(b.procs.killed) + len(b.procs.killedJobs)
	b.procs.mu.Unlock()
	if killed != 0 {
		t.Errorf("tried to kill another host's processes (%d calls)", killed)
	}
	if st.has("ha/dead") {
		t.Error("the dead daemon's lease was not forgotten after its job was recovered")
	}
	if !st.has("hc/live") {
		t.Error("the live daemon's lease was forgotten")
	}
	stats, err := b.eng.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats.Daemons) != 2 {
		t.Errorf("stats lists %d daemons, want 2 (this one and hc/live): %+v", len(stats.Daemons), stats.Daemons)
	}
}

// A daemon that cannot renew its lease is fenced two thirds into it: it
// stops its running job (recorded as crashed) before the lease can
// expire and claims nothing; a renewal that succeeds before expiry lifts
// the fence.
func TestAFencedDaemonStopsItsJobsAndResumesWhenItRenews(t *testing.T) {
	st, clock := leasedSetup(t)
	const lease = 6 * time.Second
	b := startLeased(t, st, clock, engine.Config{Workers: 1, Host: "ha", Lease: lease})
	backoff := engine.Duration(100 * time.Millisecond)
	j := b.enqueue(t, engine.EnqueueRequest{Backoff: &backoff})
	c := b.next(t)
	st.setDown(true)
	advanceUntil(t, clock, 250*time.Millisecond, func() bool { return c.ctx.Err() != nil })
	if at := clock.Now().Sub(t0); at < lease*2/3 || at >= lease {
		t.Fatalf("job stopped %s into a %s lease, want between 2/3 of it and its end", at, lease)
	}
	got := b.waitState(t, j.ID, engine.StateQueued)
	if a := got.Attempts[0]; a.Outcome != engine.OutcomeCrashed || a.Reason != "daemon lost its lease" {
		t.Fatalf("fenced attempt: %+v", a)
	}
	// Due again after its backoff, but not claimed while fenced (the
	// renewal a second after the fence fails too).
	clock.Advance(250 * time.Millisecond)
	select {
	case c := <-b.exec.started:
		t.Fatalf("a fenced daemon started %s", c.run.Job.ID)
	case <-time.After(100 * time.Millisecond):
	}
	st.setDown(false)
	c = b.advanceUntilStarted(t, 250*time.Millisecond)
	if clock.Now().Sub(t0) >= lease+lease/3 {
		t.Errorf("resumed at %s", clock.Now().Sub(t0))
	}
	c.result <- exit(0)
	if done := b.wait(t, j.ID); done.State != engine.StateDone || len(done.Attempts) != 2 {
		t.Fatalf("after the fence lifted: %s %+v", done.State, done.Attempts)
	}
}

// Once its lease has expired a daemon never resumes it: its next renewal
// is refused, it stops everything and Run returns ErrLeaseLost.
func TestALostLeaseEndsRun(t *testing.T) {
	st, clock := leasedSetup(t)
	const lease = 3 * time.Second
	b := startLeased(t, st, clock, engine.Config{Workers: 1, Host: "ha", Lease: lease})
	b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	st.setDown(true)
	clock.Advance(2 * lease)
	st.setDown(false)
	var err error
	advanceUntil(t, clock, 250*time.Millisecond, func() bool {
		select {
		case err = <-b.done:
			return true
		default:
			return false
		}
	})
	if !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("Run returned %v, want ErrLeaseLost", err)
	}
	if c.ctx.Err() == nil {
		t.Error("the running attempt was not stopped")
	}
	b.done <- nil // for the cleanup
}

// startProcs tells processes apart by start time, as exec.Processes does:
// a daemon recorded with a start time not in alive is gone.
type startProcs struct {
	*fakeProcs
	alive map[int64]bool
}

func (p startProcs) StartTime(int) (int64, error) { return 1, nil }

func (p startProcs) Alive(_ int, start int64) bool { return p.alive[start] }

// A daemon of this host whose process is gone is dead at once, lease or
// not: a restart after a crash recovers its jobs without waiting for the
// lease, and gives the dead daemon's lease back. A live one's are left.
func TestADeadDaemonOfThisHostIsRecoveredWithoutWaitingForItsLease(t *testing.T) {
	st, clock := leasedSetup(t)
	ctx := context.Background()
	for i, owner := range []string{"hb/dead", "hb/alive"} {
		if err := st.Join(ctx, engine.DaemonInfo{Owner: owner, Host: "hb", PID: 4000 + i, PIDStart: int64(10 + i)}, time.Minute); err != nil {
			t.Fatal(err)
		}
		id := "job-" + owner[3:]
		if _, err := st.Enqueue(ctx, &engine.Job{ID: id, Queue: "default", Type: "exec", Command: []string{"x"}, State: engine.StateQueued,
			MaxAttempts: 3, Backoff: engine.Duration(time.Second), CreatedAt: t0, RunAt: t0}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Claim(ctx, engine.ClaimRequest{Owner: owner, Now: t0, Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkStarted(ctx, id, 1, 4242+i, 99); err != nil {
			t.Fatal(err)
		}
	}
	procs := startProcs{fakeProcs: &fakeProcs{}, alive: map[int64]bool{11: true, 1: true}}
	eng, err := engine.New(engine.Config{Workers: 1, Host: "hb", Lease: time.Minute},
		engine.Deps{Store: st, Subprocess: &fakeExec{started: make(chan *call, 10)}, Processes: procs, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := eng.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recovered) != 1 || rep.Recovered[0].ID != "job-dead" || !rep.Recovered[0].Killed {
		t.Fatalf("recovered %+v, want job-dead only, its processes killed", rep.Recovered)
	}
	if j := jobState(t, st, "job-alive"); j.State != engine.StateRunning {
		t.Errorf("a live daemon's job is %s", j.State)
	}
	if st.has("hb/dead") || !st.has("hb/alive") {
		t.Errorf("leases after recovery: dead kept %v, alive kept %v; want false, true", st.has("hb/dead"), st.has("hb/alive"))
	}
}
