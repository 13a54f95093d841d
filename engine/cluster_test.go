package engine_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"
	"stq/store/sqlite"
)

// sharedStore stands in for a store other daemons share: a SQLite store
// with a Watcher whose notices the test sends by hand. The test plays the
// other daemons by writing to the same store directly.
type sharedStore struct {
	*sqlite.Store
	notices   chan engine.Notice
	fail      chan error // a value ends the current Watch with that error
	refuse    chan error // a value fails the next Watch before it listens
	watches   chan struct{}
	announced chan engine.Notice
	// onGet, when set, sees every job Get reads before it is returned.
	onGet atomic.Pointer[func(*engine.Job)]
}

func (s *sharedStore) Get(ctx context.Context, id string) (*engine.Job, error) {
	j, err := s.Store.Get(ctx, id)
	if f := s.onGet.Load(); f != nil && err == nil {
		(*f)(j)
	}
	return j, err
}

func (s *sharedStore) Watch(ctx context.Context, wake func(engine.Notice)) error {
	s.watches <- struct{}{}
	select {
	case err := <-s.refuse:
		return err
	default:
	}
	wake(engine.Notice{Kind: engine.NoticeResync})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.fail:
			return err
		case n := <-s.notices:
			wake(n)
		}
	}
}

func (s *sharedStore) Announce(ctx context.Context, ns ...engine.Notice) error {
	for _, n := range ns {
		s.announced <- n
	}
	return nil
}

// pulses tells the test when the dispatcher has finished a round: after
// one, it sleeps until it is woken or its timer fires.
type pulses struct{ c chan struct{} }

func (p pulses) Enqueued(engine.EnqueueResult) {}
func (p pulses) AttemptStarting(*engine.Job) ([]string, func(engine.AttemptEnded)) {
	return nil, nil
}
func (p pulses) Expired([]*engine.Job) {}
func (p pulses) Recovered(*engine.Job) {}
func (p pulses) Pulse() {
	select {
	case p.c <- struct{}{}:
	default:
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type sharedBundle struct {
	*bundle
	shared *sharedStore
	log    *syncBuffer
	// other enqueues as another daemon would: an engine on the same store
	// that never runs.
	other  *engine.Engine
	pulses pulses
}

func setupShared(t *testing.T, cfg engine.Config) *sharedBundle {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "stq.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sh := &sharedStore{Store: st, notices: make(chan engine.Notice), fail: make(chan error), refuse: make(chan error, 1),
		watches: make(chan struct{}, 10), announced: make(chan engine.Notice, 100)}
	b := &bundle{store: st, exec: &fakeExec{started: make(chan *call, 100)}, clock: engine.NewManualClock(t0), procs: &fakeProcs{}, done: make(chan error, 1)}
	logs := &syncBuffer{}
	cfg.Host = "here"
	pl := pulses{c: make(chan struct{}, 1)}
	b.eng, err = engine.New(cfg, engine.Deps{Store: sh, Subprocess: b.exec, InProcess: b.exec, Processes: b.procs,
		Clock: b.clock, Logger: slog.New(slog.NewTextHandler(logs, nil)), Observer: pl})
	if err != nil {
		t.Fatal(err)
	}
	other, err := engine.New(engine.Config{Host: "there", Owner: "there/1"}, engine.Deps{Store: st, Clock: b.clock})
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
	sb := &sharedBundle{bundle: b, shared: sh, log: logs, other: other, pulses: pl}
	sb.watched(t)
	return sb
}

// watched waits for the engine to (re)start watching.
func (b *sharedBundle) watched(t *testing.T) {
	t.Helper()
	select {
	case <-b.shared.watches:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine does not watch its shared store")
	}
}

// idle waits for the dispatcher's first round to end: a job stored
// elsewhere after it starts only when something wakes the dispatcher.
func (b *sharedBundle) idle(t *testing.T) {
	t.Helper()
	select {
	case <-b.pulses.c:
	case <-time.After(10 * time.Second):
		t.Fatal("the dispatcher never went round")
	}
}

func (b *sharedBundle) notice(n engine.Notice) { b.shared.notices <- n }

func (b *sharedBundle) enqueueElsewhere(t *testing.T, req engine.EnqueueRequest) *engine.Job {
	t.Helper()
	return enqueueThrough(t, b.other, req, "enqueue through the other daemon")
}

// runElsewhere makes job id RUNNING under the other daemon. The engine
// under test must have no free worker, or it could claim the job first.
func (b *sharedBundle) runElsewhere(t *testing.T, id string) *engine.Job {
	t.Helper()
	jobs, err := b.store.Claim(context.Background(), engine.ClaimRequest{Owner: "there/1", Now: b.clock.Now(), Limit: 1, Idle: true, OnAC: true})
	if err != nil || len(jobs) != 1 || jobs[0].ID != id {
		t.Fatalf("the other daemon's claim: %v, %v", jobs, err)
	}
	return jobs[0]
}

// The clock never moves here, so the dispatcher's own timer never fires:
// only the notice can have started the job.
func TestAJobEnqueuedElsewhereStartsAtItsNotice(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 1})
	b.idle(t)
	j := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	b.notice(engine.Notice{Kind: engine.NoticeEnqueue, Queue: engine.DefaultQueue})
	if c := b.next(t); c.run.Job.ID != j.ID {
		t.Fatalf("started %s, want %s", c.run.Job.ID, j.ID)
	}
}

