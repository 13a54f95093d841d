package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// A worker pool's cycle (CompleteAndClaim) is one transaction, and its
// commit ends every attempt of the cycle and starts the next ones: a
// worker waits for it between two jobs, so the pool runs at most workers
// jobs per cycle time. One transaction per cycle is the floor (a claim
// must be durable before its job starts, a completion before its reply);
// what is left to cut is the round trips around it. Sent one statement
// at a time, the common cycle, DONE completions then a claim, paid nine:
// BEGIN, the DONE statement, the attempts read, the claim's savepoint, the
// scan, the start, the savepoint's release, COMMIT. Pipelined it pays two:
//
//	BEGIN; plan settings; process records; DONE statement; their attempts; SET LOCAL; first scan   (one round trip)
//	start; the attempts of jobs that ran before; COMMIT                                            (one round trip)
//
// (process records: the PIDs of subprocess jobs started since the last
// cycle, which one by one cost four round trips each: a savepoint, the
// job's read, the update, the release),
// with the claim's decisions (caps, quotas, keys) in between, which cost
// round trips only where they did before: a capped queue, a job with a
// subject, a scan that came up short. Each statement still runs on its own
// snapshot in order, so every lock and check is the one the unpipelined
// cycle makes. Nothing in the pipeline has a savepoint: when anything
// fails before the commit (a stale record or completion, a claim that
// fails, a lost connection, a deadlock), the transaction is rolled back
// whole and the cycle runs again the unpipelined way (cycle), which sorts
// out whose failure it was and gives each its own error. The pipeline's
// statements go through pgx's statement cache, so they are parsed once
// per connection, and planned once too (see qCyclePlans).

// querier is what the claim and read helpers need of a connection: a
// pgx.Tx, or the connection itself inside the transaction block a
// pipelined cycle opened.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ querier = pgx.Tx(nil)
	_ querier = (*pgx.Conn)(nil)
)

// cycleArgs are CompleteAndClaim's arguments, checked. The pipelined
// cycle turns claiming off and sets claimErr when the claim failed.
type cycleArgs struct {
	started  []engine.StartRecord
	done     []engine.Completion
	checked  []error // per completion: refused before the transaction
	claiming bool
	req      *engine.ClaimRequest
	claimErr error
}

// result is a fresh CycleResult for one run of the transaction.
func (a *cycleArgs) result() engine.CycleResult {
	errs := make([]error, len(a.checked))
	copy(errs, a.checked)
	return engine.CycleResult{
		StartErrs: make([]error, len(a.started)),
		Completed: make([]engine.CompleteResult, len(a.done)),
		Errs:      errs,
		ClaimErr:  a.claimErr,
	}
}

// pipelinable says whether the pipelined cycle can take a: start records
// of jobs named once, and only completions the one-by-one cycle would
// store together (valid, DONE, each of a job named once). Anything else
// needs a savepoint per record or completion.
func (a *cycleArgs) pipelinable() bool {
	named := make(map[string]bool, len(a.started))
	for _, r := range a.started {
		if named[r.ID] {
			return false
		}
		named[r.ID] = true
	}
	together, _ := splitDone(a.done, a.checked)
	return len(together) == len(a.done)
}

// runCycle is CompleteAndClaim's transaction: pipelined when a is the
// common cycle, else (and when the pipelined one failed without
// committing) one statement at a time, with a savepoint for each record,
// completion and the claim, so that each gets its own error.
func (s *Store) runCycle(ctx context.Context, a *cycleArgs) (engine.CycleResult, error) {
	if res, done, err := s.tryPipelined(ctx, a); done {
		return res, err
	}
	var res engine.CycleResult
	err := s.writeCycle(ctx, func(tx pgx.Tx) error {
		res = a.result()
		return s.cycle(ctx, tx, a.started, a.done, a.claiming, a.req, &res)
	})
	return res, err
}

