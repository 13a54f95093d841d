package sqlite

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
	if job == nil {
		return engine.EnqueueResult{}, fmt.Errorf("enqueue: %w: no job", engine.ErrInvalid)
	}
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
	if j.ID == "" {
		return newJob{}, fmt.Errorf("%w: job has no id", engine.ErrInvalid)
	}
	if err := checkTime("created_at", j.CreatedAt, true); err != nil {
		return newJob{}, err
	}
	if err := checkTime("run_at", j.RunAt, true); err != nil {
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

func (c *conn) enqueue(in *newJob, explicitGen bool, out *enqueued) error {
	out.generation = in.generation
	out.state = engine.StateQueued
	// Dependencies first: an unknown id rejects the job before anything
	// else changes.
	depSeqs, failed, err := c.resolveDeps(in.after)
	if err != nil {
		return err
	}
	if in.subject != "" {
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
		}
		if out.state == engine.StateQueued {
			superseded, err := c.supersede(in, out.generation)
			if err != nil {
				return err
			}
			roots := make([]ended, len(superseded))
			for i, sj := range superseded {
				out.superseded = append(out.superseded, sj.id)
				roots[i] = ended{seq: sj.seq, id: sj.id, state: engine.StateSuperseded}
			}
			if out.cancelled, err = c.cancelDependents(roots, in.createdAt); err != nil {
				return err
			}
			if err := c.putSubject(in.queue, in.typ, in.subject, out.generation); err != nil {
				return err
			}
		}
	}
	if out.state == engine.StateQueued && failed.id != "" {
		out.state = engine.StateCancelled
		out.errText = dependencyError(failed)
	}

	if in.base != nil {
		if in.baseID, err = c.refEnv(in, 1); err != nil {
			return err
		}
	}
	st, err := c.stmt(qInsertJob)
	if err != nil {
		return err
	}
	b := bind(st)
	bindInsertJob(&b, in, out)
	if b.check() != nil {
		return b.err
	}
	if err := st.Exec(); err != nil {
		if isUnique(err) {
			return fmt.Errorf("%w: a job with id %q already exists", engine.ErrInvalid, in.id)
		}
		return fmt.Errorf("insert job: %w", err)
	}
	if len(depSeqs) == 0 {
		return nil
	}
	// The rows are kept whatever the job's state, so that a retry of a job
	// cancelled on arrival still waits for its dependencies.
	seq := c.db.LastInsertRowID()
	ins, err := c.stmt(qInsertDep)
	if err != nil {
		return err
	}
	for _, dep := range depSeqs {
		b := bind(ins)
		b.int64(seq)
		b.int64(dep)
		if b.check() != nil {
			return b.err
		}
		if err := ins.Exec(); err != nil {
			return fmt.Errorf("record dependency: %w", err)
		}
	}
	return nil
}

// bindInsertJob binds the values of qInsertJob's row for in, stored as out
// decided, continuing at b's next parameter.
func bindInsertJob(b *binder, in *newJob, out *enqueued) {
	b.text(in.id)
	b.text(in.queue)
	b.text(in.typ)
	b.optText(in.subject)
	b.int64(out.generation)
	b.int64(in.priority)
	b.text(string(out.state))
	b.int64(in.maxAttempts)
	b.optBytes(in.payload)
	b.optJSONText(in.command)
	b.optText(in.cwd)
	b.optJSONText(in.env)
	b.time(in.runAt)
	b.int64(in.deadline)
	b.int64(in.ttl)
	b.int64(in.backoff)
	if in.expiresAt != 0 && out.state == engine.StateQueued {
		b.int64(in.expiresAt)
	} else {
		b.null()
	}
	b.time(in.createdAt)
	if out.state == engine.StateQueued {
		b.null()
	} else {
		b.time(in.createdAt)
	}
	b.optText(out.errText)
	// A job due on arrival goes straight into the claim's path; one
	// scheduled for later waits for a claim to promote it.
	b.bool(out.state == engine.StateQueued && !in.runAt.After(in.createdAt))
	b.bool(in.waitIdle)
	b.bool(in.requireAC)
	b.int64(in.debounce)
	b.bool(in.replace)
	b.optJSONText(in.afterJSON)
	b.optInt64(in.baseID)
}

