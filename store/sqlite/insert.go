package sqlite

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// insertCol is a column of the jobs insert (qInsertJob, and the
// multi-row form a batch uses). Each is bound through a parameter named
// after it, so the statement's text and bindInsertJob cannot drift apart:
// reordering either moves the name with the value.
type insertCol int

const (
	colID insertCol = iota
	colQueue
	colType
	colSubject
	colGeneration
	colPriority
	colState
	colMaxAttempts
	colPayload
	colCommand
	colCwd
	colEnv
	colRunAt
	colDeadline
	colTTL
	colBackoff
	colExpiresAt
	colCreatedAt
	colFinishedAt
	colError
	colDue
	colWaitIdle
	colRequireCharging
	colDebounce
	colReplaceRunning
	colAfterIDs
	colEnvID
	colHeld

	numInsertCols
)

var insertColNames = [numInsertCols]string{
	colID: "id", colQueue: "queue", colType: "type", colSubject: "subject",
	colGeneration: "generation", colPriority: "priority", colState: "state",
	colMaxAttempts: "max_attempts", colPayload: "payload", colCommand: "command",
	colCwd: "cwd", colEnv: "env", colRunAt: "run_at", colDeadline: "deadline",
	colTTL: "ttl", colBackoff: "backoff", colExpiresAt: "expires_at",
	colCreatedAt: "created_at", colFinishedAt: "finished_at", colError: "error",
	colDue: "due", colWaitIdle: "wait_idle", colRequireCharging: "require_charging",
	colDebounce: "debounce", colReplaceRunning: "replace_running",
	colAfterIDs: "after_ids", colEnvID: "env_id", colHeld: "held",
}

// insertJobSQL is the jobs insert with rows VALUES rows. A single row's
// parameters are named after their columns (:id, :queue...); with several,
// row r's carry the suffix _r (:id_0, :id_1...), since a name used twice
// is one parameter.
func insertJobSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO jobs (")
	sb.WriteString(strings.Join(insertColNames[:], ", "))
	sb.WriteString(") VALUES ")
	for r := range rows {
		if r > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for col, name := range insertColNames {
			if col > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(insertParam(name, r, rows))
		}
		sb.WriteByte(')')
	}
	return sb.String()
}

func insertParam(col string, row, rows int) string {
	if rows == 1 {
		return ":" + col
	}
	return ":" + col + "_" + strconv.Itoa(row)
}

// insertIndex is where each column of one VALUES row is bound: the
// parameter indexes, looked up once per prepared statement so that binding
// a row costs no name lookups.
type insertIndex [numInsertCols]int

// resolve fills ix with the indexes of row of st's rows VALUES rows.
func (ix *insertIndex) resolve(st *sqlite3.Stmt, row, rows int) error {
	for col, name := range insertColNames {
		p := insertParam(name, row, rows)
		if ix[col] = st.BindIndex(p); ix[col] == 0 {
			return fmt.Errorf("jobs insert has no parameter %s", p)
		}
	}
	return nil
}

// insertJob stores in's row, as out decided. A duplicate id is an error
// wrapping engine.ErrInvalid.
func (c *conn) insertJob(in *newJob, out *enqueued) error {
	if c.insertIx[colID] == 0 {
		st, err := c.stmt(qInsertJob)
		if err != nil {
			return err
		}
		if err := c.insertIx.resolve(st, 0, 1); err != nil {
			return err
		}
	}
	paused, err := c.pausedNow()
	if err != nil {
		return fmt.Errorf("insert job: %w", err)
	}
	out.held = paused[in.queue]
	err = c.run(qInsertJob, func(b *binder) { bindInsertJob(b, &c.insertIx, in, out) })
	switch {
	case isUnique(err):
		return fmt.Errorf("%w: a job with id %q already exists", engine.ErrInvalid, in.id)
	case err != nil:
		return fmt.Errorf("insert job: %w", err)
	}
	return nil
}

