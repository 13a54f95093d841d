package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

// TestCopyStoresWhatInsertStores holds the bulk COPY, whose binary rows
// the store writes itself, to the single-job INSERT: jobs with every
// column of a new job set, and with every optional one left out, are
// stored both ways and their rows compared column by column.
func TestCopyStoresWhatInsertStores(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	full := func(id string) *engine.Job {
		j := plainJob(id)
		j.Priority, j.MaxAttempts, j.Generation = -7, 9, 12
		j.Payload = []byte(`{"path":"src/ä.rs"}`)
		j.Command, j.Cwd, j.Env = []string{"/bin/sh", "-c", "echo 'x'"}, "/tmp/w", map[string]string{"A": "1", "B": ""}
		j.TTL, j.Backoff, j.Debounce = engine.Duration(time.Hour), engine.Duration(3*time.Second), engine.Duration(time.Second)
		j.RunAt = t0.Add(90 * time.Second)
		j.WaitIdle, j.RequireCharging, j.Replace = true, true, true
		j.BaseEnv = envA
		return j
	}
	bare := func(id string) *engine.Job {
		j := plainJob(id)
		j.Payload = nil
		return j
	}
	for name, mk := range map[string]func(string) *engine.Job{"every column": full, "no optional column": bare} {
		t.Run(name, func(t *testing.T) {
			prefix := strings.ReplaceAll(name, " ", "-")
			if _, err := s.Enqueue(ctx, mk(prefix+"-one"), false); err != nil {
				t.Fatal(err)
			}
			jobs := make([]*engine.Job, minCopy)
			for i := range jobs {
				jobs[i] = mk(fmt.Sprintf("%s-many%d", prefix, i))
			}
			res, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs})
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range res.Errs {
				if err != nil {
					t.Fatalf("job %d: %v", i, err)
				}
			}
			want := storedRow(t, s, prefix+"-one")
			for i := range jobs {
				if got := storedRow(t, s, jobs[i].ID); got != want {
					t.Errorf("job %d stored by COPY:\n got %s\nwant %s", i, got, want)
				}
			}
		})
	}
}

// storedRow is a job's row as JSON, without the columns that differ
// between any two jobs (seq and id).
func storedRow(t *testing.T, s *Store, id string) string {
	t.Helper()
	var row string
	err := s.pool.QueryRow(context.Background(), `SELECT (to_jsonb(j) - 'seq' - 'id')::text FROM jobs j WHERE id = $1`, id).Scan(&row)
	if err != nil {
		t.Fatalf("read row of %s: %v", id, err)
	}
	return row
}

// TestCopyRefusesWhatAnIntegerCannotHold: a priority beyond the column's
// 32 bits fails the COPY (and the job, alone) rather than being stored
// truncated.
func TestCopyRefusesWhatAnIntegerCannotHold(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	jobs := make([]*engine.Job, minCopy)
	for i := range jobs {
		jobs[i] = plainJob(fmt.Sprintf("big%d", i))
	}
	jobs[3].Priority = math.MaxInt32 + 1
	res, err := s.EnqueueMany(ctx, engine.EnqueueBatch{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range res.Errs {
		if (err != nil) != (i == 3) {
			t.Errorf("job %d: error %v", i, err)
		}
	}
	rows := newCopyRows(1)
	rows.int4("priority", math.MaxInt32+1)
	if err := rows.copyFrom(ctx, nil); err == nil || !strings.Contains(err.Error(), "priority 2147483648 is out of range") {
		t.Errorf("copy of an out-of-range priority: %v", err)
	}
}
