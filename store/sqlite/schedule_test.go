package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// claimCost is what one claim on the write connection cost SQLite: the VM
// steps of the statements a claim runs to find its jobs (demote, promote,
// scan), those of the scan alone, and the steps the scan took through its
// index. Counting steps rather than timing makes the test deterministic.
type claimCost struct {
	vmSteps, scanVMSteps, scanSteps int
}

var claimStmts = []stmtID{qDemote, qPromote, qClaimScan}

// resetClaimCost zeroes the counters of the claim's statements.
func resetClaimCost(w *conn) {
	for _, id := range claimStmts {
		if s := w.stmts[id]; s != nil {
			s.Status(sqlite3.STMTSTATUS_VM_STEP, true)
			s.Status(sqlite3.STMTSTATUS_FULLSCAN_STEP, true)
		}
	}
}

// measureClaim runs one claim of up to limit jobs at now in its own
// transaction and returns the jobs and what the claim cost.
func measureClaim(t *testing.T, w *conn, now time.Time, limit int) ([]*engine.Job, claimCost) {
	t.Helper()
	resetClaimCost(w)
	if err := w.exec(qBegin); err != nil {
		t.Fatal(err)
	}
	jobs, err := w.claim(&engine.ClaimRequest{Owner: "o", Now: now, Limit: limit})
	if err != nil {
		t.Fatalf("claim at %s: %v", now, err)
	}
	if err := w.exec(qCommit); err != nil {
		t.Fatal(err)
	}
	var c claimCost
	for _, id := range claimStmts {
		if w.stmts[id] == nil {
			t.Fatalf("the claim did not run statement %d", id)
		}
		c.vmSteps += w.stmts[id].Status(sqlite3.STMTSTATUS_VM_STEP, false)
	}
	c.scanVMSteps = w.stmts[qClaimScan].Status(sqlite3.STMTSTATUS_VM_STEP, false)
	c.scanSteps = w.stmts[qClaimScan].Status(sqlite3.STMTSTATUS_FULLSCAN_STEP, false)
	return jobs, c
}

