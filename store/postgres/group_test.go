package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"stq/engine"
)

// Two base environments for the group tests.
var (
	envA = engine.EncodeBaseEnv(map[string]string{"PATH": "/bin", "HOME": "/a"})
	envB = engine.EncodeBaseEnv(map[string]string{"PATH": "/bin", "HOME": "/b"})
)

// group builds the pending calls of one group INSERT, as the inserters
// gather them, for jobs with these ids, with envs[i] as the base
// environment of job i.
func group(t *testing.T, ids []string, envs map[int]*engine.BaseEnv) []*pendingEnqueue {
	t.Helper()
	g := make([]*pendingEnqueue, len(ids))
	for i, id := range ids {
		j := plainJob(id)
		j.BaseEnv = envs[i]
		if i%2 == 1 { // vary the optional columns across the rows
			j.Priority, j.TTL, j.Command, j.Cwd = -3, engine.Duration(time.Hour), []string{"/bin/true", "x"}, "/tmp"
			j.Env, j.Payload, j.WaitIdle = map[string]string{"A": "1"}, nil, true
		}
		in, err := encodeJob(j)
		if err != nil {
			t.Fatal(err)
		}
		g[i] = &pendingEnqueue{in: &in, done: make(chan error, 1)}
	}
	return g
}

// TestGroupInsertRefusesJobsAlone is the group commit's rule: each call of
// a group gets the outcome its job gets alone, so one refused job leaves
// the others of its group stored.
func TestGroupInsertRefusesJobsAlone(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		stored  []string // before the group
		ids     []string
		envs    map[int]*engine.BaseEnv
		refused map[int]bool
	}{
		{name: "all new", ids: []string{"g1", "g2", "g3", "g4"}},
		{name: "one id taken", stored: []string{"g2"}, ids: []string{"g1", "g2", "g3"}, refused: map[int]bool{1: true}},
		{name: "one id twice", ids: []string{"g1", "g2", "g1", "g3"}, refused: map[int]bool{2: true}},
		{name: "every id taken", stored: []string{"g1", "g2"}, ids: []string{"g1", "g2"}, refused: map[int]bool{0: true, 1: true}},
		{name: "one environment", ids: []string{"g1", "g2", "g3"}, envs: map[int]*engine.BaseEnv{0: envA, 1: envA, 2: envA}},
		{name: "two environments and none", ids: []string{"g1", "g2", "g3", "g4", "g5"},
			envs: map[int]*engine.BaseEnv{0: envA, 1: envB, 3: envA, 4: envB}},
		{name: "one environment, one id taken", stored: []string{"g2"}, ids: []string{"g1", "g2", "g3"},
			envs: map[int]*engine.BaseEnv{0: envA, 1: envA, 2: envA}, refused: map[int]bool{1: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSchema(t, freshSchema(t))
			for _, id := range tt.stored {
				if _, err := s.Enqueue(ctx, plainJob(id), false); err != nil {
					t.Fatal(err)
				}
			}
			g := group(t, tt.ids, tt.envs)
			s.insertGroup(ctx, g)
			for i, p := range g {
				err := <-p.done
				switch {
				case tt.refused[i] && !errors.Is(err, engine.ErrInvalid):
					t.Errorf("job %d (%s): got %v, want a refusal wrapping ErrInvalid", i, tt.ids[i], err)
				case tt.refused[i] && !strings.Contains(err.Error(), "already exists"):
					t.Errorf("job %d (%s): got %v, want the duplicate id named", i, tt.ids[i], err)
				case !tt.refused[i] && err != nil:
					t.Errorf("job %d (%s): %v", i, tt.ids[i], err)
				}
			}
			for i, p := range g {
				if tt.refused[i] {
					continue
				}
				got, err := s.Get(ctx, tt.ids[i])
				if err != nil {
					t.Fatalf("get %s: %v", tt.ids[i], err)
				}
				want := p.in.job.Stored(p.in.payload, 0, engine.StateQueued, "")
				if got.ID != want.ID || got.Priority != want.Priority || got.TTL != want.TTL || got.Cwd != want.Cwd ||
					strings.Join(got.Command, " ") != strings.Join(want.Command, " ") || got.Env["A"] != want.Env["A"] ||
					string(got.Payload) != string(want.Payload) || got.WaitIdle != want.WaitIdle ||
					!got.RunAt.Equal(want.RunAt) || !got.ExpiresAt().Equal(want.ExpiresAt()) || got.State != engine.StateQueued {
					t.Errorf("stored %s:\n got %+v\nwant %+v", tt.ids[i], got, want)
				}
				if env := tt.envs[i]; (got.BaseEnv == nil) != (env == nil) || env != nil && got.BaseEnv.SHA256 != env.SHA256 {
					t.Errorf("stored %s with environment %+v, want %+v", tt.ids[i], got.BaseEnv, env)
				}
			}
			wantRefs(t, s, tt.envs, tt.refused)
		})
	}
}

// wantRefs checks that each environment counts one reference per stored
// job that has it: a refused group's increment was undone with it.
func wantRefs(t *testing.T, s *Store, envs map[int]*engine.BaseEnv, refused map[int]bool) {
	t.Helper()
	want := map[string]int64{}
	for i, env := range envs {
		if !refused[i] {
			want[env.SHA256]++
		}
	}
	for hash, n := range want {
		var refs int64
		err := s.pool.QueryRow(context.Background(), `SELECT refs FROM envs WHERE encode(hash, 'hex') = $1`, hash).Scan(&refs)
		if err != nil || refs != n {
			t.Errorf("environment %.12s: %d references (%v), want %d", hash, refs, err, n)
		}
	}
}

// TestConcurrentEnqueuesAllStored enqueues from many goroutines at once,
// half the jobs with a base environment, so the inserters form groups,
// and checks every job is stored once and counted, and each reference.
func TestConcurrentEnqueuesAllStored(t *testing.T) {
	ctx := context.Background()
	s := openSchema(t, freshSchema(t))
	const clients, each = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("c%02d-%03d", c, i)
				j := plainJob(id)
				if i%2 == 1 {
					j.BaseEnv = envA
				}
				res, err := s.Enqueue(ctx, j, false)
				if err == nil && (res.Job.ID != id || res.Job.State != engine.StateQueued) {
					err = fmt.Errorf("enqueue %s: got %s %s", id, res.Job.ID, res.Job.State)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	page, err := s.List(ctx, engine.ListFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != clients*each {
		t.Errorf("listed %d jobs, want %d", len(page.Jobs), clients*each)
	}
	wantCounts(t, s, map[string]int64{"default": clients * each}, engine.StateQueued)
	envs := map[int]*engine.BaseEnv{}
	for i := range clients * each / 2 {
		envs[i] = envA
	}
	wantRefs(t, s, envs, nil)
}

// TestEnqueueAfterCloseIsClosed: a plain enqueue after Close fails with
// ErrClosed rather than waiting for an inserter that is gone.
func TestEnqueueAfterCloseIsClosed(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Enqueue(ctx, plainJob("late"), false); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("enqueue after close: %v, want ErrClosed", err)
	}
}
