package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

func TestPauseSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stq.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"q", "r"} {
		if err := s.SetPaused(ctx, q, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPaused(ctx, "r", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, testJob("a", ""), false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused(ctx, "", true); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("pause of an unnamed queue: %v, want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.PausedQueues(ctx); err != nil || !slices.Equal(got, []string{"q"}) {
		t.Fatalf("paused queues after reopen: %v %v, want [q]", got, err)
	}
	if jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 5}); err != nil || len(jobs) != 0 {
		t.Fatalf("claim from a paused queue after reopen: %v %v", jobIDs(jobs), err)
	}
	if err := s.SetPaused(ctx, "q", false); err != nil {
		t.Fatal(err)
	}
	if jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 5}); err != nil || len(jobs) != 1 {
		t.Fatalf("claim once resumed: %v %v", jobIDs(jobs), err)
	}
}

func walSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// fillWAL appends n log lines of about 200 bytes to job id in one write.
func fillWAL(t *testing.T, s *Store, id string, from, n int) {
	t.Helper()
	lines := make([]engine.LogLine, n)
	for i := range lines {
		lines[i] = engine.LogLine{Seq: int64(from + i + 1), Time: t0, Attempt: 1, Stream: "stdout", Text: strings.Repeat("x", 200)}
	}
	if err := s.AppendLog(context.Background(), id, lines, 0); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointShrinksWAL(t *testing.T) {
	s, path := openTest(t, Options{})
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, testJob("a", ""), false); err != nil {
		t.Fatal(err)
	}
	fillWAL(t, s, "a", 0, 4000)
	before := walSize(t, path)
	if before < 500<<10 {
		t.Fatalf("WAL after 4,000 rows is only %d bytes; the test writes too little", before)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	after := walSize(t, path)
	t.Logf("WAL: %d bytes before the checkpoint, %d after", before, after)
	if after > 64<<10 {
		t.Fatalf("WAL is %d bytes after a checkpoint, %d before", after, before)
	}
	// Nothing was lost, and writing goes on.
	if lines, err := s.Logs(ctx, "a", 0, 0); err != nil || len(lines) != 4000 {
		t.Fatalf("logs after checkpoint: %d lines, %v", len(lines), err)
	}
	if _, err := s.Enqueue(ctx, testJob("b", ""), false); err != nil {
		t.Fatal(err)
	}
	// journal_size_limit is per connection: ask the writer's.
	limit := make(chan int64, 1)
	if err := s.writeDirect(ctx, func(c *conn) error {
		v, err := c.pragmaInt("journal_size_limit")
		limit <- v
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if v := <-limit; v != walSizeLimit {
		t.Fatalf("writer journal_size_limit %d, want %d", v, walSizeLimit)
	}
}

// TestCheckpointBlockedByReader: a reader still on an older snapshot keeps
// the checkpoint from finishing; that is not an error, and the next
// checkpoint after the reader has gone truncates the WAL.
func TestCheckpointBlockedByReader(t *testing.T) {
	s, path := openTest(t, Options{Synchronous: "normal"})
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, testJob("a", ""), false); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Exec("BEGIN; SELECT count(*) FROM jobs;"); err != nil {
		t.Fatal(err)
	}
	fillWAL(t, s, "a", 0, 500)
	start := time.Now()
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint blocked by a reader: %v, want nil", err)
	}
	if d := time.Since(start); d > checkpointWait+5*time.Second {
		t.Fatalf("blocked checkpoint took %s", d)
	}
	if n := walSize(t, path); n == 0 {
		t.Fatal("the WAL was truncated under a reader")
	}
	if err := db.Exec("COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, path); n != 0 {
		t.Fatalf("WAL is %d bytes after the reader left and a checkpoint ran", n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Checkpoint(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("checkpoint with a cancelled context: %v", err)
	}
}

// TestCheckpointBetweenWrites runs checkpoints while writers are busy: they
// go through the write queue, so neither side ever fails.
func TestCheckpointBetweenWrites(t *testing.T) {
	s, _ := openTest(t, Options{Synchronous: "normal"})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if _, err := s.Enqueue(ctx, testJob(fmt.Sprintf("w%d-%d", w, i), ""), false); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := s.Checkpoint(ctx); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if page, err := s.List(ctx, engine.ListFilter{Limit: 1000}); err != nil || len(page.Jobs) != 200 {
		t.Fatalf("%d jobs, %v", len(page.Jobs), err)
	}
}

// TestCancelledOnArrivalSupersedes pins the store's reading of a case the
// contract leaves open: a job stored CANCELLED because a dependency already
// failed is still the newest generation of its key, so it supersedes the
// older QUEUED generation and the next generation counts on from it.
func TestCancelledOnArrivalSupersedes(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, testJob("g1", "k"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, testJob("dep", ""), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelQueued(ctx, []string{"dep"}, "by user", t0); err != nil {
		t.Fatal(err)
	}
	j := testJob("g2", "k")
	j.After = []string{"dep"}
	res, err := s.Enqueue(ctx, j, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.State != engine.StateCancelled || res.Job.Generation != 2 || !slices.Equal(res.Superseded, []string{"g1"}) {
		t.Fatalf("g2: %s generation %d superseded %v; want CANCELLED, 2, [g1]", res.Job.State, res.Job.Generation, res.Superseded)
	}
	res, err = s.Enqueue(ctx, testJob("g3", "k"), false)
	if err != nil || res.Job.Generation != 3 {
		t.Fatalf("g3: %+v %v", res.Job, err)
	}
}

// TestMigrateFromV2 builds a database as version 2 of the schema left it and
// checks that Open upgrades it in place: the schema matches a new
// database's, old jobs read back with the new fields at their defaults, and
// claims, dependencies, retry and prune work on them.
func TestMigrateFromV2(t *testing.T) {
	ctx := context.Background()
	ns := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	s, path := upgraded(t, 2, fmt.Sprintf(`
INSERT INTO subjects (queue, type, subject, max_gen, running) VALUES ('q', 't', 'k', 4, 0);
INSERT INTO jobs (id, queue, type, subject, generation, priority, state, max_attempts, run_at, deadline, ttl, backoff, created_at, due) VALUES
	('queued', 'q', 't', NULL, 0, 0, 'QUEUED', 3, %[1]d, 0, 0, 0, %[1]d, 1);
INSERT INTO jobs (id, queue, type, subject, generation, priority, state, max_attempts, run_at, deadline, ttl, backoff, created_at, finished_at, error, attempt, runs) VALUES
	('old-done',   'q', 't', 'k',  4, 0, 'DONE',   3, %[1]d, 0, 0, 0, %[1]d, %[1]d, NULL, 1, 1),
	('old-failed', 'q', 't', NULL, 0, 0, 'FAILED', 3, %[1]d, 0, 0, 0, %[1]d, %[2]d, 'exit status 1', 3, 3);
INSERT INTO attempts (job_seq, run, n, started_at, finished_at, outcome) VALUES
	((SELECT seq FROM jobs WHERE id = 'old-failed'), 1, 1, %[1]d, %[2]d, 'failed');
`, ns(0), ns(time.Minute)))
	if v := pragmaOf(t, path, "user_version"); v != fmt.Sprint(len(migrations)) {
		t.Fatalf("user_version after upgrade %s, want %d", v, len(migrations))
	}
	if v := pragmaOf(t, path, "integrity_check"); v != "ok" {
		t.Fatalf("integrity check after upgrade: %s", v)
	}
	if v := pragmaOf(t, path, "foreign_key_check"); v != "" {
		t.Fatalf("foreign key check after upgrade: %s", v)
	}
	_, fresh := openTest(t, Options{})
	if got, want := schemaOf(t, path), schemaOf(t, fresh); got != want {
		t.Fatalf("upgraded schema differs from a new database's:\n%s\nwant:\n%s", got, want)
	}

	old, err := s.Get(ctx, "queued")
	if err != nil {
		t.Fatal(err)
	}
	if old.WaitIdle || old.RequireCharging || old.Replace || old.Debounce != 0 || old.After != nil {
		t.Fatalf("upgraded job has new fields set: %+v", old)
	}
	if q, err := s.PausedQueues(ctx); err != nil || len(q) != 0 {
		t.Fatalf("paused queues after upgrade: %v %v", q, err)
	}
	// New jobs can depend on old ones, and old finished ones end the same
	// way as new ones would.
	dep := testJob("after-done", "")
	dep.After = []string{"old-done"}
	if res, err := s.Enqueue(ctx, dep, false); err != nil || res.Job.State != engine.StateQueued {
		t.Fatalf("enqueue after an upgraded DONE job: %+v %v", res.Job, err)
	}
	dead := testJob("after-failed", "")
	dead.After = []string{"old-failed"}
	if res, err := s.Enqueue(ctx, dead, false); err != nil || res.Job.State != engine.StateCancelled {
		t.Fatalf("enqueue after an upgraded FAILED job: %+v %v", res.Job, err)
	}
	jobs, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jobIDs(jobs), []string{"queued", "after-done"}; !slices.Equal(got, want) {
		t.Fatalf("claim after upgrade %v, want %v", got, want)
	}
	// Retry keeps the old history and numbers the next series from 1.
	r, err := s.Retry(ctx, "old-failed", t0)
	if err != nil || r.State != engine.StateQueued || r.Attempt != 0 || len(r.Attempts) != 1 {
		t.Fatalf("retry of an upgraded job: %+v %v", r, err)
	}
	jobs, err = s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: t0, Limit: 10})
	if err != nil || len(jobs) != 1 || jobs[0].Attempt != 1 || len(jobs[0].Attempts) != 2 {
		t.Fatalf("claim of the retried upgraded job: %v %v", jobs, err)
	}
	// Old finished jobs are in the new prune index; the key's generation
	// survives them.
	if n, err := s.Prune(ctx, engine.PruneRequest{Before: t0.Add(time.Hour)}); err != nil || n != 2 {
		t.Fatalf("prune after upgrade: %d %v, want old-done and after-failed", n, err)
	}
	if res, err := s.Enqueue(ctx, testJob("k5", "k"), false); err != nil || res.Job.Generation != 5 {
		t.Fatalf("generation after pruning the upgraded key: %+v %v", res.Job, err)
	}
}
