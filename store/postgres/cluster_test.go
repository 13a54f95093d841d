package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func testJob(id, queue, subject string) *engine.Job {
	return &engine.Job{ID: id, Queue: queue, Type: "t", Subject: subject, MaxAttempts: 3,
		CreatedAt: t0, RunAt: t0, Deadline: engine.Duration(time.Minute)}
}

// claimAll has workers goroutines per store claim and complete jobs until
// none is left, and returns how often each job id was claimed. Each
// goroutine claims up to batch jobs at a time and completes them DONE in
// its next CompleteAndClaim, as the engine's worker loop does.
func claimAll(t *testing.T, stores []*Store, workers, batch int, req engine.ClaimRequest, check func([]*engine.Job)) map[string]int {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, len(stores)*workers)
	for si, s := range stores {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := req
				r.Owner = fmt.Sprintf("host%d/%d", si, w)
				r.Limit = batch
				var done []engine.Completion
				for idle := 0; idle < 3; {
					res, err := s.CompleteAndClaim(ctx, engine.Cycle{Done: done, Claim: r})
					if err != nil {
						errs <- err
						return
					}
					for i, e := range res.Errs {
						if e != nil {
							errs <- fmt.Errorf("complete %s: %w", done[i].ID, e)
							return
						}
					}
					if res.ClaimErr != nil {
						errs <- res.ClaimErr
						return
					}
					if check != nil {
						check(res.Claimed)
					}
					done = done[:0]
					mu.Lock()
					for _, j := range res.Claimed {
						seen[j.ID]++
						done = append(done, engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone,
							Outcome: engine.OutcomeSucceeded, FinishedAt: t0.Add(time.Second)})
					}
					mu.Unlock()
					if len(res.Claimed) == 0 && len(done) == 0 {
						idle++
						time.Sleep(5 * time.Millisecond) // let the other claimers finish their transactions
					} else {
						idle = 0
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return seen
}

// Two stores on one schema are two daemons: every job is claimed exactly
// once however the claims of 2 x 8 goroutines interleave.
func TestTwoStoresClaimEachJobOnce(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	const n = 2000
	jobs := make([]*engine.Job, n)
	for i := range jobs {
		jobs[i] = testJob(fmt.Sprintf("job-%05d", i), fmt.Sprintf("q%d", i%3), "")
		jobs[i].Priority = i % 4
	}
	if _, err := a.EnqueueMany(context.Background(), engine.EnqueueBatch{Jobs: jobs, Atomic: true}); err != nil {
		t.Fatal(err)
	}
	seen := claimAll(t, []*Store{a, b}, 8, 7, engine.ClaimRequest{Now: t0}, nil)
	if len(seen) != n {
		t.Errorf("claimed %d distinct jobs, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("job %s claimed %d times", id, c)
		}
	}
	wantCounts(t, a, map[string]int64{"q0": 667, "q1": 667, "q2": 666}, engine.StateDone)
}

// wantCounts checks Stats for one state, after a fold and before one.
func wantCounts(t *testing.T, s *Store, want map[string]int64, state engine.State) {
	t.Helper()
	for _, fold := range []bool{false, true} {
		if fold {
			if err := s.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		st, err := s.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for q, n := range want {
			if got := st.Queues[q][state]; got != n {
				t.Errorf("stats (folded %v): queue %s has %d %s, want %d", fold, q, got, state, n)
			}
		}
	}
}

// The key and queue rules hold across stores: never two RUNNING jobs of
// one key, never more RUNNING jobs of a capped queue than its cap, and an
// enqueue of a newer generation on one store supersedes the queued job
// that the other store would otherwise claim.
func TestTwoStoresKeepKeyAndCapRules(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	ctx := context.Background()
	// Keys: each of 20 subjects gets 10 generations; most are superseded
	// at once, and the one queued at a time runs alone.
	const subjects, gens = 20, 10
	for g := range gens {
		for k := range subjects {
			s := a
			if (g+k)%2 == 1 {
				s = b
			}
			if _, err := s.Enqueue(ctx, testJob(fmt.Sprintf("k%02d-g%d", k, g), "keyed", fmt.Sprintf("s%02d", k)), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 300 {
		if _, err := b.Enqueue(ctx, testJob(fmt.Sprintf("cap-%03d", i), "capped", ""), false); err != nil {
			t.Fatal(err)
		}
	}
	const ceiling = 3
	check := func([]*engine.Job) {
		running, err := a.Running(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		keys := map[engine.Key]bool{}
		capped := 0
		for _, j := range running {
			if j.Subject != "" {
				if keys[j.Key()] {
					t.Errorf("two RUNNING jobs of key %v", j.Key())
				}
				keys[j.Key()] = true
			}
			if j.Queue == "capped" {
				capped++
			}
		}
		if capped > ceiling {
			t.Errorf("%d RUNNING jobs in queue capped, cap %d", capped, ceiling)
		}
	}
	seen := claimAll(t, []*Store{a, b}, 4, 5, engine.ClaimRequest{Now: t0, QueueLimits: map[string]int{"capped": ceiling}}, check)
	for id, c := range seen {
		if c != 1 {
			t.Errorf("job %s claimed %d times", id, c)
		}
		if strings.HasPrefix(id, "k") && !strings.HasSuffix(id, fmt.Sprintf("-g%d", gens-1)) {
			t.Errorf("claimed %s, an outdated generation", id)
		}
	}
	wantCounts(t, a, map[string]int64{"keyed": subjects, "capped": 300}, engine.StateDone)
	wantCounts(t, b, map[string]int64{"keyed": subjects * (gens - 1)}, engine.StateSuperseded)
}

// Concurrent enqueues of one key from two stores get unique, consecutive
// generations, and exactly one job stays QUEUED.
func TestTwoStoresGenerations(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	stores := []*Store{openSchema(t, schema), openSchema(t, schema)}
	ctx := context.Background()
	const per = 50
	var mu sync.Mutex
	gens := map[int64]string{}
	var wg sync.WaitGroup
	for si, s := range stores {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					res, err := s.Enqueue(ctx, testJob(fmt.Sprintf("s%d-w%d-%03d", si, w, i), "q", "one"), false)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if other, dup := gens[res.Job.Generation]; dup {
						t.Errorf("generation %d given to %s and %s", res.Job.Generation, other, res.Job.ID)
					}
					gens[res.Job.Generation] = res.Job.ID
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	total := int64(len(stores) * 4 * per)
	for g := int64(1); g <= total; g++ {
		if _, ok := gens[g]; !ok {
			t.Errorf("generation %d was never given", g)
		}
	}
	page, err := stores[0].List(ctx, engine.ListFilter{States: []engine.State{engine.StateQueued}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != 1 || page.Jobs[0].Generation != total {
		t.Errorf("QUEUED jobs: %v, want just generation %d", page.Jobs, total)
	}
}

// Daemons starting together migrate once: every open succeeds and the
// schema ends at the current version.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), Options{URL: testURL(t), Schema: schema, MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
	if v := schemaVersion(t, schema); v != SchemaVersion() {
		t.Fatalf("schema version %d after concurrent opens, want %d", v, SchemaVersion())
	}
}

func schemaVersion(t *testing.T, schema string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM `+pgx.Identifier{schema, "stq_schema"}.Sanitize()).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A schema written by a newer stq is refused with a message that says so,
// and the refusal changes nothing.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	s := openSchema(t, schema)
	if _, err := s.Enqueue(context.Background(), testJob("kept", "q", ""), false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	newer := SchemaVersion() + 1
	if _, err := conn.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "stq_schema"}.Sanitize()+` SET version = $1`, newer); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Options{URL: testURL(t), Schema: schema})
	if err == nil {
		t.Fatal("open of a newer schema succeeded")
	}
	want := fmt.Sprintf("schema %q is at version %d, newer than this stq understands (%d)", schema, newer, SchemaVersion())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if v := schemaVersion(t, schema); v != newer {
		t.Fatalf("schema version is %d after the refusal, want %d untouched", v, newer)
	}
	if _, err := s.Get(ctx, "kept"); err != nil {
		t.Fatalf("job lost after the refusal: %v", err)
	}
}

// Two schemas in one database are two installations: neither sees the
// other's jobs, pauses or generations.
func TestSchemasAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := openSchema(t, freshSchema(t)), openSchema(t, freshSchema(t))
	ctx := context.Background()
	if _, err := a.Enqueue(ctx, testJob("only-in-a", "q", "k"), false); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPaused(ctx, "q", true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "only-in-a"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("get from the other schema: %v, want not found", err)
	}
	res, err := b.Enqueue(ctx, testJob("in-b", "q", "k"), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.Generation != 1 || len(res.Superseded) != 0 {
		t.Fatalf("b's first job of the key: generation %d, superseded %v; want 1 and none", res.Job.Generation, res.Superseded)
	}
	paused, err := b.PausedQueues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(paused) != 0 {
		t.Fatalf("b sees paused queues %v", paused)
	}
	got, err := b.Claim(ctx, engine.ClaimRequest{Owner: "h/1", Now: t0, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "in-b" {
		t.Fatalf("b claimed %v, want in-b", got)
	}
}

func TestBadSchemaName(t *testing.T) {
	for _, name := range []string{"1abc", "a-b", "a b", `a"b`, strings.Repeat("x", 59)} {
		_, err := Open(context.Background(), Options{URL: "postgres:///nowhere", Schema: name})
		if !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("schema %q: error %v, want ErrInvalid", name, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://bob:s3cret@db.example:5432/stq", "postgres://bob:xxxxx@db.example:5432/stq"},
		{"postgres://bob@db/stq", "postgres://bob@db/stq"},
		{"postgres:///stq?host=/tmp/x&password=s3cret", "postgres:///stq?host=%2Ftmp%2Fx&password=xxxxx"},
		{"host=db user=bob password=s3cret dbname=stq", "host=db user=bob password=xxxxx dbname=stq"},
		{"host=db password='s3 cret' dbname=stq", "host=db password=xxxxx dbname=stq"},
		{"postgres://bob:s3cret@db:port/stq", "postgres://bob:xxxxx@db:port/stq"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(Redact(tc.in), "s3") {
			t.Errorf("Redact(%q) shows the password", tc.in)
		}
	}
}

// An open that cannot connect says where it tried without the password.
func TestOpenErrorHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Open(ctx, Options{URL: "postgres://bob:s3cret@127.0.0.1:1/stq?connect_timeout=2"})
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the password: %v", err)
	}
}

// Retention run by two daemons at once deletes what one would: prunes take
// turns, so Keep is honoured exactly and the counters stay exact.
func TestTwoStoresPruneTogether(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	ctx := context.Background()
	const n, keep = 600, 100
	jobs := make([]*engine.Job, n)
	for i := range jobs {
		jobs[i] = testJob(fmt.Sprintf("p%04d", i), "q", "")
	}
	if _, err := a.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true}); err != nil {
		t.Fatal(err)
	}
	claimAll(t, []*Store{a}, 2, 50, engine.ClaimRequest{Now: t0}, nil)
	var wg sync.WaitGroup
	deleted := make([]int, 2)
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := s.Prune(ctx, engine.PruneRequest{Keep: keep, Limit: 37})
				if err != nil {
					t.Error(err)
					return
				}
				if d == 0 {
					return
				}
				deleted[i] += d
			}
		}()
	}
	wg.Wait()
	if got := deleted[0] + deleted[1]; got != n-keep {
		t.Fatalf("the two prunes deleted %d jobs (%v), want %d", got, deleted, n-keep)
	}
	wantCounts(t, b, map[string]int64{"q": keep}, engine.StateDone)
	page, err := b.List(ctx, engine.ListFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != keep || page.Jobs[len(page.Jobs)-1].ID != fmt.Sprintf("p%04d", n-keep) {
		t.Fatalf("after pruning, %d jobs remain, oldest %s; want the newest %d", len(page.Jobs), page.Jobs[len(page.Jobs)-1].ID, keep)
	}
}

// A daemon whose cap on a queue is full must not hide that queue's jobs
// from another daemon while its claim is open: the other, uncapped, takes
// them. Before the scan passed over full queues, the capped claim locked
// the job it could not take and the other's SKIP LOCKED scan found
// nothing, so a job enqueued through the capped daemon waited for a later
// look. The capped claim is held open here to make that moment last.
func TestFullCapDoesNotHideJobsFromAnotherDaemon(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	ctx := context.Background()
	for _, id := range []string{"hold", "next"} {
		if _, err := a.Enqueue(ctx, testJob(id, "remote", ""), false); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := b.Claim(ctx, engine.ClaimRequest{Now: t0, Owner: "b/1", Limit: 1}); err != nil || len(got) != 1 || got[0].ID != "hold" {
		t.Fatalf("claim of the job that fills the cap: %v, %v", got, err)
	}
	capped := engine.ClaimRequest{Now: t0, Owner: "a/1", Limit: 4, QueueLimits: map[string]int{"remote": 1}}
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if got, err := a.claim(ctx, tx, &capped); err != nil || len(got) != 0 {
		t.Fatalf("claim under a full cap: %v, %v; want nothing", got, err)
	}
	got, err := b.Claim(ctx, engine.ClaimRequest{Now: t0, Owner: "b/2", Limit: 4})
	if err != nil || len(got) != 1 || got[0].ID != "next" {
		t.Fatalf("uncapped claim while the capped one is open: %v, %v; want job next", got, err)
	}
}
