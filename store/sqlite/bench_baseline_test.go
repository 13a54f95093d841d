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

// checkBare checks a baseline's result: a rate, and a WAL database at
// path whose table holds want rows.
func checkBare(t *testing.T, rate float64, path, table string, want int64) {
	t.Helper()
	if rate <= 0 {
		t.Errorf("rate %v, want > 0", rate)
	}
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(db)
	defer c.close()
	journal, err := c.pragmaText("PRAGMA journal_mode")
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	err = c.runOnce(`SELECT count(*) FROM `+table, nil, func(st *sqlite3.Stmt) bool {
		rows = st.ColumnInt64(0)
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if journal != "wal" || rows != want {
		t.Errorf("journal mode %q with %d rows in %s, want wal with %d", journal, rows, table, want)
	}
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
		checkBare(t, rate, path, "t", 25)
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
	checkBare(t, rate, path, "jobs", 70)
}
