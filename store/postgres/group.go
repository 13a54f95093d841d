package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"stq/engine"
)

// Group commit of plain enqueues. Storing a plain job (no supersede key,
// no dependencies) is its row and, if it has a base environment, one more
// reference to that, so the plain jobs of concurrent Enqueue calls can
// share one statement: the store's inserters each take the calls waiting when they get free and
// insert all their jobs with one autocommitted multi-row INSERT, one
// commit and one WAL flush for the lot, and answer each call after it. On
// PostgreSQL a commit costs a WAL flush and a round trip whatever it
// holds; one per job held 16 enqueuing clients of a daemon to a fraction
// of what its pool's connections could commit in rows.
//
// Nothing waits to form a group: an inserter that finds one call takes
// it alone, so an idle store answers as fast as before. Groups form only
// while every inserter is busy, and then hold what arrived meanwhile.
//
// A group's INSERT is one statement: it stores all its jobs or none. When
// the server refuses it (a duplicate id, say), each job of the group is
// stored again on its own, so each caller gets the outcome and the error
// its job gets alone; one refused job never fails another.
//
// A group's statement takes at most one row lock other writers wait for,
// its base environment's envs row (no subjects row: plain jobs have no
// key), so it cannot deadlock with another daemon's transactions however
// its jobs are ordered. The jobs of one shell's hook, which share their
// environment, so no longer take turns at that row's lock one commit at
// a time.

const (
	// inserters is how many group INSERTs one store runs at once: one
	// gathers the next group while another waits for its commit. The
	// pool's other connections stay free for claims and reads.
	inserters = 2
	// maxGroup bounds the jobs of one group INSERT.
	maxGroup = 1000
)

// pendingEnqueue is one Enqueue call waiting for its group's commit.
type pendingEnqueue struct {
	in   *newJob
	done chan error // capacity 1: the inserter never waits for the caller
}

// enqueueGrouped stores a plain job in the next group INSERT and returns
// once that has committed. If ctx ends while the job waits to be taken,
// nothing is stored; once taken, the job may be stored even though ctx's
// error is returned, as with any statement whose caller gave up on it.
func (s *Store) enqueueGrouped(ctx context.Context, in *newJob) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	p := &pendingEnqueue{in: in, done: make(chan error, 1)}
	select {
	case s.pending <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing.Done():
		return engine.ErrClosed
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runInserter stores groups of waiting plain enqueues until Close. Owned
// by the Store: Close stops it and waits for it. Its statements run under
// the store's context, not a caller's: the group's jobs belong to many
// callers, and one leaving must not undo the others.
func (s *Store) runInserter(ctx context.Context) {
	defer s.inserterWG.Done()
	group := make([]*pendingEnqueue, 0, maxGroup)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.pending:
			group = append(group[:0], p)
		}
	gather:
		for len(group) < maxGroup {
			select {
			case p := <-s.pending:
				group = append(group, p)
			default:
				break gather
			}
		}
		s.insertGroup(ctx, group)
		clear(group) // let the answered calls go
	}
}

// insertGroup stores a group and answers each of its calls. Jobs with
// different base environments go in separate statements, one per
// environment in the order they first appear, so each statement locks at
// most one envs row (see insertPlain).
func (s *Store) insertGroup(ctx context.Context, group []*pendingEnqueue) {
	byEnv := map[string][]*pendingEnqueue{}
	var order []string
	for _, p := range group {
		k := string(p.in.envHash)
		if _, ok := byEnv[k]; !ok {
			order = append(order, k)
		}
		byEnv[k] = append(byEnv[k], p)
	}
	for _, k := range order {
		s.insertSame(ctx, byEnv[k])
	}
}

// insertSame stores calls whose jobs share one base environment (or
// none) with one statement, and answers each.
func (s *Store) insertSame(ctx context.Context, group []*pendingEnqueue) {
	if len(group) == 1 {
		group[0].done <- s.enqueueAlone(ctx, group[0].in)
		return
	}
	ins := make([]*newJob, len(group))
	for i, p := range group {
		ins[i] = p.in
	}
	err := s.insertPlain(ctx, ins)
	var pe *pgconn.PgError
	if err != nil && errors.As(err, &pe) {
		// The server refused the statement, so none of it is stored:
		// store each job alone for its own outcome.
		for _, p := range group {
			p.done <- s.enqueueAlone(ctx, p.in)
		}
		return
	}
	// Success, or a failure that leaves the outcome unknown (a lost
	// connection, Close): every caller gets the same answer.
	for _, p := range group {
		p.done <- err
	}
}

// enqueueAlone stores one plain job as it was stored before group commit.
// Without a base environment that is its row and nothing else (the
// counters are the insert's trigger), so it needs no transaction block:
// one autocommitted statement, one round trip instead of three.
func (s *Store) enqueueAlone(ctx context.Context, in *newJob) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	out := enqueued{generation: in.job.Generation, state: engine.StateQueued}
	if in.job.BaseEnv != nil {
		return s.write(ctx, func(tx pgx.Tx) error {
			out = enqueued{}
			return s.enqueue(ctx, tx, in, false, &out)
		})
	}
	_, err := s.pool.Exec(ctx, insertJob, insertArgs(in, &out)...)
	if isUnique(err) {
		return fmt.Errorf("%w: a job with id %q already exists", engine.ErrInvalid, in.job.ID)
	}
	if err != nil {
		return s.mapErr(fmt.Errorf("insert job: %w", err))
	}
	return nil
}

