package sqlite

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// TestLoadHistory loads history into a real file and checks that the store
// sees it as it would see jobs that really ran: counters, lookups, the
// maintained tables and the schema's constraints, and that real work goes
// on normally afterwards.
func TestLoadHistory(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stq.db")
	payload := []byte(`{"pad":"` + strings.Repeat("x", 90) + `"}`)
	now := time.Now()
	if err := LoadHistory(path, 5000, payload, now); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Queues[engine.DefaultQueue]; len(st.Queues) != 1 || len(got) != 1 || got[engine.StateDone] != 5000 {
		t.Fatalf("stats after loading 5000 jobs: %v", st.Queues)
	}

	page, err := s.List(ctx, engine.ListFilter{Limit: 2})
	list := page.Jobs
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	j, err := s.Get(ctx, list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != engine.StateDone || j.Queue != engine.DefaultQueue || j.Type != "noop" ||
		j.Attempt != 1 || j.MaxAttempts != engine.DefaultMaxAttempts || !bytes.Equal(j.Payload, payload) ||
		len(j.ID) != 26 || j.Owner == "" || j.StartedAt == nil || j.FinishedAt == nil ||
		!j.FinishedAt.Before(now) || j.StartedAt.Before(j.CreatedAt) || !j.RunAt.Equal(j.CreatedAt) {
		t.Fatalf("loaded job: %+v", j)
	}
	if len(j.Attempts) != 1 || j.Attempts[0].Outcome != engine.OutcomeSucceeded || j.Attempts[0].N != 1 ||
		j.Attempts[0].FinishedAt == nil || !j.Attempts[0].FinishedAt.Equal(*j.FinishedAt) {
		t.Fatalf("loaded job's attempts: %+v", j.Attempts)
	}
	// The newest job (5000th, odd row 4999) has a subject; the one before
	// has none.
	if list[0].Subject != "history/0499" || list[0].Generation != 3 || list[1].Subject != "" || list[1].Generation != 0 {
		t.Fatalf("subjects of the newest jobs: %q gen %d, %q gen %d",
			list[0].Subject, list[0].Generation, list[1].Subject, list[1].Generation)
	}
	keyedPage, err := s.List(ctx, engine.ListFilter{Queue: engine.DefaultQueue, Type: "noop", Subject: "history/0007", Limit: 100})
	keyed := keyedPage.Jobs
	if err != nil || len(keyed) != 3 || keyed[0].Generation != 3 || keyed[2].Generation != 1 {
		t.Fatalf("list by key: %d jobs, %v", len(keyed), err)
	}

	checkHistory(t, path)

	// Real work goes on: a keyed job continues its key's generations and
	// is the one claimed; the history is left alone.
	at := now.Add(time.Second)
	res, err := s.Enqueue(ctx, &engine.Job{ID: "real", Queue: engine.DefaultQueue, Type: "noop",
		Subject: "history/0007", MaxAttempts: 3, CreatedAt: at, RunAt: at}, false)
	if err != nil || res.Job.Generation != 4 || res.Job.State != engine.StateQueued {
		t.Fatalf("enqueue after load: %+v, %v", res.Job, err)
	}
	claimed, err := s.Claim(ctx, engine.ClaimRequest{Owner: "o", Now: at, Limit: 10})
	if err != nil || len(claimed) != 1 || claimed[0].ID != "real" {
		t.Fatalf("claim after load: %v, %v", claimed, err)
	}
	if _, err := s.Complete(ctx, engine.Completion{ID: "real", Attempt: 1, State: engine.StateDone,
		Outcome: engine.OutcomeSucceeded, FinishedAt: at}); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Stats(ctx); err != nil || st.Queues[engine.DefaultQueue][engine.StateDone] != 5001 {
		t.Fatalf("stats after a real job: %v, %v", st.Queues, err)
	}
	checkHistory(t, path)
}

// TestLoadHistoryAppends loads more than one transaction's worth onto a
// store that has history already: generations keep rising per key across
// chunks and loads, and ids stay unique and in creation order.
func TestLoadHistoryAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("writes over 100,000 rows")
	}
	path := filepath.Join(t.TempDir(), "stq.db")
	now := time.Now()
	if err := LoadHistory(path, 3000, nil, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := LoadHistory(path, historyChunk+3000, []byte(`{}`), now); err != nil {
		t.Fatal(err)
	}
	n := int64(historyChunk + 6000)
	for _, q := range []struct {
		sql  string
		want int64
	}{
		{`SELECT count(*) FROM jobs WHERE state = 'DONE'`, n},
		{`SELECT n FROM counts WHERE queue = 'default' AND state = 'DONE'`, n},
		// Each key's generations are 1, 2, 3...: no repeats, no gaps.
		{`SELECT count(*) FROM (SELECT subject FROM jobs WHERE subject IS NOT NULL
			GROUP BY subject HAVING count(DISTINCT generation) <> count(*) OR max(generation) <> count(*))`, 0},
		{`SELECT count(*) FROM subjects`, historyKeys},
		// The first load's payload was empty: stored as NULL, as Enqueue does.
		{`SELECT count(*) FROM jobs WHERE payload IS NULL`, 3000},
	} {
		if got := queryInt(t, path, q.sql); got != q.want {
			t.Errorf("%s: got %d, want %d", q.sql, got, q.want)
		}
	}
	checkHistory(t, path)
}

