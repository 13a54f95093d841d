package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"stq/engine"
)

func setPaused(t *testing.T, s *Store, queue string, paused bool) {
	t.Helper()
	if err := s.SetPaused(context.Background(), queue, paused); err != nil {
		t.Fatal(err)
	}
}

var readyRows = regexp.MustCompile(`Index Scan using jobs_ready on jobs j .*actual time=\S+ rows=(\d+)`)

// scanWalks runs a claim's first look at t0 (see scanPlan) and returns
// how many rows its scan read from jobs_ready.
func scanWalks(ctx context.Context, t *testing.T, s *Store) int {
	t.Helper()
	plan := scanPlan(ctx, t, s, t0)
	m := readyRows.FindStringSubmatch(plan)
	if m == nil {
		t.Fatalf("the scan does not walk jobs_ready:\n%s", plan)
	}
	n, _ := strconv.Atoi(m[1])
	return n + passedOver(plan)
}

// TestPausedBacklogIsNotWalked: the jobs of a paused queue, enqueued while
// it was paused or before, are out of the claim's walk, and come back into
// it, in their order, when it resumes.
func TestPausedBacklogIsNotWalked(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	backlog := func(queue string, n int) {
		jobs := make([]*engine.Job, n)
		for i := range jobs {
			jobs[i] = testJob(fmt.Sprintf("%s%05d", queue, i), queue, "")
		}
		if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs}); err != nil {
			t.Fatal(err)
		}
	}
	backlog("before", 1000) // queued, then its queue paused
	setPaused(t, s, "before", true)
	setPaused(t, s, "while", true)
	backlog("while", 1000)
	if _, err := s.Enqueue(ctx, testJob("run", "q", ""), false); err != nil {
		t.Fatal(err)
	}
	if held := len(queuedIDs(t, s, "held")); held != 2000 {
		t.Fatalf("%d jobs held, want the paused queues' 2000", held)
	}
	if n := scanWalks(ctx, t, s); n > 1 {
		t.Errorf("the claim's scan read %d rows, want run's alone", n)
	}
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"run"}) {
		t.Fatalf("claim with both queues paused: %v, want [run]", got)
	}
	setPaused(t, s, "while", false)
	if held := queuedIDs(t, s, "held AND queue = 'while'"); len(held) != 0 {
		t.Fatalf("%d jobs of the resumed queue still held", len(held))
	}
	if got := claimIDs(t, s, t0, 3); !slices.Equal(got, []string{"while00000", "while00001", "while00002"}) {
		t.Fatalf("claim after the resume: %v", got)
	}
	if held := len(queuedIDs(t, s, "held")); held != 1000 {
		t.Fatalf("%d jobs held, want the still paused queue's 1000", held)
	}
}

// TestEveryInsertPathHolds: a job stored by any insert path into a paused
// queue is held; one of another queue in the same statement is not.
func TestEveryInsertPathHolds(t *testing.T) {
	for _, tc := range insertPaths() {
		t.Run(tc.name, func(t *testing.T) {
			s := openSchema(t, freshSchema(t))
			setPaused(t, s, "p", true)
			var jobs []*engine.Job
			for _, q := range []string{"p", "q"} {
				j := plainJob(q + "-job")
				j.Queue = q
				tc.edit(j)
				jobs = append(jobs, j)
			}
			tc.store(t, s, jobs)
			if got := queuedIDs(t, s, "held AND id NOT LIKE 'filler%'"); !slices.Equal(got, []string{"p-job"}) {
				t.Errorf("held: %v, want [p-job]", got)
			}
			if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"q-job"}) {
				t.Errorf("claimed: %v, want [q-job]", got)
			}
		})
	}
}