// tryPipelined runs a as the pipelined cycle if it is one. done is false
// when it is not, or when the pipelined run failed without committing
// anything: the caller then runs a its own way.
func (s *Store) tryPipelined(ctx context.Context, a *cycleArgs) (res engine.CycleResult, done bool, err error) {
	if s.oneByOne || !a.pipelinable() || s.closed.Load() {
		return engine.CycleResult{}, false, nil
	}
	res = a.result()
	err = s.pipelinedCycle(ctx, a, &res)
	var nc *notCommitted
	if errors.As(err, &nc) {
		return engine.CycleResult{}, false, nil
	}
	return res, true, s.mapErr(err)
}

// notCommitted is a failure of the pipelined cycle that left nothing
// stored: the cycle may run again.
type notCommitted struct{ err error }

func (n *notCommitted) Error() string { return n.err.Error() }
func (n *notCommitted) Unwrap() error { return n.err }

// errOneByOne says the pipelined cycle found a process record or a
// completion it cannot store (a stale attempt, an unknown job).
var errOneByOne = errors.New("a record or completion needs the one-by-one cycle")

// pipelinedCycle runs the pipelined transaction on a connection of its
// own (a pgx.Tx cannot open its transaction block in the first round
// trip). An error that is a *notCommitted left nothing stored; any other
// error may have come after the commit, as with a lost reply to COMMIT.
func (s *Store) pipelinedCycle(ctx context.Context, a *cycleArgs, res *engine.CycleResult) (err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return &notCommitted{err: err}
	}
	defer pc.Release()
	conn := pc.Conn()
	defer func() {
		// The pool closes a connection given back inside a transaction
		// block; rolling back keeps it. If the rollback fails, the pool
		// closes it, which rolls back too.
		if err != nil && conn.PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(ctx, "ROLLBACK")
		}
	}()
	// Until COMMIT is sent, whatever fails leaves nothing stored.
	var sc *claimScan
	if a.claiming {
		sc = newClaimScan(a.req)
	}
	first, err := s.openCycle(ctx, conn, a, sc, res)
	if err != nil {
		return &notCommitted{err: err}
	}
	var w *claimWalk
	var envs map[int64]*engine.BaseEnv
	if a.claiming {
		if w, err = s.choose(ctx, conn, sc, &first); err != nil {
			return &notCommitted{err: err}
		}
		if envs, err = s.chosenEnvs(ctx, conn, w); err != nil {
			return &notCommitted{err: err}
		}
	}
	return closeCycle(ctx, conn, a, w, envs, res)
}

// qAttemptsOfIDs is qAttempts for jobs named by id ($1). The seqs are
// looked up first, once (ARRAY of a subquery), so that the attempts are
// read by their primary key as qAttempts reads them: as a join or IN, the
// planner's generic plan for the prepared statement scanned all of
// attempts (0.6 ms a cycle against 0.04 on a table of 10,000 jobs).
const qAttemptsOfIDs = `SELECT ` + attemptCols + ` FROM attempts
	WHERE job_seq = ANY (ARRAY(SELECT seq FROM jobs WHERE id = ANY($1))) ORDER BY job_seq, run`

