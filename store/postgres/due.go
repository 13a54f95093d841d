package postgres

import "time"

// Scheduled jobs stay out of the claim's walk until they come due. A
// QUEUED job whose run_at is still ahead used to sit in jobs_ready among
// the due ones, and every claim stepped over it, one heap fetch each: a
// backlog of jobs scheduled for later at the same or a higher priority
// made every claim pay for all of them. As in the SQLite store, a flag
// says whether a QUEUED job has come due, and jobs_ready holds only due
// jobs; jobs_run_at is keyed (due, run_at), so the promotion finds the
// jobs that came due without reading the due ones, and NextWake finds
// the earliest run_at ahead among both.
//
// The flag only decides whether a job is in the claim's walk; no rule
// depends on it. A job is stored due (a new job, a retry, a requeue) if
// its run_at is at most dueHorizon ahead on the clock that stores it
// (storedDue), and every claim first promotes the jobs whose run_at has
// come on its own clock (promote_due), so a job is never left out of a
// claim that could take it. The claim still checks run_at against its
// own clock: a job promoted by a daemon whose clock runs ahead, or before
// this host's clock went back, is passed over until its run_at comes here
// too, and NextWake still wakes for it. Nothing demotes: the clocks of
// several hosts disagree, and demoting what another host promoted would
// undo its work on every claim.

// dueHorizon is how far ahead a job's run_at may be for the job to be
// stored due. Promotion is a second UPDATE of the job's row and of its
// index entries: for 10,000 jobs scheduled a few seconds ahead and due at
// one instant (a drain of noop jobs, a debounce window, retries with a
// short backoff), promoting them all cost a daemon with 32 workers 15 to
// 30% of its drain rate. Stepping over them instead costs the claims only
// until they come due. Jobs scheduled further ahead (--at tomorrow, a
// long --delay) are the backlog that stays out of the walk.
const dueHorizon = time.Minute

// storedDue says whether a job stored QUEUED at the time at (unix ns)
// with runAt is stored due.
func storedDue(runAt, at int64) bool {
	return runAt <= at || runAt-at <= int64(dueHorizon)
}

// migrationDue is migration 4: the due flag, the two indexes split by
// it, and the promotion a claim runs first.
//
// promote_due locks what it promotes with SKIP LOCKED, as the claim's
// scan does: a job another transaction holds (a claim of another daemon
// promoting it too, an enqueue superseding it) is left for a later claim,
// and a claim never waits. Its EXISTS probe keeps a claim with nothing to
// promote, nearly every claim, from running the UPDATE, whose statement
// trigger (the counters) would fire on no rows.
const migrationDue = `
ALTER TABLE jobs ADD COLUMN due boolean NOT NULL DEFAULT false;
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs ((-priority::bigint), seq) WHERE state = 'QUEUED' AND due;
DROP INDEX jobs_run_at;
CREATE INDEX jobs_run_at ON jobs (due, run_at) WHERE state = 'QUEUED';

CREATE FUNCTION promote_due(at bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM jobs WHERE state = 'QUEUED' AND NOT due AND run_at <= at) THEN
		UPDATE jobs SET due = true WHERE seq IN (
			SELECT seq FROM jobs WHERE state = 'QUEUED' AND NOT due AND run_at <= at
			FOR UPDATE SKIP LOCKED);
	END IF;
END $$;
`

// qPromoteDue promotes the jobs due at $1 (unix ns), the claim's now.
const qPromoteDue = `SELECT promote_due($1)`
