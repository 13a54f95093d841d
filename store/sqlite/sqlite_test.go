package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
	"stq/store/storetest"
)

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.UTC)

func openTest(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stq.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, path
}

// openTestWriter creates a database in a temporary directory and opens a
// writer connection on it, closed when the test ends.
func openTestWriter(t testing.TB, syncMode string) *conn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stq.db")
	if err := createPrivate(path); err != nil {
		t.Fatal(err)
	}
	w, err := openWriter(path, syncMode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.close() })
	return w
}

func TestConformance(t *testing.T) {
	// The default options: synchronous=FULL, as in production.
	storetest.Run(t, func(t *testing.T) engine.Store {
		s, _ := openTest(t, Options{})
		return s
	})
}

func testJob(id, subject string) *engine.Job {
	return &engine.Job{ID: id, Queue: "q", Type: "t", Subject: subject, MaxAttempts: 3, CreatedAt: t0, RunAt: t0}
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stq.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, testJob("a", "k"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, testJob("b", "k"), false); err != nil {
		t.Fatal(err)
	}
	run, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 1})
	if err != nil || len(run) != 1 {
		t.Fatalf("claim: %v %v", run, err)
	}
	if err := s.MarkStarted(ctx, run[0].ID, 1, 99, 12345); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(ctx, "b", []engine.LogLine{{Seq: 1, Time: t0, Attempt: 1, Stream: "stdout", Text: "hello"}}, 100); err != nil {
		t.Fatal(err)
	}
	before, err := s.Get(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	stats, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, err := s.Get(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if before.State != engine.StateRunning || after.State != before.State || after.Generation != 2 ||
		len(after.Attempts) != 1 || after.Attempts[0].PID != 99 || !after.StartedAt.Equal(t0) {
		t.Fatalf("after reopen: %+v, before %+v", after, before)
	}
	got, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Queues) != fmt.Sprint(stats.Queues) {
		t.Fatalf("stats after reopen %v, before %v", got.Queues, stats.Queues)
	}
	lines, err := s.Logs(ctx, "b", 0, 0)
	if err != nil || len(lines) != 1 || lines[0].Text != "hello" {
		t.Fatalf("logs after reopen: %v %v", lines, err)
	}
	// The key's highest generation and its running job are remembered.
	res, err := s.Enqueue(ctx, testJob("c", "k"), false)
	if err != nil || res.Job.Generation != 3 {
		t.Fatalf("enqueue after reopen: %+v %v", res.Job, err)
	}
	if run, err := s.Claim(ctx, engine.ClaimRequest{Now: t0, Limit: 5}); err != nil || len(run) != 0 {
		t.Fatalf("claim while b still runs: %v %v", run, err)
	}
}

func TestFilesArePrivate(t *testing.T) {
	s, path := openTest(t, Options{})
	if _, err := s.Enqueue(context.Background(), testJob("a", ""), false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(p), m)
		}
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{Synchronous: "off"})
	if !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("synchronous=off: %v, want ErrInvalid", err)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// TestQueryPlans pins the plans of the hot statements, so that a schema or
