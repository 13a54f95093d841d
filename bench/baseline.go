package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/store/sqlite"
)

// bareCommits is how many commits the baseline loop makes for a run of
// jobs: enough for a stable rate, few enough to stay a few seconds.
func bareCommits(jobs int) int { return min(jobs, 5000) }

// baseline measures the bare-commit baseline on its own, unless the
// enqueue rows already measured it alongside themselves.
func (r *runner) baseline(ctx context.Context) error {
	if r.opts.Store != "" {
		return r.pgbenchBaseline(ctx)
	}
	if r.bare != nil {
		return nil
	}
	for range r.opts.Reps {
		b, err := bareCommitRate(ctx, r.opts.Durability, bareCommits(r.opts.Jobs))
		if err != nil {
			return err
		}
		r.bare = append(r.bare, b)
	}
	r.addBaselineRows()
	return nil
}

// addBaselineRows reports the bare-commit baseline and, when the 1-client
// enqueue rate was measured in the same repetitions, its ratio to it.
func (r *runner) addBaselineRows() {
	if r.opts.Store != "" {
		r.addPgbenchRows()
		return
	}
	if len(r.bare) == 0 {
		return
	}
	mode, _ := syncPragma(r.opts.Durability)
	r.add(newRow("bare SQLite one-row durable commits/s (baseline)", "commits/s",
		fmt.Sprintf("%d commits, one row each, WAL, synchronous=%s", bareCommits(r.opts.Jobs), mode), r.bare))
	if len(r.enq1) == len(r.bare) {
		r.add(newRow("1-client enqueue / bare commit ratio", "%",
			"per repetition, each enqueue run with the baseline run right after it; target >= 50%", ratio(r.enq1, r.bare)))
	}
}

// syncPragma is SQLite's synchronous level for a durability mode; a mode
// the store does not have is ErrDurability.
func syncPragma(durability string) (string, error) {
	if !slices.Contains(sqlite.DurabilityModes(), durability) {
		return "", fmt.Errorf("%w, not %q", ErrDurability, durability)
	}
	return sqlite.SynchronousPragma(durability)
}

// bareCommitRate is the floor under durable enqueues: a loop of one-row
// commits, each in its own BEGIN IMMEDIATE ... COMMIT, straight through
// SQLite on a fresh file of the same temporary directory as the bench
// homes, with the pragmas the store's writer uses. It returns commits per
// second.
func bareCommitRate(ctx context.Context, durability string, n int) (rate float64, err error) {
	mode, err := syncPragma(durability)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: %w", err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlite3.OpenFlags(filepath.Join(dir, "bare.db"), sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE)
	if err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: %w", err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bare sqlite baseline: %w", cerr)
		}
	}()
	if err := setUpBare(db, mode); err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: %w", err)
	}
	var stmts [3]*sqlite3.Stmt
	for i, sql := range []string{`BEGIN IMMEDIATE`, `INSERT INTO t (payload) VALUES (?)`, `COMMIT`} {
		if stmts[i], _, err = db.Prepare(sql); err != nil {
			return 0, fmt.Errorf("bare sqlite baseline: prepare %s: %w", sql, err)
		}
		defer stmts[i].Close()
	}
	begin, insert, commit := stmts[0], stmts[1], stmts[2]
	payload := savePayload() // what enqueueRate sends
	start := time.Now()
	for range n {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := begin.Exec(); err != nil {
			return 0, fmt.Errorf("bare sqlite baseline: begin: %w", err)
		}
		if err := insert.BindBlob(1, payload); err != nil {
			return 0, fmt.Errorf("bare sqlite baseline: bind: %w", err)
		}
		if err := insert.Exec(); err != nil {
			return 0, fmt.Errorf("bare sqlite baseline: insert: %w", err)
		}
		if err := commit.Exec(); err != nil {
			return 0, fmt.Errorf("bare sqlite baseline: commit: %w", err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// setUpBare gives the baseline's database the store's writer settings
// (store.openWriter): WAL, the durability's synchronous level, the same
// journal size limit, default page size; and its one table.
func setUpBare(db *sqlite3.Conn, synchronous string) error {
	if err := db.Exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ` + synchronous + `;
		PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA journal_size_limit = 4194304;
		CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB) STRICT`); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	// The store refuses to run without WAL; a baseline without it would
	// compare different commits.
	jm, _, err := db.Prepare(`PRAGMA journal_mode`)
	if err != nil {
		return err
	}
	var journal string
	if jm.Step() {
		journal = jm.ColumnText(0)
	}
	if err := errors.Join(jm.Err(), jm.Close()); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(journal, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL", journal)
	}
	return nil
}
