package sqlite

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// newJob is an enqueue with everything encoded up front: the JSON work runs
// on the caller's goroutine, not the writer's, and the writer never touches
// memory the caller still owns.
type newJob struct {
	id, queue, typ, subject string
	generation              int64
	priority                int64
	maxAttempts             int64
	payload                 []byte
	command, env            []byte
	cwd                     string
	runAt, createdAt        time.Time
	deadline, ttl, backoff  int64
	expiresAt               int64 // 0: no TTL
	waitIdle, requireAC     bool
	replace                 bool
	debounce                int64
	after                   []string // the After ids, as given
	afterJSON               []byte   // nil when there are none

	// base is the job's base environment, shared with the caller (it never
	// changes; nil: the daemon's), baseHash its SHA-256, and baseID its envs
	// row once the writer has counted the reference.
	base     *engine.BaseEnv
	baseHash []byte
	baseID   int64
}

// enqueued is what the writer decided about a new job.
type enqueued struct {
	generation int64
	state      engine.State
	held       bool // QUEUED in a paused queue (see held.go)
	errText    string
	superseded []string
	cancelled  []*engine.Job // dependents of the superseded jobs
}

// Enqueue stores a new job and applies the supersede and dependency rules
// (see engine.Store). Only the job's definition is taken from job: ID,
// Queue, Type, Subject, Generation (with explicitGen), Priority,
// MaxAttempts, Payload, Command, Cwd, Env, BaseEnv, RunAt, Deadline, TTL,
// Backoff, CreatedAt, WaitIdle, RequireCharging, Debounce, Replace and After. Its
// run-time fields start empty, Waiting included. job itself is not
// modified.
//
// A job whose dependency already ended without succeeding is stored
// CANCELLED, finished at its CreatedAt. It still takes part in the
// supersede rules as the newest generation of its key: it gets its
// generation and supersedes the key's older QUEUED jobs like any other
// arrival. Leaving them queued instead would either strand them (behind a
// recorded newer generation) or hand the next arrival the same generation
// number; and the newest request for a key is the one that counts. A job
// whose generation is outdated on arrival is stored SUPERSEDED, whatever
// its dependencies.
func (s *Store) Enqueue(ctx context.Context, job *engine.Job, explicitGen bool) (engine.EnqueueResult, error) {
	// Errors leave the job's id out: a job that failed to enqueue was never
	// stored, and its id would name nothing.
	in, err := encodeJob(job)
	if err != nil {
		return engine.EnqueueResult{}, fmt.Errorf("enqueue: %w", err)
	}
	var out enqueued
	err = s.write(ctx, func(c *conn) error { return c.enqueue(&in, explicitGen, &out) })
	if err != nil {
		return engine.EnqueueResult{}, fmt.Errorf("enqueue: %w", err)
	}
	return storedResult(job, &in, &out), nil
}

func encodeJob(j *engine.Job) (newJob, error) {
	if err := j.CheckNew(); err != nil {
		return newJob{}, err
	}
	in := newJob{
		id: j.ID, queue: j.Queue, typ: j.Type, subject: j.Subject,
		generation: j.Generation, priority: int64(j.Priority), maxAttempts: int64(j.MaxAttempts),
		payload: slices.Clone([]byte(j.Payload)), cwd: j.Cwd,
		runAt: j.RunAt, createdAt: j.CreatedAt,
		deadline: int64(j.Deadline), ttl: int64(j.TTL), backoff: int64(j.Backoff),
	}
	var err error
	if len(j.Command) > 0 {
		if in.command, err = json.Marshal(j.Command); err != nil {
			return newJob{}, fmt.Errorf("encode command: %w", err)
		}
	}
	if len(j.Env) > 0 {
		if in.env, err = json.Marshal(j.Env); err != nil {
			return newJob{}, fmt.Errorf("encode env: %w", err)
		}
	}
	if err := encodeEnv(&in, j.BaseEnv); err != nil {
		return newJob{}, err
	}
	in.waitIdle, in.requireAC, in.replace = j.WaitIdle, j.RequireCharging, j.Replace
	in.debounce = int64(j.Debounce)
	if len(j.After) > 0 {
		in.after = slices.Clone(j.After)
		if in.afterJSON, err = json.Marshal(in.after); err != nil {
			return newJob{}, fmt.Errorf("encode after: %w", err)
		}
	}
	if in.ttl > 0 {
		created := j.CreatedAt.UnixNano()
		in.expiresAt = created + in.ttl
		if in.expiresAt < created { // overflow: a TTL beyond 2262 never expires in practice
			in.expiresAt = math.MaxInt64
		}
	}
	return in, nil
}

