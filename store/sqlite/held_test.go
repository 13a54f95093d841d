package sqlite

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"stq/engine"
)

func pause(t *testing.T, s *Store, queue string, paused bool) {
	t.Helper()
	if err := s.SetPaused(context.Background(), queue, paused); err != nil {
		t.Fatal(err)
	}
}

// heldIDs lists the ids of the held QUEUED jobs, in id order.
func heldIDs(t *testing.T, s *Store) []string {
	t.Helper()
	var ids []string
	err := s.read(context.Background(), func(c *conn) error {
		st, _, err := c.db.Prepare(`SELECT id FROM jobs WHERE state = 'QUEUED' AND held = 1 ORDER BY id`)
		if err != nil {
			return err
		}
		defer st.Close()
		for st.Step() {
			ids = append(ids, st.ColumnText(0))
		}
		return st.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func claimed(t *testing.T, s *Store, limit int) []string {
	t.Helper()
	jobs, err := s.Claim(context.Background(), engine.ClaimRequest{Owner: "o", Now: t0, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return jobIDs(jobs)
}

func queuedIn(queue string, ids ...string) []*engine.Job {
	jobs := make([]*engine.Job, len(ids))
	for i, id := range ids {
		jobs[i] = testJob(id, "")
		jobs[i].Queue = queue
	}
	return jobs
}

// TestPausedBacklogIsNotWalked: the jobs of a paused queue, enqueued
// before or while it is paused, are not in the claim's walk, and come back
// into it, in their order, when it resumes.
func TestPausedBacklogIsNotWalked(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t, Options{})
	var before, while []string
	for i := range 500 {
		before = append(before, fmt.Sprintf("before%04d", i))
		while = append(while, fmt.Sprintf("while%04d", i))
	}
	if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: queuedIn("before", before...)}); err != nil {
		t.Fatal(err)
	}
	pause(t, s, "before", true)
	pause(t, s, "while", true)
	if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: queuedIn("while", while...)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, queuedIn("q", "run")[0], false); err != nil {
		t.Fatal(err)
	}
	if held := heldIDs(t, s); len(held) != 1000 {
		t.Fatalf("%d jobs held, want the paused queues' 1000", len(held))
	}

	w, err := openWriter(path, "NORMAL")
	if err != nil {
		t.Fatal(err)
	}
	jobs, cost := measureClaim(t, w, t0, 10)
	_ = w.close()
	if !slices.Equal(jobIDs(jobs), []string{"run"}) {
		t.Fatalf("claim with both queues paused: %v, want [run]", jobIDs(jobs))
	}
	if cost.scanSteps > 2 {
		t.Errorf("the claim's scan stepped through %d index entries, want run's alone", cost.scanSteps)
	}

	pause(t, s, "while", false)
	if got := claimed(t, s, 3); !slices.Equal(got, while[:3]) {
		t.Fatalf("claim after the resume: %v, want %v", got, while[:3])
	}
	if held := heldIDs(t, s); !slices.Equal(held, before) {
		t.Fatalf("held after the resume: %d jobs, want the still paused queue's %d", len(held), len(before))
	}
}

// TestEveryInsertPathHolds: a job stored into a paused queue alone, with a
// key, in a batch's multi-row insert or one by one in a batch, is held;
// one of another queue beside it is not.
func TestEveryInsertPathHolds(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		store func(*testing.T, *Store, []*engine.Job)
	}{
		{"alone", func(t *testing.T, s *Store, jobs []*engine.Job) {
			for _, j := range jobs {
				if _, err := s.Enqueue(ctx, j, false); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"with a key", func(t *testing.T, s *Store, jobs []*engine.Job) {
			for _, j := range jobs {
				j.Subject = j.ID
				if _, err := s.Enqueue(ctx, j, false); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"batch", func(t *testing.T, s *Store, jobs []*engine.Job) {
			if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs}); err != nil {
				t.Fatal(err)
			}
		}},
		{"batch with keys", func(t *testing.T, s *Store, jobs []*engine.Job) {
			for _, j := range jobs {
				j.Subject = j.ID
			}
			if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTest(t, Options{})
			pause(t, s, "p", true)
			var jobs []*engine.Job
			for i := range 4 {
				jobs = append(jobs, queuedIn("p", fmt.Sprintf("p%d", i))...)
				jobs = append(jobs, queuedIn("q", fmt.Sprintf("q%d", i))...)
			}
			tc.store(t, s, jobs)
			if got := heldIDs(t, s); !slices.Equal(got, []string{"p0", "p1", "p2", "p3"}) {
				t.Errorf("held: %v, want p0 to p3", got)
			}
			if got := claimed(t, s, 10); !slices.Equal(got, []string{"q0", "q1", "q2", "q3"}) {
				t.Errorf("claimed: %v, want q0 to q3", got)
			}
		})
	}
}

// TestRetryAndRequeueIntoAPausedQueueHold: a job that goes back to QUEUED
// in a paused queue, by a retry after a failed attempt or by stq retry, is
// held; resuming brings it back.
func TestRetryAndRequeueIntoAPausedQueueHold(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: queuedIn("p", "a", "b")}); err != nil {
		t.Fatal(err)
	}
	if got := claimed(t, s, 2); len(got) != 2 {
		t.Fatalf("claim: %v", got)
	}
	pause(t, s, "p", true)
	for id, state := range map[string]engine.State{"a": engine.StateQueued, "b": engine.StateFailed} {
		_, err := s.Complete(ctx, engine.Completion{ID: id, Attempt: 1, State: state,
			Outcome: engine.OutcomeFailed, Reason: "boom", FinishedAt: t0, RunAt: t0})
		if err != nil {
			t.Fatalf("end %s: %v", id, err)
		}
	}
	if _, err := s.Retry(ctx, "b", t0); err != nil {
		t.Fatal(err)
	}
	if got := heldIDs(t, s); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("held: %v, want [a b]", got)
	}
	pause(t, s, "p", false)
	if got := claimed(t, s, 10); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("claim after the resume: %v, want [a b]", got)
	}
}