// qCyclePlans is how claims and cycles have their statements planned, for
// the rest of their transaction. Each cycle statement is prepared once per
// connection and its arguments never change what the plan should be: a
// few rows found by key, or (the scan) the walk of jobs_ready, for which
// the scan also prices sorting out (see scanCandidates).
//
//   - A generic plan: the server would otherwise plan the scan afresh on
//     every cycle, 0.8 to 1 ms of a 3 ms cycle in its statement log,
//     against 0.02 ms to bind the generic plan (0.23 ms for qStart).
//
//   - No sequential scans: a generic plan is made once and kept until the
//     table is next analyzed, whatever it grows to meanwhile. Made while
//     attempts was nearly empty (a new schema; autovacuum analyzes a
//     minute later at best), the read of the ended jobs' attempts chose a
//     sequential scan and read the whole table on every cycle: in a drain
//     of 10,000 noop jobs, 965 scans reading 3.6 million rows, and 2 to
//     8 ms a cycle by the end of one of 20,000.
//
//   - No JIT compilation: a generic plan's cost is reckoned without the
//     scan's LIMIT, above jit_above_cost, and compiling it took 30 ms of
//     every cycle; the cycle's statements read a few rows each.
//
// A plan is kept with the settings it was made under, and the server
// makes a generic plan in its default mode too (after five custom ones,
// to compare their costs): made without these settings, it could be a
// sequential scan or a compiled one, which the cycle would then run. So
// the one-statement-at-a-time cycle and claim, which run the same
// statements, set them too (writeCycle), and the cycle's read of
// attempts has a text of its own (qAttemptsInCycle), as every read of a
// job runs qAttempts. What a one-by-one cycle shares with a lone call (a
// failed attempt's completion is Complete's) may still run a plan the
// lone call made: those are the uncommon completions.
const qCyclePlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)`

// writeCycle is write for a claim or a cycle run one statement at a
// time: fn runs after qCyclePlans, as the pipelined cycle's statements do.
func (s *Store) writeCycle(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qCyclePlans); err != nil {
			return fmt.Errorf("set cycle plans: %w", err)
		}
		return fn(tx)
	})
}

// qAttemptsInCycle is qAttempts for claims and cycles: the same
// statement, a text of its own so that its plan is theirs (see
// qCyclePlans).
const qAttemptsInCycle = `SELECT ` + attemptCols + ` FROM attempts WHERE job_seq = ANY($1::bigint[]) ORDER BY job_seq, run`

// openCycle sends the cycle's first round trip: BEGIN, the plan settings,
// the process records, the DONE completions and the read of their
// attempts, and the first scan of sc (nil: no claim). It records the completions in res and returns what
// the scan found.
func (s *Store) openCycle(ctx context.Context, conn *pgx.Conn, a *cycleArgs, sc *claimScan, res *engine.CycleResult) ([]candidate, error) {
	idx := make([]int, len(a.done))
	for i := range idx {
		idx[i] = i
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(qCyclePlans)
	if len(a.started) > 0 {
		b.Queue(qMarkStarted, startedColumns(a.started)...)
	}
	if len(a.done) > 0 {
		cols := doneColumns(a.done, idx)
		b.Queue(qCompleteDone, cols...)
		b.Queue(qAttemptsOfIDs, cols[0])
	}
	if sc != nil {
		queueFirstScan(b, sc)
	}
	br := conn.SendBatch(ctx, b)
	rows, cands, err := readOpening(br, a)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("complete and claim: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	jobs, err := s.finish(ctx, conn, rows, false, false)
	if err != nil {
		return nil, err
	}
	if rest := doneResults(a.done, idx, jobs, res); len(rest) > 0 {
		return nil, errOneByOne
	}
	return cands, nil
}

// readOpening reads openCycle's results in order: the jobs ended, with
// their attempts, and the scan's candidates.
func readOpening(br pgx.BatchResults, a *cycleArgs) ([]jobRow, []candidate, error) {
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("set cycle plans: %w", err)
	}
	if len(a.started) > 0 {
		var matched int
		if err := br.QueryRow().Scan(&matched); err != nil {
			return nil, nil, fmt.Errorf("mark jobs started: %w", err)
		}
		if matched != len(a.started) {
			return nil, nil, errOneByOne // a stale or unknown record
		}
	}
	var ended []jobRow
	if len(a.done) > 0 {
		rows, err := br.Query()
		if err == nil {
			ended, err = scanJobs(rows)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("complete jobs: %w", err)
		}
		if err := batchHistories(br, ended); err != nil {
			return nil, nil, err
		}
	}
	if !a.claiming {
		return ended, nil, nil
	}
	cands, err := readFirstScan(br)
	if err != nil {
		return nil, nil, fmt.Errorf("find due jobs: %w", err)
	}
	return ended, cands, nil
}

// chosenEnvs reads the environments of the jobs the claim chose, with
// their variables, before the commit: a job then never starts without the
// environment it was enqueued with, since a failed read undoes its claim.
func (s *Store) chosenEnvs(ctx context.Context, q querier, w *claimWalk) (map[int64]*engine.BaseEnv, error) {
	envs := map[int64]*engine.BaseEnv{}
	for _, id := range w.envs {
		if envs[id] != nil {
			continue
		}
		env, err := s.env(ctx, q, id, true)
		if err != nil {
			return nil, fmt.Errorf("read environment %d: %w", id, err)
		}
		envs[id] = env
	}
	return envs, nil
}

// closeCycle sends the cycle's last round trip: the start of the chosen
// jobs, the attempts of those that ran before, and COMMIT; and records the
// started jobs in res.
func closeCycle(ctx context.Context, conn *pgx.Conn, a *cycleArgs, w *claimWalk, envs map[int64]*engine.BaseEnv, res *engine.CycleResult) error {
	b := &pgx.Batch{}
	starting := w != nil && len(w.chosen) > 0
	now := a.req.Now.UnixNano()
	if starting {
		b.Queue(qStart, now, optText(a.req.Owner), w.chosen)
		if len(w.again) > 0 {
			b.Queue(qAttemptsInCycle, w.again)
		}
	}
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	var ordered []jobRow
	var startErr error
	if starting {
		ordered, startErr = readStarted(br, w, now)
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	committed := err == nil && tag.String() == "COMMIT"
	pg := conn.PgConn()
	switch {
	case !committed && !pg.IsClosed() && (pg.TxStatus() == 'E' || pg.TxStatus() == 'T'):
		// A statement before COMMIT failed and the server skipped the
		// rest, COMMIT included: the transaction is still open (the
		// caller rolls it back). On a lost connection nobody knows.
		if startErr != nil {
			err = startErr
		}
		return &notCommitted{err: fmt.Errorf("complete and claim: %w", err)}
	case !committed && err == nil:
		return &notCommitted{err: fmt.Errorf("commit: the server rolled back (%s)", tag)}
	case !committed:
		return fmt.Errorf("commit: %w", err)
	case startErr != nil:
		// The server ran the COMMIT it had been sent, but its reply to
		// the start could not be read: the completions are stored, and
		// the jobs claimed stay RUNNING until recovered.
		res.ClaimErr = fmt.Errorf("claim jobs: %w", startErr)
		return nil
	}
	if !a.claiming {
		return nil
	}
	res.Claimed = make([]*engine.Job, len(ordered))
	for i, r := range ordered {
		if r.envID != 0 {
			r.job.BaseEnv = envs[r.envID]
		}
		res.Claimed[i] = r.job
	}
	return nil
}

// readStarted reads the start's results: the jobs started, in claim
// order, with their attempt histories.
func readStarted(br pgx.BatchResults, w *claimWalk, now int64) ([]jobRow, error) {
	rows, err := br.Query()
	var started []jobRow
	if err == nil {
		started, err = scanJobs(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("start jobs: %w", err)
	}
	ordered, again := claimOrder(started, w.chosen, now)
	if len(w.again) == 0 {
		return ordered, nil
	}
	if err := batchHistories(br, again); err != nil {
		return nil, err
	}
	return ordered, nil
}

// batchHistories reads the attempts of rows' jobs (qAttemptsInCycle or
// qAttemptsOfIDs, queued by the caller) from br's next result into their
// histories: loadAttempts for a pipelined batch.
func batchHistories(br pgx.BatchResults, rows []jobRow) error {
	bySeq, _ := histories(rows)
	att, err := br.Query()
	if err != nil {
		return err
	}
	return readAttempts(att, bySeq)
}
