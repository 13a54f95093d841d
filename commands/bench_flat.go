package commands

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

	"stq/engine"
	"stq/ipc"
	"stq/store/sqlite"
)

// bareCommits is how many commits the baseline loop makes for a --jobs
// run: enough for a stable rate, few enough to stay a few seconds.
func bareCommits(jobs int) int { return min(jobs, 5000) }

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
	// The store's writer settings (store.openWriter): WAL, the durability's
	// synchronous level, the same journal size limit, default page size.
	if err := db.Exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ` + mode + `;
		PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA journal_size_limit = 4194304;
		CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB) STRICT`); err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: set up: %w", err)
	}
	// The store refuses to run without WAL; a baseline without it would
	// compare different commits.
	jm, _, err := db.Prepare(`PRAGMA journal_mode`)
	if err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: %w", err)
	}
	var journal string
	if jm.Step() {
		journal = jm.ColumnText(0)
	}
	if err := errors.Join(jm.Err(), jm.Close()); err != nil {
		return 0, fmt.Errorf("bare sqlite baseline: read journal mode: %w", err)
	}
	if !strings.EqualFold(journal, "wal") {
		return 0, fmt.Errorf("bare sqlite baseline: journal mode is %q, not WAL", journal)
	}
	var stmts [3]*sqlite3.Stmt
	for i, sql := range []string{`BEGIN IMMEDIATE`, `INSERT INTO t (payload) VALUES (?)`, `COMMIT`} {
		if stmts[i], _, err = db.Prepare(sql); err != nil {
			return 0, fmt.Errorf("bare sqlite baseline: prepare %s: %w", sql, err)
		}
		defer stmts[i].Close()
	}
	begin, insert, commit := stmts[0], stmts[1], stmts[2]
	payload := []byte(`{"path":"src/main.rs","reason":"save"}`) // what enqueueRate sends
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

func syncPragma(durability string) (string, error) {
	if !slices.Contains(sqlite.DurabilityModes(), durability) {
		return "", usageErrorf("--durability must be \"full\" or \"normal\"")
	}
	return sqlite.SynchronousPragma(durability)
}

// baselineRows reports the bare-commit baseline and, when the 1-client
// enqueue rate was measured in the same repetitions, its ratio to it.
func baselineRows(durability string, n int, bare, enq1 []float64) []benchRow {
	if len(bare) == 0 {
		return nil
	}
	mode, _ := syncPragma(durability)
	rows := []benchRow{newRow("bare SQLite one-row durable commits/s (baseline)", "commits/s",
		fmt.Sprintf("%d commits, one row each, WAL, synchronous=%s", n, mode), bare)}
	if len(enq1) == len(bare) {
		ratio := make([]float64, len(bare))
		for i := range bare {
			ratio[i] = 100 * enq1[i] / bare[i]
		}
		rows = append(rows, newRow("1-client enqueue / bare commit ratio", "%",
			"per repetition, each enqueue run with the baseline run right after it; target >= 50%", ratio))
	}
	return rows
}

// flatConfig turns retention off, so the daemon keeps the seeded history
// for the whole measurement: keep = 0 is no count limit, max_age = "0" no
// age limit (the defaults would prune all but 100,000 finished jobs).
const flatConfig = "[retention]\nkeep = 0\nmax_age = \"0\"\n"

// flatSample is one history size's latency p50s (µs) and load time in one
// repetition.
type flatSample struct {
	enqueue, claim, stats float64
	load                  time.Duration
}

// benchFlat measures whether cost grows with history: enqueue, claim and
// stats latency on a daemon whose database holds few or many finished jobs,
// loaded before it starts, and the ratio between the two.
func benchFlat(ctx context.Context, self, durability string, reps, samples int, quick bool, add func(benchRow)) error {
	sizes := [2]int{1000, 1000000}
	if quick {
		sizes[1] = 20000 // CI's smoke run stays fast
	}
	samples = max(samples, 300)
	var runs [2][]flatSample
	for range reps {
		for i, n := range sizes {
			s, err := flatRun(ctx, self, durability, n, samples)
			if err != nil {
				return err
			}
			runs[i] = append(runs[i], s)
		}
	}
	pick := func(i int, f func(flatSample) float64) []float64 {
		v := make([]float64, len(runs[i]))
		for r, s := range runs[i] {
			v[r] = f(s)
		}
		return v
	}
	for _, m := range []struct {
		what, how string
		f         func(flatSample) float64
	}{
		{"enqueue latency p50", "one client, one request at a time, jobs an hour out",
			func(s flatSample) float64 { return s.enqueue }},
		{"claim (enqueue->start) latency p50", "one noop job at a time on an idle daemon, started_at - created_at",
			func(s flatSample) float64 { return s.claim }},
		{"admin.stats.v1 latency p50", "one client, one request at a time",
			func(s flatSample) float64 { return s.stats }},
	} {
		for i, n := range sizes {
			add(newRow(fmt.Sprintf("%s, %s jobs stored", m.what, thousands(n)), "µs",
				fmt.Sprintf("%d samples per repetition, %s; %s finished jobs loaded before start", samples, m.how, thousands(n)), pick(i, m.f)))
		}
		small, large := pick(0, m.f), pick(1, m.f)
		ratio := make([]float64, len(small))
		for r := range small {
			ratio[r] = 100 * large[r] / small[r]
		}
		add(newRow(fmt.Sprintf("%s, %s / %s jobs stored", m.what, thousands(sizes[1]), thousands(sizes[0])), "%",
			"per repetition; target <= 130%", ratio))
	}
	add(newRow(fmt.Sprintf("seconds to load %s finished jobs", thousands(sizes[1])), "s",
		"sqlite.LoadHistory, before the daemon starts; not a target", pick(1, func(s flatSample) float64 { return s.load.Seconds() })))
	return nil
}

// flatRun loads n finished jobs into a fresh home, starts a daemon on it
// and measures the p50 of each latency over samples requests.
func flatRun(ctx context.Context, self, durability string, n, samples int) (flatSample, error) {
	var out flatSample
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return out, fmt.Errorf("make bench home: %w", err)
	}
	defer os.RemoveAll(dir)
	home := filepath.Join(dir, "h")
	p, err := resolvePaths(home)
	if err != nil {
		return out, err
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		return out, fmt.Errorf("make bench home: %w", err)
	}
	if err := os.WriteFile(p.Config, []byte(flatConfig), 0o600); err != nil {
		return out, fmt.Errorf("write bench config: %w", err)
	}
	t0 := time.Now()
	if err := sqlite.LoadHistory(p.DB, n, benchPayload(), t0); err != nil {
		return out, err
	}
	out.load = time.Since(t0)
	_, err = withBenchHome(ctx, self, home, durability, 4, "", func(env *benchEnv) (float64, error) {
		cl, err := env.dial(ctx)
		if err != nil {
			return 0, err
		}
		defer cl.Close()
		// The history must be there, and stay there, for the numbers to
		// mean anything.
		if err := checkHistory(ctx, cl, n); err != nil {
			return 0, err
		}
		claimMS, err := env.startLatency(ctx, samples)
		if err != nil {
			return 0, err
		}
		claim := make([]float64, len(claimMS))
		for i, ms := range claimMS {
			claim[i] = ms * 1000
		}
		later := engine.Duration(time.Hour)
		enqueue, err := timeCalls(ctx, samples, func() error {
			_, err := cl.Enqueue(ctx, engine.EnqueueRequest{Type: "noop", Delay: &later,
				Payload: []byte(`{"path":"src/main.rs","reason":"save"}`)})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("enqueue: %w", err)
		}
		stats, err := timeCalls(ctx, samples, func() error {
			_, err := cl.Stats(ctx)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("stats: %w", err)
		}
		if err := checkHistory(ctx, cl, n+samples); err != nil {
			return 0, err
		}
		out.enqueue, out.claim, out.stats = p50(enqueue), p50(claim), p50(stats)
		return 0, nil
	})
	return out, err
}

// checkHistory fails unless the daemon counts at least n DONE jobs and
// runs with retention off.
func checkHistory(ctx context.Context, cl *ipc.Client, n int) error {
	st, err := cl.Stats(ctx)
	if err != nil {
		return err
	}
	if st.Retention.Keep != 0 || st.Retention.MaxAge != 0 {
		return fmt.Errorf("bench daemon prunes history (%+v); the flat rows need retention off", st.Retention)
	}
	if got := st.Queues[engine.DefaultQueue][engine.StateDone]; got < int64(n) {
		return fmt.Errorf("bench daemon holds %d finished jobs, want at least %d", got, n)
	}
	return nil
}

// timeCalls times n sequential calls of fn, in µs.
func timeCalls(ctx context.Context, n int, fn func() error) ([]float64, error) {
	out := make([]float64, 0, n)
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := fn(); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(t0).Nanoseconds())/1000)
	}
	return out, nil
}

func p50(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return percentile(s, 0.5)
}

// thousands formats n with comma separators: 1000000 -> "1,000,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
