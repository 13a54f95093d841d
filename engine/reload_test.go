package engine_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"stq/engine"
)

func TestReconfigureChangesHandlersAndQueueCapsWithoutTouchingRunningJobs(t *testing.T) {
	b := setup(t, engine.Config{Workers: 4, Queues: map[string]engine.QueueConfig{"q": {Concurrency: 1}}})
	ctx := context.Background()
	if _, err := b.eng.Enqueue(ctx, engine.EnqueueRequest{Type: "X"}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("a type without a handler: %v", err)
	}
	first := b.enqueue(t, engine.EnqueueRequest{Queue: "q"})
	running := b.next(t)
	second := b.enqueue(t, engine.EnqueueRequest{Queue: "q"})
	if j, _ := b.eng.Get(ctx, second.ID); j.Waiting != engine.WaitQueueFull {
		t.Fatalf("second job of a queue capped at 1: %s waiting %q", j.State, j.Waiting)
	}

	err := b.eng.Reconfigure(engine.Config{
		Workers: 9, // cannot change while the engine runs
		Types:   map[string]engine.TypeConfig{"X": {Command: []string{"x"}}},
		Queues:  map[string]engine.QueueConfig{"q": {Concurrency: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The raised cap starts the held job without another enqueue.
	if c := b.next(t); c.run.Job.ID != second.ID {
		t.Fatalf("started %s, want the held %s", c.run.Job.ID, second.ID)
	} else {
		c.result <- exit(0)
	}
	if running.ctx.Err() != nil {
		t.Fatal("the running job was stopped by the reconfiguration")
	}
	x, err := b.eng.Enqueue(ctx, engine.EnqueueRequest{Type: "X"}) // no command: the type's handler
	if err != nil {
		t.Fatalf("type X after it got a handler: %v", err)
	}
	if c := b.next(t); c.run.Job.ID != x.Job.ID || !slices.Equal(c.run.Command, []string{"x"}) {
		t.Fatalf("started %s running %q, want %s with the new handler", c.run.Job.ID, c.run.Command, x.Job.ID)
	} else {
		c.result <- exit(0)
	}

	// An invalid configuration changes nothing.
	err = b.eng.Reconfigure(engine.Config{Types: map[string]engine.TypeConfig{"Y": {Mode: "bogus"}}})
	if !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("invalid configuration: %v", err)
	}
	if _, err := b.eng.Enqueue(ctx, engine.EnqueueRequest{Type: "X"}); err != nil {
		t.Fatalf("type X after a refused reconfiguration: %v", err)
	}
	b.next(t).result <- exit(0)

	running.result <- exit(0)
	if j := b.wait(t, first.ID); j.State != engine.StateDone || len(j.Attempts) != 1 {
		t.Fatalf("the job running across the reconfiguration: %s with %d attempts", j.State, len(j.Attempts))
	}
	if st, err := b.eng.Stats(ctx); err != nil || st.Workers != 4 {
		t.Fatalf("workers after a reconfiguration asking for 9: %d (%v), want 4", st.Workers, err)
	}
}

func TestShutdownAndReloadNeedAControl(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	if _, err := b.eng.Shutdown(context.Background()); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("shutdown without a control: %v", err)
	}
	if _, err := b.eng.Reload(context.Background()); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("reload without a control: %v", err)
	}
}
