package postgres

import (
	"context"
	"testing"
	"time"

	"stq/engine"
)

// noticeBound is how soon a notice must arrive. It is generous for a
// loaded CI machine; an idle one delivers in about a millisecond.
const noticeBound = 5 * time.Second

// watch runs s.Watch until the test ends and returns its notices, after
// the watch is listening (its resync notice has arrived).
func watch(t *testing.T, s *Store) <-chan engine.Notice {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan engine.Notice, 256)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(n engine.Notice) { ch <- n })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("watch ended with %v, want context.Canceled", err)
		}
	})
	select {
	case n := <-ch:
		if n.Kind != engine.NoticeResync {
			t.Fatalf("first notice %+v, want a resync", n)
		}
	case err := <-done:
		t.Fatalf("watch failed: %v", err)
	case <-time.After(noticeBound):
		t.Fatal("the watch did not start listening")
	}
	return ch
}

// next returns the next notice that matches want's kind, queue and id,
// failing the test if none comes within noticeBound.
func next(t *testing.T, ch <-chan engine.Notice, want engine.Notice) engine.Notice {
	t.Helper()
	deadline := time.After(noticeBound)
	for {
		select {
		case n := <-ch:
			if n.Kind == want.Kind && n.Queue == want.Queue && n.ID == want.ID {
				return n
			}
		case <-deadline:
			t.Fatalf("no notice %+v within %s", want, noticeBound)
		}
	}
}

// A change made through one store wakes a watcher on another store of the
// same schema, marked as not its own, and the changing store's own watcher
// sees it marked Self.
func TestWatchSeesOtherStoresChanges(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	onA, onB := watch(t, a), watch(t, b)
	ctx := context.Background()

	start := time.Now()
	if _, err := a.Enqueue(ctx, testJob("w1", "mail", ""), false); err != nil {
		t.Fatal(err)
	}
	if n := next(t, onB, engine.Notice{Kind: engine.NoticeEnqueue, Queue: "mail"}); n.Self {
		t.Errorf("b's watcher marked a's enqueue as its own")
	}
	t.Logf("enqueue on a reached b's watcher in %s", time.Since(start))
	if n := next(t, onA, engine.Notice{Kind: engine.NoticeEnqueue, Queue: "mail"}); !n.Self {
		t.Errorf("a's watcher did not mark a's own enqueue Self")
	}

	for _, tc := range []struct {
		do   func() error
		want engine.Notice
	}{
		{func() error { return a.SetPaused(ctx, "mail", true) }, engine.Notice{Kind: engine.NoticePause, Queue: "mail"}},
		{func() error { return a.SetPaused(ctx, "mail", false) }, engine.Notice{Kind: engine.NoticeResume, Queue: "mail"}},
		{func() error {
			_, err := a.CancelQueued(ctx, []string{"w1"}, "no longer needed", t0)
			return err
		}, engine.Notice{Kind: engine.NoticeCancel, Queue: "mail", ID: "w1"}},
		{func() error {
			j := testJob("r1", "builds", "main")
			j.Replace = true
			_, err := a.Enqueue(ctx, j, false)
			return err
		}, engine.Notice{Kind: engine.NoticeReplace, Queue: "builds", ID: "r1"}},
		{func() error {
			got, err := a.Claim(ctx, engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 1})
			if err != nil || len(got) != 1 {
				t.Fatalf("claim: %v, %d jobs", err, len(got))
			}
			_, err = a.Complete(ctx, engine.Completion{ID: got[0].ID, Attempt: got[0].Attempt, State: engine.StateDone,
				Outcome: engine.OutcomeSucceeded, FinishedAt: t0})
			return err
		}, engine.Notice{Kind: engine.NoticeFree, Queue: "builds"}},
		{func() error {
			return a.Announce(ctx, engine.Notice{Kind: engine.NoticeCancel, Queue: "builds", ID: "r1"})
		}, engine.Notice{Kind: engine.NoticeCancel, Queue: "builds", ID: "r1"}},
	} {
		if err := tc.do(); err != nil {
			t.Fatal(err)
		}
		next(t, onB, tc.want)
	}
}