// query change that loses an index fails here rather than slowing a busy
// queue down.
func TestQueryPlans(t *testing.T) {
	_, path := openTest(t, Options{})
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		id   stmtID
		plan []string
	}{
		// The paused-queue list is built once per claim (a tiny table);
		// the dependency check is one probe per candidate that has any.
		{qClaimScan, []string{
			"SCAN j USING INDEX jobs_ready",
			"LIST SUBQUERY 1",
			"SCAN queue_settings",
			"CREATE BLOOM FILTER",
			"CORRELATED SCALAR SUBQUERY 2",
			"SEARCH d USING PRIMARY KEY (job_seq=?)",
			"SEARCH p USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH s USING PRIMARY KEY (queue=? AND type=? AND subject=?) LEFT-JOIN",
		}},
		{qCancelDependents, []string{
			"SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)",
			"LIST SUBQUERY 1",
			"SEARCH job_deps USING COVERING INDEX job_deps_dep (dep_seq=?)",
		}},
		{qFailedDep, []string{
			"SEARCH d USING PRIMARY KEY (job_seq=?)",
			"SEARCH p USING INTEGER PRIMARY KEY (rowid=?)",
		}},
		{qQueueRunning, []string{"SEARCH counts USING PRIMARY KEY (queue=? AND state=?)"}},
		// Oldest finished first straight off the partial index: no sort.
		{qPruneScan, []string{"SCAN jobs USING INDEX jobs_finished"}},
		// The delete's foreign-key cascades each use an index.
		{qPruneJob, []string{
			"SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH job_deps USING COVERING INDEX job_deps_dep (dep_seq=?)",
			"SEARCH job_deps USING PRIMARY KEY (job_seq=?)",
			"SEARCH job_logs USING PRIMARY KEY (job_seq=?)",
			"SEARCH attempts USING PRIMARY KEY (job_seq=?)",
		}},
		{qDemote, []string{"SEARCH jobs USING INDEX jobs_run_at (due=? AND run_at>?)"}},
		{qPromote, []string{"SEARCH jobs USING INDEX jobs_run_at (due=? AND run_at<?)"}},
		{qSupersede, []string{"SEARCH jobs USING COVERING INDEX jobs_queued_key (queue=? AND type=? AND subject=? AND generation<?)"}},
		{qSubjectGen, []string{"SEARCH subjects USING PRIMARY KEY (queue=? AND type=? AND subject=?)"}},
		{qJobForUpdate, []string{
			"SEARCH j USING INDEX sqlite_autoindex_jobs_1 (id=?)",
			"SEARCH s USING PRIMARY KEY (queue=? AND type=? AND subject=?) LEFT-JOIN",
		}},
		// One probe into each half of jobs_run_at; the outer min reads the
		// two rows they return.
		{qNextWake, []string{
			"SCAN CONSTANT ROW",
			"SCALAR SUBQUERY 3",
			"CO-ROUTINE (subquery-2)",
			"COMPOUND QUERY",
			"LEFT-MOST SUBQUERY",
			"SEARCH jobs USING COVERING INDEX jobs_run_at (due=? AND run_at>?)",
			"UNION ALL",
			"SEARCH jobs USING COVERING INDEX jobs_run_at (due=? AND run_at>?)",
			"SEARCH (subquery-2)",
			"SCALAR SUBQUERY 4",
			"SEARCH jobs USING COVERING INDEX jobs_expiry (expires_at>?)",
		}},
		{qExpireScan, []string{"SEARCH jobs USING INDEX jobs_expiry (expires_at>? AND expires_at<?)"}},
		{qRunning, []string{"SCAN jobs USING INDEX jobs_running"}},
		// Newest first by walking the key's index backwards: no sort step.
		{qListKey, []string{
			"SEARCH jobs USING INDEX jobs_key (queue=? AND type=? AND subject=?)",
			"LIST SUBQUERY 1",
			"SCAN json_each VIRTUAL TABLE INDEX 1:",
			"CREATE BLOOM FILTER",
		}},
		// Newest first by walking the table backwards: no sort step.
		{qList, []string{
			"SCAN jobs",
			"LIST SUBQUERY 1",
			"SCAN json_each VIRTUAL TABLE INDEX 1:",
			"CREATE BLOOM FILTER",
		}},
		{qLogSizes, []string{"SEARCH job_logs USING PRIMARY KEY (job_seq=?)"}},
		{qAttempts, []string{"SEARCH attempts USING PRIMARY KEY (job_seq=?)"}},
	} {
		got := explain(t, db, sqlText[tc.id])
		if strings.Join(got, "\n") != strings.Join(tc.plan, "\n") {
			t.Errorf("plan of statement %d:\n%s\ngot:\n%s\nwant:\n%s", tc.id, sqlText[tc.id], strings.Join(got, "\n"), strings.Join(tc.plan, "\n"))
		}
	}
}

func explain(t *testing.T, db *sqlite3.Conn, sql string) []string {
	t.Helper()
	st, _, err := db.Prepare("EXPLAIN QUERY PLAN " + sql)
	if err != nil {
		t.Fatalf("explain %s: %v", sql, err)
	}
	defer st.Close()
	var plan []string
	for st.Step() {
		plan = append(plan, st.ColumnText(3))
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestConcurrentWritersNeverBusy hammers one store with writers and readers
// at once; nothing may fail, least of all with SQLITE_BUSY.
func TestConcurrentWritersNeverBusy(t *testing.T) {
	s, _ := openTest(t, Options{Synchronous: "normal", Readers: 2})
	ctx := context.Background()
	const writers, each = 24, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*4)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := s.Enqueue(ctx, testJob(id, fmt.Sprint(i%4)), false); err != nil {
					errs <- err
				}
				jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 2})
				if err != nil {
					errs <- err
				}
				for _, j := range jobs {
					if err := s.AppendLog(ctx, j.ID, []engine.LogLine{{Seq: 1, Time: t0, Stream: "stdout", Text: "x"}}, 10); err != nil {
						errs <- err
					}
					if _, err := s.Complete(ctx, engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone, Outcome: engine.OutcomeSucceeded, FinishedAt: t0}); err != nil {
						errs <- err
					}
				}
				if _, err := s.List(ctx, engine.ListFilter{Limit: 5}); err != nil {
					errs <- err
				}
				if _, err := s.Stats(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent use failed: %v (busy: %v)", err, errors.Is(err, sqlite3.BUSY))
	}
}