// TestRetryAndRequeueIntoAPausedQueueHold: a job that goes back to QUEUED
// in a paused queue, by a retry after a failed attempt or by stq retry, is
// held; resuming brings it back.
func TestRetryAndRequeueIntoAPausedQueueHold(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	for _, id := range []string{"a", "b"} {
		if _, err := s.Enqueue(ctx, testJob(id, "p", ""), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := claimIDs(t, s, t0, 2); len(got) != 2 {
		t.Fatalf("claim: %v", got)
	}
	setPaused(t, s, "p", true)
	end := func(id string, state engine.State) {
		t.Helper()
		res, err := s.CompleteAndClaim(ctx, engine.Cycle{Done: []engine.Completion{{ID: id, Attempt: 1,
			State: state, Outcome: engine.OutcomeFailed, Reason: "boom", FinishedAt: t0, RunAt: t0}}})
		if err == nil {
			err = res.Errs[0]
		}
		if err != nil {
			t.Fatalf("end %s: %v", id, err)
		}
	}
	end("a", engine.StateQueued)
	end("b", engine.StateFailed)
	if _, err := s.Retry(ctx, "b", t0); err != nil {
		t.Fatal(err)
	}
	if got := queuedIDs(t, s, "held"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("held: %v, want [a b]", got)
	}
	setPaused(t, s, "p", false)
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("claim after the resume: %v, want [a b]", got)
	}
}

// TestAStrandedHeldJobIsReleasedByTheNextClaim: a held job of a queue that
// is not paused is taken by the next claim: one stored by a daemon whose
// reading of the paused queues is older than a resume through another,
// and one left held by an older stq's resume, which releases none.
func TestAStrandedHeldJobIsReleasedByTheNextClaim(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	setPaused(t, s, "p", true)
	setPaused(t, s, "p", false)
	s.paused.mark("p", true) // a reading from before the resume
	if _, err := s.Enqueue(ctx, testJob("stale", "p", ""), false); err != nil {
		t.Fatal(err)
	}
	setPaused(t, s, "q", true)
	if _, err := s.Enqueue(ctx, testJob("older", "q", ""), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE queue_settings SET paused = false WHERE queue = 'q'`); err != nil {
		t.Fatal(err)
	}
	if got := queuedIDs(t, s, "held"); !slices.Equal(got, []string{"older", "stale"}) {
		t.Fatalf("held before the claim: %v", got)
	}
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"stale", "older"}) {
		t.Fatalf("claim: %v, want [stale older]", got)
	}
}

// TestAnUnheldJobOfAPausedQueueIsNotClaimed: a job stored unheld in a
// paused queue, by a daemon whose reading is older than the pause through
// another, is stepped over by the claim, which skips paused queues itself.
func TestAnUnheldJobOfAPausedQueueIsNotClaimed(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	setPaused(t, s, "p", true)
	s.paused.mark("p", false) // a reading from before the pause
	if _, err := s.Enqueue(ctx, testJob("unheld", "p", ""), false); err != nil {
		t.Fatal(err)
	}
	if got := queuedIDs(t, s, "held"); len(got) != 0 {
		t.Fatalf("held: %v, want none", got)
	}
	if got := claimIDs(t, s, t0, 10); len(got) != 0 {
		t.Fatalf("claimed %v from a paused queue", got)
	}
	setPaused(t, s, "p", false)
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"unheld"}) {
		t.Fatalf("claim after the resume: %v, want [unheld]", got)
	}
}

// TestAPauseThroughAnotherDaemonHoldsTheNextInserts: a store learns of a
// pause through another within a few of its folder's ticks, and holds
// what it inserts from then on.
func TestAPauseThroughAnotherDaemonHoldsTheNextInserts(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	setPaused(t, a, "p", true)
	waitReading(t, b, "p", true)
	if _, err := b.Enqueue(ctx, testJob("j", "p", ""), false); err != nil {
		t.Fatal(err)
	}
	if got := queuedIDs(t, b, "held"); !slices.Equal(got, []string{"j"}) {
		t.Fatalf("held: %v, want [j]", got)
	}
	setPaused(t, a, "p", false)
	waitReading(t, b, "p", false)
}

// waitReading waits for s's reading of the paused queues to say queue is
// paused, or not, as its folder reads them again.
func waitReading(t *testing.T, s *Store, queue string, paused bool) {
	t.Helper()
	for start := time.Now(); s.paused.has(queue) != paused; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*foldInterval {
			t.Fatalf("after %v the store's reading still says %s paused: %v", time.Since(start), queue, !paused)
		}
	}
}

// TestUpgradeHoldsAPausedQueuesJobs: jobs a daemon of schema version 4
// stored in a queue it had paused are held by the upgrade, and only
// those.
func TestUpgradeHoldsAPausedQueuesJobs(t *testing.T) {
	ctx := context.Background()
	schema, conn := schemaAt(t, 4)
	if _, err := conn.Exec(ctx, `INSERT INTO queue_settings (queue, paused) VALUES ('p', true), ('r', false)`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"p", "q", "r"} {
		_, err := conn.Exec(ctx, `INSERT INTO jobs (id, queue, type, generation, priority, state,
			max_attempts, run_at, deadline, ttl, backoff, created_at, due) VALUES ($1, $1, 't', 0, 0, 'QUEUED', 3, $2, 60000000000, 0, 0, $2, true)`,
			q, t0.UnixNano())
		if err != nil {
			t.Fatal(err)
		}
	}
	s := openSchema(t, schema)
	if got := queuedIDs(t, s, "held"); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("held after the upgrade: %v, want [p]", got)
	}
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"q", "r"}) {
		t.Fatalf("claim after the upgrade: %v, want [q r]", got)
	}
	setPaused(t, s, "p", false)
	if got := claimIDs(t, s, t0.Add(time.Second), 10); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("claim after the resume: %v, want [p]", got)
	}
}
