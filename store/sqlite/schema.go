package sqlite

import (
	"fmt"
)

// migrations brings a database from user_version i to i+1 when run at index
// i. Entries are append-only: a released migration is never edited, so every
// database converges on the same schema whatever version it started from.
var migrations = []string{
	// 1: initial schema.
	//
	// Tables are STRICT so a type mistake in a statement fails loudly instead
	// of storing text where an integer belongs. Times are unix nanoseconds,
	// durations nanoseconds; a NULL time means "not set".
	`
CREATE TABLE jobs (
	-- seq is the rowid: enqueue (FIFO) order, and the compact key the child
	-- tables use instead of repeating the text id. No AUTOINCREMENT: it would
	-- cost a sqlite_sequence write per enqueue, and reuse of a deleted
	-- maximum seq is harmless because children cascade on delete.
	seq           INTEGER PRIMARY KEY,
	id            TEXT    NOT NULL UNIQUE,
	queue         TEXT    NOT NULL,
	type          TEXT    NOT NULL,
	subject       TEXT,             -- NULL: the job has no supersede key
	generation    INTEGER NOT NULL,
	priority      INTEGER NOT NULL,
	state         TEXT    NOT NULL,
	attempt       INTEGER NOT NULL DEFAULT 0,
	max_attempts  INTEGER NOT NULL,
	-- runs counts started attempts including refunded ones; it numbers the
	-- attempts rows, because a refund makes attempt numbers repeat.
	runs          INTEGER NOT NULL DEFAULT 0,
	payload       BLOB,             -- JSON bytes exactly as given
	command       TEXT,             -- JSON array
	cwd           TEXT,
	env           TEXT,             -- JSON object
	run_at        INTEGER NOT NULL,
	deadline      INTEGER NOT NULL,
	ttl           INTEGER NOT NULL,
	backoff       INTEGER NOT NULL,
	-- expires_at is created_at+ttl while the job has never started, NULL
	-- otherwise; kept as a column so expiry has an index.
	expires_at    INTEGER,
	created_at    INTEGER NOT NULL,
	started_at    INTEGER,          -- start of the current or last attempt
	finished_at   INTEGER,
	exit_code     INTEGER,
	error         TEXT,
	owner         TEXT,
	log_bytes     INTEGER NOT NULL DEFAULT 0,
	log_truncated INTEGER NOT NULL DEFAULT 0,
	last_log_seq  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Claim walks this in claim order and stops after Limit hits, so claiming
-- never sorts. run_at and expires_at ride along so jobs that are not yet due
-- or already expired are skipped without reading their table rows.
CREATE INDEX jobs_ready ON jobs(priority DESC, seq, run_at, expires_at) WHERE state = 'QUEUED';
-- NextWake: min(run_at) and min(expires_at) over QUEUED jobs are one index
-- probe each; ExpireDue is a range scan.
CREATE INDEX jobs_due ON jobs(run_at) WHERE state = 'QUEUED';
CREATE INDEX jobs_expiry ON jobs(expires_at) WHERE state = 'QUEUED' AND expires_at IS NOT NULL;
-- Supersede finds the QUEUED jobs of a key without walking its history.
CREATE INDEX jobs_queued_key ON jobs(queue, type, subject, generation) WHERE state = 'QUEUED' AND subject IS NOT NULL;
-- List by exact key, newest first: rowid order within the key, no sort.
CREATE INDEX jobs_key ON jobs(queue, type, subject) WHERE subject IS NOT NULL;
-- Running and crash recovery look only at the few RUNNING jobs, in seq
-- order without a sort (an index on owner lost to a full scan in seq order).
CREATE INDEX jobs_running ON jobs(seq) WHERE state = 'RUNNING';

-- attempts is keyed by run, not by attempt number n: an interrupted attempt
-- is refunded and its number used again, and both runs stay in the history.
CREATE TABLE attempts (
	job_seq     INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
	run         INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER,
	outcome     TEXT    NOT NULL,
	reason      TEXT,
	exit_code   INTEGER,
	pid         INTEGER,
	pid_start   INTEGER,
	PRIMARY KEY (job_seq, run)
) STRICT, WITHOUT ROWID;

-- subjects makes the supersede and one-running-per-key rules O(1) lookups.
-- max_gen outlives the jobs of the key, so pruning history never lets an old
-- generation run again. running is a count, kept by a trigger, rather than a
-- flag: a count cannot be cleared early by the wrong job ending.
CREATE TABLE subjects (
	queue   TEXT    NOT NULL,
	type    TEXT    NOT NULL,
	subject TEXT    NOT NULL,
	max_gen INTEGER NOT NULL,
	running INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (queue, type, subject)
) STRICT, WITHOUT ROWID;

CREATE TABLE job_logs (
	job_seq INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
	seq     INTEGER NOT NULL,
	ts      INTEGER,
	attempt INTEGER NOT NULL,
	stream  TEXT    NOT NULL,
	text    TEXT    NOT NULL,
	PRIMARY KEY (job_seq, seq)
) STRICT, WITHOUT ROWID;

-- counts lets Stats answer without scanning history.
CREATE TABLE counts (
	queue TEXT    NOT NULL,
	state TEXT    NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (queue, state)
) STRICT, WITHOUT ROWID;

-- The triggers keep counts and subjects.running in step with every state
-- change in the same transaction, whichever statement makes it, so no code
-- path can forget them.
CREATE TRIGGER jobs_insert AFTER INSERT ON jobs BEGIN
	INSERT INTO counts(queue, state, n) VALUES (new.queue, new.state, 1)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
	UPDATE subjects SET running = running + 1
		WHERE new.state = 'RUNNING' AND queue = new.queue AND type = new.type AND subject = new.subject;
END;

CREATE TRIGGER jobs_state AFTER UPDATE OF state, queue ON jobs
WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue BEGIN
	UPDATE counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
	INSERT INTO counts(queue, state, n) VALUES (new.queue, new.state, 1)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_running AFTER UPDATE OF state ON jobs
WHEN new.subject IS NOT NULL AND (old.state = 'RUNNING') <> (new.state = 'RUNNING') BEGIN
	UPDATE subjects SET running = running + iif(new.state = 'RUNNING', 1, -1)
		WHERE queue = new.queue AND type = new.type AND subject = new.subject;
END;

CREATE TRIGGER jobs_delete AFTER DELETE ON jobs BEGIN
	UPDATE counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
	UPDATE subjects SET running = running - 1
		WHERE old.state = 'RUNNING' AND queue = old.queue AND type = old.type AND subject = old.subject;
END;
`,

	// 2: a claim costs the jobs it considers, not the jobs scheduled for
	// later. jobs_ready used to hold every QUEUED job, so a claim walked past
	// each job whose run_at had not come yet, and a backlog of 20,000
	// scheduled jobs made every claim walk 20,000 index entries.
	//
	// due is 1 for a QUEUED job whose run_at had come when the writer last
	// looked: at enqueue, at a retry, or at a claim, which first promotes the
	// jobs that have come due since (and demotes any the clock has gone back
	// on). jobs_ready holds only due jobs, so scheduled jobs are out of the
	// claim's way; jobs_run_at finds the jobs to promote at a cost of the
	// jobs promoted. The flag means nothing once a job has left QUEUED.
	//
	// jobs_run_at keeps due jobs too, keyed (due, run_at): NextWake must
	// find the earliest run_at after its own now, which need not be the now
	// the flags were last set for (readers do not promote, and clocks jump),
	// and with both halves in order that is two index probes.
	//
	// The backfill is the column default: every job starts not due, and the
	// first claim promotes those whose run_at has come. A migration cannot
	// set the flag itself, because times come from the caller's clock, not
	// from SQLite's.
	`
ALTER TABLE jobs ADD COLUMN due INTEGER NOT NULL DEFAULT 0 CHECK (due IN (0, 1));

DROP INDEX jobs_ready;
DROP INDEX jobs_due;

-- Claim walks this in claim order and stops after Limit hits, so claiming
-- never sorts. run_at and expires_at ride along so a job that is past its
-- TTL, or due only on a clock the caller has since turned back, is skipped
-- without reading its table row.
CREATE INDEX jobs_ready ON jobs(priority DESC, seq, run_at, expires_at) WHERE state = 'QUEUED' AND due = 1;
-- Promotion reads the (0, run_at <= now) range, demotion the (1, run_at >
-- now) range, NextWake the first entry after now in each half.
CREATE INDEX jobs_run_at ON jobs(due, run_at) WHERE state = 'QUEUED';
`,

	// 3: queue control. Jobs learn when they may start (idle, on AC power),
	// the debounce window and replace flag they were enqueued with, and the
	// jobs they run after; queues can be paused; finished history can be
	// pruned without scanning the jobs that are still live.
	//
	// after_ids keeps the job's After list as given (JSON, in order), so it
	// reads back unchanged even once the jobs it names are pruned. job_deps
	// is the same list as rows, for the two questions that must not scan:
	// "are all of this job's dependencies DONE?" (claim, by job_seq) and
	// "which jobs wait for this one?" (the cancel cascade, by dep_seq). Both
	// ends cascade on delete: a pruned dependency ended long ago and
	// counts as satisfied, and a reused seq never inherits stale rows.
	//
	// Column names avoid the SQL keywords REPLACE and AFTER.
	`
ALTER TABLE jobs ADD COLUMN wait_idle INTEGER NOT NULL DEFAULT 0 CHECK (wait_idle IN (0, 1));
ALTER TABLE jobs ADD COLUMN require_charging INTEGER NOT NULL DEFAULT 0 CHECK (require_charging IN (0, 1));
ALTER TABLE jobs ADD COLUMN debounce INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN replace_running INTEGER NOT NULL DEFAULT 0 CHECK (replace_running IN (0, 1));
ALTER TABLE jobs ADD COLUMN after_ids TEXT; -- JSON array; NULL: no dependencies

CREATE TABLE job_deps (
	job_seq INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
	dep_seq INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
	PRIMARY KEY (job_seq, dep_seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX job_deps_dep ON job_deps(dep_seq);

-- A row per queue that has ever had a setting; a resumed queue keeps its
-- row with paused = 0.
CREATE TABLE queue_settings (
	queue  TEXT    NOT NULL PRIMARY KEY,
	paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1))
) STRICT, WITHOUT ROWID;

-- Prune walks finished jobs oldest first and stops at the first one it
-- keeps, so its cost is the jobs it deletes, not the history it keeps. Every
-- terminal job has finished_at set by the statement that ended it.
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED');
`,

	// 4: attempt numbers run on across retries. A retry starts a new
	// attempt series (attempt back to 0, so max_attempts counts afresh),
	// while the history keeps counting: attempt_base is the attempts the
	// job's earlier series used, and an attempts row's n is attempt_base
	// plus the attempt within its series. Jobs retried before this
	// migration keep the numbers their history already has.
	`
ALTER TABLE jobs ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;
`,

	// 5: the log counts the lines it dropped, whichever layer dropped them
	// (the engine's memory bound, or the trim to the byte limit), so its
	// "N lines dropped" note is exact. Logs truncated before this migration
	// count only the drops that come after it.
	`
ALTER TABLE jobs ADD COLUMN log_dropped INTEGER NOT NULL DEFAULT 0;
`,

	// 6: a job may carry its caller's environment (engine.BaseEnv), stored
	// once per distinct environment: a hook that enqueues thousands of jobs
	// from one shell stores its few kilobytes once, and each job row only
	// the env_id (NULL: the daemon's environment).
	//
	// hash is the SHA-256 of body, the canonical encoding (environ(7)
	// form: sorted NAME=value entries, each ended by a NUL). refs counts the
	// jobs that reference the row: enqueue adds, prune subtracts and
	// deletes the row at zero. A count rather than an index on
	// jobs(env_id) to find unreferenced rows: the index would cost some
	// ten bytes per job row, the count nothing. For the same reason env_id
	// has no REFERENCES clause: deleting an envs row would then search jobs
	// for references, without an index a full scan. AUTOINCREMENT so that
	// an id is never used twice and may be cached by id; it writes
	// sqlite_sequence only when a new environment arrives.
	`
CREATE TABLE envs (
	id   INTEGER PRIMARY KEY AUTOINCREMENT,
	hash BLOB    NOT NULL UNIQUE,
	body BLOB    NOT NULL,
	vars INTEGER NOT NULL,
	refs INTEGER NOT NULL
) STRICT;
ALTER TABLE jobs ADD COLUMN env_id INTEGER;
`,

	// 7: the jobs of a paused queue are held out of the claim's walk
	// (held.go). The jobs already QUEUED in a paused queue are held here.
	`
ALTER TABLE jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1));
UPDATE jobs SET held = 1 WHERE state = 'QUEUED'
	AND queue IN (SELECT queue FROM queue_settings WHERE paused = 1);
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs(priority DESC, seq, run_at, expires_at) WHERE state = 'QUEUED' AND due = 1 AND held = 0;
`,
}

// migrate runs the migrations the database has not seen yet, each in its own
// transaction together with its user_version bump.
func migrate(c *conn) error {
	version, err := c.pragmaInt("user_version")
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > int64(len(migrations)) {
		return fmt.Errorf("database schema version %d is newer than this stq understands (%d)", version, len(migrations))
	}
	for v := int(version); v < len(migrations); v++ {
		// user_version cannot be bound as a parameter; v is an int we control.
		sql := "BEGIN IMMEDIATE;\n" + migrations[v] + fmt.Sprintf("\nPRAGMA user_version = %d;\nCOMMIT;", v+1)
		if err := c.db.Exec(sql); err != nil {
			if !c.db.GetAutocommit() {
				_ = c.db.Exec("ROLLBACK")
			}
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}
