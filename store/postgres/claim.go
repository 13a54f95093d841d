package postgres

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// Claim starts the next attempt of up to req.Limit due jobs (see
// engine.Store), for every daemon sharing the database at once: no job is
// claimed twice, and the per-key and per-queue rules hold across daemons.
// A QueueLimits or Quota entry of zero or less means no cap, as for
// DefaultQuota; an entry in Quota, even zero, overrides DefaultQuota.
//
// An error can come after the claim committed (the reply to the start was
// lost): its jobs then stay RUNNING for this owner until Recover, which
// takes the owner's jobs its daemon is not running for orphans.
func (s *Store) Claim(ctx context.Context, req engine.ClaimRequest) ([]*engine.Job, error) {
	if err := req.Own(); err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	if req.Limit <= 0 {
		return []*engine.Job{}, nil
	}
	// Pipelined, as a cycle with nothing to complete, a claim costs two
	// round trips (BEGIN with the scan, the start with COMMIT) instead of
	// four; it is on the path of every job an idle daemon is handed.
	if res, done, err := s.tryPipelined(ctx, &cycleArgs{claiming: true, req: &req}); done {
		switch {
		case err != nil:
			return nil, fmt.Errorf("claim jobs: %w", err)
		case res.ClaimErr != nil:
			return nil, res.ClaimErr // it says "claim jobs" already
		}
		return res.Claimed, nil
	}
	var jobs []*engine.Job
	err := s.writeCycle(ctx, func(tx pgx.Tx) (err error) {
		jobs, err = s.claim(ctx, tx, &req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	return jobs, nil
}

// qClaimScan finds claimable jobs in claim order after the keyset position
// ($5 negated priority, $6 seq), walking jobs_ready, outside the queues in $4, and locks them. SKIP
// LOCKED passes over the jobs another daemon is claiming (or an enqueue is
// superseding) right now instead of waiting for it: that is what lets many
// claimers work one queue without queueing behind each other, and what
// makes a job claimed at most once. The locked row is re-read at its
// newest version, so a job that stopped being QUEUED meanwhile drops out.
//
// "run_at + 0" keeps the planner off jobs_run_at (see claim for why the
// walk must be jobs_ready's). Walking jobs_ready in order costs the jobs
// the claim takes plus those it steps over (filtered out); jobs_ready
// holds only due jobs, so a job scheduled ahead is stepped over only
// within dueHorizon of its run_at (see due.go).
//
// The key rules are checked here as a first cut only; the claim checks
// them again holding the key's lock (see lockKeys). So are the queue caps
// ($8 queues, $9 their caps): a queue already at its cap is passed over
// before any of its rows is locked. Without that cut, a daemon whose cap
// is full locked the rows it could not take until its claim committed,
// and another daemon, with room or no cap, skipped them and found nothing:
// when the two looked at once (both woken by one enqueue, or polling in
// step), the job waited for a later look, a second or more.
// "NOT IN (uncorrelated)" is counted once per scan, not per row. A claim
// without capped queues runs qClaimScan, which leaves the cut out and
// takes seven arguments; see scanArgs.
const (
	claimScanHead = `SELECT j.seq, j.queue, j.type, j.subject, j.generation, j.priority, j.runs, coalesce(j.env_id, 0)
	FROM jobs AS j
	WHERE j.state = 'QUEUED' AND j.due AND NOT j.held AND j.run_at + 0 <= $1
		AND (j.expires_at IS NULL OR j.expires_at > $1)
		AND ($2 OR NOT j.wait_idle) AND ($3 OR NOT j.require_charging)
		AND j.queue <> ALL ($4::text[])`
	// claimScanCaps is the cut for capped queues, only in qClaimScanCapped:
	// on a claim with no capped queue its subplan still cost about 0.3 ms
	// of the idle enqueue->start latency (p50 0.7 to 1.0 ms).
	claimScanCaps = `
		AND j.queue NOT IN (SELECT c.queue FROM unnest($8::text[], $9::bigint[]) AS c(queue, cap)
			WHERE (SELECT count(*) FROM jobs AS r WHERE r.state = 'RUNNING' AND r.queue = c.queue) >= c.cap)`
	claimScanTail = `
		AND (-j.priority::bigint, j.seq) > ($5::bigint, $6::bigint)
		AND NOT EXISTS (SELECT 1 FROM queue_settings AS q WHERE q.queue = j.queue AND q.paused)
		AND (j.after_ids IS NULL OR NOT EXISTS (
			SELECT 1 FROM job_deps AS d JOIN jobs AS p ON p.seq = d.dep_seq
			WHERE d.job_seq = j.seq AND p.state <> 'DONE'))
		AND (j.subject IS NULL OR NOT EXISTS (
			SELECT 1 FROM jobs AS r WHERE r.state = 'RUNNING'
				AND r.queue = j.queue AND r.type = j.type AND r.subject = j.subject))
	ORDER BY -j.priority::bigint, j.seq
	LIMIT $7
	FOR UPDATE OF j SKIP LOCKED`
	qClaimScan       = claimScanHead + claimScanTail
	qClaimScanCapped = claimScanHead + claimScanCaps + claimScanTail
)

// candidate is a row of qClaimScan.
type candidate struct {
	seq        int64
	queue, typ string
	subject    *string
	generation int64
	priority   int64
	runs       int32 // before the claim: more than 0 for a job that ran before
	envID      int64 // 0: the daemon's environment
}

// queueUse is what a claim knows about one queue while it walks.
type queueUse struct {
	taken int // jobs this claim has taken
	// free is how many more RUNNING jobs the queue's cap allows, read once
	// under the queue's cap lock; -1: no cap, or not read yet.
	free     int64
	read     bool
	excluded bool // the scan passes over the queue from now on
}

func (s *Store) claim(ctx context.Context, tx querier, req *engine.ClaimRequest) ([]*engine.Job, error) {
	w, err := s.choose(ctx, tx, newClaimScan(req), nil)
	if err != nil {
		return nil, err
	}
	if len(w.chosen) == 0 {
		return []*engine.Job{}, nil
	}
	return s.start(ctx, tx, w.chosen, req.Owner, req.Now.UnixNano())
}

// claimScan is a claim's walk along jobs_ready, scan after scan: its
// capped queues, listed once, and the keyset position (negated priority,
// seq) the next scan starts after, before every job at first.
type claimScan struct {
	req               *engine.ClaimRequest
	capped            []string
	caps              []int64
	lastPrio, lastSeq int64
}

func newClaimScan(req *engine.ClaimRequest) *claimScan {
	capped, caps := queueCaps(req.QueueLimits)
	return &claimScan{req: req, capped: capped, caps: caps, lastPrio: math.MinInt64}
}

// next returns the next scan's query, for want jobs outside the queues
// excluded, and its arguments: qClaimScan's, then the capped queues and
// their caps if there are any (qClaimScanCapped).
func (sc *claimScan) next(excluded []string, want int) (string, []any) {
	args := []any{sc.req.Now.UnixNano(), sc.req.Idle, sc.req.OnAC, excluded, sc.lastPrio, sc.lastSeq, want}
	if len(sc.capped) == 0 {
		return qClaimScan, args
	}
	return qClaimScanCapped, append(args, sc.capped, sc.caps)
}

// first is the claim's first scan: outside no queue, for the whole limit.
func (sc *claimScan) first() (string, []any) { return sc.next([]string{}, sc.req.Limit) }

// choose decides which jobs the claim sc walks for takes, locking them.
// pre, when not nil, is what sc's first scan found, sent ahead by the
// caller; the later scans, if the first leaves the claim short, are run
// here.
func (s *Store) choose(ctx context.Context, tx querier, sc *claimScan, pre *[]candidate) (*claimWalk, error) {
	req := sc.req
	w := &claimWalk{keys: map[engine.Key]bool{}, queues: map[string]*queueUse{}, excluded: []string{}}
	for first := true; len(w.chosen) < req.Limit; first = false {
		want := req.Limit - len(w.chosen)
		var cands []candidate
		if first && pre != nil {
			cands = *pre
		} else {
			var err error
			cands, err = scanCandidates(ctx, tx, sc, first, w.excluded, want)
			if err != nil {
				return nil, fmt.Errorf("find due jobs: %w", err)
			}
		}
		if len(cands) == 0 {
			break
		}
		last := cands[len(cands)-1]
		sc.lastPrio, sc.lastSeq = -last.priority, last.seq
		held, err := lockKeys(ctx, tx, cands)
		if err != nil {
			return nil, err
		}
		for _, c := range cands {
			if err := w.consider(ctx, s, tx, req, c, held); err != nil {
				return nil, err
			}
			if len(w.chosen) == req.Limit {
				break
			}
		}
		if len(cands) < want {
			break // the scan ran out of jobs
		}
	}
	return w, nil
}

// queueCaps lists the capped queues of limits and their caps, as
// qClaimScanCapped's $8 and $9 take them.
func queueCaps(limits map[string]int) (queues []string, caps []int64) {
	queues, caps = []string{}, []int64{}
	for q, c := range limits {
		if c > 0 {
			queues, caps = append(queues, q), append(caps, int64(c))
		}
	}
	return queues, caps
}

// scanCandidates runs sc's next scan, for want jobs outside the queues
// excluded; the first (first) as queueFirstScan sends it.
//
// The claim must walk jobs_ready in order and stop at its limit. On a
// table without fresh statistics (a new install, a burst of enqueues
// autovacuum has not analyzed yet) the planner guesses the backlog is a
// few rows and fetches and sorts all of it instead: a claim then costs
// the whole backlog, a second and more for 100,000 jobs. With sorting
// priced out for the transaction it takes the index, whatever the
// statistics; the first scan of a claim sends that SET LOCAL with it, in
// one round trip.
func scanCandidates(ctx context.Context, tx querier, sc *claimScan, first bool, excluded []string, want int) ([]candidate, error) {
	if !first {
		query, args := sc.next(excluded, want)
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		return collectCandidates(rows)
	}
	b := &pgx.Batch{}
	queueFirstScan(b, sc)
	br := tx.SendBatch(ctx, b)
	cands, err := readFirstScan(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return cands, err
}

// queueFirstScan queues a claim's first look on b: the promotion of the
// jobs come due by its now (see due.go), the plan setting the scan needs
// (see scanCandidates), and sc's first scan.
func queueFirstScan(b *pgx.Batch, sc *claimScan) {
	query, args := sc.first()
	b.Queue(qPromoteDue, sc.req.Now.UnixNano())
	b.Queue(`SET LOCAL enable_sort = off`)
	b.Queue(query, args...)
}

// readFirstScan reads what queueFirstScan queued, from br's next results.
func readFirstScan(br pgx.BatchResults) ([]candidate, error) {
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("promote due jobs: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("set claim plan: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return collectCandidates(rows)
}

// collectCandidates reads the rows of qClaimScan and closes them.
func collectCandidates(rows pgx.Rows) ([]candidate, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		var c candidate
		return c, r.Scan(&c.seq, &c.queue, &c.typ, &c.subject, &c.generation, &c.priority, &c.runs, &c.envID)
	})
}

// claimWalk is what a claim has decided so far.
type claimWalk struct {
	chosen   []int64 // the seqs taken, in claim order
	again    []int64 // those of chosen that ran before
	envs     []int64 // the environments of chosen, where they have one
	keys     map[engine.Key]bool
	queues   map[string]*queueUse
	excluded []string // queues the scan passes over from now on
}

// consider takes candidate c if the queue rules (caps, quotas) and the key
// rules (held says what lockKeys found) let it.
func (w *claimWalk) consider(ctx context.Context, s *Store, tx querier, req *engine.ClaimRequest, c candidate, held map[engine.Key]keyState) error {
	use := w.queues[c.queue]
	if use == nil {
		use = &queueUse{free: -1}
		w.queues[c.queue] = use
	}
	ok, exhausted, err := s.fits(ctx, tx, req, c.queue, use)
	if err != nil {
		return err
	}
	if exhausted && !use.excluded {
		use.excluded = true
		w.excluded = append(w.excluded, c.queue)
	}
	if !ok {
		return nil
	}
	if c.subject != nil {
		k := engine.Key{Queue: c.queue, Type: c.typ, Subject: *c.subject}
		// A claim never starts two jobs of one key, nor one whose key it
		// could not lock or that has a newer generation.
		if w.keys[k] || !held[k].ok(c.generation) {
			return nil
		}
		w.keys[k] = true
	}
	use.taken++
	w.chosen = append(w.chosen, c.seq)
	if c.runs > 0 {
		w.again = append(w.again, c.seq)
	}
	if c.envID != 0 {
		w.envs = append(w.envs, c.envID)
	}
	return nil
}

// fits says whether the claim may take one more job of queue (ok), and
// whether the queue can take no more in this claim at all (exhausted).
//
// A capped queue's RUNNING jobs are counted holding the queue's cap lock,
// a transaction-scoped advisory lock: two daemons claiming from one capped
// queue take turns, and the second counts the first's claims, which have
// committed when it gets the lock. pg_try_: a queue whose lock another
// claim holds is passed over this time, so claims never wait on each other.
func (s *Store) fits(ctx context.Context, tx querier, req *engine.ClaimRequest, queue string, use *queueUse) (ok, exhausted bool, err error) {
	quota, listed := req.Quota[queue]
	if !listed {
		quota = req.DefaultQuota
	}
	if quota > 0 && use.taken >= quota {
		return false, true, nil
	}
	ceiling := req.QueueLimits[queue]
	if ceiling > 0 && !use.read {
		use.read = true
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey(s.schema, "cap\x00"+queue)).Scan(&got); err != nil {
			return false, false, fmt.Errorf("lock queue %s: %w", queue, err)
		}
		use.free = 0
		if got {
			var running int64
			err := tx.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE state = 'RUNNING' AND queue = $1`, queue).Scan(&running)
			if err != nil {
				return false, false, fmt.Errorf("count running jobs of queue %s: %w", queue, err)
			}
			use.free = max(int64(ceiling)-running, 0)
		}
	}
	if ceiling > 0 && int64(use.taken) >= use.free {
		return false, true, nil
	}
	return true, false, nil
}

// qStart moves the chosen jobs ($3), locked by the scan, to RUNNING for
// owner $2 at $1 and records their new attempts, in one statement. The TTL
// only guards a job that has never started, so the first claim clears
// expires_at for good.
//
// The state is compared with a subquery's value, not a literal, so that
// the planner cannot tell that the QUEUED partial indexes hold every row
// it wants: it then finds the jobs by primary key. With the literal, and
// statistics taken before a burst of enqueues (autovacuum analyzes a
// table only after a tenth of it has changed), it judged jobs_ready tiny
// and walked all of it for the seqs, the whole queue on every claim: 1.5 ms
// against 0.1 at 20,000 queued jobs.
const qStart = `WITH u AS (
			UPDATE jobs SET state = 'RUNNING', attempt = attempt + 1, runs = runs + 1,
				started_at = $1, owner = $2, finished_at = NULL, exit_code = NULL, expires_at = NULL
			WHERE seq = ANY($3) AND state = (SELECT 'QUEUED'::text)
			RETURNING *),
		a AS (INSERT INTO attempts (job_seq, run, n, started_at, outcome)
			SELECT seq, runs, attempt + attempt_base, $1, 'running' FROM u)
		SELECT ` + jobCols + ` FROM u`

// start runs qStart and returns the jobs in claim order.
func (s *Store) start(ctx context.Context, tx querier, seqs []int64, owner string, now int64) ([]*engine.Job, error) {
	rows, err := tx.Query(ctx, qStart, now, optText(owner), seqs)
	if err != nil {
		return nil, fmt.Errorf("start jobs: %w", err)
	}
	started, err := scanJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("start jobs: %w", err)
	}
	ordered, again := claimOrder(started, seqs, now)
	jobs, err := s.finish(ctx, tx, ordered, false, true)
	if err != nil {
		return nil, err
	}
	if len(again) > 0 {
		if err := loadAttemptsWith(ctx, tx, qAttemptsInCycle, again); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

// claimOrder puts the rows qStart returned in claim order (seqs) and
// gives each first run its history, the attempt just recorded (the
// statement's own insert is not visible to a read in it anyway). again
// are the rows of jobs that ran before: their history is in the table.
func claimOrder(started []jobRow, seqs []int64, now int64) (ordered, again []jobRow) {
	bySeq := make(map[int64]jobRow, len(started))
	for _, r := range started {
		bySeq[r.seq] = r
	}
	ordered = make([]jobRow, 0, len(started))
	for _, seq := range seqs {
		r, ok := bySeq[seq]
		if !ok {
			continue
		}
		ordered = append(ordered, r)
		if r.runs > 1 {
			again = append(again, r)
			continue
		}
		r.job.Attempts = []engine.Attempt{{N: 1, StartedAt: fromNanos(now), Outcome: engine.OutcomeRunning}}
	}
	return ordered, again
}

// current is the state of a job that a completion or MarkStarted checks,
// read with the job's row locked.
type current struct {
	seq        int64
	state      engine.State
	attempt    int
	runs       int64
	generation int64
	maxGen     int64 // 0 when the job has no subject
	subject    *string
	queue, typ string
}

func currentJob(ctx context.Context, tx pgx.Tx, id string) (current, error) {
	var c current
	var st string
	var attempt, runs int32
	err := tx.QueryRow(ctx, `SELECT seq, state, attempt, runs, generation, queue, type, subject
		FROM jobs WHERE id = $1 FOR UPDATE`, id).Scan(&c.seq, &st, &attempt, &runs, &c.generation, &c.queue, &c.typ, &c.subject)
	if err == pgx.ErrNoRows {
		return current{}, engine.ErrNotFound
	}
	if err != nil {
		return current{}, fmt.Errorf("read job: %w", err)
	}
	c.state, c.attempt, c.runs = engine.State(st), int(attempt), int64(runs)
	return c, nil
}

// keyGen reads the highest generation of the job's key. FOR SHARE waits
// for an enqueue of the key in progress, and holds off the next until this
// transaction commits: a retry that requeues the job either sees the newer
// generation or is superseded by its enqueue.
func (c *current) keyGen(ctx context.Context, tx pgx.Tx) error {
	if c.subject == nil {
		return nil
	}
	var maxGen *int64
	err := tx.QueryRow(ctx, `SELECT max_gen FROM subjects WHERE queue = $1 AND type = $2 AND subject = $3 FOR SHARE`,
		c.queue, c.typ, *c.subject).Scan(&maxGen)
	if err != nil && err != pgx.ErrNoRows {
		return fmt.Errorf("read subject generation: %w", err)
	}
	if maxGen != nil {
		c.maxGen = *maxGen
	}
	return nil
}

// MarkStarted records the process of a running attempt. It returns an error
// wrapping engine.ErrStale unless attempt is the job's current RUNNING
// attempt, and engine.ErrNotFound for an unknown id.
func (s *Store) MarkStarted(ctx context.Context, id string, attempt int, pid int, pidStart int64) error {
	err := s.write(ctx, func(tx pgx.Tx) error { return markStarted(ctx, tx, id, attempt, pid, pidStart) })
	if err != nil {
		return fmt.Errorf("mark job %s attempt %d started: %w", id, attempt, err)
	}
	return nil
}

// qMarkStarted is markStarted for several records ($1 ids, $2 attempts,
// $3 pids, $4 process start times; 0 for none) in one statement, for the
// pipelined cycle. Like the DONE statement it locks the jobs' rows in id
// order and touches only attempts their job is still RUNNING. It answers
// how many jobs it matched; a record it skipped (stale, unknown) sends
// the cycle the one-by-one way, which gives it its error. The numbers go
// as bigint so that one out of the columns' range fails the statement
// (and the one-by-one way says so) instead of wrapping around.
const qMarkStarted = `WITH r AS (
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS r (id, attempt, pid, pid_start)),
		j AS (
			SELECT jobs.seq, jobs.runs, r.pid, r.pid_start FROM jobs JOIN r ON r.id = jobs.id
			WHERE jobs.state = 'RUNNING' AND jobs.attempt = r.attempt
			ORDER BY jobs.id FOR UPDATE OF jobs),
		u AS (
			UPDATE attempts SET pid = nullif(j.pid, 0), pid_start = nullif(j.pid_start, 0)
			FROM j WHERE attempts.job_seq = j.seq AND attempts.run = j.runs)
		SELECT count(*) FROM j`

// startedColumns are start records as qMarkStarted's column arrays.
func startedColumns(started []engine.StartRecord) []any {
	ids := make([]string, len(started))
	attempts, pids, starts := make([]int64, len(started)), make([]int64, len(started)), make([]int64, len(started))
	for i, r := range started {
		ids[i], attempts[i], pids[i], starts[i] = r.ID, int64(r.Attempt), int64(r.PID), r.PIDStart
	}
	return []any{ids, attempts, pids, starts}
}

func markStarted(ctx context.Context, tx pgx.Tx, id string, attempt int, pid int, pidStart int64) error {
	cur, err := currentJob(ctx, tx, id)
	if err != nil {
		return err
	}
	if cur.state != engine.StateRunning || cur.attempt != attempt {
		return fmt.Errorf("%w: job is %s at attempt %d", engine.ErrStale, cur.state, cur.attempt)
	}
	var p *int
	var ps *int64
	if pid != 0 {
		p = &pid
	}
	if pidStart != 0 {
		ps = &pidStart
	}
	_, err = tx.Exec(ctx, `UPDATE attempts SET pid = $1, pid_start = $2 WHERE job_seq = $3 AND run = $4`, p, ps, cur.seq, cur.runs)
	return err
}