// bindInsertJob binds the values of one VALUES row of the jobs insert,
// whose parameters ix locates, for in stored as out decided. The columns
// are bound by name, so their order here is free: they are grouped by how
// their values bind.
func bindInsertJob(b *binder, ix *insertIndex, in *newJob, out *enqueued) {
	queued := out.state == engine.StateQueued
	for _, v := range [...]colValue[string]{{colID, in.id}, {colQueue, in.queue}, {colType, in.typ}, {colState, string(out.state)}} {
		b.at(ix[v.col]).text(v.v)
	}
	// Optional text is NULL when empty, never "".
	for _, v := range [...]colValue[string]{{colSubject, in.subject}, {colCwd, in.cwd}, {colError, out.errText}} {
		b.at(ix[v.col]).optText(v.v)
	}
	for _, v := range [...]colValue[int64]{
		{colGeneration, out.generation}, {colPriority, in.priority}, {colMaxAttempts, in.maxAttempts},
		{colDeadline, in.deadline}, {colTTL, in.ttl}, {colBackoff, in.backoff}, {colDebounce, in.debounce},
	} {
		b.at(ix[v.col]).int64(v.v)
	}
	for _, v := range [...]colValue[[]byte]{{colCommand, in.command}, {colEnv, in.env}, {colAfterIDs, in.afterJSON}} {
		b.at(ix[v.col]).optJSONText(v.v)
	}
	// A job due on arrival goes straight into the claim's path; one
	// scheduled for later waits for a claim to promote it.
	due := queued && !in.runAt.After(in.createdAt)
	for _, v := range [...]colValue[bool]{{colDue, due}, {colHeld, queued && out.held}, {colWaitIdle, in.waitIdle}, {colRequireCharging, in.requireAC}, {colReplaceRunning, in.replace}} {
		b.at(ix[v.col]).bool(v.v)
	}
	b.at(ix[colPayload]).optBytes(in.payload)
	b.at(ix[colEnvID]).optInt64(in.baseID)
	b.at(ix[colRunAt]).time(in.runAt)
	b.at(ix[colCreatedAt]).time(in.createdAt)
	// Only a QUEUED job can expire (optInt64: no TTL is NULL), and a job
	// stored in an end state finished on arrival.
	if queued {
		b.at(ix[colExpiresAt]).optInt64(in.expiresAt)
		b.at(ix[colFinishedAt]).null()
	} else {
		b.at(ix[colExpiresAt]).null()
		b.at(ix[colFinishedAt]).time(in.createdAt)
	}
}

// colValue is a value for the column col.
type colValue[T any] struct {
	col insertCol
	v   T
}

// multiInsert is the jobs insert with several VALUES rows, prepared for
// one batch op, and where each row's parameters are.
type multiInsert struct {
	st *sqlite3.Stmt
	ix []insertIndex
}

// prepareInsertMany prepares the jobs insert with k VALUES rows. The
// caller closes it before its op ends.
func (c *conn) prepareInsertMany(k int) (*multiInsert, error) {
	st, err := c.prepare(insertJobSQL(k), 0)
	if err != nil {
		return nil, fmt.Errorf("prepare multi-row insert: %w", err)
	}
	m := &multiInsert{st: st, ix: make([]insertIndex, k)}
	for r := range m.ix {
		if err := m.ix[r].resolve(st, r, k); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("prepare multi-row insert: %w", err)
		}
	}
	return m, nil
}

// insertRows stores plain jobs (see plain) with one run of m, which has a
// row for each, as enqueue stores each of them.
func (c *conn) insertRows(m *multiInsert, ins []newJob, outs []enqueued) error {
	paused, err := c.pausedNow()
	if err != nil {
		return fmt.Errorf("insert jobs: %w", err)
	}
	err = c.bindAll(m.st, func(b *binder) {
		for k := range ins {
			outs[k] = enqueued{generation: ins[k].generation, state: engine.StateQueued, held: paused[ins[k].queue]}
			bindInsertJob(b, &m.ix[k], &ins[k], &outs[k])
		}
	})
	if err == nil {
		err = m.st.Exec()
	}
	if err != nil {
		return fmt.Errorf("insert jobs: %w", err)
	}
	return nil
}
