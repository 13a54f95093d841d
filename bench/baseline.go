package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

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
// commits straight through SQLite (sqlite.BareInsert, with the settings
// the store's writer uses) on a fresh file of the same temporary directory
// as the bench homes. It returns commits per second.
func bareCommitRate(ctx context.Context, durability string, n int) (float64, error) {
	if _, err := syncPragma(durability); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: %w", err)
	}
	defer os.RemoveAll(dir)
	rate, err := sqlite.BareInsert(ctx, filepath.Join(dir, "bare.db"), durability, n, savePayload())
	if err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: %w", err)
	}
	return rate, nil
}
