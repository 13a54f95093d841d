package postgres

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// TestScheduledBacklogIsNotWalked: jobs scheduled for later, ahead of a
// due one in claim order, are not in the claim's walk, and come into it
// when a claim's clock reaches their run_at.
func TestScheduledBacklogIsNotWalked(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	const later = 2000
	jobs := make([]*engine.Job, 0, later+1)
	for i := range later {
		j := testJob(fmt.Sprintf("later%05d", i), "q", "")
		j.Priority, j.RunAt = 5, t0.Add(time.Hour)
		jobs = append(jobs, j)
	}
	soon := testJob("soon", "q", "")
	soon.RunAt = t0.Add(dueHorizon)
	jobs = append(jobs, testJob("now", "q", ""), soon)
	if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true}); err != nil {
		t.Fatal(err)
	}
	wantDue(t, s, 2) // now, and soon: within dueHorizon
	if removed := passedOver(scanPlan(ctx, t, s, t0)); removed > 1 {
		t.Errorf("the claim's scan at t0 passed over %d jobs, want soon's at most: those scheduled an hour ahead are not due", removed)
	}
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"now"}) {
		t.Fatalf("claim at t0: %v, want [now]", got)
	}
	if got := claimIDs(t, s, t0.Add(dueHorizon), 10); !slices.Equal(got, []string{"soon"}) {
		t.Fatalf("claim at t0+dueHorizon: %v, want [soon]", got)
	}
	if got := claimIDs(t, s, t0.Add(time.Hour-time.Nanosecond), 10); len(got) != 0 {
		t.Fatalf("claim a nanosecond early: %v", got)
	}
	wantDue(t, s, 0)
	if got := claimIDs(t, s, t0.Add(time.Hour), later); len(got) != later {
		t.Fatalf("claim at their run_at took %d of %d", len(got), later)
	}
	// One statement promoted them and one started them: the counters
	// follow both.
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if q := st.Queues["q"]; q[engine.StateQueued] != 0 || q[engine.StateRunning] != later+2 {
		t.Errorf("counts after the claims: %v, want %d running and none queued", q, later+2)
	}
}

// TestRetryDueByItsBackoff: a retry whose backoff ends within dueHorizon
// stays in the walk; one with a longer backoff leaves it and comes back
// when its run_at comes. Either way it is claimed at its run_at, not
// before.
func TestRetryDueByItsBackoff(t *testing.T) {
	for _, tc := range []struct {
		backoff time.Duration
		due     int
	}{
		{dueHorizon - time.Second, 1},
		{dueHorizon + 2*time.Second, 0},
	} {
		t.Run(tc.backoff.String(), func(t *testing.T) {
			ctx := context.Background()
			s := openSchema(t, freshSchema(t))
			if _, err := s.Enqueue(ctx, testJob("r", "q", ""), false); err != nil {
				t.Fatal(err)
			}
			if run := claimIDs(t, s, t0, 1); len(run) != 1 {
				t.Fatalf("claim: %v", run)
			}
			failedAt := t0.Add(time.Second)
			runAt := failedAt.Add(tc.backoff)
			res, err := s.CompleteAndClaim(ctx, engine.Cycle{Done: []engine.Completion{{ID: "r", Attempt: 1,
				State: engine.StateQueued, Outcome: engine.OutcomeFailed, Reason: "boom", FinishedAt: failedAt, RunAt: runAt}}})
			if err == nil {
				err = res.Errs[0]
			}
			if err != nil {
				t.Fatal(err)
			}
			wantDue(t, s, tc.due)
			if got := claimIDs(t, s, runAt.Add(-time.Nanosecond), 1); len(got) != 0 {
				t.Fatalf("claim before the backoff: %v", got)
			}
			if got := claimIDs(t, s, runAt, 1); !slices.Equal(got, []string{"r"}) {
				t.Fatalf("claim at the backoff: %v", got)
			}
		})
	}
}

// TestUpgradeBringsQueuedJobsIntoTheWalk: jobs stored by a daemon of
// schema version 2 (no due flag) are claimed after the upgrade as before.
func TestUpgradeBringsQueuedJobsIntoTheWalk(t *testing.T) {
	ctx := context.Background()
	schema, conn := schemaAt(t, 2)
	for i, runAt := range []time.Time{t0, t0.Add(time.Minute)} {
		_, err := conn.Exec(ctx, `INSERT INTO jobs (id, queue, type, generation, priority, state,
			max_attempts, run_at, deadline, ttl, backoff, created_at) VALUES ($1, 'q', 't', 0, 0, 'QUEUED', 3, $2, 60000000000, 0, 0, $3)`,
			fmt.Sprintf("old%d", i), runAt.UnixNano(), t0.UnixNano())
		if err != nil {
			t.Fatal(err)
		}
	}
	s := openSchema(t, schema)
	if w, err := s.NextWake(ctx, t0); err != nil || !w.NextRunAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next wake after the upgrade: %+v, %v", w, err)
	}
	if got := claimIDs(t, s, t0, 10); !slices.Equal(got, []string{"old0"}) {
		t.Fatalf("claim at t0 after the upgrade: %v", got)
	}
	if got := claimIDs(t, s, t0.Add(time.Minute), 10); !slices.Equal(got, []string{"old1"}) {
		t.Fatalf("claim at t0+1m after the upgrade: %v", got)
	}
}

