package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
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
	var seqsText string // the same as an array literal, for EXECUTE
	if err := s.pool.QueryRow(ctx, `SELECT array_agg(seq), array_agg(seq)::text FROM (SELECT seq FROM jobs ORDER BY seq DESC LIMIT 4) s`).Scan(&seqs, &seqsText); err != nil {
		t.Fatal(err)
	}
	// The custom plan (the server's choice for a lone statement) and the
	// generic one (what the pipelined cycle asks for).
	plans := map[string]string{
		"custom":  explain(ctx, t, s, qStart, t0.UnixNano(), "me", seqs),
		"generic": explainGeneric(ctx, t, s, qStart, fmt.Sprintf("%d, 'me', '%s'", t0.UnixNano(), seqsText)),
	}
	for kind, plan := range plans {
		if used := indexesUsed(plan); !slices.Equal(used, []string{"jobs_pkey"}) {
			t.Errorf("qStart's %s plan for 4 of %d queued jobs uses indexes %q, want only jobs_pkey:\n%s", kind, queued, used, plan)
		}
	}
}

// indexScan names the index of a plan node that reads one.
var indexScan = regexp.MustCompile(`Index (?:Only )?Scan (?:Backward )?(?:using|on) (\w+)`)

// indexesUsed lists the indexes plan reads, each once, sorted.
func indexesUsed(plan string) []string {
	var used []string
	for _, m := range indexScan.FindAllStringSubmatch(plan, -1) {
		used = append(used, m[1])
	}
	slices.Sort(used)
	return slices.Compact(used)
}

// explainGeneric returns the server's generic plan for query, its
// parameters typed as qStart's, run with args (SQL text).
func explainGeneric(ctx context.Context, t *testing.T, s *Store, query, args string) string {
	t.Helper()
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Taken from the pool and closed after, so that neither the prepared
	// statement nor the plan setting outlives the test on a pooled
	// connection.
	conn := pc.Hijack()
	defer func() { _ = conn.Close(ctx) }()
	for _, q := range []string{
		`SET plan_cache_mode = force_generic_plan`,
		`PREPARE generic_start (bigint, text, bigint[]) AS ` + query,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE generic_start(`+args+`)`)
	return planText(t, rows, err)
}

// explain returns the server's plan for query with args, one line per
// node.
func explain(ctx context.Context, t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.pool.Query(ctx, `EXPLAIN `+query, args...)
	return planText(t, rows, err)
}

// planText reads an EXPLAIN's rows (the Query's result, rows and err)
// into its text.
func planText(t *testing.T, rows pgx.Rows, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	return strings.Join(lines, "\n")
}