// TestGroupCommit checks that concurrent writes share transactions.
func TestGroupCommit(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	const goroutines, each = 32, 10
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Enqueue(ctx, testJob(fmt.Sprintf("%d-%d", g, i), ""), false); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	ops, txns := s.writes.Load(), s.txns.Load()
	t.Logf("%d writes in %d transactions", ops, txns)
	if ops != goroutines*each || txns >= ops {
		t.Fatalf("%d writes in %d transactions: want fewer transactions than writes", ops, txns)
	}
}

// TestFailingOpRollsBackAlone runs a batch directly: the op that fails is
// undone, its neighbours in the same transaction are not.
func TestFailingOpRollsBackAlone(t *testing.T) {
	w := openTestWriter(t, "FULL")
	enqueue := func(id string) func(*conn) error {
		in, err := encodeJob(testJob(id, "k"))
		if err != nil {
			t.Fatal(err)
		}
		return func(c *conn) error { return c.enqueue(&in, false, &enqueued{}) }
	}
	failAfterWrite := func(c *conn) error {
		if err := enqueue("half")(c); err != nil {
			return err
		}
		return errors.New("boom")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.Background()
	batch := []*op{
		{ctx: ctx, fn: enqueue("a"), done: make(chan error, 1)},
		{ctx: ctx, fn: enqueue("a"), done: make(chan error, 1)}, // duplicate id
		{ctx: ctx, fn: failAfterWrite, done: make(chan error, 1)},
		{ctx: cancelled, fn: enqueue("skipped"), done: make(chan error, 1)},
		{ctx: ctx, fn: func(*conn) error { panic("bug") }, done: make(chan error, 1)},
		{ctx: ctx, fn: enqueue("b"), done: make(chan error, 1)},
	}
	if n := w.runBatch(batch); n != 5 {
		t.Errorf("batch ran %d ops in its transaction, want 5 (all but the cancelled one)", n)
	}
	answer(batch)
	want := []string{"", "already exists", "boom", "context canceled", "internal error", ""}
	for i, o := range batch {
		err := <-o.done
		if (err == nil) != (want[i] == "") || err != nil && !strings.Contains(err.Error(), want[i]) {
			t.Errorf("op %d: %v, want %q", i, err, want[i])
		}
	}
	st, _, err := w.db.Prepare(`SELECT group_concat(id || ':' || generation, ' ') FROM (SELECT id, generation FROM jobs ORDER BY seq)`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Step()
	// "half" was rolled back with its op; b's generation shows the
	// rolled-back ops left no trace in subjects either.
	if got := st.ColumnText(0); got != "a:1 b:2" {
		t.Fatalf("jobs after the batch: %q, want \"a:1 b:2\"", got)
	}
}

// TestCloseFailsPendingWrites closes the store under load: every caller
// returns promptly, with success or an error wrapping engine.ErrClosed.
func TestCloseFailsPendingWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stq.db")
	s, err := Open(path, Options{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const goroutines = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	var closedErrs, ok int
	started := make(chan struct{}, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := s.Enqueue(ctx, testJob(fmt.Sprintf("%d-%d", g, i), ""), false)
				if i == 0 {
					started <- struct{}{}
				}
				mu.Lock()
				if err == nil {
					ok++
					mu.Unlock()
					continue
				}
				if errors.Is(err, engine.ErrClosed) {
					closedErrs++
				} else {
					t.Errorf("enqueue during close: %v", err)
				}
				mu.Unlock()
				return
			}
		})
	}
	for range goroutines {
		<-started
	}
	finished := make(chan struct{})
	go func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("close or a pending write hung")
	}
	if closedErrs != goroutines {
		t.Fatalf("%d writers saw ErrClosed, want all %d (%d writes succeeded)", closedErrs, goroutines, ok)
	}
	if _, err := s.Get(ctx, "0-0"); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("get after close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	// Everything acknowledged is there.
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page, err := s.List(ctx, engine.ListFilter{Limit: 1 << 20})
	if err != nil || len(page.Jobs) < ok {
		t.Fatalf("after reopen %d jobs (%v), %d were acknowledged", len(page.Jobs), err, ok)
	}
}

func TestCancelledContext(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Enqueue(ctx, testJob("a", ""), false); !errors.Is(err, context.Canceled) {
		t.Fatalf("enqueue with a cancelled context: %v", err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("get with a cancelled context: %v", err)
	}
	if _, err := s.Get(context.Background(), "a"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("job of a cancelled enqueue: %v, want not found", err)
	}
}

func TestRejectsUnrepresentableTimes(t *testing.T) {
	s, _ := openTest(t, Options{})
	j := testJob("a", "")
	j.RunAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.Enqueue(context.Background(), j, false); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("run_at in 3000: %v, want ErrInvalid", err)
	}
	j.RunAt = time.Time{}
	if _, err := s.Enqueue(context.Background(), j, false); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("zero run_at: %v, want ErrInvalid", err)
	}
}
