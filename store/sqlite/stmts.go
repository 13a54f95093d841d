package sqlite

import (
	"strconv"

	"stq/engine"
)

// stmtID names a statement in a connection's cache; an array index is
// cheaper than hashing the SQL text on every use.
type stmtID int

const (
	qBegin stmtID = iota
	qBeginRead
	qCommit
	qRollback
	qSavepoint
	qRelease
	qRollbackTo
	qPartSavepoint
	qPartRelease
	qPartRollbackTo

	qSubjectGen
	qSupersede
	qDepState
	qInsertDep
	qCancelDependents
	qFailedDep
	qQueueRunning
	qRetryJob
	qSetPaused
	qHoldQueue
	qPruneScan
	qPruneJob
	qEnvRef
	qEnvInsert
	qEnvUnref
	qEnvDelete
	qEnvBody
	qFinishedCount
	qSubjectPut
	qInsertJob
	qDemote
	qPromote
	qClaimScan
	qClaimJob
	qInsertAttempt
	qJobForUpdate
	qMarkStarted
	qFinishAttempt
	qCompleteJob
	qCancelQueued
	qExpireScan
	qExpireJob
	qJobLogState
	qInsertLog
	qLogSizes
	qTrimLog
	qSetLogState

	qGetJob
	qJobSeq
	qMatchIDs
	qIDBefore
	qIDAfter
	qAttempts
	qList
	qListKey
	qRunning
	qNextWake
	qStats
	qDBSize
	qLogs
	qLogSeqFromEnd
	qPaused
	qEnvMeta
	qEnvCount

	numStmts
)