// insertPlain stores plain QUEUED jobs that share one base environment
// (or have none) with one autocommitted statement: the rows go as one
// array per column, so the statement's text, and its prepared plan, is
// the same whatever the group's size. The environment's reference count
// goes up by the group's size in the same statement, which so holds one
// envs row lock at most: no lock order to get wrong between daemons.
func (s *Store) insertPlain(ctx context.Context, ins []*newJob) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	var c plainColumns
	c.grow(len(ins))
	for _, in := range ins {
		c.add(in)
	}
	sql, args := insertPlainRows, c.args()
	if env := ins[0].job.BaseEnv; env != nil {
		body := env.Encoded
		if body == nil {
			body = []byte{}
		}
		sql = insertEnvRows
		args = append(args, ins[0].envHash, body, env.Vars, int64(len(ins)))
	}
	_, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return s.mapErr(fmt.Errorf("insert jobs: %w", err))
	}
	return nil
}

// plainRows are the rows of plain QUEUED jobs from column arrays (see
// plainColumns). A plain job has no subject or dependencies, is QUEUED,
// and so has no finished_at or error: those columns keep their NULL.
const plainRows = `unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],
		$7::bigint[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[],
		$14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::boolean[], $19::boolean[],
		$20::bigint[], $21::boolean[], $22::boolean[], $23::boolean[])`

const plainCols = `id, queue, type, generation, priority, state,
	max_attempts, payload, command, cwd, env, run_at, deadline, ttl, backoff,
	expires_at, created_at, wait_idle, require_charging, debounce, replace_running, due, held`

// insertPlainRows inserts plain jobs without a base environment.
const insertPlainRows = `INSERT INTO jobs (` + plainCols + `) SELECT * FROM ` + plainRows

// insertEnvRows inserts plain jobs that share the base environment $24
// (hash), $25 (body), $26 (vars), adding $27 references to it as refEnv
// does.
const insertEnvRows = `WITH e AS (INSERT INTO envs (hash, body, vars, refs) VALUES ($24, $25, $26, $27)
		ON CONFLICT (hash) DO UPDATE SET refs = envs.refs + excluded.refs RETURNING id)
	INSERT INTO jobs (` + plainCols + `, env_id) SELECT u.*, e.id FROM ` + plainRows + ` AS u, e`

// plainColumns are a group's rows as insertPlainRows takes them.
type plainColumns struct {
	id, queue, typ, state          []string
	generation                     []int64
	priority, maxAttempts          []int64 // bigint: the INSERT's cast refuses what integer cannot hold, as a single insert does
	payload                        [][]byte
	command, cwd, env              []*string
	runAt, deadline, ttl, backoff  []int64
	expiresAt                      []*int64
	createdAt, debounce            []int64
	waitIdle, requireCharging, rep []bool
	due, held                      []bool
}

func (c *plainColumns) grow(n int) {
	*c = plainColumns{
		id: make([]string, 0, n), queue: make([]string, 0, n), typ: make([]string, 0, n), state: make([]string, 0, n),
		generation: make([]int64, 0, n), priority: make([]int64, 0, n), maxAttempts: make([]int64, 0, n),
		payload: make([][]byte, 0, n), command: make([]*string, 0, n), cwd: make([]*string, 0, n), env: make([]*string, 0, n),
		runAt: make([]int64, 0, n), deadline: make([]int64, 0, n), ttl: make([]int64, 0, n), backoff: make([]int64, 0, n),
		expiresAt: make([]*int64, 0, n), createdAt: make([]int64, 0, n), debounce: make([]int64, 0, n),
		waitIdle: make([]bool, 0, n), requireCharging: make([]bool, 0, n), rep: make([]bool, 0, n),
		due: make([]bool, 0, n), held: make([]bool, 0, n),
	}
}

// add appends a plain job's row, as insertArgs would store it QUEUED.
func (c *plainColumns) add(in *newJob) {
	j := in.job
	var expires *int64
	if in.expiresAt != 0 {
		expires = &in.expiresAt
	}
	c.id = append(c.id, j.ID)
	c.queue = append(c.queue, j.Queue)
	c.typ = append(c.typ, j.Type)
	c.generation = append(c.generation, j.Generation)
	c.priority = append(c.priority, int64(j.Priority))
	c.state = append(c.state, string(engine.StateQueued))
	c.maxAttempts = append(c.maxAttempts, int64(j.MaxAttempts))
	c.payload = append(c.payload, in.payload)
	c.command = append(c.command, in.command)
	c.cwd = append(c.cwd, in.cwd)
	c.env = append(c.env, in.env)
	c.runAt = append(c.runAt, in.runAt)
	c.deadline = append(c.deadline, in.deadline)
	c.ttl = append(c.ttl, in.ttl)
	c.backoff = append(c.backoff, in.backoff)
	c.expiresAt = append(c.expiresAt, expires)
	c.createdAt = append(c.createdAt, in.createdAt)
	c.waitIdle = append(c.waitIdle, j.WaitIdle)
	c.requireCharging = append(c.requireCharging, j.RequireCharging)
	c.debounce = append(c.debounce, int64(j.Debounce))
	c.rep = append(c.rep, j.Replace)
	c.due = append(c.due, storedDue(in.runAt, in.createdAt))
	c.held = append(c.held, in.held)
}

func (c *plainColumns) args() []any {
	return []any{c.id, c.queue, c.typ, c.generation, c.priority, c.state,
		c.maxAttempts, c.payload, c.command, c.cwd, c.env, c.runAt, c.deadline,
		c.ttl, c.backoff, c.expiresAt, c.createdAt, c.waitIdle, c.requireCharging,
		c.debounce, c.rep, c.due, c.held}
}
