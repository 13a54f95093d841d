package sqlite

// These tests hold the multi-row insert of EnqueueMany to the one-by-one
// path: same results, same errors, same database, whatever breaks the runs.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

var multirowT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// multirowEnvs are the base environments the jobs carry in turn: two
// shared ones and none, so runs hold several and their references count.
var multirowEnvs = []*engine.BaseEnv{
	engine.EncodeBaseEnv(map[string]string{"PATH": "/a/bin:/usr/bin", "HOME": "/home/a"}),
	engine.EncodeBaseEnv(map[string]string{"PATH": "/b/bin"}),
	nil,
}

func multirowJob(i int, subject string, after ...string) *engine.Job {
	return &engine.Job{
		ID: fmt.Sprintf("job%05d", i), Queue: "q", Type: "t", Subject: subject,
		Priority: i % 3, MaxAttempts: 3, Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)),
		RunAt: multirowT0.Add(time.Duration(i%2) * time.Hour), CreatedAt: multirowT0,
		Deadline: engine.Duration(time.Minute), Backoff: engine.Duration(time.Second),
		TTL: engine.Duration(time.Duration(i%4) * time.Hour), Env: map[string]string{"A": fmt.Sprint(i)},
		Command: func() []string {
			if i%5 == 0 {
				return []string{"echo", fmt.Sprint(i)}
			}
			return nil
		}(),
		After: after, WaitIdle: i%7 == 0, Debounce: engine.Duration(i % 3),
		BaseEnv: multirowEnvs[i%len(multirowEnvs)],
	}
}

// multirowBatch: 200 jobs, mostly plain, with subject jobs and dependencies
// sprinkled in so runs are broken at various places.
func multirowBatch(prefix int) []*engine.Job {
	var jobs []*engine.Job
	for i := range 200 {
		n := prefix + i
		switch {
		case i == 40 || i == 41 || i == 150:
			jobs = append(jobs, multirowJob(n, fmt.Sprint("s", i%2)))
		case i == 100:
			jobs = append(jobs, multirowJob(n, "", fmt.Sprintf("job%05d", prefix+3)))
		default:
			jobs = append(jobs, multirowJob(n, ""))
		}
	}
	return jobs
}

func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	err := s.read(context.Background(), func(c *conn) error {
		for _, q := range []string{`SELECT * FROM jobs ORDER BY seq`, `SELECT * FROM counts ORDER BY 1, 2`, `SELECT * FROM subjects ORDER BY 1, 2, 3`, `SELECT * FROM job_deps ORDER BY 1, 2`, `SELECT * FROM envs ORDER BY id`} {
			st, _, err := c.db.Prepare(q)
			if err != nil {
				return err
			}
			for st.Step() {
				for k := range st.ColumnCount() {
					switch st.ColumnType(k) {
					case sqlite3.NULL:
						b.WriteString("NULL")
					default:
						b.WriteString(st.ColumnText(k))
					}
					b.WriteByte('|')
				}
				b.WriteByte('\n')
			}
			if err := st.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func openMultirow(t *testing.T) *Store {
	s, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// oneByOne stores the jobs through Enqueue, the per-row path.
func oneByOne(t *testing.T, s *Store, jobs []*engine.Job) ([]engine.EnqueueResult, []error) {
	res := make([]engine.EnqueueResult, len(jobs))
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		res[i], errs[i] = s.Enqueue(context.Background(), j, false)
	}
	return res, errs
}

func TestBatchedInsertMatchesOneByOne(t *testing.T) {
	ctx := context.Background()
	a, b := openMultirow(t), openMultirow(t)
	pre := multirowJob(99999, "s0")
	for _, s := range []*Store{a, b} {
		if _, err := s.Enqueue(ctx, pre, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []int{0, 1000} {
		jobs := multirowBatch(prefix)
		got, err := a.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true})
		if err != nil {
			t.Fatal(err)
		}
		want, errs := oneByOne(t, b, jobs)
		for i := range jobs {
			if errs[i] != nil || got.Errs[i] != nil {
				t.Fatalf("%d: %v %v", i, errs[i], got.Errs[i])
			}
			if !reflect.DeepEqual(got.Results[i], want[i]) {
				t.Fatalf("%d: results differ\n%+v\n%+v", i, got.Results[i].Job, want[i].Job)
			}
		}
	}
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatalf("databases differ:\n%s\n----\n%s", da, db)
	}
}

func TestBatchedInsertDuplicateUndoesAnAtomicBatch(t *testing.T) {
	ctx := context.Background()
	for _, at := range []int{5, 70, 70 + 32, 199} {
		a, b := openMultirow(t), openMultirow(t)
		jobs := multirowBatch(0)
		jobs[at] = multirowJob(at-1, "") // duplicate of the previous id
		if at == 199 {
			jobs[at] = multirowJob(10, "")
		}
		_, err := a.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true})
		var be *engine.BatchError
		if !errors.As(err, &be) || be.Index != at || !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("at %d: %v", at, err)
		}
		_, errs := oneByOne(t, b, jobs)
		if got, want := be.Err.Error(), errs[at].Error(); !strings.HasSuffix(want, ": "+got) {
			t.Errorf("at %d: error %q, one by one %q", at, got, want)
		}
		if d := dump(t, a); d != "" {
			t.Errorf("at %d: refused batch left %s", at, d)
		}
	}
}

func TestBatchedInsertDuplicateFailsAloneOtherwise(t *testing.T) {
	ctx := context.Background()
	a, b := openMultirow(t), openMultirow(t)
	jobs := multirowBatch(0)
	jobs[70] = multirowJob(69, "")
	jobs[90] = nil
	jobs[130] = multirowJob(3, "")
	jobs[131] = &engine.Job{ID: "x", Queue: "q", Type: "t", CreatedAt: multirowT0} // no run_at: encode fails
	got, err := a.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	var keep []*engine.Job
	for i, j := range jobs {
		if i != 90 && i != 131 {
			keep = append(keep, j)
		}
	}
	_, _ = oneByOne(t, b, keep)
	for i := range jobs {
		bad := i == 70 || i == 90 || i == 130 || i == 131
		if (got.Errs[i] != nil) != bad {
			t.Errorf("%d: err %v", i, got.Errs[i])
		}
		if bad && got.Results[i].Job != nil {
			t.Errorf("%d: result for a failed job", i)
		}
	}
	if !errors.Is(got.Errs[70], engine.ErrInvalid) || !strings.Contains(got.Errs[70].Error(), "already exists") {
		t.Errorf("70: %v", got.Errs[70])
	}
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatalf("databases differ:\n%s\n----\n%s", da, db)
	}
}

// TestABatchIsOneCommit: a batch of 200 jobs, all or nothing or each on
// its own, costs the writer one transaction, which is what lets the
// enqueues of one JSON-RPC batch share a commit.
func TestABatchIsOneCommit(t *testing.T) {
	ctx := context.Background()
	s := openMultirow(t)
	for i, atomic := range []bool{true, false} {
		before := s.txns.Load()
		res, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: multirowBatch(1000 * (i + 1)), Atomic: atomic})
		if err != nil || len(res.Results) != 200 {
			t.Fatalf("atomic %v: %d results, %v", atomic, len(res.Results), err)
		}
		if n := s.txns.Load() - before; n != 1 {
			t.Errorf("atomic %v: a batch of 200 took %d transactions, want 1", atomic, n)
		}
	}
}
