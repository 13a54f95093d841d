package e2e

import (
	"fmt"
	"os"
	"stq/store/postgres/pgtest"
	"strings"
	"testing"
)

// pgEnv is a test home whose config.toml points the daemon at a fresh
// schema of the test server (STQ_TEST_DATABASE_URL, which .ci/run sets),
// dropped when the test ends.
func pgEnv(t *testing.T, schema string) *testEnv {
	t.Helper()
	e := newEnv(t)
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("[store]\nurl = %q\nschema = %q\n", pgTestURL(t), schema)
	if err := os.WriteFile(e.path("config.toml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// The same CLI works on PostgreSQL: a daemon configured with [store] url
// runs jobs, and a second daemon (another home, as on another host) on the
// same schema sees them. No SQLite file is created.
func TestPostgresDaemon(t *testing.T) {
	schema := pgSchema(t)
	e := pgEnv(t, schema)
	d := e.startDaemon()
	id := e.ok("enqueue", "--subject", "pg/one", "--", "sh", "-c", "echo hello from postgres")
	j := e.waitState(id, "DONE")
	if j.Generation != 1 || len(j.Attempts) != 1 || j.Attempts[0].Outcome != "succeeded" {
		t.Fatalf("job after its run: generation %d, attempts %+v", j.Generation, j.Attempts)
	}
	if out := e.ok("tail", id); !strings.Contains(out, "hello from postgres") {
		t.Fatalf("tail %s: %q", id, out)
	}
	if _, err := os.Stat(e.path("stq.db")); !os.IsNotExist(err) {
		t.Fatalf("the daemon on PostgreSQL made a SQLite file (%v)", err)
	}
	if log := d.output(); strings.Contains(log, "password") || !strings.Contains(log, "schema "+schema) {
		t.Fatalf("the ready line should name the schema and no password:\n%s", log)
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("daemon exit %d", code)
	}

	other := pgEnv(t, schema)
	other.startDaemon()
	if got := other.show(id); got.State != "DONE" || got.ID != id {
		t.Fatalf("the second daemon shows %s as %s", got.ID, got.State)
	}
	next := other.ok("enqueue", "--subject", "pg/one", "--", "true")
	if j := other.waitState(next, "DONE"); j.Generation != 2 {
		t.Fatalf("the next job of the key got generation %d, want 2", j.Generation)
	}
}

// STQ_DATABASE_URL wins over config.toml, and a bad one stops the daemon
// with a message that names it and hides the password.
func TestPostgresDaemonRefusesBadURL(t *testing.T) {
	e := newEnv(t)
	c := e.cmd("daemon")
	c.Env = append(c.Env, "STQ_DATABASE_URL=mysql://bob:hunter2@db/stq")
	out, err := c.CombinedOutput()
	if err == nil {
		t.Fatalf("daemon started with a mysql URL:\n%s", out)
	}
	if !strings.Contains(string(out), "STQ_DATABASE_URL") || strings.Contains(string(out), "hunter2") {
		t.Fatalf("daemon output should name STQ_DATABASE_URL and hide the password:\n%s", out)
	}
}

func pgTestURL(t *testing.T) string { return pgtest.URL(t) }

func pgSchema(t *testing.T) string { return pgtest.Schema(t, "stqe2e_") }
