// Package sqlite is stq's default engine.Store: jobs, attempts, logs and
// environments in one embedded SQLite file, written by one goroutine that
// group-commits concurrent changes and read through read-only connections.
package sqlite

// Where things live:
//
//   - store.go opens and closes the store and lends out read connections;
//     writer.go is the writer goroutine, its op queue and group commit;
//     diskfull.go names a full disk behind a failed write.
//   - conn.go is one connection: its statement cache and how a job row is
//     read; run.go runs a statement (bind, step, reset) and binds values;
//     stmts.go holds the SQL of every cached statement; schema.go migrates.
//   - One file per write: enqueue.go, insert.go (the jobs row, one or many),
//     batch.go (EnqueueMany), claim.go, complete.go, cancel.go (cancels,
//     expiry and the dependency cascade), logs.go, control.go (pause, retry,
//     prune, checkpoint), cycle.go (CompleteAndClaim), envs.go.
//   - read.go answers the reads; bulk.go and bench_baseline.go serve `stq
//     bench` and never run in the daemon.
