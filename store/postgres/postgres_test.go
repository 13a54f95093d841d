package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"stq/engine"
	"stq/store/storetest"
)

// testURL is the server the tests use; .ci/run (and .ci/pg) start one.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("STQ_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("set STQ_TEST_DATABASE_URL to a PostgreSQL URL to run these; .ci/run starts one (or: .ci/pg -- go test ./store/postgres/)")
	}
	return u
}

// freshSchema returns a schema name no other test uses, dropped with
// everything in it when the test ends.
func freshSchema(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "stqtest_" + hex.EncodeToString(b)
	u := testURL(t)
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

// openSchema opens a store on schema, closed when the test ends.
func openSchema(t testing.TB, schema string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{URL: testURL(t), Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) engine.Store {
		return openSchema(t, freshSchema(t))
	})
}
