package sqlite

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// The shape of the history LoadHistory writes.
const (
	// historyChunk rows share a transaction: big enough that the per-commit
	// cost vanishes, small enough that the WAL stays tens of megabytes.
	historyChunk = 50000
	// historyKeys is how many subjects the keyed half of the history is
	// spread over, so the key index and the subjects table grow too.
	historyKeys = 1000
	// historyStep separates the jobs' creation times. One millisecond apart,
	// their ids differ in the time part, so they sort by creation as real
	// ids do.
	historyStep = time.Millisecond
	// historyWait and historyRun are each job's enqueue->start and run time,
	// about what a noop job takes on an idle daemon.
	historyWait = 300 * time.Microsecond
	historyRun  = 400 * time.Microsecond
	// historyOwner is the daemon the history claims ran it: a host/instance
	// name like a real owner, on no real host.
	historyOwner = "history.invalid/0000000000000"
	historyType  = "noop"
)

// LoadHistory adds n finished jobs to the database at path, creating and
// migrating it if need be, as fast as SQLite can write them: a million in
// about a quarter of a minute on a 2-core VM, where running them through a
// daemon (some 3,500 noop jobs/s) would take five. It exists for benchmarks
// and tests that need a store with a long history; nothing in the daemon
// calls it, and it is meant for a database no daemon has open.
//
// Each job looks exactly like a noop job of the default queue that was
// enqueued, claimed once and completed DONE by a daemon: the same columns
// (the given payload, which must be JSON or empty; default deadline,
// attempts and backoff; an owner; a 26-character id of the engine's form),
// one succeeded attempts row, the counts the triggers keep (the inserts run
// through them) and, for the jobs with a subject, the subjects row with the
// key's highest generation and nothing running. Every other job has a subject, spread over 1,000
// keys ("history/0000" to "history/0999", type noop), whose generations
// continue after any the keys already have. The jobs were created
// historyStep apart, the last one just before now, and finished before now.
func LoadHistory(path string, n int, payload []byte, now time.Time) (err error) {
	if n < 0 {
		return fmt.Errorf("load history: %w: negative job count %d", engine.ErrInvalid, n)
	}
	// The engine lets only JSON in, and readers of the history rely on it.
	if len(payload) > 0 && !json.Valid(payload) {
		return fmt.Errorf("load history: %w: the payload is not JSON", engine.ErrInvalid)
	}
	if err := engine.CheckTime("now", now, true); err != nil {
		return fmt.Errorf("load history: %w", err)
	}
	first := now.Add(-time.Duration(n) * historyStep)
	if err := engine.CheckTime("first created_at", first, true); err != nil {
		return fmt.Errorf("load history: %w", err)
	}
	// synchronous=NORMAL: a power loss during a load just means loading
	// again, and Close checkpoints the WAL into the database either way.
	s, err := Open(path, Options{Synchronous: "normal", Readers: 1})
	if err != nil {
		return fmt.Errorf("load history: %w", err)
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("load history: %w", cerr)
		}
	}()
	payload = slices.Clone(payload)
	ctx := context.Background()
	for done := 0; done < n; done += historyChunk {
		h := historyChunkArgs{
			count:   min(historyChunk, n-done),
			created: first.Add(time.Duration(done) * historyStep).UnixNano(),
			payload: payload,
		}
		if err := s.write(ctx, func(c *conn) error { return c.loadHistory(&h) }); err != nil {
			return fmt.Errorf("load history: jobs %d to %d: %w", done+1, done+h.count, err)
		}
	}
	return nil
}

type historyChunkArgs struct {
	count   int
	created int64 // created_at of the chunk's first job, unix ns
	payload []byte
}