// A lost notice costs at most SharedPoll: the dispatcher, which would
// otherwise sleep for an hour with nothing scheduled, looks on its own.
func TestALostNoticeIsCoveredBySharedPoll(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 1})
	b.idle(t)
	j := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	c := b.advanceUntilStarted(t, engine.SharedPoll)
	if c.run.Job.ID != j.ID {
		t.Fatalf("started %s, want %s", c.run.Job.ID, j.ID)
	}
}

func TestACancelFromElsewhereStopsTheJobRunningHere(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 2})
	j := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	// Its own daemon's notices change nothing: it acted when it made them.
	b.notice(engine.Notice{Kind: engine.NoticeCancel, Queue: j.Queue, ID: j.ID, Self: true})
	// Notices are handled in order: once this one started a job, the one
	// before it was handled.
	other := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	b.notice(engine.Notice{Kind: engine.NoticeEnqueue, Queue: other.Queue})
	if c2 := b.next(t); c2.run.Job.ID != other.ID {
		t.Fatalf("started %s, want %s", c2.run.Job.ID, other.ID)
	}
	if c.ctx.Err() != nil {
		t.Fatal("a notice of this daemon's own change stopped its job")
	}

	b.notice(engine.Notice{Kind: engine.NoticeCancel, Queue: j.Queue, ID: j.ID})
	<-c.ctx.Done()
	got := b.wait(t, j.ID)
	if got.State != engine.StateCancelled || got.Error != engine.ReasonCancelled ||
		got.Attempts[0].Outcome != engine.OutcomeCancelled || got.Attempts[0].Reason != engine.ReasonCancelled {
		t.Fatalf("job stopped from elsewhere: %s %q %+v", got.State, got.Error, got.Attempts)
	}
}

func TestAReplaceFromElsewhereSupersedesTheOlderGenerationRunningHere(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 2})
	old := b.enqueue(t, engine.EnqueueRequest{Subject: "build"})
	c1 := b.next(t)
	yes := true
	// Another key's replace leaves it alone: checked once the enqueue
	// notice after it, handled in order, has started that job.
	otherKey := b.enqueueElsewhere(t, engine.EnqueueRequest{Subject: "lint", Replace: &yes})
	b.notice(engine.Notice{Kind: engine.NoticeReplace, Queue: otherKey.Queue, ID: otherKey.ID})
	b.notice(engine.Notice{Kind: engine.NoticeEnqueue, Queue: otherKey.Queue})
	if c := b.next(t); c.run.Job.ID != otherKey.ID {
		t.Fatalf("started %s, want %s", c.run.Job.ID, otherKey.ID)
	}
	if c1.ctx.Err() != nil {
		t.Fatal("a replace of another key stopped the job")
	}
	newer := b.enqueueElsewhere(t, engine.EnqueueRequest{Subject: "build", Replace: &yes})
	b.notice(engine.Notice{Kind: engine.NoticeReplace, Queue: newer.Queue, ID: newer.ID})
	<-c1.ctx.Done()
	got := b.wait(t, old.ID)
	if got.State != engine.StateSuperseded || got.Attempts[0].Outcome != engine.OutcomeSuperseded || !strings.Contains(got.Error, newer.ID) {
		t.Fatalf("replaced job: %s %q %+v", got.State, got.Error, got.Attempts)
	}
}