// Another schema's changes wake nobody here.
func TestWatchIgnoresOtherSchemas(t *testing.T) {
	t.Parallel()
	a, other := openSchema(t, freshSchema(t)), openSchema(t, freshSchema(t))
	onA := watch(t, a)
	ctx := context.Background()
	if _, err := other.Enqueue(ctx, testJob("elsewhere", "q", ""), false); err != nil {
		t.Fatal(err)
	}
	// A marker sent after the other schema's notice: once it arrives,
	// anything from the other schema would have arrived before it.
	if _, err := a.Enqueue(ctx, testJob("here", "marker", ""), false); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(noticeBound)
	for {
		select {
		case n := <-onA:
			if n.Queue == "q" {
				t.Fatalf("a's watcher got %+v from another schema", n)
			}
			if n.Queue == "marker" {
				return
			}
		case <-deadline:
			t.Fatal("the marker notice never came")
		}
	}
}

// Close ends a watch in progress.
func TestCloseEndsWatch(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), Options{URL: testURL(t), Schema: freshSchema(t)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(context.Background(), func(engine.Notice) {
			select {
			case started <- struct{}{}:
			default:
			}
		})
	}()
	<-started
	_ = s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("watch returned nil after Close")
		}
	case <-time.After(noticeBound):
		t.Fatal("watch still running after Close")
	}
}

// An enqueue notice says when its job is due, so a daemon that will look
// by then anyway need not wake; the wire carries it to the other store.
func TestEnqueueNoticeCarriesWhenItsJobIsDue(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	onB := watch(t, b)
	ctx := context.Background()
	later := testJob("due-later", "sched", "")
	later.RunAt = t0.Add(time.Hour)
	if _, err := a.Enqueue(ctx, later, false); err != nil {
		t.Fatal(err)
	}
	if n := next(t, onB, engine.Notice{Kind: engine.NoticeEnqueue, Queue: "sched"}); !n.Due.Equal(later.RunAt) {
		t.Errorf("notice due %v, want the job's run_at %v", n.Due, later.RunAt)
	}
	// A TTL that ends before the run_at makes the job due at its expiry.
	expiring := testJob("due-expiry", "ttl", "")
	expiring.RunAt, expiring.TTL = t0.Add(time.Hour), engine.Duration(time.Minute)
	if _, err := a.Enqueue(ctx, expiring, false); err != nil {
		t.Fatal(err)
	}
	if n := next(t, onB, engine.Notice{Kind: engine.NoticeEnqueue, Queue: "ttl"}); !n.Due.Equal(t0.Add(time.Minute)) {
		t.Errorf("notice due %v, want the job's expiry %v", n.Due, t0.Add(time.Minute))
	}
}

// Merged notices keep the earliest Due, and "now" (zero) wins over any.
func TestMergedNoticesKeepTheEarliestDue(t *testing.T) {
	enq := func(queue string, due time.Time) engine.Notice {
		return engine.Notice{Kind: engine.NoticeEnqueue, Queue: queue, Due: due}
	}
	s := &Store{notes: newNotifier()}
	s.announce(enq("a", t0.Add(2*time.Hour)), enq("a", t0.Add(time.Hour)), enq("a", t0.Add(3*time.Hour)))
	s.announce(enq("b", t0.Add(time.Hour)), enq("b", time.Time{}), enq("b", t0.Add(time.Minute)))
	s.announce(enq("c", t0))
	want := map[engine.Notice]time.Time{
		enq("a", time.Time{}): t0.Add(time.Hour),
		enq("b", time.Time{}): {},
		enq("c", time.Time{}): t0,
	}
	if len(s.notes.pending) != len(want) {
		t.Fatalf("pending %v, want %v", s.notes.pending, want)
	}
	for n, due := range want {
		if got, ok := s.notes.pending[n]; !ok || !got.Equal(due) {
			t.Errorf("queue %s: pending due %v (%v), want %v", n.Queue, got, ok, due)
		}
	}
}