// The history statements are prepared per chunk rather than cached with the
// store's statements: they run a few dozen times in a store's life.
const (
	qHistoryMaxSeq = `SELECT coalesce(max(seq), 0) FROM jobs`

	// Real history has counts rows for the states its jobs went through,
	// at zero once they all ended.
	qHistoryCounts = `INSERT INTO counts (queue, state, n) VALUES (?1, 'QUEUED', 0), (?1, 'RUNNING', 0)
		ON CONFLICT (queue, state) DO NOTHING`

	// Row i of the chunk: odd rows have a subject, key (i/2) % keys, whose
	// generation is the key's highest before the chunk plus the row's
	// ordinal within the key. The subjects lookup sees the table as it was
	// before the statement: inserting DONE jobs does not change it.
	qHistoryJobs = `WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i + 1 < ?1),
		h(created, subject, ord) AS (
			SELECT ?2 + i * ?3, iif(i % 2 = 1, printf('history/%04d', (i / 2) % ?4), NULL), (i / 2) / ?4 + 1
			FROM r)
		INSERT INTO jobs (id, queue, type, subject, generation, priority, state, attempt,
			max_attempts, runs, payload, run_at, deadline, ttl, backoff, created_at,
			started_at, finished_at, owner, due)
		SELECT stq_history_id(created), ?5, ?6, subject,
			iif(subject IS NULL, 0, ord + coalesce((SELECT max_gen FROM subjects AS s
				WHERE s.queue = ?5 AND s.type = ?6 AND s.subject = h.subject), 0)),
			0, 'DONE', 1, ?7, 1, ?8, created, ?9, 0, ?10, created,
			created + ?11, created + ?11 + ?12, ?13, 0
		FROM h`

	qHistoryAttempts = `INSERT INTO attempts (job_seq, run, n, started_at, finished_at, outcome)
		SELECT seq, 1, 1, started_at, finished_at, 'succeeded' FROM jobs WHERE seq > ?1`

	// WHERE before GROUP BY also settles SQLite's INSERT ... SELECT ... ON
	// CONFLICT parsing ambiguity.
	qHistorySubjects = `INSERT INTO subjects (queue, type, subject, max_gen)
		SELECT queue, type, subject, max(generation) FROM jobs
		WHERE seq > ?1 AND subject IS NOT NULL GROUP BY queue, type, subject
		ON CONFLICT (queue, type, subject) DO UPDATE SET max_gen = max(max_gen, excluded.max_gen)`
)

// loadHistory writes one chunk of LoadHistory's jobs in the writer's
// transaction.
func (c *conn) loadHistory(h *historyChunkArgs) error {
	// The id function and the cache size live only as long as the load's
	// store. Keyed rows go round 1,000 keys, so each chunk touches a leaf of
	// the key index per key: with SQLite's default 2 MB cache those pages
	// are spilled and read back over and over (2 of the 15 CPU seconds of a
	// million-job load, profiled). 64 MB holds them and fits the WASM
	// build's memory (256 MB ran out).
	if err := c.db.CreateFunction("stq_history_id", 1, sqlite3.INNOCUOUS, historyID); err != nil {
		return fmt.Errorf("define id function: %w", err)
	}
	if err := c.db.Exec("PRAGMA cache_size = -65536"); err != nil {
		return fmt.Errorf("set cache size: %w", err)
	}
	var last int64
	err := c.runOnce(qHistoryMaxSeq, nil, func(st *sqlite3.Stmt) bool {
		last = st.ColumnInt64(0)
		return false
	})
	if err != nil {
		return fmt.Errorf("read last seq: %w", err)
	}
	if err := c.runOnce(qHistoryCounts, func(b *binder) { b.text(engine.DefaultQueue) }, nil); err != nil {
		return fmt.Errorf("insert counts: %w", err)
	}
	err = c.runOnce(qHistoryJobs, func(b *binder) {
		b.int64(int64(h.count))
		b.int64(h.created)
		b.int64(int64(historyStep))
		b.int64(historyKeys)
		b.text(engine.DefaultQueue)
		b.text(historyType)
		b.int64(engine.DefaultMaxAttempts)
		b.optBytes(h.payload)
		b.int64(int64(engine.DefaultDeadline))
		b.int64(int64(engine.DefaultBackoff))
		b.int64(int64(historyWait))
		b.int64(int64(historyRun))
		b.text(historyOwner)
	}, nil)
	if err != nil {
		return fmt.Errorf("insert jobs: %w", err)
	}
	if got := c.db.Changes(); got != int64(h.count) {
		return fmt.Errorf("insert jobs: inserted %d of %d", got, h.count)
	}
	for _, q := range []struct{ what, sql string }{
		{"insert attempts", qHistoryAttempts},
		{"update subjects", qHistorySubjects},
	} {
		if err := c.runOnce(q.sql, func(b *binder) { b.int64(last) }, nil); err != nil {
			return fmt.Errorf("%s: %w", q.what, err)
		}
	}
	return nil
}

// runOnce prepares sql, runs it as queryEach runs a cached statement, and
// closes it.
func (c *conn) runOnce(sql string, args func(*binder), row func(*sqlite3.Stmt) (more bool)) error {
	st, err := c.prepare(sql, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	return c.each(st, args, row)
}

// historyID makes an id of the engine's form for a job created at unix ns
// arg[0]: 48 bits of milliseconds, then 80 random bits.
func historyID(ctx sqlite3.Context, arg ...sqlite3.Value) {
	var b [16]byte
	ms := uint64(arg[0].Int64() / int64(time.Millisecond))
	binary.BigEndian.PutUint64(b[0:8], ms<<16)
	binary.BigEndian.PutUint16(b[6:8], uint16(rand.Uint32()))
	binary.BigEndian.PutUint64(b[8:16], rand.Uint64())
	ctx.ResultText(engine.FormatID(b))
}
