package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// With Options.Store, every daemon under test keeps its jobs in a fresh
// schema of that PostgreSQL database, dropped after its run; pgbench on the
// same server is the baseline the enqueue rows are compared with, as bare
// SQLite commits are on the embedded store.

// storeSection is the [store] table of a bench home's config.toml.
func storeSection(url, schema string) string {
	return fmt.Sprintf("[store]\nurl = %q\nschema = %q\n", url, schema)
}

// newSchema names a fresh schema; drop removes it and all in it.
func (r *runner) newSchema() (name string, drop func() error, err error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("name bench schema: %w", err)
	}
	name = "stqbench_" + hex.EncodeToString(b)
	return name, func() error { return dropSchema(r.opts.Store, name) }, nil
}

// dropSchema runs on its own bounded context: it cleans up after a run
// whose context may have ended.
func dropSchema(url, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("drop bench schema %s: %w", schema, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop bench schema %s: %w", schema, err)
	}
	return nil
}

// pgbenchFor is how long each pgbench run lasts.
func (r *runner) pgbenchFor() time.Duration {
	if r.opts.Quick {
		return time.Second
	}
	return 5 * time.Second
}

// pgbenchAfter runs the pgbench baseline with as many clients as the
// enqueue run it follows, in the same repetition.
func (r *runner) pgbenchAfter(ctx context.Context, clients int) error {
	tps, err := pgbenchTPS(ctx, r.opts.Store, r.opts.Durability, clients, r.pgbenchFor())
	if err != nil {
		return err
	}
	if clients == 1 {
		r.pgb1 = append(r.pgb1, tps)
	} else {
		r.pgb16 = append(r.pgb16, tps)
	}
	return nil
}

// pgbenchBaseline measures the pgbench rows on their own, unless the
// enqueue rows already measured them alongside themselves.
func (r *runner) pgbenchBaseline(ctx context.Context) error {
	if r.pgb1 != nil {
		return nil
	}
	for range r.opts.Reps {
		for _, c := range []int{1, 16} {
			if err := r.pgbenchAfter(ctx, c); err != nil {
				return err
			}
		}
	}
	r.addPgbenchRows()
	return nil
}

// addPgbenchRows reports the pgbench baseline and, when the enqueue rows
// were measured in the same repetitions, their ratios to it.
func (r *runner) addPgbenchRows() {
	how := fmt.Sprintf("one-row INSERT script (the enqueue rows' payload), -T %s, same server", r.pgbenchFor())
	if r.opts.Durability == "normal" {
		how += ", synchronous_commit=off"
	}
	r.add(newRow("pgbench one-row INSERT, 1 client (baseline)", "tx/s", how, r.pgb1))
	r.add(newRow("pgbench one-row INSERT, 16 clients -j 2 (baseline)", "tx/s", how, r.pgb16))
	if len(r.enq1) == len(r.pgb1) {
		r.add(newRow("1-client enqueue / pgbench 1 client", "%", "per repetition, pgbench right after the enqueue run", ratio(r.enq1, r.pgb1)))
	}
	if len(r.enq16) == len(r.pgb16) {
		r.add(newRow("16-client enqueue / pgbench 16 clients", "%", "per repetition, pgbench right after the enqueue run; target >= 50%", ratio(r.enq16, r.pgb16)))
	}
}

// pgbenchTPS runs pgbench with a one-row INSERT script into a scratch
// table, in a schema of its own dropped afterwards, with `clients`
// clients for d, and returns its transactions per second.
func pgbenchTPS(ctx context.Context, url, durability string, clients int, d time.Duration) (tps float64, err error) {
	bin, err := pgbenchPath()
	if err != nil {
		return 0, err
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return 0, fmt.Errorf("pgbench baseline: %w", err)
	}
	schema := pgx.Identifier{"stqbench_pgb_" + hex.EncodeToString(b)}.Sanitize()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("pgbench baseline: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema+`; CREATE TABLE `+schema+`.pgb (id bigserial PRIMARY KEY, payload text NOT NULL)`); err != nil {
		return 0, fmt.Errorf("pgbench baseline: make scratch table: %w", err)
	}
	defer func() {
		if _, derr := conn.Exec(context.WithoutCancel(ctx), `DROP SCHEMA `+schema+` CASCADE`); derr != nil && err == nil {
			err = fmt.Errorf("pgbench baseline: drop scratch table: %w", derr)
		}
	}()
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return 0, fmt.Errorf("pgbench baseline: %w", err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "insert.sql")
	// pgbench reads a script's lines as SQL; quote the payload as SQL text.
	sql := fmt.Sprintf("INSERT INTO %s.pgb (payload) VALUES ('%s');\n", schema, strings.ReplaceAll(string(savePayload()), "'", "''"))
	if err := os.WriteFile(script, []byte(sql), 0o600); err != nil {
		return 0, fmt.Errorf("pgbench baseline: %w", err)
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := osexec.CommandContext(ctx, bin, "-n", "-f", script, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)), "-T", strconv.Itoa(secs), url)
	if durability == "normal" {
		// What the daemon's durability=normal sets on its connections.
		cmd.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=off")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench -c %d: %w: %s", clients, err, strings.TrimSpace(string(out)))
	}
	return parsePgbenchTPS(string(out))
}

// parsePgbenchTPS reads the "tps = N (without initial connection time)"
// line of pgbench's report.
func parsePgbenchTPS(out string) (float64, error) {
	for line := range strings.SplitSeq(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "tps = ")
		if !ok {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				return v, nil
			}
		}
	}
	return 0, fmt.Errorf("pgbench printed no tps line: %q", out)
}

// pgbenchPath finds pgbench as .ci/pg finds initdb: on PATH, else in the
// newest /usr/lib/postgresql/*/bin.
func pgbenchPath() (string, error) {
	if p, err := osexec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		p := filepath.Join(d, "pgbench")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("no pgbench: neither on PATH nor under /usr/lib/postgresql/*/bin (it comes with the PostgreSQL server)")
}

// versionOf is the major version of a /usr/lib/postgresql/N/bin path, 0
// when it has none.
func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}
