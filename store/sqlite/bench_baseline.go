package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// BareBatchedInsert is the floor under batched enqueues, for `stq bench`:
// it inserts rows queued noop jobs, perTxn of them per BEGIN IMMEDIATE ...
// COMMIT, into a new database at path, and returns rows per second.
//
// The database is opened exactly as the store's writer opens it (WAL, the
// synchronous level given as for Options.Synchronous, the writer's other
// pragmas, the migrated schema with its indexes and triggers), and each row
// is one run of the store's own single-row insert statement, bound as an
// enqueue of a noop job scheduled an hour out binds it: an id of the
// engine's form, the default queue, the given payload, default attempts,
// deadline and backoff. (A batch enqueue stores runs of such jobs with a
// multi-row statement, see insertRun, so its SQLite part can beat this
// loop.) Nothing else of the store runs: no op queue or savepoints, no
// dependency or subject lookups, no encoding of jobs or building of results.
// It refuses a path that already exists and leaves the file behind for the
// caller to remove.
func BareBatchedInsert(ctx context.Context, path, synchronous string, rows, perTxn int, payload []byte) (rate float64, err error) {
	if rows < 1 || perTxn < 1 {
		return 0, fmt.Errorf("bare batched insert: %w: rows and rows per transaction must be at least 1", engine.ErrInvalid)
	}
	mode, err := createBare(path, synchronous)
	if err != nil {
		return 0, fmt.Errorf("bare batched insert: %w", err)
	}
	c, err := openWriter(path, mode)
	if err != nil {
		return 0, fmt.Errorf("bare batched insert: %w", err)
	}
	defer func() {
		if cerr := c.close(); cerr != nil && err == nil {
			err = fmt.Errorf("bare batched insert: close: %w", cerr)
		}
	}()
	var ids bareIDs
	start := time.Now()
	for done := 0; done < rows; done += perTxn {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := c.exec(qBegin); err != nil {
			return 0, fmt.Errorf("bare batched insert: begin: %w", err)
		}
		now := time.Now()
		for range min(perTxn, rows-done) {
			if err := c.bareInsert(ids.next(now), payload, now); err != nil {
				c.resetAll()
				_ = c.exec(qRollback)
				return 0, fmt.Errorf("bare batched insert: %w", err)
			}
		}
		if err := c.exec(qCommit); err != nil {
			_ = c.exec(qRollback)
			return 0, fmt.Errorf("bare batched insert: commit: %w", err)
		}
	}
	rate = float64(rows) / time.Since(start).Seconds()
	// The rows must all be there for the rate to mean anything.
	var stored int64
	if err := c.runOnce(`SELECT count(*) FROM jobs`, nil, func(st *sqlite3.Stmt) bool {
		stored = st.ColumnInt64(0)
		return false
	}); err != nil {
		return 0, fmt.Errorf("bare batched insert: count rows: %w", err)
	}
	if stored != int64(rows) {
		return 0, fmt.Errorf("bare batched insert: %d rows stored of %d", stored, rows)
	}
	return rate, nil
}

// BareInsert is the floor under durable enqueues, for `stq bench`: n
// commits of one row each, every one its own BEGIN IMMEDIATE ... COMMIT,
// into a new database at path, and returns commits per second.
//
// The database has the settings the store's writer uses (configureWriter:
// WAL, which it checks, the synchronous level of durability as for
// Options.Synchronous, and the writer's other pragmas) but none of its
// schema: one table of an integer key and a BLOB, into which each commit
// inserts payload. What it measures is SQLite's commit, the cost no
// enqueue can get under. It refuses a path that already exists and leaves
// the file behind for the caller to remove.
func BareInsert(ctx context.Context, path, durability string, n int, payload []byte) (rate float64, err error) {
	if n < 1 {
		return 0, fmt.Errorf("bare insert: %w: the number of commits must be at least 1", engine.ErrInvalid)
	}
	mode, err := createBare(path, durability)
	if err != nil {
		return 0, fmt.Errorf("bare insert: %w", err)
	}
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READWRITE)
	if err != nil {
		return 0, fmt.Errorf("bare insert: %w", err)
	}
	c := newConn(db)
	defer func() {
		if cerr := c.close(); cerr != nil && err == nil {
			err = fmt.Errorf("bare insert: close: %w", cerr)
		}
	}()
	if err := c.configureWriter(mode); err != nil {
		return 0, fmt.Errorf("bare insert: %w", err)
	}
	if err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB) STRICT`); err != nil {
		return 0, fmt.Errorf("bare insert: create table: %w", err)
	}
	ins, err := c.prepare(`INSERT INTO t (payload) VALUES (?)`, sqlite3.PREPARE_PERSISTENT)
	if err != nil {
		return 0, fmt.Errorf("bare insert: %w", err)
	}
	defer ins.Close()
	start := time.Now()
	for range n {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := c.bareCommit(ins, payload); err != nil {
			return 0, fmt.Errorf("bare insert: %w", err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// bareCommit is one of BareInsert's commits: the store's own BEGIN
// IMMEDIATE and COMMIT around a run of ins bound with payload.
func (c *conn) bareCommit(ins *sqlite3.Stmt, payload []byte) error {
	if err := c.exec(qBegin); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := ins.BindBlob(1, payload)
	if err == nil {
		err = ins.Exec()
	}
	if err != nil {
		_ = c.exec(qRollback)
		return fmt.Errorf("insert: %w", err)
	}
	if err := c.exec(qCommit); err != nil {
		_ = c.exec(qRollback)
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// bareInsert runs the jobs insert for a queued noop job without a
// subject, dependencies, command or TTL, due an hour after now, as
// enqueue runs it.
func (c *conn) bareInsert(id string, payload []byte, now time.Time) error {
	in := newJob{
		id: id, queue: engine.DefaultQueue, typ: "noop", maxAttempts: engine.DefaultMaxAttempts,
		payload: payload, runAt: now.Add(time.Hour), createdAt: now,
		deadline: int64(engine.DefaultDeadline), backoff: int64(engine.DefaultBackoff),
	}
	out := enqueued{state: engine.StateQueued}
	return c.insertJob(&in, &out)
}

// createBare creates the new database file of a baseline, refusing a path
// that exists, and returns the synchronous setting for durability.
func createBare(path, durability string) (syncMode string, err error) {
	mode, err := SynchronousPragma(durability)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	return mode, f.Close()
}

// bareIDs makes ids as the engine's newID does: 48 bits of milliseconds
// and 80 fresh random bits.
type bareIDs struct{}

func (g *bareIDs) next(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	_, _ = rand.Read(b[6:])
	return engine.FormatID(b)
}