func TestLoadHistoryRejects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stq.db")
	if err := LoadHistory(path, -1, nil, time.Now()); err == nil {
		t.Error("negative count accepted")
	}
	if err := LoadHistory(path, 10, nil, time.Time{}); err == nil {
		t.Error("zero now accepted")
	}
	if err := LoadHistory(path, 10, []byte("{"), time.Now()); err == nil {
		t.Error("a payload that is not JSON accepted")
	}
}

// checkHistory checks the database file against what the store's writes
// and triggers maintain: the schema's constraints, the counts, the
// subjects, one attempt per started run, and ids that sort like seqs.
func checkHistory(t *testing.T, path string) {
	t.Helper()
	if v := pragmaOf(t, path, "integrity_check"); v != "ok" {
		t.Fatalf("integrity check: %s", v)
	}
	if v := pragmaOf(t, path, "foreign_key_check"); v != "" {
		t.Fatalf("foreign key check: %s", v)
	}
	for _, q := range []string{
		// counts matches a recount.
		`SELECT count(*) FROM (SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state) AS j
			FULL JOIN (SELECT queue, state, n FROM counts WHERE n <> 0) AS c USING (queue, state)
			WHERE j.n IS NOT c.n`,
		// subjects holds each key's highest generation, and nothing runs.
		`SELECT count(*) FROM (SELECT queue, type, subject, max(generation) AS g FROM jobs
			WHERE subject IS NOT NULL GROUP BY queue, type, subject) AS j
			FULL JOIN subjects AS s USING (queue, type, subject) WHERE j.g IS NOT s.max_gen OR s.running <> 0`,
		// Every run that started has its attempts row.
		`SELECT count(*) FROM jobs WHERE runs <> (SELECT count(*) FROM attempts WHERE job_seq = seq)`,
		// Ids rise with seq, as the engine's time-ordered ids do.
		`SELECT count(*) FROM jobs AS a JOIN jobs AS b ON b.seq = (SELECT min(seq) FROM jobs WHERE seq > a.seq)
			WHERE b.id <= a.id`,
	} {
		if got := queryInt(t, path, q); got != 0 {
			t.Fatalf("%s: %d rows disagree", q, got)
		}
	}
}

func queryInt(t *testing.T, path, sql string) int64 {
	t.Helper()
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, _, err := db.Prepare(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer st.Close()
	var v int64
	if st.Step() {
		v = st.ColumnInt64(0)
	}
	if err := st.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}