func jobIDs(jobs []*engine.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// TestClaimCostFlatWithScheduledBacklog checks that jobs scheduled for later
// are out of the claim's path: with 1,000 or 20,000 of them queued ahead of
// a few due jobs, a claim does the same work.
func TestClaimCostFlatWithScheduledBacklog(t *testing.T) {
	const due = 5
	costs := make(map[int]claimCost)
	for _, n := range []int{1000, 20000} {
		path := filepath.Join(t.TempDir(), "stq.db")
		seedScheduled(t, path, n, due)
		w, err := openWriter(path, "NORMAL")
		if err != nil {
			t.Fatal(err)
		}
		defer w.close()

		// The plan against a real backlog, not just an empty schema.
		plan := explain(t, w.db, sqlText[qClaimScan])
		if len(plan) == 0 || plan[0] != "SCAN j USING INDEX jobs_ready" {
			t.Fatalf("claim plan with %d scheduled jobs: %q", n, plan)
		}

		// The first claim on the connection is measured: a claim that has
		// to demote jobs enqueue wrongly flagged due would show here.
		jobs, c := measureClaim(t, w, t0, 1)
		if want := []string{"due-0"}; !slices.Equal(jobIDs(jobs), want) {
			t.Fatalf("%d scheduled: claimed %v, want %v", n, jobIDs(jobs), want)
		}
		t.Logf("%5d scheduled: claim of one due job: %d VM steps (scan %d), %d index steps", n, c.vmSteps, c.scanVMSteps, c.scanSteps)
		costs[n] = c

		// When the backlog comes due, one claim promotes all of it (its
		// cost is the jobs promoted), and it is ahead of the due jobs in
		// enqueue order. If the clock then goes back, the next claim demotes
		// the backlog once, and the one after is as cheap as before. The
		// small backlog shows it: moving 20,000 rows twice takes seconds
		// under the race detector.
		if n > 1000 {
			continue
		}
		if jobs, _ := measureClaim(t, w, t0.Add(time.Hour), 1); len(jobs) != 1 || jobs[0].ID != "sched-0" {
			t.Fatalf("claim an hour later: %v, want sched-0", jobIDs(jobs))
		}
		if jobs, _ := measureClaim(t, w, t0, 1); len(jobs) != 1 || jobs[0].ID != "due-1" {
			t.Fatalf("claim after the clock went back: %v, want due-1", jobIDs(jobs))
		}
		jobs, back := measureClaim(t, w, t0, 1)
		if want := []string{"due-2"}; !slices.Equal(jobIDs(jobs), want) {
			t.Fatalf("%d scheduled, clock back: claimed %v, want %v", n, jobIDs(jobs), want)
		}
		t.Logf("%5d scheduled: claim after the clock went back: %d VM steps (scan %d), %d index steps", n, back.vmSteps, back.scanVMSteps, back.scanSteps)
		if back.vmSteps > 2*c.vmSteps {
			t.Errorf("%d scheduled: a claim after the clock went back took %d VM steps, %d before", n, back.vmSteps, c.vmSteps)
		}
	}
	small, big := costs[1000], costs[20000]
	if ratio := float64(big.vmSteps) / float64(small.vmSteps); ratio >= 1.5 {
		t.Errorf("claim VM steps grow with the backlog: %d at 1,000 scheduled, %d at 20,000 (ratio %.2f, want < 1.5)", small.vmSteps, big.vmSteps, ratio)
	}
	if big.scanSteps > 2*due {
		t.Errorf("claim scan stepped through %d index entries with %d due jobs", big.scanSteps, due)
	}
}

// schemaOf lists the database's tables, indexes and triggers as created.
func schemaOf(t *testing.T, path string) string {
	t.Helper()
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, _, err := db.Prepare(`SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_schema ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rows []string
	for st.Step() {
		rows = append(rows, st.ColumnText(0))
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

func pragmaOf(t *testing.T, path, pragma string) string {
	t.Helper()
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := newConn(db)
	v, err := c.pragmaText("PRAGMA " + pragma)
	if err != nil {
		t.Fatalf("pragma %s: %v", pragma, err)
	}
	return v
}

// upgraded builds a database at schema version (its first version
// migrations, then rows, SQL in that version's columns) and opens it,
// which migrates it to the newest. It returns the store, closed when the
// test ends, and the database's path.
func upgraded(t *testing.T, version int, rows string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("v%d.db", version))
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	build := "BEGIN;\n" + strings.Join(migrations[:version], "\n") + rows +
		fmt.Sprintf("\nPRAGMA user_version = %d;\nCOMMIT;", version)
	if err := db.Exec(build); err != nil {
		t.Fatalf("build a version %d database: %v", version, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open a version %d database: %v", version, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// TestMigrateFromV1 builds a database as version 1 of the schema left it,
// with jobs in it, and checks that Open upgrades it in place: the schema
// matches a new database's, the counters survive, and claims and NextWake
// see due and scheduled jobs correctly.
func TestMigrateFromV1(t *testing.T) {
	ctx := context.Background()
	// Rows go in through plain SQL in version 1's columns, so the triggers
	// of version 1 keep counts and subjects as they did in production.
	ns := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	s, path := upgraded(t, 1, fmt.Sprintf(`
INSERT INTO subjects (queue, type, subject, max_gen, running) VALUES ('q', 't', 'busy', 2, 0), ('q', 't', 'k', 1, 0);
INSERT INTO jobs (id, queue, type, subject, generation, priority, state, max_attempts, run_at, deadline, ttl, backoff, expires_at, created_at, attempt, runs, started_at, owner) VALUES
	('running', 'q', 't', 'busy', 1, 0, 'RUNNING', 3, %[1]d, 0, 0, 0, NULL, %[1]d, 1, 1, %[1]d, 'o'),
	('blocked', 'q', 't', 'busy', 2, 9, 'QUEUED',  3, %[1]d, 0, 0, 0, NULL, %[1]d, 0, 0, NULL, NULL),
	('later',   'q', 't', NULL,   0, 9, 'QUEUED',  3, %[2]d, 0, 0, 0, NULL, %[1]d, 0, 0, NULL, NULL),
	('low',     'q', 't', NULL,   0, 0, 'QUEUED',  3, %[1]d, 0, 0, 0, NULL, %[1]d, 0, 0, NULL, NULL),
	('high',    'q', 't', 'k',    1, 5, 'QUEUED',  3, %[1]d, 0, 0, 0, NULL, %[1]d, 0, 0, NULL, NULL),
	('expired', 'q', 't', NULL,   0, 9, 'QUEUED',  3, %[1]d, 0, 1, 0, %[1]d, %[1]d, 0, 0, NULL, NULL);
INSERT INTO jobs (id, queue, type, generation, priority, state, max_attempts, run_at, deadline, ttl, backoff, created_at, finished_at)
	VALUES ('done', 'q', 't', 0, 0, 'DONE', 3, %[1]d, 0, 0, 0, %[1]d, %[1]d);
`, ns(0), ns(time.Hour)))
	if v := pragmaOf(t, path, "user_version"); v != fmt.Sprint(len(migrations)) {
		t.Fatalf("user_version after upgrade %s, want %d", v, len(migrations))
	}
	if v := pragmaOf(t, path, "integrity_check"); v != "ok" {
		t.Fatalf("integrity check after upgrade: %s", v)
	}
	_, fresh := openTest(t, Options{})
	if got, want := schemaOf(t, path), schemaOf(t, fresh); got != want {
		t.Fatalf("upgraded schema differs from a new database's:\n%s\nwant:\n%s", got, want)
	}

	stats, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[engine.State]int64{engine.StateRunning: 1, engine.StateQueued: 5, engine.StateDone: 1}
	if fmt.Sprint(stats.Queues["q"]) != fmt.Sprint(want) || len(stats.Queues) != 1 {
		t.Fatalf("stats after upgrade %v, want q: %v", stats.Queues, want)
	}
	if w, err := s.NextWake(ctx, t0); err != nil || !w.NextRunAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("next wake after upgrade: %+v %v, want run at %s", w, err, t0.Add(time.Hour))
	}
	// Every job upgraded is not due until a claim says so; the first claim
	// promotes those whose run_at has come and takes them in the usual
	// order, skipping the expired one and the one whose key is busy.
	jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jobIDs(jobs), []string{"high", "low"}; !slices.Equal(got, want) {
		t.Fatalf("claim after upgrade %v, want %v", got, want)
	}
	if jobs[0].Attempt != 1 || len(jobs[0].Attempts) != 1 {
		t.Fatalf("claimed job after upgrade: attempt %d attempts %+v", jobs[0].Attempt, jobs[0].Attempts)
	}
	if _, err := s.Complete(ctx, engine.Completion{ID: "running", Attempt: 1, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: t0}); err != nil {
		t.Fatal(err)
	}
	jobs, err = s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0.Add(time.Hour), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jobIDs(jobs), []string{"blocked", "later"}; !slices.Equal(got, want) {
		t.Fatalf("claim an hour after upgrade %v, want %v", got, want)
	}
	if exp, err := s.ExpireDue(ctx, t0.Add(time.Hour)); err != nil || len(exp) != 1 || exp[0].ID != "expired" {
		t.Fatalf("expire after upgrade: %v %v", jobIDs(exp), err)
	}
}

// TestMigrateEmpty checks a new database runs every migration in order.
func TestMigrateEmpty(t *testing.T) {
	_, path := openTest(t, Options{})
	if v := pragmaOf(t, path, "user_version"); v != fmt.Sprint(len(migrations)) {
		t.Fatalf("user_version of a new database %s, want %d", v, len(migrations))
	}
	schema := schemaOf(t, path)
	for _, want := range []string{"index jobs_ready:", "index jobs_run_at:", "due INTEGER NOT NULL DEFAULT 0"} {
		if !strings.Contains(schema, want) {
			t.Errorf("new schema lacks %q:\n%s", want, schema)
		}
	}
	if strings.Contains(schema, "index jobs_due:") {
		t.Errorf("new schema still has jobs_due:\n%s", schema)
	}
}

// TestDueFlag checks the flag each write leaves, which the conformance
// suite cannot see: a job wrongly flagged due is still never claimed early
// (the claim demotes it first), only the claim pays for it.
func TestDueFlag(t *testing.T) {
	s, path := openTest(t, Options{})
	ctx := context.Background()
	add := func(id string, runIn time.Duration) {
		j := testJob(id, "")
		j.RunAt = t0.Add(runIn)
		if _, err := s.Enqueue(ctx, j, false); err != nil {
			t.Fatal(err)
		}
	}
	add("now", 0)
	add("past", -time.Second)
	add("later", time.Second)
	add("retry-now", 0)
	add("retry-later", 0)
	add("done", 0)
	jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 10})
	if err != nil || len(jobs) != 5 {
		t.Fatalf("claim: %v %v", jobIDs(jobs), err)
	}
	for _, c := range []engine.Completion{
		{ID: "retry-now", State: engine.StateQueued, RunAt: t0.Add(time.Second)},
		{ID: "retry-later", State: engine.StateQueued, RunAt: t0.Add(time.Second + 1)},
		{ID: "done", State: engine.StateDone},
	} {
		c.Attempt, c.Outcome, c.FinishedAt = 1, engine.OutcomeFailed, t0.Add(time.Second)
		if _, err := s.Complete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, _, err := db.Prepare(`SELECT group_concat(id || '=' || state || '/' || due, ' ') FROM (SELECT * FROM jobs ORDER BY seq)`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Step()
	// "later" is still not due: nothing has claimed since t0.
	want := "now=RUNNING/1 past=RUNNING/1 later=QUEUED/0 retry-now=QUEUED/1 retry-later=QUEUED/0 done=DONE/0"
	if got := st.ColumnText(0); got != want {
		t.Fatalf("due flags:\n got %s\nwant %s", got, want)
	}
}