// ended is a job that has just reached a terminal state, as the cancel
// cascade needs it.
type ended struct {
	seq   int64
	id    string
	state engine.State
}

func dependencyError(dep ended) string {
	return fmt.Sprintf("dependency %s ended %s", dep.id, dep.state)
}

// resolveDeps looks up the jobs an After list names. It returns their seqs
// and the first of them, in list order, that ended without succeeding (zero
// when none did). An id that names no job is an error wrapping
// engine.ErrInvalid.
func (c *conn) resolveDeps(after []string) (seqs []int64, failed ended, err error) {
	if len(after) == 0 {
		return nil, ended{}, nil
	}
	st, err := c.stmt(qDepState)
	if err != nil {
		return nil, ended{}, err
	}
	seqs = make([]int64, 0, len(after))
	for _, id := range after {
		b := bind(st)
		b.text(id)
		if b.check() != nil {
			return nil, ended{}, b.err
		}
		if !st.Step() {
			if err := st.Reset(); err != nil {
				return nil, ended{}, fmt.Errorf("read dependency %s: %w", id, err)
			}
			return nil, ended{}, fmt.Errorf("%w: after: unknown job %s", engine.ErrInvalid, id)
		}
		seq, state := st.ColumnInt64(0), columnState(st, 1)
		if err := st.Reset(); err != nil {
			return nil, ended{}, fmt.Errorf("read dependency %s: %w", id, err)
		}
		seqs = append(seqs, seq)
		if failed.id == "" && state.Terminal() && state != engine.StateDone {
			failed = ended{seq: seq, id: id, state: state}
		}
	}
	return seqs, failed, nil
}

// cancelDependents cancels the QUEUED jobs that wait for any of roots, jobs
// that have just ended in a terminal state other than DONE, and then, level
// by level, the QUEUED jobs that wait for those. Each gets the error
// "dependency <id> ended <STATE>" naming the job it waited for directly,
// and finishes at now. It returns them in that order, each level in
// enqueue order, with their attempt history. A job is cancelled once
// however many of its dependencies end: the second finds it no longer
// QUEUED.
func (c *conn) cancelDependents(roots []ended, now time.Time) ([]*engine.Job, error) {
	var out []*engine.Job
	for len(roots) > 0 {
		var next []ended
		for _, root := range roots {
			st, err := c.stmt(qCancelDependents)
			if err != nil {
				return nil, err
			}
			b := bind(st)
			b.text(dependencyError(root))
			b.time(now)
			b.int64(root.seq)
			if b.check() != nil {
				return nil, b.err
			}
			rows, err := c.queryRows(st)
			if err != nil {
				return nil, fmt.Errorf("cancel dependents of %s: %w", root.id, err)
			}
			// RETURNING has no defined order.
			slices.SortFunc(rows, func(a, b jobRow) int { return cmp.Compare(a.seq, b.seq) })
			for _, r := range rows {
				if err := c.loadAttempts(r); err != nil {
					return nil, err
				}
				out = append(out, r.job)
				next = append(next, ended{seq: r.seq, id: r.job.ID, state: engine.StateCancelled})
			}
		}
		roots = next
	}
	return out, nil
}

// subjectGen returns the highest generation seen for a key.
func (c *conn) subjectGen(queue, typ, subject string) (maxGen int64, found bool, err error) {
	st, err := c.stmt(qSubjectGen)
	if err != nil {
		return 0, false, err
	}
	b := bind(st)
	b.text(queue)
	b.text(typ)
	b.text(subject)
	if b.check() != nil {
		return 0, false, b.err
	}
	if st.Step() {
		maxGen, found = st.ColumnInt64(0), true
	}
	if err := st.Reset(); err != nil {
		return 0, false, fmt.Errorf("read subject generation: %w", err)
	}
	return maxGen, found, nil
}

// supersede moves the key's QUEUED jobs below gen to SUPERSEDED.
func (c *conn) supersede(in *newJob, gen int64) ([]ended, error) {
	st, err := c.stmt(qSupersede)
	if err != nil {
		return nil, err
	}
	b := bind(st)
	b.time(in.createdAt)
	b.text(engine.SupersededBy(gen, in.id))
	b.text(in.queue)
	b.text(in.typ)
	b.text(in.subject)
	b.int64(gen)
	if b.check() != nil {
		return nil, b.err
	}
	var jobs []ended
	for st.Step() {
		jobs = append(jobs, ended{seq: st.ColumnInt64(0), id: st.ColumnText(1), state: engine.StateSuperseded})
	}
	if err := st.Reset(); err != nil {
		return nil, fmt.Errorf("supersede older generations: %w", err)
	}
	// RETURNING has no defined order; report the ids in enqueue order.
	slices.SortFunc(jobs, func(a, b ended) int { return cmp.Compare(a.seq, b.seq) })
	return jobs, nil
}

