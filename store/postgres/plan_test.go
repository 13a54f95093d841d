package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"stq/engine"

	"github.com/jackc/pgx/v5"
)

// TestStartFindsJobsByPrimaryKey holds qStart to the plan its comment
// promises while the table's statistics predate the queue: autovacuum is
// off for it, so they never catch up, as between a burst of enqueues and
// the next analyze.
func TestStartFindsJobsByPrimaryKey(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	if _, err := s.pool.Exec(ctx, `ALTER TABLE jobs SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	const queued = 5000
	jobs := make([]*engine.Job, queued)
	for i := range jobs {
		jobs[i] = testJob(fmt.Sprintf("plan%05d", i), "q", "")
		jobs[i].RunAt = t0.Add(time.Hour)
	}
	if _, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true}); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	if err := s.pool.QueryRow(ctx, `SELECT array_agg(seq) FROM (SELECT seq FROM jobs ORDER BY seq DESC LIMIT 4) s`).Scan(&seqs); err != nil {
		t.Fatal(err)
	}
	plan := explain(ctx, t, s, qStart, t0.UnixNano(), "me", seqs)
	if !strings.Contains(plan, "jobs_pkey") || strings.Contains(plan, "jobs_ready") || strings.Contains(plan, "jobs_run_at") {
		t.Fatalf("qStart's plan for 4 of %d queued jobs does not find them by primary key:\n%s", queued, plan)
	}
}

// explain returns the server's plan for query with args, one line per
// node.
func explain(ctx context.Context, t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.pool.Query(ctx, `EXPLAIN `+query, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	return strings.Join(lines, "\n")
}
