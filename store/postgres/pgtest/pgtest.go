// Package pgtest gives tests a PostgreSQL to run against: the server .ci/run
// (or .ci/pg) starts, named by STQ_TEST_DATABASE_URL, and a fresh schema of
// it per test, dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// URL is the test server's URL. Without one the test is skipped, saying
// how to get one; CI always sets it.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("STQ_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("set STQ_TEST_DATABASE_URL to a PostgreSQL URL to run these; .ci/run starts one (or: .ci/pg -- go test ./...)")
	}
	return u
}

// Schema returns a schema name, prefix and random hex, that no other test
// uses; it and everything in it are dropped when the test ends.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := prefix + hex.EncodeToString(b)
	u := URL(t)
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}
