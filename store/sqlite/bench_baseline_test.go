package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// countRows opens the database at path and returns its journal mode and
// how many rows table holds.
func countRows(t *testing.T, path, table string) (journal string, rows int64) {
	t.Helper()
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(db)
	defer c.close()
	if journal, err = c.pragmaText("PRAGMA journal_mode"); err != nil {
		t.Fatal(err)
	}
	err = c.runOnce(`SELECT count(*) FROM `+table, nil, func(st *sqlite3.Stmt) bool {
		rows = st.ColumnInt64(0)
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	return journal, rows
}

func TestBareInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("commits every row to a WAL database", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "bare.db")
		rate, err := BareInsert(ctx, path, "normal", 25, []byte(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if rate <= 0 {
			t.Errorf("rate %v, want > 0", rate)
		}
		if journal, rows := countRows(t, path, "t"); journal != "wal" || rows != 25 {
			t.Errorf("journal mode %q with %d rows, want wal with 25", journal, rows)
		}
	})

	t.Run("refuses a path that exists", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "bare.db")
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := BareInsert(ctx, path, "full", 1, nil); !errors.Is(err, os.ErrExist) {
			t.Errorf("err %v, want one wrapping os.ErrExist", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep" {
			t.Errorf("the existing file now holds %q", b)
		}
	})

	for _, tc := range []struct {
		name       string
		durability string
		n          int
	}{
		{"refuses no commits", "full", 0},
		{"refuses an unknown durability", "fast", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "bare.db")
			if _, err := BareInsert(ctx, path, tc.durability, tc.n, nil); !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("err %v, want one wrapping engine.ErrInvalid", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused call left %s behind (%v)", path, err)
			}
		})
	}
}

func TestBareBatchedInsertStoresEveryRow(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bare.db")
	rate, err := BareBatchedInsert(context.Background(), path, "normal", 70, 32, []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if rate <= 0 {
		t.Errorf("rate %v, want > 0", rate)
	}
	if journal, rows := countRows(t, path, "jobs"); journal != "wal" || rows != 70 {
		t.Errorf("journal mode %q with %d jobs, want wal with 70", journal, rows)
	}
}