// Cancel of a job another daemon runs asks it through the store and
// returns once that daemon has recorded the job ended, naming it.
func TestCancelOfAJobRunningElsewhereAsksItsOwner(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 1})
	b.enqueue(t, engine.EnqueueRequest{})
	b.next(t) // the only worker here is busy
	j := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	running := b.runElsewhere(t, j.ID)

	type reply struct {
		jobs []*engine.Job
		err  error
	}
	done := make(chan reply, 1)
	go func() {
		jobs, err := b.eng.Cancel(context.Background(), engine.CancelRequest{ID: j.ID})
		done <- reply{jobs, err}
	}()
	if n := <-b.shared.announced; n.Kind != engine.NoticeCancel || n.ID != j.ID || n.Queue != j.Queue {
		t.Fatalf("announced %+v, want a cancel of %s", n, j.ID)
	}
	// The owner stops it and says so.
	if _, err := b.store.Complete(context.Background(), engine.Completion{ID: j.ID, Attempt: running.Attempt,
		State: engine.StateCancelled, Outcome: engine.OutcomeCancelled, Reason: engine.ReasonCancelled, FinishedAt: b.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	b.notice(engine.Notice{Kind: engine.NoticeFree, Queue: j.Queue})
	r := <-done
	if r.err != nil || len(r.jobs) != 1 || r.jobs[0].State != engine.StateCancelled || r.jobs[0].StopAsked != "there/1" {
		t.Fatalf("cancel = %+v, %v", r.jobs, r.err)
	}
}

// An owner that never answers (dead, or its notices lost) gets the ask
// again each SharedPoll; after the kill grace and a margin the reply says
// the job is still RUNNING under it.
func TestCancelOfAJobElsewhereGivesUpWhenTheOwnerDoesNotAnswer(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 1, KillGrace: time.Second})
	b.enqueue(t, engine.EnqueueRequest{})
	b.next(t)
	j := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	b.runElsewhere(t, j.ID)
	done := make(chan []*engine.Job, 1)
	go func() {
		jobs, err := b.eng.Cancel(context.Background(), engine.CancelRequest{ID: j.ID})
		if err != nil {
			t.Error(err)
		}
		done <- jobs
	}()
	<-b.shared.announced
	asks := 1
	for {
		b.clock.Advance(engine.SharedPoll)
		select {
		case <-b.shared.announced:
			asks++
			continue
		case jobs := <-done:
			if len(jobs) != 1 || jobs[0].State != engine.StateRunning || jobs[0].StopAsked != "there/1" {
				t.Fatalf("cancel of an unanswered job = %+v", jobs)
			}
			if asks < 2 {
				t.Fatalf("asked the owner %d times, want it asked again each poll", asks)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Wait follows a job that ends under another daemon: the free notice
// makes it read the job again.
func TestWaitSeesAJobEndElsewhere(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 1})
	b.enqueue(t, engine.EnqueueRequest{})
	b.next(t)
	j := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	running := b.runElsewhere(t, j.ID)
	// Hold Wait's read of the RUNNING job until the job has ended, so
	// that only the notice can make it read again: the clock stays put.
	readRunning, release := make(chan struct{}), make(chan struct{})
	hook := func(got *engine.Job) {
		if got.ID == j.ID && got.State == engine.StateRunning {
			readRunning <- struct{}{}
			<-release
		}
	}
	b.shared.onGet.Store(&hook)
	done := make(chan *engine.Job, 1)
	go func() { done <- b.wait(t, j.ID) }()
	<-readRunning
	code := 0
	if _, err := b.store.Complete(context.Background(), engine.Completion{ID: j.ID, Attempt: running.Attempt,
		State: engine.StateDone, Outcome: engine.OutcomeSucceeded, ExitCode: &code, FinishedAt: b.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	close(release)
	b.notice(engine.Notice{Kind: engine.NoticeFree, Queue: j.Queue})
	if got := <-done; got.State != engine.StateDone {
		t.Fatalf("wait returned %s", got.State)
	}
}

// A failed watch is tried again after a pause, and logged once per streak
// of failures: a streak ends when a watch listens (its resync).
func TestAFailedWatchIsRetriedAndLoggedOncePerStreak(t *testing.T) {
	b := setupShared(t, engine.Config{Workers: 1})
	b.shared.fail <- errors.New("connection reset")
	// Two more attempts fail before they listen: the same streak.
	b.shared.refuse <- errors.New("connection refused")
	b.advanceUntilWatched(t)
	b.shared.refuse <- errors.New("connection refused")
	b.advanceUntilWatched(t)
	b.advanceUntilWatched(t) // the one that listens
	j := b.enqueueElsewhere(t, engine.EnqueueRequest{})
	b.notice(engine.Notice{Kind: engine.NoticeEnqueue, Queue: j.Queue})
	if c := b.next(t); c.run.Job.ID != j.ID {
		t.Fatalf("after the watch came back, started %s, want %s", c.run.Job.ID, j.ID)
	}
	logs := b.log.String()
	if strings.Count(logs, "watch the shared store") != 1 || !strings.Contains(logs, "connection reset") ||
		strings.Count(logs, "watching the shared store again") != 1 {
		t.Fatalf("want one warning for the streak and one line when it ended:\n%s", logs)
	}
	// A new failure after that is a new streak, logged again.
	b.shared.fail <- errors.New("connection reset")
	b.advanceUntilWatched(t)
	if n := strings.Count(b.log.String(), "watch the shared store:"); n != 2 {
		t.Fatalf("%d warnings after a second streak, want 2:\n%s", n, b.log.String())
	}
}

// advanceUntilWatched moves the clock on until the engine watches again.
func (b *sharedBundle) advanceUntilWatched(t *testing.T) {
	t.Helper()
	giveUp := time.After(10 * time.Second)
	for {
		b.clock.Advance(100 * time.Millisecond)
		select {
		case <-b.shared.watches:
			return
		case <-time.After(20 * time.Millisecond):
		case <-giveUp:
			t.Fatal("the engine did not watch again")
		}
	}
}
