package sqlite

import (
	"fmt"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// insertedRow reads the columns of the jobs insert back from the row of
// id, each as SQLite's text of its value ("NULL" for NULL).
func insertedRow(t *testing.T, c *conn, id string) map[string]string {
	t.Helper()
	row := make(map[string]string)
	for _, col := range insertColNames {
		sql := fmt.Sprintf(`SELECT iif(%[1]s IS NULL, 'NULL', CAST(%[1]s AS TEXT)) FROM jobs WHERE id = ?`, col)
		err := c.runOnce(sql, func(b *binder) { b.text(id) }, func(st *sqlite3.Stmt) bool {
			row[col] = st.ColumnText(0)
			return false
		})
		if err != nil {
			t.Fatalf("read column %s: %v", col, err)
		}
	}
	return row
}

// fullJob is a job with every column of the insert set to a value of its
// own, so that a value bound to the wrong column shows.
func fullJob(id string, k int64) (newJob, map[string]string) {
	created := t0.Add(time.Duration(k) * time.Second)
	in := newJob{
		id: id, queue: "q", typ: "t", subject: fmt.Sprint("s", k), generation: 100 + k, priority: 200 + k,
		maxAttempts: 300 + k, payload: []byte(`{"p":1}`), command: []byte(`["c"]`), env: []byte(`{"E":"v"}`),
		cwd: "/w", runAt: created.Add(time.Hour), createdAt: created,
		deadline: 400 + k, ttl: 500 + k, backoff: 600 + k, expiresAt: 700 + k,
		waitIdle: true, requireAC: true, replace: true, debounce: 800 + k,
		afterJSON: []byte(`["a"]`),
	}
	want := map[string]string{
		"id": id, "queue": "q", "type": "t", "subject": fmt.Sprint("s", k),
		"generation": fmt.Sprint(100 + k), "priority": fmt.Sprint(200 + k), "state": "QUEUED",
		"max_attempts": fmt.Sprint(300 + k), "payload": `{"p":1}`, "command": `["c"]`, "cwd": "/w",
		"env": `{"E":"v"}`, "run_at": fmt.Sprint(in.runAt.UnixNano()),
		"deadline": fmt.Sprint(400 + k), "ttl": fmt.Sprint(500 + k), "backoff": fmt.Sprint(600 + k),
		"expires_at": fmt.Sprint(700 + k), "created_at": fmt.Sprint(created.UnixNano()),
		"finished_at": "NULL", "error": "NULL", "due": "0",
		"wait_idle": "1", "require_charging": "1", "debounce": fmt.Sprint(800 + k),
		"replace_running": "1", "after_ids": `["a"]`, "env_id": "NULL",
	}
	return in, want
}

func TestInsertBindsEachColumnByName(t *testing.T) {
	t.Parallel()
	w := openTestWriter(t, "NORMAL")

	t.Run("a single row", func(t *testing.T) {
		in, want := fullJob("one", 0)
		if err := w.insertJob(&in, &enqueued{generation: in.generation, state: engine.StateQueued}); err != nil {
			t.Fatal(err)
		}
		got := insertedRow(t, w, "one")
		for col, v := range want {
			if got[col] != v {
				t.Errorf("column %s = %s, want %s", col, got[col], v)
			}
		}
	})

	t.Run("each row of a multi-row insert", func(t *testing.T) {
		const k = 3
		m, err := w.prepareInsertMany(k)
		if err != nil {
			t.Fatal(err)
		}
		defer m.st.Close()
		ins := make([]newJob, k)
		wants := make([]map[string]string, k)
		for i := range k {
			ins[i], wants[i] = fullJob(fmt.Sprintf("many-%d", i), int64(i+1))
		}
		if err := w.insertRows(m, ins, make([]enqueued, k)); err != nil {
			t.Fatal(err)
		}
		for i, want := range wants {
			got := insertedRow(t, w, ins[i].id)
			for col, v := range want {
				if got[col] != v {
					t.Errorf("row %d: column %s = %s, want %s", i, col, got[col], v)
				}
			}
		}
	})
}

func TestInsertJobSQLNamesEveryParameter(t *testing.T) {
	t.Parallel()
	w := openTestWriter(t, "NORMAL")
	for _, rows := range []int{1, 2, insertRun} {
		st, err := w.prepare(insertJobSQL(rows), 0)
		if err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
		if got, want := st.BindCount(), rows*int(numInsertCols); got != want {
			t.Errorf("%d rows: %d parameters, want %d", rows, got, want)
		}
		for p := 1; p <= st.BindCount(); p++ {
			if st.BindName(p) == "" {
				t.Errorf("%d rows: parameter %d has no name", rows, p)
			}
		}
		_ = st.Close()
	}
}
