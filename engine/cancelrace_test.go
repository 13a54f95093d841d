package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"stq/engine"
)

// steppedStore lets a test act around the Get and CancelQueued calls made
// with a context that carries stepKey: step is called with the call's
// name and whether it is before or after the store's answer. Calls of the
// engine's own goroutines, with other contexts, pass straight through.
type steppedStore struct {
	engine.Store
	step func(call string, after bool)
}

type stepKey struct{}

func (s steppedStore) stepped(ctx context.Context, call string, after bool) {
	if ctx.Value(stepKey{}) != nil {
		s.step(call, after)
	}
}

func (s steppedStore) Get(ctx context.Context, id string) (*engine.Job, error) {
	s.stepped(ctx, "get", false)
	j, err := s.Store.Get(ctx, id)
	s.stepped(ctx, "get", true)
	return j, err
}

func (s steppedStore) CancelQueued(ctx context.Context, ids []string, reason string, now time.Time) ([]*engine.Job, error) {
	s.stepped(ctx, "cancel", false)
	out, err := s.Store.CancelQueued(ctx, ids, reason, now)
	s.stepped(ctx, "cancel", true)
	return out, err
}

// A cancel that reads a job's next attempt RUNNING, which then ends before
// the cancel looks for it among this daemon's attempts, finds the job
// finished. It used to call the completion lost and say "run `stq
// recover`", which the reliability soak saw once: its job's first attempt
// failed into a retry while the cancel ran, and the retry failed at once.
func TestACancelRacingAnAttemptsEndFindsItFinished(t *testing.T) {
	var step func(call string, after bool) // only the cancel's calls run it
	b := setupWith(t, engine.Config{Workers: 1}, nil, func(st engine.Store) engine.Store {
		return steppedStore{Store: st, step: func(call string, after bool) {
			if step != nil {
				step(call, after)
			}
		}}
	})
	backoff, two := engine.Duration(time.Minute), 2
	j := b.enqueue(t, engine.EnqueueRequest{Backoff: &backoff, MaxAttempts: &two})
	first := b.next(t)

	var gets int
	step = func(call string, after bool) {
		switch {
		case call == "cancel" && after && first != nil:
			// The cancel found the job RUNNING. Its attempt fails into a
			// retry, a minute off, and leaves this daemon's attempts.
			first.result <- exit(1)
			first = nil
			waitUntil(t, "the retry is stored and its attempt gone", func() bool {
				sj, err := b.store.Get(context.Background(), j.ID)
				return err == nil && sj.State == engine.StateQueued && b.running() == 0
			})
		case call == "get" && !after && first == nil:
			gets++
			if gets != 1 {
				return
			}
			// The cancel found nothing running here; its read of the job
			// comes next. The retry starts before it...
			b.clock.Advance(10 * time.Minute)
			second := b.next(t)
			step = func(call string, after bool) {
				if call == "get" && after {
					// ...and ends, for good, right after it.
					step = nil
					second.result <- exit(1)
					waitUntil(t, "the job FAILED and its attempt gone", func() bool {
						sj, err := b.store.Get(context.Background(), j.ID)
						return err == nil && sj.State == engine.StateFailed && b.running() == 0
					})
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), stepKey{}, true), 10*time.Second)
	defer cancel()
	got, err := b.eng.Cancel(ctx, engine.CancelRequest{ID: j.ID})
	if !errors.Is(err, engine.ErrFinished) {
		t.Fatalf("cancel: %+v, %v; want ErrFinished (the job FAILED)", got, err)
	}
}

// running is how many attempts the engine has running.
func (b *bundle) running() int {
	st, err := b.eng.Stats(context.Background())
	if err != nil {
		return -1
	}
	return st.Running
}

// waitUntil polls cond for up to 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}