// enqueue stores one encoded job and applies the rules, filling out with
// what it decided. The steps run in an order that matters: dependencies
// are resolved first, so that an unknown id rejects the job before
// anything changes, and the key's rules before the insert, which stores
// their outcome.
func (c *conn) enqueue(in *newJob, explicitGen bool, out *enqueued) error {
	out.generation = in.generation
	out.state = engine.StateQueued
	depSeqs, failed, err := c.resolveDeps(in.after)
	if err != nil {
		return err
	}
	if in.subject != "" {
		if err := c.applyKey(in, explicitGen, out); err != nil {
			return err
		}
	}
	if out.state == engine.StateQueued && failed.id != "" {
		out.state = engine.StateCancelled
		out.errText = engine.DependencyError(failed.id, failed.state)
	}
	if in.base != nil {
		if in.baseID, err = c.refEnv(in, 1); err != nil {
			return err
		}
	}
	if err := c.insertJob(in, out); err != nil {
		return err
	}
	if len(depSeqs) == 0 {
		return nil
	}
	// The rows are kept whatever the job's state, so that a retry of a job
	// cancelled on arrival still waits for its dependencies.
	return c.insertDeps(c.db.LastInsertRowID(), depSeqs)
}

// applyKey applies the supersede rules of the job's key: it gives the job
// its generation, or finds it outdated on arrival (stored SUPERSEDED);
// otherwise it supersedes the key's older QUEUED jobs, cancels their
// dependents and records the key's new highest generation.
func (c *conn) applyKey(in *newJob, explicitGen bool, out *enqueued) error {
	maxGen, found, err := c.subjectGen(in.queue, in.typ, in.subject)
	if err != nil {
		return err
	}
	switch {
	case !explicitGen:
		out.generation = maxGen + 1
	case found && in.generation <= maxGen:
		out.state = engine.StateSuperseded
		out.errText = fmt.Sprintf("superseded on arrival: generation %d already seen", maxGen)
		return nil
	}
	superseded, err := c.supersede(in, out.generation)
	if err != nil {
		return err
	}
	for _, sj := range superseded {
		out.superseded = append(out.superseded, sj.id)
	}
	if out.cancelled, err = c.cancelDependents(superseded, in.createdAt); err != nil {
		return err
	}
	return c.putSubject(in.queue, in.typ, in.subject, out.generation)
}

// resolveDeps looks up the jobs an After list names. It returns their seqs
// and the first of them, in list order, that ended without succeeding (zero
// when none did). An id that names no job is an error wrapping
// engine.ErrInvalid.
func (c *conn) resolveDeps(after []string) (seqs []int64, failed ended, err error) {
	if len(after) == 0 {
		return nil, ended{}, nil
	}
	seqs = make([]int64, 0, len(after))
	for _, id := range after {
		var seq int64
		var state engine.State
		found, err := c.queryOne(qDepState, func(b *binder) { b.text(id) }, func(st *sqlite3.Stmt) {
			seq, state = st.ColumnInt64(0), columnState(st, 1)
		})
		if err != nil {
			return nil, ended{}, fmt.Errorf("read dependency %s: %w", id, err)
		}
		if !found {
			return nil, ended{}, fmt.Errorf("%w: after: unknown job %s", engine.ErrInvalid, id)
		}
		seqs = append(seqs, seq)
		if failed.id == "" && state.Terminal() && state != engine.StateDone {
			failed = ended{seq: seq, id: id, state: state}
		}
	}
	return seqs, failed, nil
}

// insertDeps records that job seq waits for the jobs deps.
func (c *conn) insertDeps(seq int64, deps []int64) error {
	for _, dep := range deps {
		err := c.run(qInsertDep, func(b *binder) {
			b.int64(seq)
			b.int64(dep)
		})
		if err != nil {
			return fmt.Errorf("record dependency: %w", err)
		}
	}
	return nil
}

// subjectGen returns the highest generation seen for a key.
func (c *conn) subjectGen(queue, typ, subject string) (maxGen int64, found bool, err error) {
	found, err = c.queryOne(qSubjectGen, func(b *binder) {
		b.text(queue)
		b.text(typ)
		b.text(subject)
	}, func(st *sqlite3.Stmt) { maxGen = st.ColumnInt64(0) })
	if err != nil {
		return 0, false, fmt.Errorf("read subject generation: %w", err)
	}
	return maxGen, found, nil
}

// supersede moves the key's QUEUED jobs below gen to SUPERSEDED and
// returns them in enqueue order.
func (c *conn) supersede(in *newJob, gen int64) ([]ended, error) {
	var jobs []ended
	err := c.queryEach(qSupersede, func(b *binder) {
		b.time(in.createdAt)
		b.text(engine.SupersededBy(gen, in.id))
		b.text(in.queue)
		b.text(in.typ)
		b.text(in.subject)
		b.int64(gen)
	}, func(st *sqlite3.Stmt) bool {
		jobs = append(jobs, ended{seq: st.ColumnInt64(0), id: st.ColumnText(1), state: engine.StateSuperseded})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("supersede older generations: %w", err)
	}
	// RETURNING has no defined order.
	slices.SortFunc(jobs, func(a, b ended) int { return cmp.Compare(a.seq, b.seq) })
	return jobs, nil
}

// putSubject records gen as the key's highest generation, unless a higher
// one is recorded.
func (c *conn) putSubject(queue, typ, subject string, gen int64) error {
	err := c.run(qSubjectPut, func(b *binder) {
		b.text(queue)
		b.text(typ)
		b.text(subject)
		b.int64(gen)
	})
	if err != nil {
		return fmt.Errorf("record subject generation: %w", err)
	}
	return nil
}