// schemaAt makes a fresh schema at an earlier version and returns it with
// a connection whose search_path is the schema, closed when the test ends.
func schemaAt(t *testing.T, version int) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	schema := freshSchema(t)
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if err := migrateWith(ctx, conn, schema, migrations[:version]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SET search_path TO `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return schema, conn
}

// insertPath is one way a new job is stored.
type insertPath struct {
	name  string
	edit  func(*engine.Job)
	store func(*testing.T, *Store, []*engine.Job)
}

// insertPaths are the ways a new job is stored: alone, with a key, in a
// group INSERT with or without a base environment, in a bulk COPY (which
// adds filler jobs of the first job's queue, an hour ahead).
func insertPaths() []insertPath {
	ctx := context.Background()
	grouped := func(t *testing.T, s *Store, jobs []*engine.Job) {
		g := make([]*pendingEnqueue, len(jobs))
		for i, j := range jobs {
			in, err := s.encode(j)
			if err != nil {
				t.Fatal(err)
			}
			g[i] = &pendingEnqueue{in: &in, done: make(chan error, 1)}
		}
		s.insertGroup(ctx, g)
		for _, p := range g {
			if err := <-p.done; err != nil {
				t.Fatal(err)
			}
		}
	}
	oneByOne := func(t *testing.T, s *Store, jobs []*engine.Job) {
		for _, j := range jobs {
			if _, err := s.Enqueue(ctx, j, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	copied := func(t *testing.T, s *Store, jobs []*engine.Job) {
		for i := len(jobs); i < minCopy; i++ { // enough plain jobs for one COPY
			f := plainJob(fmt.Sprintf("filler%d", i))
			f.Queue, f.RunAt = jobs[0].Queue, t0.Add(time.Hour)
			jobs = append(jobs, f)
		}
		if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true}); err != nil {
			t.Fatal(err)
		}
	}
	return []insertPath{
		{"alone", func(*engine.Job) {}, oneByOne},
		{"with a key", func(j *engine.Job) { j.Subject = j.ID }, oneByOne},
		{"group", func(*engine.Job) {}, grouped},
		{"group with an environment", func(j *engine.Job) { j.BaseEnv = envA }, grouped},
		{"copy", func(*engine.Job) {}, copied},
	}
}

// queuedIDs lists the ids of the QUEUED jobs that match cond, in id order.
func queuedIDs(t *testing.T, s *Store, cond string) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT id FROM jobs WHERE state = 'QUEUED' AND `+cond+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestEveryInsertPathStoresDue: each way a new job is stored sets the due
// flag as storedDue says, so a job due within dueHorizon is in the claim's
// walk and one further ahead is not.
func TestEveryInsertPathStoresDue(t *testing.T) {
	runAts := map[string]time.Duration{"past": -time.Hour, "now": 0, "soon": dueHorizon, "later": dueHorizon + time.Second}
	wantDueIDs := []string{"now", "past", "soon"}
	for _, tc := range insertPaths() {
		t.Run(tc.name, func(t *testing.T) {
			var jobs []*engine.Job
			for id, ahead := range runAts {
				j := plainJob(id)
				j.RunAt = t0.Add(ahead)
				tc.edit(j)
				jobs = append(jobs, j)
			}
			s := openSchema(t, freshSchema(t))
			tc.store(t, s, jobs)
			if got := queuedIDs(t, s, "due"); !slices.Equal(got, wantDueIDs) {
				t.Errorf("jobs stored due: %v, want %v", got, wantDueIDs)
			}
		})
	}
}

func claimIDs(t *testing.T, s *Store, now time.Time, limit int) []string {
	t.Helper()
	jobs, err := s.Claim(context.Background(), engine.ClaimRequest{Now: now, Limit: limit, Owner: "me", Idle: true, OnAC: true})
	if err != nil {
		t.Fatalf("claim at %s: %v", now, err)
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

// wantDue checks how many QUEUED jobs are in the claim's walk.
func wantDue(t *testing.T, s *Store, want int) {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM jobs WHERE state = 'QUEUED' AND due`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("%d QUEUED jobs due, want %d", n, want)
	}
}

var removedByFilter = regexp.MustCompile(`Rows Removed by Filter: (\d+)`)

// scanPlan runs a claim's first look at now (the promotion, then the
// scan) under EXPLAIN ANALYZE, in a transaction it rolls back, and returns
// the scan's plan as it ran.
func scanPlan(ctx context.Context, t *testing.T, s *Store, now time.Time) string {
	t.Helper()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, qPromoteDue, now.UnixNano()); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `EXPLAIN ANALYZE `+qClaimScan, now.UnixNano(), true, true, []string{}, int64(math.MinInt64), int64(0), 10)
	return planText(t, rows, err)
}

// passedOver is how many rows a scan's plan read and passed over.
func passedOver(plan string) int {
	n := 0
	for _, m := range removedByFilter.FindAllStringSubmatch(plan, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}
