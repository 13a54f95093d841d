package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// newJob is an enqueue with everything encoded up front, before the
// transaction starts.
type newJob struct {
	job                    *engine.Job
	subject                *string
	command, env           *string
	cwd                    *string
	afterJSON              *string
	payload                []byte
	runAt, createdAt       int64
	expiresAt              int64 // 0: no TTL
	deadline, ttl, backoff int64
	envHash                []byte
	envID                  int64 // set in the transaction
	held                   bool  // its queue is paused (see held.go)
}

// due says whether the job is stored due (see due.go).
func (in *newJob) due(out *enqueued) bool {
	return out.state == engine.StateQueued && storedDue(in.runAt, in.createdAt)
}

// enqueued is what the transaction decided about a new job.
type enqueued struct {
	generation int64
	state      engine.State
	errText    string
	superseded []string
	cancelled  []*engine.Job
}

// Enqueue stores a new job and applies the supersede and dependency rules
// (see engine.Store and the SQLite store, whose rules this store mirrors).
func (s *Store) Enqueue(ctx context.Context, job *engine.Job, explicitGen bool) (engine.EnqueueResult, error) {
	in, err := s.encode(job)
	if err != nil {
		return engine.EnqueueResult{}, fmt.Errorf("enqueue: %w", err)
	}
	var out enqueued
	if in.plain() {
		out = enqueued{generation: job.Generation, state: engine.StateQueued}
		err = s.enqueueGrouped(ctx, &in)
	} else {
		err = s.write(ctx, func(tx pgx.Tx) error {
			out = enqueued{}
			return s.enqueue(ctx, tx, &in, explicitGen, &out)
		})
	}
	if err != nil {
		return engine.EnqueueResult{}, fmt.Errorf("enqueue: %w", err)
	}
	s.announce(enqueueNotices(&in, &out)...)
	return storedResult(&in, &out), nil
}

func encodeJob(j *engine.Job) (newJob, error) {
	if err := j.CheckNew(); err != nil {
		return newJob{}, err
	}
	in := newJob{
		job: j, subject: optText(j.Subject), cwd: optText(j.Cwd),
		payload: slices.Clone([]byte(j.Payload)),
		runAt:   j.RunAt.UnixNano(), createdAt: j.CreatedAt.UnixNano(),
		deadline: int64(j.Deadline), ttl: int64(j.TTL), backoff: int64(j.Backoff),
	}
	if len(in.payload) == 0 {
		in.payload = nil
	}
	for _, f := range []struct {
		name string
		v    any
		set  bool
		dst  **string
	}{
		{"command", j.Command, len(j.Command) > 0, &in.command},
		{"env", j.Env, len(j.Env) > 0, &in.env},
		{"after", j.After, len(j.After) > 0, &in.afterJSON},
	} {
		if !f.set {
			continue
		}
		b, err := json.Marshal(f.v)
		if err != nil {
			return newJob{}, fmt.Errorf("encode %s: %w", f.name, err)
		}
		s := string(b)
		*f.dst = &s
	}
	var err error
	if in.envHash, err = checkEnv(j.BaseEnv); err != nil {
		return newJob{}, err
	}
	if in.ttl > 0 {
		in.expiresAt = in.createdAt + in.ttl
		if in.expiresAt < in.createdAt { // overflow: a TTL beyond 2262 never expires in practice
			in.expiresAt = math.MaxInt64
		}
	}
	return in, nil
}