var sqlText = [numStmts]string{
	qBegin:      `BEGIN IMMEDIATE`,
	qBeginRead:  `BEGIN DEFERRED`,
	qCommit:     `COMMIT`,
	qRollback:   `ROLLBACK`,
	qSavepoint:  `SAVEPOINT op`,
	qRelease:    `RELEASE op`,
	qRollbackTo: `ROLLBACK TO op`,
	// A part is a piece of one op that must fail alone: one completion of
	// a CompleteAndClaim.
	qPartSavepoint:  `SAVEPOINT part`,
	qPartRelease:    `RELEASE part`,
	qPartRollbackTo: `ROLLBACK TO part`,

	qSubjectGen: `SELECT max_gen FROM subjects WHERE queue = ? AND type = ? AND subject = ?`,

	qSupersede: `UPDATE jobs SET state = 'SUPERSEDED', finished_at = ?, error = ?
		WHERE queue = ? AND type = ? AND subject = ? AND state = 'QUEUED' AND generation < ?
		RETURNING seq, id`,

	qDepState: `SELECT seq, state FROM jobs WHERE id = ?`,

	// OR IGNORE: an After list that names a job twice records it once.
	qInsertDep: `INSERT OR IGNORE INTO job_deps (job_seq, dep_seq) VALUES (?, ?)`,

	// The cancel cascade, one level: the QUEUED jobs waiting for job ?3.
	qCancelDependents: `UPDATE jobs SET state = 'CANCELLED', error = ?1, finished_at = ?2
		WHERE state = 'QUEUED' AND seq IN (SELECT job_seq FROM job_deps WHERE dep_seq = ?3)
		RETURNING ` + jobCols,

	// A dependency of job ?1 that ended without succeeding.
	qFailedDep: `SELECT p.id, p.state FROM job_deps AS d JOIN jobs AS p ON p.seq = d.dep_seq
		WHERE d.job_seq = ?1 AND p.state NOT IN ('QUEUED', 'RUNNING', 'DONE')
		ORDER BY d.dep_seq LIMIT 1`,

	// RUNNING jobs of a queue, all owners, from the maintained counters.
	qQueueRunning: `SELECT n FROM counts WHERE queue = ? AND state = 'RUNNING'`,

	// A retry starts a new attempt series: due at once, nothing of the last
	// run left on the job itself (the attempts rows keep it), and no TTL:
	// the TTL measures from created_at and guards only the first start.
	// attempt_base keeps the history's numbering going: the new series'
	// attempt k is recorded as attempt n = attempt_base + k.
	qRetryJob: `UPDATE jobs SET state = 'QUEUED', attempt_base = attempt_base + attempt, attempt = 0, run_at = ?1, due = 1,
		held = ` + heldNow + `, expires_at = NULL, started_at = NULL, finished_at = NULL, exit_code = NULL,
		error = NULL, owner = NULL
		WHERE seq = ?2
		RETURNING ` + jobCols,

	qSetPaused: `INSERT INTO queue_settings (queue, paused) VALUES (?1, ?2)
		ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused`,

	// jobs_run_at holds every QUEUED job: the pause reads the queued ones,
	// not the history.
	qHoldQueue: `UPDATE jobs INDEXED BY jobs_run_at SET held = ?2
		WHERE state = 'QUEUED' AND queue = ?1 AND held <> ?2`,

	// Finished jobs oldest first, in the order jobs_finished holds them
	// (its entries end with the rowid), so no sort. INDEXED BY: without the
	// index this would sort the whole history, so fail to prepare instead.
	qPruneScan: `SELECT seq, finished_at FROM jobs INDEXED BY jobs_finished
		WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED')
		ORDER BY finished_at, seq LIMIT ?`,

	// Attempts, logs and dependency rows go with the job (ON DELETE
	// CASCADE); the jobs_delete trigger keeps counts exact. The caller
	// drops the job's reference to its environment.
	qPruneJob: `DELETE FROM jobs WHERE seq = ? RETURNING env_id`,

	// Environments are counted references (see migration 6): a job that
	// brings one adds to its row, or inserts it; prune subtracts and
	// deletes the rows that nothing references any more.
	qEnvRef:    `UPDATE envs SET refs = refs + ?2 WHERE hash = ?1 RETURNING id`,
	qEnvInsert: `INSERT INTO envs (hash, body, vars, refs) VALUES (?, ?, ?, ?)`,
	qEnvUnref:  `UPDATE envs SET refs = refs - ?2 WHERE id = ?1 RETURNING refs`,
	qEnvDelete: `DELETE FROM envs WHERE id = ? AND refs <= 0`,
	qEnvBody:   `SELECT body FROM envs WHERE id = ?`,

	qFinishedCount: `SELECT coalesce(sum(n), 0) FROM counts
		WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED')`,

	qSubjectPut: `INSERT INTO subjects (queue, type, subject, max_gen) VALUES (?, ?, ?, ?)
		ON CONFLICT (queue, type, subject) DO UPDATE SET max_gen = max(max_gen, excluded.max_gen)`,

	// The columns and their :name parameters come from insertColNames.
	qInsertJob: insertJobSQL(1),

	// Demote and promote run at the start of every claim, so that jobs_ready
	// holds exactly the jobs due at the claim's now. Each reads one range of
	// jobs_run_at: an empty range costs one index probe, whatever the number
	// of scheduled jobs, and a full one costs the jobs it moves. Demotion
	// only finds work when the clock has gone back since jobs were flagged;
	// without it those jobs would sit in the claim's path until the clock
	// caught up. INDEXED BY: the partial index is the only cheap way in, so
	// the statement fails to prepare rather than scan if it ever goes.
	qDemote: `UPDATE jobs INDEXED BY jobs_run_at SET due = 0
		WHERE state = 'QUEUED' AND due = 1 AND run_at > ?`,

	qPromote: `UPDATE jobs INDEXED BY jobs_run_at SET due = 1
		WHERE state = 'QUEUED' AND due = 0 AND run_at <= ?`,

	// The claim query, which walks only due jobs (see qPromote). INDEXED BY
	// pins the plan: without statistics the planner might otherwise pick
	// jobs_run_at and sort every due job, and if the index ever goes missing
	// the statement fails to prepare instead of silently scanning. The
	// run_at test is redundant after qDemote, but costs nothing (the index
	// covers it) and keeps the "never before run_at" rule from resting on
	// another statement. A job with a subject needs its subjects row to say
	// that nothing of the key runs and no newer generation exists; one
	// without a subject has no key and no such rule.
	//
	// The filters that depend on the request or on other rows follow: the
	// machine's conditions (?2 idle, ?3 on AC), paused queues (a list read
	// once per claim, not per row), and dependencies, which cost one probe
	// of job_deps and only for a job that has any. A job a filter rejects is
	// stepped over and the walk goes on, so it never blocks the jobs behind
	// it. Per-queue caps (QueueLimits, Quota) change as the claim takes jobs,
	// so the caller applies them to the rows this returns.
	qClaimScan: `SELECT j.seq, j.queue, j.type, j.subject
		FROM jobs AS j INDEXED BY jobs_ready
		LEFT JOIN subjects AS s ON s.queue = j.queue AND s.type = j.type AND s.subject = j.subject
		WHERE j.state = 'QUEUED' AND j.due = 1 AND j.held = 0 AND j.run_at <= ?1
			AND (j.expires_at IS NULL OR j.expires_at > ?1)
			AND (j.subject IS NULL OR (s.running = 0 AND s.max_gen <= j.generation))
			AND (?2 OR j.wait_idle = 0) AND (?3 OR j.require_charging = 0)
			AND j.queue NOT IN (SELECT queue FROM queue_settings WHERE paused = 1)
			AND (j.after_ids IS NULL OR NOT EXISTS (
				SELECT 1 FROM job_deps AS d JOIN jobs AS p ON p.seq = d.dep_seq
				WHERE d.job_seq = j.seq AND p.state <> 'DONE'))
		ORDER BY j.priority DESC, j.seq`,

	// The TTL only guards a job that has never started, so the first claim
	// clears expires_at for good.
	qClaimJob: `UPDATE jobs SET state = 'RUNNING', attempt = attempt + 1, runs = runs + 1,
		started_at = ?1, owner = ?2, finished_at = NULL, exit_code = NULL, expires_at = NULL
		WHERE seq = ?3 AND state = 'QUEUED'
		RETURNING ` + jobCols,

	// n is the attempt within the series (?3) after the earlier series'
	// attempts, so a retried job's history numbers on.
	qInsertAttempt: `INSERT INTO attempts (job_seq, run, n, started_at, outcome)
		SELECT ?1, ?2, ?3 + attempt_base, ?4, 'running' FROM jobs WHERE seq = ?1`,

	qJobForUpdate: `SELECT j.seq, j.state, j.attempt, j.runs, j.generation, s.max_gen
		FROM jobs AS j
		LEFT JOIN subjects AS s ON s.queue = j.queue AND s.type = j.type AND s.subject = j.subject
		WHERE j.id = ?`,

	qMarkStarted: `UPDATE attempts SET pid = ?, pid_start = ? WHERE job_seq = ? AND run = ?`,

	qFinishAttempt: `UPDATE attempts SET finished_at = ?, outcome = ?, reason = ?, exit_code = ?
		WHERE job_seq = ? AND run = ?`,

	qCompleteJob: `UPDATE jobs SET state = ?1, attempt = attempt - ?2, error = ?3, exit_code = ?4,
		finished_at = ?5, run_at = coalesce(?6, run_at), due = ?7,
		held = CASE WHEN ?1 = 'QUEUED' THEN ` + heldNow + ` ELSE 0 END
		WHERE seq = ?8
		RETURNING ` + jobCols,

	qCancelQueued: `UPDATE jobs SET state = 'CANCELLED', error = ?, finished_at = ?
		WHERE id = ? AND state = 'QUEUED'
		RETURNING ` + jobCols,

	qExpireScan: `SELECT seq, ttl FROM jobs
		WHERE state = 'QUEUED' AND expires_at IS NOT NULL AND expires_at <= ?
		ORDER BY expires_at`,

	qExpireJob: `UPDATE jobs SET state = 'EXPIRED', error = ?, finished_at = ?
		WHERE seq = ? AND state = 'QUEUED'
		RETURNING ` + jobCols,

	qJobLogState: `SELECT seq, log_bytes, last_log_seq, log_dropped FROM jobs WHERE id = ?`,

	// OR IGNORE makes a repeated append (a caller retrying after its context
	// expired on an append that did commit) harmless.
	qInsertLog: `INSERT OR IGNORE INTO job_logs (job_seq, seq, ts, attempt, stream, text) VALUES (?, ?, ?, ?, ?, ?)`,

	qLogSizes: `SELECT seq, octet_length(text) + ` + logLineOverhead + `, ts, attempt FROM job_logs WHERE job_seq = ? ORDER BY seq`,

	qTrimLog: `DELETE FROM job_logs WHERE job_seq = ? AND seq <= ?`,

	qSetLogState: `UPDATE jobs SET log_bytes = ?1, log_truncated = log_truncated OR ?2,
		last_log_seq = max(last_log_seq, ?3), log_dropped = ?5 WHERE seq = ?4`,

	qGetJob: `SELECT ` + jobCols + ` FROM jobs WHERE id = ?`,

	qJobSeq: `SELECT seq FROM jobs WHERE id = ?`,

	// Id prefixes and neighbours walk the id column's unique index.
	qMatchIDs: `SELECT id FROM jobs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3`,
	qIDBefore: `SELECT max(id) FROM jobs WHERE id < ?`,
	qIDAfter:  `SELECT min(id) FROM jobs WHERE id > ?`,

	qAttempts: `SELECT n, started_at, finished_at, outcome, reason, exit_code, pid, pid_start
		FROM attempts WHERE job_seq = ? ORDER BY run`,

	// List without a full key walks jobs newest first and stops at the
	// limit; the "?N IS NULL OR" terms keep the planner on that walk rather
	// than on an index that would need a sort of all its matches.
	qList: `SELECT ` + jobCols + ` FROM jobs
		WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR type = ?2)
			AND (?3 IS NULL OR subject = ?3)
			AND (?4 IS NULL OR state IN (SELECT value FROM json_each(?4)))
			AND (?6 IS NULL OR seq < ?6)
		ORDER BY seq DESC LIMIT ?5`,

	qListKey: `SELECT ` + jobCols + ` FROM jobs
		WHERE queue = ?1 AND type = ?2 AND subject = ?3
			AND (?4 IS NULL OR state IN (SELECT value FROM json_each(?4)))
			AND (?6 IS NULL OR seq < ?6)
		ORDER BY seq DESC LIMIT ?5`,

	qRunning: `SELECT ` + jobCols + ` FROM jobs WHERE state = 'RUNNING' ORDER BY seq`,

	// The earliest run_at after now is looked for among due jobs too: the
	// flags hold for the now of the last claim, not for this one, which may
	// be earlier (a reader's clock, a clock turned back). Each half is one
	// probe of jobs_run_at; the outer min skips the half that found none.
	qNextWake: `SELECT
		(SELECT min(run_at) FROM (
			SELECT min(run_at) AS run_at FROM jobs WHERE state = 'QUEUED' AND due = 0 AND run_at > ?1
			UNION ALL
			SELECT min(run_at) FROM jobs WHERE state = 'QUEUED' AND due = 1 AND run_at > ?1)),
		(SELECT min(expires_at) FROM jobs WHERE state = 'QUEUED' AND expires_at IS NOT NULL)`,

	qStats: `SELECT queue, state, n FROM counts WHERE n > 0`,

	qDBSize: `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`,

	qLogs: `SELECT seq, ts, attempt, stream, text FROM job_logs
		WHERE job_seq = ? AND seq > ? ORDER BY seq LIMIT ?`,

	// The n-th newest line in a seq range: a backward walk of n entries of
	// the primary key, however long the log.
	qLogSeqFromEnd: `SELECT seq FROM job_logs WHERE job_seq = ? AND seq > ? AND seq < ?
		ORDER BY seq DESC LIMIT 1 OFFSET ?`,

	qPaused: `SELECT queue FROM queue_settings WHERE paused = 1 ORDER BY queue`,

	qEnvMeta:  `SELECT hash, vars FROM envs WHERE id = ?`,
	qEnvCount: `SELECT count(*) FROM envs`,
}

// logLineOverhead is engine.LogLineOverhead as SQL text.
var logLineOverhead = strconv.Itoa(engine.LogLineOverhead)
