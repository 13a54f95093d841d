package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestClusterSIGKILLDuringStormLosesNothingOnPostgres is the reliability
// suite's SIGKILL storm (storm_test.go) on a PostgreSQL home; where the
// SQLite test checks the file's integrity, this one checks that the
// schema's counters agree with its rows.
func TestClusterSIGKILLDuringStormLosesNothingOnPostgres(t *testing.T) {
	needProc(t)
	schema := pgSchema(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	e := pgEnv(t, schema)
	s := runStorm(t, e, scaled(5, 50), rand.New(rand.NewPCG(seed, 1)))
	end := checkStorm(t, e, s)
	pgCountersAgree(t, schema)
	report(t, "PostgreSQL: %s", s.summary(end))
	s.knownOrphans(t, end)
}

// pgCountersAgree checks, with the daemon stopped, that the per-queue
// state counters `stq stats` reads (counts plus the deltas not folded
// yet) equal a count of the jobs' rows, and that no attempt is left
// "running": what a crash between a change and its counter would break.
func pgCountersAgree(t *testing.T, schema string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgTestURL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	s := pgx.Identifier{schema}.Sanitize()
	counted := func(sql string) map[string]int64 {
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out := map[string]int64{}
		for rows.Next() {
			var q, st string
			var n int64
			if err := rows.Scan(&q, &st, &n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				out[q+"/"+st] = n
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return out
	}
	rowsCount := counted(`SELECT queue, state, count(*) FROM ` + s + `.jobs GROUP BY queue, state`)
	counters := counted(`SELECT queue, state, sum(n)::bigint FROM (SELECT queue, state, n FROM ` + s + `.counts
		UNION ALL SELECT queue, state, n FROM ` + s + `.count_deltas) c GROUP BY queue, state`)
	if fmt.Sprint(rowsCount) != fmt.Sprint(counters) {
		t.Errorf("counters %v disagree with the rows %v", counters, rowsCount)
	}
	var open int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+s+`.attempts WHERE outcome = 'running'`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d attempts left running", open)
	}
}
