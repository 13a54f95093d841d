package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestParsePgbenchTPS(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		out  string
		want float64
		ok   bool
	}{
		{"number of transactions actually processed: 9182\nlatency average = 1.742 ms\ninitial connection time = 3.101 ms\ntps = 1836.396041 (without initial connection time)\n", 1836.396041, true},
		{"tps = 12 (including connections establishing)\ntps = 13 (excluding connections establishing)\n", 12, true},
		{"pgbench: error: connection to server failed\n", 0, false},
		{"tps = fast\n", 0, false},
	} {
		got, err := parsePgbenchTPS(tt.out)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parsePgbenchTPS(%q) = %v, %v; want %v, ok %v", tt.out, got, err, tt.want, tt.ok)
		}
	}
	if v := versionOf("/usr/lib/postgresql/15/bin"); v != 15 {
		t.Errorf("versionOf = %d, want 15", v)
	}
}

func TestClusterRowsNeedAStore(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Options{Jobs: 5, Reps: 1, Samples: 1, Only: []string{"cluster"}})
	if !errors.Is(err, ErrClusterNeedsStore) {
		t.Fatalf("err %v; want ErrClusterNeedsStore", err)
	}
}

// TestRowsOnPostgres runs the pgbench baseline, the latency row and the
// cluster rows against the test server, and checks that every schema a
// run made is gone afterwards.
func TestRowsOnPostgres(t *testing.T) {
	url := os.Getenv("STQ_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("set STQ_TEST_DATABASE_URL to a PostgreSQL URL to run this; .ci/run starts one")
	}
	if testing.Short() {
		t.Skip("builds the stq binary and starts daemons")
	}
	if _, err := pgbenchPath(); err != nil {
		t.Skip(err)
	}
	bin := filepath.Join(t.TempDir(), "stq")
	build := exec.Command("go", "build", "-o", bin, "stq")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stq: %v\n%s", err, out)
	}
	var daemonErr bytes.Buffer
	rows, err := Run(context.Background(), Options{Binary: bin, Jobs: 200, Reps: 1, Samples: 5, Durability: "full", Quick: true,
		Only: []string{"baseline", "latency", "cluster"}, DaemonStderr: &daemonErr, Store: url})
	if err != nil {
		t.Fatalf("%v\ndaemon stderr: %s", err, daemonErr.String())
	}
	byName := map[string]Row{}
	for _, r := range rows {
		byName[r.Name] = r
		if !strings.HasSuffix(r.Note, "store: PostgreSQL") {
			t.Errorf("row %q does not say it ran on PostgreSQL: %q", r.Name, r.Note)
		}
	}
	for _, name := range []string{"pgbench one-row INSERT, 1 client (baseline)", "pgbench one-row INSERT, 16 clients -j 2 (baseline)",
		"enqueue->start latency p50, idle daemon", "durable enqueues/s, 16 clients, 8 through each of 2 daemons",
		"in-process noop jobs processed/s, 2 daemons x 4 workers"} {
		if r, ok := byName[name]; !ok || r.Median <= 0 {
			t.Errorf("row %q: %+v (present %v)", name, r, ok)
		}
	}
	// Until daemons wake each other, the cross-daemon row says how many
	// samples started instead of their latency.
	_, measured := byName["enqueue->start latency p50, across daemons, idle cluster"]
	_, counted := byName["enqueue->start across daemons: samples started"]
	if measured == counted {
		t.Errorf("want either the cross-daemon latency rows or the count of samples started: %v", rows)
	}

	checkBulkRows(t, bin, url)
	checkNoopRows(t, bin, url)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'stqbench%'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d bench schemas left behind", left)
	}
}