// enqueue is Enqueue inside tx. The key's subjects row is locked first and
// held to the commit: every enqueue of the key, on any daemon, waits for
// this one, so generations are unique and consecutive and supersede sees
// every older job.
func (s *Store) enqueue(ctx context.Context, tx pgx.Tx, in *newJob, explicitGen bool, out *enqueued) error {
	j := in.job
	out.generation = j.Generation
	out.state = engine.StateQueued
	deps, failed, err := resolveDeps(ctx, tx, j.After)
	if err != nil {
		return err
	}
	if j.Subject != "" {
		var maxGen *int64
		err := tx.QueryRow(ctx, `INSERT INTO subjects (queue, type, subject, max_gen) VALUES ($1, $2, $3, NULL)
			ON CONFLICT (queue, type, subject) DO UPDATE SET max_gen = subjects.max_gen
			RETURNING max_gen`, j.Queue, j.Type, j.Subject).Scan(&maxGen)
		if err != nil {
			return fmt.Errorf("lock subject: %w", err)
		}
		switch {
		case !explicitGen:
			out.generation = 1
			if maxGen != nil {
				out.generation = *maxGen + 1
			}
		case maxGen != nil && j.Generation <= *maxGen:
			out.state = engine.StateSuperseded
			out.errText = fmt.Sprintf("superseded on arrival: generation %d already seen", *maxGen)
		}
		if out.state == engine.StateQueued {
			if err := s.supersede(ctx, tx, in, out); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE subjects SET max_gen = greatest(coalesce(max_gen, $4), $4)
				WHERE queue = $1 AND type = $2 AND subject = $3`, j.Queue, j.Type, j.Subject, out.generation)
			if err != nil {
				return fmt.Errorf("record subject generation: %w", err)
			}
		}
	}
	if out.state == engine.StateQueued && failed.id != "" {
		out.state = engine.StateCancelled
		out.errText = engine.DependencyError(failed.id, failed.state)
	}
	if j.BaseEnv != nil {
		if in.envID, err = refEnv(ctx, tx, j.BaseEnv, in.envHash, 1); err != nil {
			return err
		}
	}
	var seq int64
	err = tx.QueryRow(ctx, insertJob+` RETURNING seq`, insertArgs(in, out)...).Scan(&seq)
	if err != nil {
		if isUnique(err) {
			return fmt.Errorf("%w: a job with id %q already exists", engine.ErrInvalid, j.ID)
		}
		return fmt.Errorf("insert job: %w", err)
	}
	if len(deps) > 0 {
		// Kept whatever the job's state, so that a retry of a job cancelled
		// on arrival still waits for its dependencies.
		_, err := tx.Exec(ctx, `INSERT INTO job_deps (job_seq, dep_seq) SELECT $1, d FROM unnest($2::bigint[]) AS d
			ON CONFLICT DO NOTHING`, seq, deps)
		if err != nil {
			return fmt.Errorf("record dependencies: %w", err)
		}
	}
	return nil
}

// newJobCols are a new job's columns, in writeJobRow's order: its own
// list, read off it once.
var newJobCols = func() []string {
	var names colNames
	writeJobRow(&names, &newJob{job: &engine.Job{}}, &enqueued{})
	return names
}()

// insertJob inserts one new job, its values in newJobCols order.
var insertJob = func() string {
	params := make([]string, len(newJobCols))
	for i := range params {
		params[i] = "$" + strconv.Itoa(i+1)
	}
	return "INSERT INTO jobs (" + strings.Join(newJobCols, ", ") + ") VALUES (" + strings.Join(params, ", ") + ")"
}()

func insertArgs(in *newJob, out *enqueued) []any {
	a := make(argRow, 0, len(newJobCols))
	writeJobRow(&a, in, out)
	return a
}

// columnWriter takes a row's values one column at a time, each named and
// in the form its column's type stores.
type columnWriter interface {
	text(col, v string)
	optText(col string, v *string) // nil: NULL
	int8(col string, v int64)
	optInt8(col string, v *int64) // nil: NULL
	int4(col string, v int)
	bool(col string, v bool)
	bytea(col string, v []byte) // nil: NULL
}

// writeJobRow writes the row of a new job: the one place that says which
// columns the INSERT (insertArgs) and the bulk COPY (copyRows) fill, in
// what order, and with what.
func writeJobRow(w columnWriter, in *newJob, out *enqueued) {
	j := in.job
	var expires, finished, envID *int64
	if in.expiresAt != 0 && out.state == engine.StateQueued {
		expires = &in.expiresAt
	}
	if out.state != engine.StateQueued {
		finished = &in.createdAt
	}
	if in.envID != 0 {
		envID = &in.envID
	}
	w.text("id", j.ID)
	w.text("queue", j.Queue)
	w.text("type", j.Type)
	w.optText("subject", in.subject)
	w.int8("generation", out.generation)
	w.int4("priority", j.Priority)
	w.text("state", string(out.state))
	w.int4("max_attempts", j.MaxAttempts)
	w.bytea("payload", in.payload)
	w.optText("command", in.command)
	w.optText("cwd", in.cwd)
	w.optText("env", in.env)
	w.int8("run_at", in.runAt)
	w.int8("deadline", in.deadline)
	w.int8("ttl", in.ttl)
	w.int8("backoff", in.backoff)
	w.optInt8("expires_at", expires)
	w.int8("created_at", in.createdAt)
	w.optInt8("finished_at", finished)
	w.optText("error", optText(out.errText))
	w.bool("wait_idle", j.WaitIdle)
	w.bool("require_charging", j.RequireCharging)
	w.int8("debounce", int64(j.Debounce))
	w.bool("replace_running", j.Replace)
	w.optText("after_ids", in.afterJSON)
	w.optInt8("env_id", envID)
	w.bool("due", in.due(out))
	w.bool("held", in.held && out.state == engine.StateQueued)
}

// colNames collects a row's column names (newJobCols).
type colNames []string

func (c *colNames) text(col, _ string)            { *c = append(*c, col) }
func (c *colNames) optText(col string, _ *string) { *c = append(*c, col) }
func (c *colNames) int8(col string, _ int64)      { *c = append(*c, col) }
func (c *colNames) optInt8(col string, _ *int64)  { *c = append(*c, col) }
func (c *colNames) int4(col string, _ int)        { *c = append(*c, col) }
func (c *colNames) bool(col string, _ bool)       { *c = append(*c, col) }
func (c *colNames) bytea(col string, _ []byte)    { *c = append(*c, col) }

// argRow collects a row's values as statement arguments; pgx encodes them
// by the parameters' types.
type argRow []any

func (a *argRow) text(_, v string)            { *a = append(*a, v) }
func (a *argRow) optText(_ string, v *string) { *a = append(*a, v) }
func (a *argRow) int8(_ string, v int64)      { *a = append(*a, v) }
func (a *argRow) optInt8(_ string, v *int64)  { *a = append(*a, v) }
func (a *argRow) int4(_ string, v int)        { *a = append(*a, v) }
func (a *argRow) bool(_ string, v bool)       { *a = append(*a, v) }
func (a *argRow) bytea(_ string, v []byte)    { *a = append(*a, v) }

// supersede moves the key's QUEUED jobs below the new generation to
// SUPERSEDED and cancels their dependents.
func (s *Store) supersede(ctx context.Context, tx pgx.Tx, in *newJob, out *enqueued) error {
	j := in.job
	rows, err := tx.Query(ctx, `UPDATE jobs SET state = 'SUPERSEDED', finished_at = $1, error = $2
		WHERE queue = $3 AND type = $4 AND subject = $5 AND state = 'QUEUED' AND generation < $6
		RETURNING seq, id`, in.createdAt, engine.SupersededBy(out.generation, j.ID), j.Queue, j.Type, j.Subject, out.generation)
	if err != nil {
		return fmt.Errorf("supersede older generations: %w", err)
	}
	roots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ended, error) {
		e := ended{state: engine.StateSuperseded}
		return e, r.Scan(&e.seq, &e.id)
	})
	if err != nil {
		return fmt.Errorf("supersede older generations: %w", err)
	}
	// RETURNING has no defined order; report the ids in enqueue order.
	slices.SortFunc(roots, func(a, b ended) int { return cmpInt(a.seq, b.seq) })
	for _, r := range roots {
		out.superseded = append(out.superseded, r.id)
	}
	out.cancelled, err = s.cancelDependents(ctx, tx, roots, in.createdAt)
	return err
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// enqueueNotices are the notices a stored job sends (see watch.go).
func enqueueNotices(in *newJob, out *enqueued) []engine.Notice {
	if out.state != engine.StateQueued {
		return nil
	}
	j := in.job
	ns := []engine.Notice{{Kind: engine.NoticeEnqueue, Queue: j.Queue, Due: j.Due()}}
	if j.Replace && j.Subject != "" {
		ns = append(ns, engine.Notice{Kind: engine.NoticeReplace, Queue: j.Queue, ID: j.ID})
	}
	return ns
}

// storedResult is the EnqueueResult of a stored job: the definition as
// given, with what the transaction decided.
func storedResult(in *newJob, out *enqueued) engine.EnqueueResult {
	stored := in.job.Stored(json.RawMessage(in.payload), out.generation, out.state, out.errText)
	return engine.EnqueueResult{Job: stored, Superseded: out.superseded, Cancelled: out.cancelled}
}

// ended is a job that has just reached a terminal state, as the cancel
// cascade needs it.
type ended struct {
	seq   int64
	id    string
	state engine.State
}

// resolveDeps looks up the jobs an After list names, in list order, and
// returns their seqs and the first that ended without succeeding. FOR
// SHARE waits for a dependency's completion in progress and holds off the
// next until this enqueue commits: either the completion's cancel cascade
// sees this job's job_deps rows, or this enqueue sees the dependency's
// end. Without it a job could wait for good on a dependency that failed.
func resolveDeps(ctx context.Context, tx pgx.Tx, after []string) ([]int64, ended, error) {
	if len(after) == 0 {
		return nil, ended{}, nil
	}
	rows, err := tx.Query(ctx, `SELECT id, seq, state FROM jobs WHERE id = ANY($1) ORDER BY seq FOR SHARE`, after)
	if err != nil {
		return nil, ended{}, fmt.Errorf("read dependencies: %w", err)
	}
	found := make(map[string]ended, len(after))
	for rows.Next() {
		var e ended
		var st string
		if err := rows.Scan(&e.id, &e.seq, &st); err != nil {
			rows.Close()
			return nil, ended{}, fmt.Errorf("read dependencies: %w", err)
		}
		e.state = engine.State(st)
		found[e.id] = e
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, ended{}, fmt.Errorf("read dependencies: %w", err)
	}
	var failed ended
	seqs := make([]int64, 0, len(after))
	for _, id := range after {
		e, ok := found[id]
		if !ok {
			return nil, ended{}, fmt.Errorf("%w: after: unknown job %s", engine.ErrInvalid, id)
		}
		seqs = append(seqs, e.seq)
		if failed.id == "" && e.state.Terminal() && e.state != engine.StateDone {
			failed = e
		}
	}
	return seqs, failed, nil
}

// cancelDependents cancels the QUEUED jobs that wait for any of roots, and
// level by level the QUEUED jobs that wait for those, as the SQLite store
// does; each level in enqueue order, with attempt history.
func (s *Store) cancelDependents(ctx context.Context, tx pgx.Tx, roots []ended, now int64) ([]*engine.Job, error) {
	var out []*engine.Job
	for len(roots) > 0 {
		var next []ended
		for _, root := range roots {
			rows, jobs, err := s.queryJobs(ctx, tx, true, false, `UPDATE jobs SET state = 'CANCELLED', error = $1, finished_at = $2
				WHERE state = 'QUEUED' AND seq IN (SELECT job_seq FROM job_deps WHERE dep_seq = $3)
				RETURNING `+jobCols, engine.DependencyError(root.id, root.state), now, root.seq)
			if err != nil {
				return nil, fmt.Errorf("cancel dependents of %s: %w", root.id, err)
			}
			idx := make([]int, len(rows))
			for i := range idx {
				idx[i] = i
			}
			slices.SortFunc(idx, func(a, b int) int { return cmpInt(rows[a].seq, rows[b].seq) })
			for _, i := range idx {
				out = append(out, jobs[i])
				next = append(next, ended{seq: rows[i].seq, id: jobs[i].ID, state: engine.StateCancelled})
			}
		}
		roots = next
	}
	return out, nil
}
