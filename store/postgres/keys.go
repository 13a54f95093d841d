package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// keyState is what lockKeys found for a key.
type keyState struct {
	locked  bool
	maxGen  int64
	running bool
}

// ok says whether a job of the key at generation gen may start.
func (k keyState) ok(gen int64) bool { return k.locked && !k.running && k.maxGen <= gen }

// lockKeys locks the subjects rows of the candidates' keys and reads what
// the claim needs from them, holding the locks to the commit. Every claim
// and every enqueue of a key holds its row while it changes what "the key
// runs" or "the key's newest generation" mean, so with the lock held the
// checks here are exact across daemons. SKIP LOCKED again: a key another
// claimer or an enqueue holds is passed over this time, never waited for,
// so a claim never waits on a lock and cannot take part in a deadlock.
//
// Which keys run is read by a second statement, sent in the same round
// trip: a statement reads on the snapshot it took when it began, and a
// claim of another daemon that held a key's row and committed between
// that moment and this claim's lock on the row would be locked past but
// not seen, and its job's key taken to be free. The second statement
// begins after every lock is held, so it sees what such a claim started.
// The locked row itself is read at its newest version by FOR UPDATE.
func lockKeys(ctx context.Context, tx querier, cands []candidate) (map[engine.Key]keyState, error) {
	var qs, ts, ss []string
	for _, c := range cands {
		if c.subject != nil {
			qs, ts, ss = append(qs, c.queue), append(ts, c.typ), append(ss, *c.subject)
		}
	}
	if len(qs) == 0 {
		return nil, nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT s.queue, s.type, s.subject, coalesce(s.max_gen, 0) FROM subjects AS s
		WHERE (s.queue, s.type, s.subject) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
		ORDER BY s.queue, s.type, s.subject
		FOR UPDATE SKIP LOCKED`, qs, ts, ss)
	b.Queue(`SELECT DISTINCT r.queue, r.type, r.subject FROM jobs AS r
		WHERE r.state = 'RUNNING'
			AND (r.queue, r.type, r.subject) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, qs, ts, ss)
	br := tx.SendBatch(ctx, b)
	held, err := readKeys(br, len(qs))
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("lock subjects: %w", err)
	}
	return held, nil
}

// readKeys reads lockKeys' two statements: the keys locked with their
// highest generation, then the keys that run.
func readKeys(br pgx.BatchResults, n int) (map[engine.Key]keyState, error) {
	held := make(map[engine.Key]keyState, n)
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k engine.Key
		st := keyState{locked: true}
		if err := rows.Scan(&k.Queue, &k.Type, &k.Subject, &st.maxGen); err != nil {
			rows.Close()
			return nil, err
		}
		held[k] = st
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if rows, err = br.Query(); err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k engine.Key
		if err := rows.Scan(&k.Queue, &k.Type, &k.Subject); err != nil {
			return nil, err
		}
		if st, ok := held[k]; ok {
			st.running = true
			held[k] = st
		}
	}
	return held, rows.Err()
}
