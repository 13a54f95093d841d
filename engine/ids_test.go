package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

func TestIDPrefixesWorkWhereverAnIDIsTaken(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	ctx := context.Background()
	later := engine.Duration(time.Hour)
	var jobs []*engine.Job
	for range 3 { // one millisecond: the ids share their time part
		jobs = append(jobs, b.enqueue(t, engine.EnqueueRequest{Delay: &later}))
	}
	page, err := b.eng.List(ctx, engine.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range page.Jobs {
		if len(j.ShortID) < engine.MinIDPrefix || !strings.HasPrefix(j.ID, j.ShortID) || len(j.ShortID) >= len(j.ID) {
			t.Fatalf("short id %q of %s", j.ShortID, j.ID)
		}
		got, err := b.eng.Get(ctx, j.ShortID)
		if err != nil || got.ID != j.ID {
			t.Fatalf("get by short id %s: %v, %v", j.ShortID, got, err)
		}
		if shorter := j.ShortID[:len(j.ShortID)-1]; len(shorter) >= engine.MinIDPrefix {
			if _, err := b.eng.Get(ctx, shorter); err == nil {
				t.Errorf("%s is not the shortest unique prefix: %s resolves too", j.ShortID, shorter)
			}
		}
	}

	shared := jobs[0].ID[:9] // the millisecond's first 45 bits
	for _, j := range jobs {
		for !strings.HasPrefix(j.ID, shared) {
			shared = shared[:len(shared)-1]
		}
	}
	_, err = b.eng.Get(ctx, shared)
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("an ambiguous prefix: %v", err)
	}
	for _, j := range jobs {
		if !strings.Contains(err.Error(), j.ID) {
			t.Errorf("the ambiguity error does not list %s: %v", j.ID, err)
		}
	}
	if _, err := b.eng.Get(ctx, jobs[0].ID[:3]); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("a 3-character prefix: %v, want not found", err)
	}
	if _, err := b.eng.Get(ctx, "zzzzzz"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("a prefix of nothing: %v, want not found", err)
	}

	short := page.Jobs[0].ShortID // the newest job
	dep := b.enqueue(t, engine.EnqueueRequest{After: []string{short}, Delay: &later})
	if len(dep.After) != 1 || dep.After[0] != page.Jobs[0].ID {
		t.Errorf("after %s stored as %v, want the whole id", short, dep.After)
	}
	// The new job may share that prefix now: take the target's prefix
	// again, as a person re-reading the table would.
	page, err = b.eng.List(ctx, engine.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range page.Jobs {
		if j.ID == dep.After[0] {
			short = j.ShortID
		}
	}
	target := dep.After[0]
	cancelled, err := b.eng.Cancel(ctx, engine.CancelRequest{ID: short})
	if err != nil || len(cancelled) != 1 || cancelled[0].ID != target {
		t.Fatalf("cancel by prefix: %v, %v", cancelled, err)
	}
	if j, err := b.eng.Retry(ctx, short); err != nil || j.ID != target {
		t.Fatalf("retry by prefix: %v, %v", j, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.eng.Wait(wctx, []string{short}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait by prefix on a queued job: %v, want the deadline", err)
	}
	if _, err := b.eng.Logs(ctx, short, 0, 10); err != nil {
		t.Fatalf("logs by prefix: %v", err)
	}
}
