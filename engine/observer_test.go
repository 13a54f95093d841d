package engine_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"stq/engine"
	"stq/store/sqlite"
)

// recorder is an Observer that keeps what it heard.
type recorder struct {
	mu        sync.Mutex
	enqueued  []engine.EnqueueResult
	starting  []string // job ids
	ended     []engine.AttemptEnded
	expired   []string
	recovered []*engine.Job
	pulses    chan struct{}
	endings   chan struct{} // one per AttemptEnded
}

func newRecorder() *recorder {
	return &recorder{pulses: make(chan struct{}, 1000), endings: make(chan struct{}, 1000)}
}

func (r *recorder) Enqueued(res engine.EnqueueResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enqueued = append(r.enqueued, res)
}

func (r *recorder) AttemptStarting(j *engine.Job) ([]string, func(engine.AttemptEnded)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starting = append(r.starting, j.ID)
	return []string{"TRACEPARENT=00-trace-of-" + j.ID}, func(a engine.AttemptEnded) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.ended = append(r.ended, a)
		r.endings <- struct{}{}
	}
}

func (r *recorder) Expired(jobs []*engine.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range jobs {
		r.expired = append(r.expired, j.ID)
	}
}

func (r *recorder) Recovered(j *engine.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recovered = append(r.recovered, j)
}

func (r *recorder) Pulse() {
	select {
	case r.pulses <- struct{}{}:
	default:
	}
}

func TestObserverHearsEnqueuesAndAttempts(t *testing.T) {
	rec := newRecorder()
	b := setupObserved(t, engine.Config{Workers: 1}, rec)
	first := b.enqueue(t, engine.EnqueueRequest{Subject: "src/a.rs"})
	c := b.next(t)
	if !slices.Contains(c.run.Env, "TRACEPARENT=00-trace-of-"+first.ID) {
		t.Fatalf("the observer's environment did not reach the attempt: %v", c.run.Env)
	}
	queued := b.enqueue(t, engine.EnqueueRequest{Subject: "src/a.rs"})
	one := 1
	newer := b.enqueue(t, engine.EnqueueRequest{Subject: "src/a.rs", MaxAttempts: &one})
	b.clock.Advance(1500 * time.Millisecond)
	c.result <- exit(0)
	b.wait(t, first.ID)
	b.next(t).result <- exit(3)
	b.wait(t, newer.ID)
	for range 2 {
		select {
		case <-rec.endings:
		case <-time.After(10 * time.Second):
			t.Fatal("the observer did not hear both attempts end")
		}
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.enqueued) != 3 || !slices.Equal(rec.enqueued[2].Superseded, []string{queued.ID}) {
		t.Fatalf("enqueued = %+v, want three, the last superseding %s", rec.enqueued, queued.ID)
	}
	if want := []string{first.ID, newer.ID}; !slices.Equal(rec.starting, want) {
		t.Fatalf("attempts starting = %v, want %v", rec.starting, want)
	}
	if len(rec.ended) != 2 {
		t.Fatalf("attempts ended = %d, want 2", len(rec.ended))
	}
	ok, failed := rec.ended[0], rec.ended[1]
	if ok.Completion.Outcome != engine.OutcomeSucceeded || ok.Job == nil || ok.Job.State != engine.StateDone || ok.Err != nil {
		t.Errorf("first attempt ended as %+v", ok)
	}
	if ok.Took != 1500*time.Millisecond {
		t.Errorf("first attempt took %v on the engine's clock, want 1.5s", ok.Took)
	}
	if failed.Completion.Outcome != engine.OutcomeFailed || failed.Job == nil || failed.Job.State != engine.StateFailed || failed.Job.ID != newer.ID {
		t.Errorf("second attempt ended as %+v", failed)
	}
}

func TestObserverHearsExpiryAndRecovery(t *testing.T) {
	seed := func(st *sqlite.Store) {
		ctx := context.Background()
		_, err := st.Enqueue(ctx, &engine.Job{ID: "crashed", Queue: "default", Type: "exec", Command: []string{"x"},
			State: engine.StateQueued, MaxAttempts: 1, CreatedAt: t0, RunAt: t0}, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Claim(ctx, engine.ClaimRequest{Owner: "localhost/deadbeef", Now: t0, Limit: 1}); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	b := setupObserved(t, engine.Config{Workers: 1}, rec, seed)
	b.waitState(t, "crashed", engine.StateFailed)
	busy := b.enqueue(t, engine.EnqueueRequest{})
	c := b.next(t)
	ttl := engine.Duration(5 * time.Second)
	j := b.enqueue(t, engine.EnqueueRequest{TTL: &ttl})
	b.clock.Advance(5 * time.Second)
	b.waitState(t, j.ID, engine.StateExpired)
	c.result <- exit(0)
	b.wait(t, busy.ID)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.recovered) != 1 || rec.recovered[0].ID != "crashed" || rec.recovered[0].State != engine.StateFailed {
		t.Errorf("recovered = %+v, want the crashed job, FAILED", rec.recovered)
	}
	if !slices.Equal(rec.expired, []string{j.ID}) {
		t.Errorf("expired = %v, want [%s]", rec.expired, j.ID)
	}
}

// An idle dispatcher still goes round once per Config.Pulse, so a watchdog
// fed by Pulse tells a hung daemon from an idle one. The dispatcher pulses
// only after arming its next look, so once the test hears a pulse, 12s on
// the engine's clock must bring another, however slowly the wall clock
// lets the dispatcher run; without the bound an idle dispatcher would
// sleep an hour and no pulse would come.
func TestObserverPulsesWhileIdle(t *testing.T) {
	rec := newRecorder()
	b := setupObserved(t, engine.Config{Workers: 1, Pulse: 10 * time.Second}, rec)
	select {
	case <-rec.pulses:
	case <-time.After(10 * time.Second):
		t.Fatal("no pulse at start")
	}
	for round := range 3 {
		for len(rec.pulses) > 0 {
			<-rec.pulses
		}
		b.clock.Advance(12 * time.Second)
		select {
		case <-rec.pulses:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no pulse after 12s of an idle engine's clock (Pulse is 10s)", round)
		}
	}
}