// TestAPauseByAnotherWriterHoldsTheNextInserts: a pause committed through
// another store on the same file (another process) is seen by this
// writer's next transaction.
func TestAPauseByAnotherWriterHoldsTheNextInserts(t *testing.T) {
	ctx := context.Background()
	a, path := openTest(t, Options{})
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Enqueue(ctx, queuedIn("p", "before")[0], false); err != nil {
		t.Fatal(err)
	}
	pause(t, b, "p", true)
	if _, err := a.Enqueue(ctx, queuedIn("p", "after")[0], false); err != nil {
		t.Fatal(err)
	}
	if got := heldIDs(t, a); !slices.Equal(got, []string{"after", "before"}) {
		t.Fatalf("held: %v, want [after before]", got)
	}
}

// TestMigrateHoldsAPausedQueuesJobs: the upgrade to version 7 holds the
// QUEUED jobs of a queue paused before it, and only those.
func TestMigrateHoldsAPausedQueuesJobs(t *testing.T) {
	s, _ := upgraded(t, 6, fmt.Sprintf(`
INSERT INTO queue_settings (queue, paused) VALUES ('p', 1), ('r', 0);
INSERT INTO jobs (id, queue, type, generation, priority, state, max_attempts, run_at, deadline, ttl, backoff, created_at, due) VALUES
	('p', 'p', 't', 0, 0, 'QUEUED', 3, %[1]d, 0, 0, 0, %[1]d, 1),
	('q', 'q', 't', 0, 0, 'QUEUED', 3, %[1]d, 0, 0, 0, %[1]d, 1),
	('r', 'r', 't', 0, 0, 'QUEUED', 3, %[1]d, 0, 0, 0, %[1]d, 1);
`, t0.UnixNano()))
	if got := heldIDs(t, s); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("held after the upgrade: %v, want [p]", got)
	}
	if got := claimed(t, s, 10); !slices.Equal(got, []string{"q", "r"}) {
		t.Fatalf("claim after the upgrade: %v, want [q r]", got)
	}
	pause(t, s, "p", false)
	if got := claimed(t, s, 10); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("claim after the resume: %v, want [p]", got)
	}
}

// TestAPauseInTheSameTransactionHoldsTheInsertsAfterIt: the writer reads
// the paused queues once per transaction, and again after a pause in it
// (a group commit can carry an enqueue, a pause and another enqueue).
func TestAPauseInTheSameTransactionHoldsTheInsertsAfterIt(t *testing.T) {
	w := openTestWriter(t, "NORMAL")
	if err := w.exec(qBegin); err != nil {
		t.Fatal(err)
	}
	insert := func(id string) {
		t.Helper()
		in, err := encodeJob(queuedIn("p", id)[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := w.insertJob(&in, &enqueued{state: engine.StateQueued}); err != nil {
			t.Fatal(err)
		}
	}
	insert("before")
	if err := w.setPaused("p", true); err != nil {
		t.Fatal(err)
	}
	insert("after")
	var held []string
	st, _, err := w.db.Prepare(`SELECT id FROM jobs WHERE held = 1 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for st.Step() {
		held = append(held, st.ColumnText(0))
	}
	if !slices.Equal(held, []string{"after", "before"}) {
		t.Fatalf("held: %v, want [after before]", held)
	}
}