func (c *conn) putSubject(queue, typ, subject string, gen int64) error {
	st, err := c.stmt(qSubjectPut)
	if err != nil {
		return err
	}
	b := bind(st)
	b.text(queue)
	b.text(typ)
	b.text(subject)
	b.int64(gen)
	if b.check() != nil {
		return b.err
	}
	if err := st.Exec(); err != nil {
		return fmt.Errorf("record subject generation: %w", err)
	}
	return nil
}

// Claim starts the next attempt of up to req.Limit due jobs (see
// engine.Store). The returned jobs carry their attempt history.
//
// A QueueLimits or Quota entry of zero or less means no cap, as for
// DefaultQuota; an entry in Quota, even zero, overrides DefaultQuota for its
// queue.
func (s *Store) Claim(ctx context.Context, req engine.ClaimRequest) ([]*engine.Job, error) {
	if err := checkTime("now", req.Now, true); err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	if req.Limit <= 0 {
		return []*engine.Job{}, nil
	}
	// The writer must not read the caller's maps, which the caller may
	// change once it stops waiting.
	req.QueueLimits = maps.Clone(req.QueueLimits)
	req.Quota = maps.Clone(req.Quota)
	var jobs []*engine.Job
	err := s.write(ctx, func(c *conn) (err error) {
		jobs, err = c.claim(&req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	return jobs, nil
}

// queueUse is what a claim knows about one queue while it walks.
type queueUse struct {
	running int64 // RUNNING jobs of all owners before this claim; -1: not read yet
	taken   int   // jobs this claim has taken
}

func (c *conn) claim(req *engine.ClaimRequest) ([]*engine.Job, error) {
	now, limit := req.Now, req.Limit
	if err := c.setDue(qDemote, now); err != nil {
		return nil, fmt.Errorf("demote jobs not yet due: %w", err)
	}
	if err := c.setDue(qPromote, now); err != nil {
		return nil, fmt.Errorf("promote jobs that came due: %w", err)
	}
	scan, err := c.stmt(qClaimScan)
	if err != nil {
		return nil, err
	}
	b := bind(scan)
	b.time(now)
	b.bool(req.Idle)
	b.bool(req.OnAC)
	if b.check() != nil {
		return nil, b.err
	}
	capped := len(req.QueueLimits) > 0 || len(req.Quota) > 0 || req.DefaultQuota > 0
	var queues map[string]*queueUse
	// The candidates are collected before any is updated: changing rows of
	// the index a statement is walking has undefined results in SQLite.
	seqs := make([]int64, 0, min(limit, 64))
	var keys map[engine.Key]struct{}
	for len(seqs) < limit && scan.Step() {
		var use *queueUse
		if capped {
			q := c.name(scan, 1)
			if use = queues[q]; use == nil {
				if queues == nil {
					queues = make(map[string]*queueUse)
				}
				use = &queueUse{running: -1}
				queues[q] = use
			}
			quota, listed := req.Quota[q]
			if !listed {
				quota = req.DefaultQuota
			}
			if quota > 0 && use.taken >= quota {
				continue
			}
			if ceiling := req.QueueLimits[q]; ceiling > 0 {
				if use.running < 0 {
					if use.running, err = c.queueRunning(q); err != nil {
						_ = scan.Reset()
						return nil, err
					}
				}
				if use.running+int64(use.taken) >= int64(ceiling) {
					continue
				}
			}
		}
		if scan.ColumnType(3) != sqlite3.NULL {
			// Supersede leaves at most one QUEUED job per key, but a claim
			// must not start two of one key even if that ever failed to
			// hold.
			k := engine.Key{Queue: c.name(scan, 1), Type: c.name(scan, 2), Subject: scan.ColumnText(3)}
			if keys == nil {
				keys = make(map[engine.Key]struct{})
			}
			if _, dup := keys[k]; dup {
				continue
			}
			keys[k] = struct{}{}
		}
		if use != nil {
			use.taken++
		}
		seqs = append(seqs, scan.ColumnInt64(0))
	}
	if err := scan.Reset(); err != nil {
		return nil, fmt.Errorf("find due jobs: %w", err)
	}

	jobs := make([]*engine.Job, 0, len(seqs))
	for _, seq := range seqs {
		st, err := c.stmt(qClaimJob)
		if err != nil {
			return nil, err
		}
		b := bind(st)
		b.time(now)
		b.optText(req.Owner)
		b.int64(seq)
		if b.check() != nil {
			return nil, b.err
		}
		rows, err := c.queryRows(st)
		if err != nil {
			return nil, fmt.Errorf("start job: %w", err)
		}
		if len(rows) == 0 {
			continue
		}
		r := rows[0]
		if err := c.insertAttempt(r, now); err != nil {
			return nil, fmt.Errorf("start job %s: %w", r.job.ID, err)
		}
		if err := c.loadAttempts(r); err != nil {
			return nil, err
		}
		if r.envID != 0 {
			// The job is about to run: it needs the variables too.
			if r.job.BaseEnv, err = c.envFull(r.envID); err != nil {
				return nil, fmt.Errorf("start job %s: read its environment: %w", r.job.ID, err)
			}
		}
		jobs = append(jobs, r.job)
	}
	return jobs, nil
}

// queueRunning reads how many jobs of a queue are RUNNING, for every owner,
// from the counters the triggers keep.
func (c *conn) queueRunning(queue string) (int64, error) {
	st, err := c.stmt(qQueueRunning)
	if err != nil {
		return 0, err
	}
	b := bind(st)
	b.text(queue)
	if b.check() != nil {
		return 0, b.err
	}
	var n int64
	if st.Step() {
		n = st.ColumnInt64(0)
	}
	if err := st.Reset(); err != nil {
		return 0, fmt.Errorf("count running jobs of queue %s: %w", queue, err)
	}
	return n, nil
}

// setDue runs qDemote or qPromote for now, so that the due flags match now
// before a claim walks the due jobs.
func (c *conn) setDue(id stmtID, now time.Time) error {
	st, err := c.stmt(id)
	if err != nil {
		return err
	}
	b := bind(st)
	b.time(now)
	if b.check() != nil {
		return b.err
	}
	return st.Exec()
}

// insertAttempt records the attempt a claim has just started. Its run is
// the job's runs counter, which the claim has just incremented; its number
// n goes on from the attempts of earlier series (see qInsertAttempt).
func (c *conn) insertAttempt(r jobRow, now time.Time) error {
	st, err := c.stmt(qInsertAttempt)
	if err != nil {
		return err
	}
	b := bind(st)
	b.int64(r.seq)
	b.int64(r.runs)
	b.int64(int64(r.job.Attempt))
	b.time(now)
	if b.check() != nil {
		return b.err
	}
	return st.Exec()
}

// current is the state of a job that a completion or MarkStarted checks.
type current struct {
	seq        int64
	state      engine.State
	attempt    int
	runs       int64
	generation int64
	maxGen     int64 // 0 when the job has no subject
}

func (c *conn) current(id string) (current, error) {
	st, err := c.stmt(qJobForUpdate)
	if err != nil {
		return current{}, err
	}
	b := bind(st)
	b.text(id)
	if b.check() != nil {
		return current{}, b.err
	}
	if !st.Step() {
		if err := st.Reset(); err != nil {
			return current{}, fmt.Errorf("read job: %w", err)
		}
		return current{}, engine.ErrNotFound
	}
	cur := current{
		seq:        st.ColumnInt64(0),
		state:      columnState(st, 1),
		attempt:    st.ColumnInt(2),
		runs:       st.ColumnInt64(3),
		generation: st.ColumnInt64(4),
		maxGen:     st.ColumnInt64(5),
	}
	if err := st.Reset(); err != nil {
		return current{}, fmt.Errorf("read job: %w", err)
	}
	return cur, nil
}

// MarkStarted records the process of a running attempt. It returns an error
// wrapping engine.ErrStale unless attempt is the job's current RUNNING
// attempt, and engine.ErrNotFound for an unknown id.
func (s *Store) MarkStarted(ctx context.Context, id string, attempt int, pid int, pidStart int64) error {
	err := s.write(ctx, func(c *conn) error { return c.markStarted(id, attempt, pid, pidStart) })
	if err != nil {
		return fmt.Errorf("mark job %s attempt %d started: %w", id, attempt, err)
	}
	return nil
}

func (c *conn) markStarted(id string, attempt int, pid int, pidStart int64) error {
	cur, err := c.current(id)
	if err != nil {
		return err
	}
	if cur.state != engine.StateRunning || cur.attempt != attempt {
		return fmt.Errorf("%w: job is %s at attempt %d", engine.ErrStale, cur.state, cur.attempt)
	}
	st, err := c.stmt(qMarkStarted)
	if err != nil {
		return err
	}
	b := bind(st)
	b.optInt64(int64(pid))
	b.optInt64(pidStart)
	b.int64(cur.seq)
	b.int64(cur.runs)
	if b.check() != nil {
		return b.err
	}
	return st.Exec()
}

// Complete ends a running attempt (see engine.Store). c.FinishedAt is
// required, and so is c.RunAt for a retry. A retry that finds a newer
// generation of its key becomes SUPERSEDED; Refund still gives the attempt
// back then. A job that ends FAILED, CANCELLED or SUPERSEDED takes its
// QUEUED dependents with it, cancelled at c.FinishedAt.
func (s *Store) Complete(ctx context.Context, c engine.Completion) (engine.CompleteResult, error) {
	if err := checkCompletion(&c); err != nil {
		return engine.CompleteResult{}, fmt.Errorf("complete job %s attempt %d: %w", c.ID, c.Attempt, err)
	}
	var res engine.CompleteResult
	err := s.write(ctx, func(w *conn) (err error) {
		res, err = w.complete(&c)
		return err
	})
	if err != nil {
		return engine.CompleteResult{}, fmt.Errorf("complete job %s attempt %d: %w", c.ID, c.Attempt, err)
	}
	return res, nil
}

func checkCompletion(c *engine.Completion) error {
	if err := checkTime("finished_at", c.FinishedAt, true); err != nil {
		return err
	}
	if err := checkTime("run_at", c.RunAt, c.State == engine.StateQueued); err != nil {
		return err
	}
	if c.Outcome == "" || c.Outcome == engine.OutcomeRunning {
		return fmt.Errorf("%w: a completion needs the attempt's outcome, got %q", engine.ErrInvalid, c.Outcome)
	}
	if c.ExitCode != nil {
		v := *c.ExitCode
		c.ExitCode = &v // the writer must not share the caller's int
	}
	return nil
}

func (w *conn) complete(c *engine.Completion) (engine.CompleteResult, error) {
	r, err := w.completeJob(c)
	if err != nil {
		return engine.CompleteResult{}, err
	}
	res := engine.CompleteResult{Job: r.job}
	if st := r.job.State; st.Terminal() && st != engine.StateDone {
		root := ended{seq: r.seq, id: r.job.ID, state: st}
		if res.Cancelled, err = w.cancelDependents([]ended{root}, c.FinishedAt); err != nil {
			return engine.CompleteResult{}, err
		}
	}
	return res, nil
}

func (w *conn) completeJob(c *engine.Completion) (jobRow, error) {
	var none jobRow
	cur, err := w.current(c.ID)
	if err != nil {
		return none, err
	}
	if cur.state != engine.StateRunning || cur.attempt != c.Attempt {
		return none, fmt.Errorf("%w: job is %s at attempt %d", engine.ErrStale, cur.state, cur.attempt)
	}
	target, errText := c.State, c.Reason
	switch {
	case target == engine.StateDone:
		errText = ""
	case target == engine.StateQueued && cur.maxGen > cur.generation:
		target = engine.StateSuperseded
		errText = fmt.Sprintf("superseded by generation %d before its retry", cur.maxGen)
		if c.Reason != "" {
			errText += " (last attempt: " + c.Reason + ")"
		}
	}
	if err := engine.CheckTransition(cur.state, target); err != nil {
		return none, err
	}

	st, err := w.stmt(qFinishAttempt)
	if err != nil {
		return none, err
	}
	b := bind(st)
	b.time(c.FinishedAt)
	b.text(string(c.Outcome))
	b.optText(c.Reason)
	b.optInt(c.ExitCode)
	b.int64(cur.seq)
	b.int64(cur.runs)
	if b.check() != nil {
		return none, b.err
	}
	if err := st.Exec(); err != nil {
		return none, fmt.Errorf("end attempt: %w", err)
	}

	if st, err = w.stmt(qCompleteJob); err != nil {
		return none, err
	}
	b = bind(st)
	b.text(string(target))
	b.bool(c.Refund && cur.attempt > 0)
	b.optText(errText)
	b.optInt(c.ExitCode)
	if target == engine.StateQueued {
		b.null() // a queued job has not finished
		b.time(c.RunAt)
		// An immediate retry or refund is due at once; a backed-off one
		// waits for a claim to promote it.
		b.bool(!c.RunAt.After(c.FinishedAt))
	} else {
		b.time(c.FinishedAt)
		b.null()      // keep run_at
		b.bool(false) // due means nothing outside QUEUED
	}
	b.int64(cur.seq)
	if b.check() != nil {
		return none, b.err
	}
	rows, err := w.queryRows(st)
	if err != nil {
		return none, fmt.Errorf("update job: %w", err)
	}
	if len(rows) != 1 {
		return none, fmt.Errorf("update job: %w", engine.ErrNotFound)
	}
	if err := w.loadAttempts(rows[0]); err != nil {
		return none, err
	}
	return rows[0], nil
}

// CancelQueued cancels the listed jobs that are still QUEUED and returns
// them, followed by their QUEUED dependents, which it cancels too (see
// cancelDependents); unknown ids and jobs in other states are left alone.
// A dependent that is itself listed counts as listed: it gets reason, not
// the dependency's error.
func (s *Store) CancelQueued(ctx context.Context, ids []string, reason string, now time.Time) ([]*engine.Job, error) {
	if err := checkTime("now", now, true); err != nil {
		return nil, fmt.Errorf("cancel queued jobs: %w", err)
	}
	if len(ids) == 0 {
		return []*engine.Job{}, nil
	}
	ids = slices.Clone(ids)
	var jobs []*engine.Job
	err := s.write(ctx, func(c *conn) error {
		jobs = make([]*engine.Job, 0, len(ids))
		var roots []ended
		for _, id := range ids {
			st, err := c.stmt(qCancelQueued)
			if err != nil {
				return err
			}
			b := bind(st)
			b.optText(reason)
			b.time(now)
			b.text(id)
			if b.check() != nil {
				return b.err
			}
			rows, err := c.queryRows(st)
			if err != nil {
				return fmt.Errorf("cancel job %s: %w", id, err)
			}
			for _, r := range rows {
				if err := c.loadAttempts(r); err != nil {
					return err
				}
				jobs = append(jobs, r.job)
				roots = append(roots, ended{seq: r.seq, id: r.job.ID, state: engine.StateCancelled})
			}
		}
		deps, err := c.cancelDependents(roots, now)
		jobs = append(jobs, deps...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel queued jobs: %w", err)
	}
	return jobs, nil
}

// ExpireDue moves QUEUED jobs whose TTL has passed at now to EXPIRED and
// returns them, followed by their QUEUED dependents, which it cancels.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]*engine.Job, error) {
	if err := checkTime("now", now, true); err != nil {
		return nil, fmt.Errorf("expire jobs: %w", err)
	}
	var jobs []*engine.Job
	err := s.write(ctx, func(c *conn) error {
		scan, err := c.stmt(qExpireScan)
		if err != nil {
			return err
		}
		b := bind(scan)
		b.time(now)
		if b.check() != nil {
			return b.err
		}
		type due struct{ seq, ttl int64 }
		var dues []due
		for scan.Step() {
			dues = append(dues, due{scan.ColumnInt64(0), scan.ColumnInt64(1)})
		}
		if err := scan.Reset(); err != nil {
			return fmt.Errorf("find expired jobs: %w", err)
		}
		jobs = make([]*engine.Job, 0, len(dues))
		var roots []ended
		for _, d := range dues {
			st, err := c.stmt(qExpireJob)
			if err != nil {
				return err
			}
			b := bind(st)
			b.text(fmt.Sprintf("ttl of %s passed before the job started", time.Duration(d.ttl)))
			b.time(now)
			b.int64(d.seq)
			if b.check() != nil {
				return b.err
			}
			rows, err := c.queryRows(st)
			if err != nil {
				return fmt.Errorf("expire job: %w", err)
			}
			for _, r := range rows {
				if err := c.loadAttempts(r); err != nil {
					return err
				}
				jobs = append(jobs, r.job)
				roots = append(roots, ended{seq: r.seq, id: r.job.ID, state: engine.StateExpired})
			}
		}
		deps, err := c.cancelDependents(roots, now)
		jobs = append(jobs, deps...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire jobs: %w", err)
	}
	return jobs, nil
}

// AppendLog adds lines to a job's log and drops the oldest lines while the
// log holds more than maxBytes bytes; maxBytes <= 0 means no bound. Lines
// at or below the log's last Seq are ignored, so an append retried after a
// timeout neither duplicates output nor brings back dropped lines; a Seq gap
// before the first new line counts those lines as dropped (see appendLog).
func (s *Store) AppendLog(ctx context.Context, id string, lines []engine.LogLine, maxBytes int64) error {
	if len(lines) == 0 {
		return nil
	}
	for i := range lines {
		if err := checkTime("log time", lines[i].Time, false); err != nil {
			return fmt.Errorf("append log of job %s: %w", id, err)
		}
	}
	lines = slices.Clone(lines)
	err := s.write(ctx, func(c *conn) error { return c.appendLog(id, lines, maxBytes) })
	if err != nil {
		return fmt.Errorf("append log of job %s: %w", id, err)
	}
	return nil
}

func (c *conn) appendLog(id string, lines []engine.LogLine, maxBytes int64) error {
	ls, err := c.readLogState(id)
	if err != nil {
		return err
	}
	// hadNote: the log's oldest row is the note, not output. It was written
	// at the seq of the newest line dropped, after every row at or below it
	// was deleted, and rows added since are newer than last.
	hadNote := ls.dropped > 0

	// lines is AppendLog's clone: filtering and sorting it in place is safe,
	// and gives the same lines if the writer runs the op again.
	fresh := slices.DeleteFunc(lines, func(l engine.LogLine) bool { return l.Seq <= ls.last })
	if len(fresh) == 0 {
		return nil
	}
	bySeq := func(a, b engine.LogLine) int { return cmp.Compare(a.Seq, b.Seq) }
	if !slices.IsSortedFunc(fresh, bySeq) {
		slices.SortStableFunc(fresh, bySeq)
	}
	// Seqs are consecutive: lines missing before the first new one were
	// dropped before they reached the store (the engine bounds the output it
	// holds). The log keeps its newest lines, so every stored line, older
	// than those, goes too.
	var gapCut int64
	if first := fresh[0].Seq; first > ls.last+1 {
		ls.dropped += first - ls.last - 1
		gapCut = first - 1
	}
	added, err := c.insertLogLines(ls.seq, fresh)
	if err != nil {
		return err
	}
	ls.total += added
	ls.last = fresh[len(fresh)-1].Seq
	if gapCut > 0 || ls.over(maxBytes) {
		if err := c.trimLog(&ls, hadNote, gapCut, maxBytes, fresh[len(fresh)-1]); err != nil {
			return err
		}
	}
	return c.writeLogState(ls)
}

// logState is a job's log bookkeeping: the job's seq, the bytes its stored
// output lines count (text plus LogLineOverhead each, the note left out),
// the seq of its newest line, and how many lines it dropped in all.
type logState struct {
	seq, total, last, dropped int64
}

func (c *conn) readLogState(id string) (logState, error) {
	st, err := c.stmt(qJobLogState)
	if err != nil {
		return logState{}, err
	}
	b := bind(st)
	b.text(id)
	if b.check() != nil {
		return logState{}, b.err
	}
	if !st.Step() {
		if err := st.Reset(); err != nil {
			return logState{}, err
		}
		return logState{}, engine.ErrNotFound
	}
	ls := logState{seq: st.ColumnInt64(0), total: st.ColumnInt64(1), last: st.ColumnInt64(2), dropped: st.ColumnInt64(3)}
	return ls, st.Reset()
}

// over reports that the output lines and the note a log that dropped lines
// carries do not fit in maxBytes (0: no bound).
func (ls *logState) over(maxBytes int64) bool {
	if maxBytes <= 0 {
		return false
	}
	total := ls.total
	if ls.dropped > 0 {
		total += logNoteCost(ls.dropped, maxBytes)
	}
	return total > maxBytes
}

// insertLogLines stores lines, sorted by seq and all newer than the log's
// newest, and returns the bytes they count.
func (c *conn) insertLogLines(jobSeq int64, lines []engine.LogLine) (int64, error) {
	ins, err := c.stmt(qInsertLog)
	if err != nil {
		return 0, err
	}
	var added int64
	for i := range lines {
		l := &lines[i]
		b := bind(ins)
		b.int64(jobSeq)
		b.int64(l.Seq)
		b.time(l.Time)
		b.int64(int64(l.Attempt))
		b.text(l.Stream)
		b.text(l.Text)
		if b.check() != nil {
			return 0, b.err
		}
		if err := ins.Exec(); err != nil {
			return 0, fmt.Errorf("insert log line %d: %w", l.Seq, err)
		}
		if c.db.Changes() > 0 {
			added += int64(len(l.Text)) + engine.LogLineOverhead
		}
	}
	return added, nil
}

// trimLog drops the oldest lines, everything up to gapCut and then as many
// as the bound needs, in one range delete, and writes the one note in
// place of the newest dropped line. The note carries the time and attempt
// of the oldest line kept, or of newest when none is.
func (c *conn) trimLog(ls *logState, hadNote bool, gapCut, maxBytes int64, newest engine.LogLine) error {
	sizes, err := c.stmt(qLogSizes)
	if err != nil {
		return err
	}
	b := bind(sizes)
	b.int64(ls.seq)
	if b.check() != nil {
		return b.err
	}
	var cut int64
	noteTime, noteAttempt := newest.Time, newest.Attempt
	skipNote := hadNote
	for sizes.Step() {
		if skipNote {
			skipNote = false // its bytes are not in total
			continue
		}
		s := sizes.ColumnInt64(0)
		if s > gapCut && !ls.over(maxBytes) {
			noteTime, noteAttempt = columnTime(sizes, 2), sizes.ColumnInt(3)
			break
		}
		cut = s
		ls.total -= sizes.ColumnInt64(1)
		ls.dropped++
	}
	if err := sizes.Reset(); err != nil {
		return fmt.Errorf("measure log: %w", err)
	}
	if cut = max(cut, gapCut); cut == 0 {
		return nil
	}
	// The range delete takes the old note too: it is older than cut.
	trim, err := c.stmt(qTrimLog)
	if err != nil {
		return err
	}
	b = bind(trim)
	b.int64(ls.seq)
	b.int64(cut)
	if b.check() != nil {
		return b.err
	}
	if err := trim.Exec(); err != nil {
		return fmt.Errorf("trim log: %w", err)
	}
	ins, err := c.stmt(qInsertLog)
	if err != nil {
		return err
	}
	b = bind(ins)
	b.int64(ls.seq)
	b.int64(cut)
	b.time(noteTime)
	b.int64(int64(noteAttempt))
	b.text("stq")
	b.text(logNote(ls.dropped, maxBytes))
	if b.check() != nil {
		return b.err
	}
	if err := ins.Exec(); err != nil {
		return fmt.Errorf("note dropped log lines: %w", err)
	}
	return nil
}

func (c *conn) writeLogState(ls logState) error {
	upd, err := c.stmt(qSetLogState)
	if err != nil {
		return err
	}
	b := bind(upd)
	b.int64(ls.total)
	b.bool(ls.dropped > 0)
	b.int64(ls.last)
	b.int64(ls.seq)
	b.int64(ls.dropped)
	if b.check() != nil {
		return b.err
	}
	return upd.Exec()
}

// logNote is the log line that stands where dropped lines were. It carries
// no "[stq]" of its own: readers show the stream.
func logNote(dropped, maxBytes int64) string {
	what := "lines"
	if dropped == 1 {
		what = "line"
	}
	if maxBytes <= 0 {
		return fmt.Sprintf("%d %s dropped", dropped, what)
	}
	return fmt.Sprintf("%d %s dropped: output over the %d-byte log limit", dropped, what, maxBytes)
}

// logNoteCost is what the note costs against the log's bound; log_bytes
// counts only output, so the note's room is kept free of it.
func logNoteCost(dropped, maxBytes int64) int64 {
	return int64(len(logNote(dropped, maxBytes))) + engine.LogLineOverhead
}
