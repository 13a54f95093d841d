package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
)

// migrations brings a schema from version i to i+1 when run at index i.
// Entries are append-only: a released migration is never edited, so every
// database converges on the same schema whatever version it started from.
//
// Times are unix nanoseconds in bigints, durations nanoseconds: timestamptz
// keeps only microseconds, and the engine's times round-trip exactly.
var migrations = []string{
	// 1: the whole schema as of the SQLite store's migration 6.
	`
CREATE TABLE jobs (
	-- seq is enqueue (FIFO) order and the compact key of the child tables.
	-- An identity value is taken at insert, not at commit, so two daemons
	-- enqueueing at once may interleave; claim order is still FIFO per
	-- enqueuer, which is what a queue promises.
	seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- COLLATE "C": ids order and match by prefix bytewise, as in SQLite,
	-- whatever the database's collation, and the unique index serves both.
	id               text    COLLATE "C" NOT NULL UNIQUE,
	queue            text    NOT NULL,
	type             text    NOT NULL,
	subject          text,             -- NULL: the job has no supersede key
	generation       bigint  NOT NULL,
	priority         integer NOT NULL,
	state            text    NOT NULL,
	attempt          integer NOT NULL DEFAULT 0,
	-- attempt_base is the attempts of earlier retry series, so history
	-- numbers on; runs counts started attempts including refunded ones and
	-- keys the attempts rows.
	attempt_base     integer NOT NULL DEFAULT 0,
	max_attempts     integer NOT NULL,
	runs             integer NOT NULL DEFAULT 0,
	payload          bytea,            -- JSON bytes exactly as given
	command          text,             -- JSON array
	cwd              text,
	env              text,             -- JSON object
	run_at           bigint  NOT NULL,
	deadline         bigint  NOT NULL,
	ttl              bigint  NOT NULL,
	backoff          bigint  NOT NULL,
	-- expires_at is created_at+ttl while the job has never started.
	expires_at       bigint,
	created_at       bigint  NOT NULL,
	started_at       bigint,
	finished_at      bigint,
	exit_code        integer,
	error            text,
	owner            text,
	log_bytes        bigint  NOT NULL DEFAULT 0,
	log_truncated    boolean NOT NULL DEFAULT false,
	last_log_seq     bigint  NOT NULL DEFAULT 0,
	log_dropped      bigint  NOT NULL DEFAULT 0,
	wait_idle        boolean NOT NULL DEFAULT false,
	require_charging boolean NOT NULL DEFAULT false,
	debounce         bigint  NOT NULL DEFAULT 0,
	replace_running  boolean NOT NULL DEFAULT false,
	after_ids        text,             -- JSON array; NULL: no dependencies
	env_id           bigint            -- envs.id; NULL: the daemon's environment
);

-- Claim walks this in claim order (priority descending, then seq) and
-- stops after its limit, so claiming never sorts the backlog. Priority is
-- negated so that both keys ascend: the claim's keyset condition is then
-- one row comparison the index answers. A partial index keeps it as small
-- as the backlog, not the history.
CREATE INDEX jobs_ready ON jobs ((-priority::bigint), seq) WHERE state = 'QUEUED';
-- NextWake and ExpireDue.
CREATE INDEX jobs_run_at ON jobs (run_at) WHERE state = 'QUEUED';
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE state = 'QUEUED' AND expires_at IS NOT NULL;
-- Supersede finds the QUEUED jobs of a key; List by exact key.
CREATE INDEX jobs_key ON jobs (queue, type, subject, seq) WHERE subject IS NOT NULL;
-- "Does the key have a RUNNING job", queue caps, Running and recovery:
-- RUNNING jobs are as few as the workers of all daemons.
CREATE INDEX jobs_running ON jobs (queue, type, subject) WHERE state = 'RUNNING';
-- Prune walks finished jobs oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at, seq)
	WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED', 'EXPIRED');

CREATE TABLE attempts (
	job_seq     bigint  NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
	run         integer NOT NULL,
	n           integer NOT NULL,
	started_at  bigint  NOT NULL,
	finished_at bigint,
	outcome     text    NOT NULL,
	reason      text,
	exit_code   integer,
	pid         integer,
	pid_start   bigint,
	PRIMARY KEY (job_seq, run)
);

-- subjects holds each key's highest generation, which outlives the key's
-- jobs, and its row is the key's lock: every change of the key's
-- generations, and every claim of one of its jobs, holds it (see
-- docs/SCALING.md). max_gen is NULL only inside the transaction that
-- created the row.
CREATE TABLE subjects (
	queue   text   NOT NULL,
	type    text   NOT NULL,
	subject text   NOT NULL,
	max_gen bigint,
	PRIMARY KEY (queue, type, subject)
);

CREATE TABLE job_logs (
	job_seq bigint  NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
	seq     bigint  NOT NULL,
	ts      bigint,
	attempt integer NOT NULL,
	stream  text    NOT NULL,
	text    text    NOT NULL,
	PRIMARY KEY (job_seq, seq)
);

CREATE TABLE job_deps (
	job_seq bigint NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
	dep_seq bigint NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
	PRIMARY KEY (job_seq, dep_seq)
);
CREATE INDEX job_deps_dep ON job_deps (dep_seq);

CREATE TABLE queue_settings (
	queue  text    NOT NULL PRIMARY KEY,
	paused boolean NOT NULL DEFAULT false
);

-- Captured environments, once per distinct content, with a count of the
-- jobs that reference them (as in the SQLite store's migration 6).
CREATE TABLE envs (
	id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hash bytea   NOT NULL UNIQUE,
	body bytea   NOT NULL,
	vars integer NOT NULL,
	refs bigint  NOT NULL
);

-- Stats without scanning history. A counter row per (queue, state) that
-- every transaction updated would be one lock that all enqueues and claims
-- of a queue wait for until their commit, across every daemon. Instead each
-- statement appends its changes to count_deltas, which nothing ever locks,
-- and a fold (Checkpoint, and the store's folder every second) moves them
-- into counts. Readers add both.
CREATE TABLE counts (
	queue text   NOT NULL,
	state text   NOT NULL,
	n     bigint NOT NULL,
	PRIMARY KEY (queue, state)
);
CREATE TABLE count_deltas (
	queue text   NOT NULL,
	state text   NOT NULL,
	n     bigint NOT NULL
);

-- Statement-level triggers with transition tables: a bulk insert of a
-- thousand jobs appends one row per (queue, state), not a thousand.
CREATE FUNCTION jobs_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO count_deltas (queue, state, n)
		SELECT queue, state, count(*) FROM new_rows GROUP BY queue, state;
	RETURN NULL;
END $$;

CREATE FUNCTION jobs_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO count_deltas (queue, state, n)
		SELECT queue, state, sum(d) FROM (
			SELECT o.queue, o.state, -1 AS d FROM old_rows o JOIN new_rows n ON n.seq = o.seq
				WHERE o.state <> n.state OR o.queue <> n.queue
			UNION ALL
			SELECT n.queue, n.state, 1 FROM old_rows o JOIN new_rows n ON n.seq = o.seq
				WHERE o.state <> n.state OR o.queue <> n.queue) AS c
		GROUP BY queue, state HAVING sum(d) <> 0;
	RETURN NULL;
END $$;

CREATE FUNCTION jobs_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO count_deltas (queue, state, n)
		SELECT queue, state, -count(*) FROM old_rows GROUP BY queue, state;
	RETURN NULL;
END $$;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_insert();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_update();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_delete();
`,
	// 2: the daemons' leases (lease.go).
	migrationDaemons,
	// 3: the counters' update trigger in linear time (below).
	migrationCountUpdate,
	// 4: scheduled jobs out of the claim's walk (due.go).
	migrationDue,
	// 5: paused queues' jobs out of the claim's walk (held.go).
	migrationHeld,
}

// migrationCountUpdate is migration 3: the counters' update trigger
// without its join. Migration 1's joined old_rows to new_rows by seq to
// find the rows whose state or queue changed; the transition tables have
// no index, and the server joined them with a nested loop, so an UPDATE
// of n rows cost n*n comparisons (2,000 jobs promoted or started in one
// statement: 1.3 s). The net change per (queue, state) is the new rows'
// count less the old rows', whatever changed: rows that kept their state
// and queue cancel out.
const migrationCountUpdate = `
CREATE OR REPLACE FUNCTION jobs_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO count_deltas (queue, state, n)
		SELECT queue, state, sum(d) FROM (
			SELECT queue, state, -1 AS d FROM old_rows
			UNION ALL
			SELECT queue, state, 1 FROM new_rows) AS c
		GROUP BY queue, state HAVING sum(d) <> 0;
	RETURN NULL;
END $$;
`

// SchemaVersion is the schema version this build of stq writes and reads.
func SchemaVersion() int { return len(migrations) }

// lockKey is the advisory lock key of one purpose within one stq schema,
// so that installations sharing a database never wait for each other.
func lockKey(schema, purpose string) int64 {
	h := fnv.New64a()
	h.Write([]byte("stq\x00" + schema + "\x00" + purpose))
	return int64(h.Sum64())
}

// migrate creates the schema if needed and runs the migrations it has not
// seen, all under an advisory lock, so daemons starting together migrate
// once and in order. It refuses a schema newer than this build knows:
// running old code on it could undo what the newer one relies on.
func migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	return migrateWith(ctx, conn, schema, migrations)
}

// migrateWith is migrate with steps for the migrations; tests build the
// schemas of earlier versions with a prefix of them.
func migrateWith(ctx context.Context, conn *pgx.Conn, schema string, steps []string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// Transaction-scoped: released by commit or rollback, even if this
	// process dies mid-migration.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(schema, "migrate")); err != nil {
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+`.stq_schema (
		version integer NOT NULL,
		single  boolean NOT NULL DEFAULT true PRIMARY KEY CHECK (single))`); err != nil {
		return fmt.Errorf("create version table: %w", err)
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM `+ident+`.stq_schema`).Scan(&version)
	switch {
	case err == pgx.ErrNoRows:
		if _, err := tx.Exec(ctx, `INSERT INTO `+ident+`.stq_schema (version) VALUES (0)`); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(steps) {
		return fmt.Errorf("schema %q is at version %d, newer than this stq understands (%d): upgrade stq on this host, or use another schema", schema, version, len(steps))
	}
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident); err != nil {
		return fmt.Errorf("select schema %s: %w", schema, err)
	}
	for v := version; v < len(steps); v++ {
		if _, err := tx.Exec(ctx, steps[v]); err != nil {
			return fmt.Errorf("migrate schema %s to version %d: %w", schema, v+1, err)
		}
	}
	if version < len(steps) {
		if _, err := tx.Exec(ctx, `UPDATE stq_schema SET version = $1`, len(steps)); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit migration: %w", err)
	}
	return nil
}
