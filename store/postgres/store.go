// Package postgres keeps stq's jobs in PostgreSQL, the engine.Store that
// several daemons on several hosts can share: every rule that must hold
// across daemons is serialized by row or advisory locks inside one
// transaction, and claims take jobs with FOR UPDATE SKIP LOCKED.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"stq/engine"
)

// DefaultSchema is the namespace a store uses when Options.Schema is empty.
const DefaultSchema = "stq"

// Options say which database a Store uses and how.
type Options struct {
	// URL is a PostgreSQL connection URL or keyword/value string. What it
	// leaves out comes from the usual PG* variables, and the password from
	// PGPASSWORD or ~/.pgpass, as for psql.
	URL string
	// Schema is the namespace of this installation's tables (default
	// "stq"): several installations may share one database under different
	// schemas. At most 58 letters, digits and underscores, starting with a
	// letter or underscore.
	Schema string
	// MaxConns caps the pool (default: pgx's, the larger of 4 and the CPU
	// count).
	MaxConns int32
	// Synchronous is the daemon's durability setting: "full" (the
	// default: a change is on the server's disk before its call returns)
	// or "normal" (synchronous_commit off: a crash of the PostgreSQL
	// server, not of stq, may undo the last commits, never corrupt).
	Synchronous string
}

// ValidSchema reports whether name is a schema name Options.Schema
// accepts.
func ValidSchema(name string) bool { return schemaName().MatchString(name) }

// schemaName is what Options.Schema accepts: plain identifiers only, so a
// schema name never needs quoting in a message or a psql session, and at
// most 58 characters, so that the notification channel "stq_<schema>"
// fits PostgreSQL's 63. The patterns here are compiled on first use, not
// at package init: every stq process links this package, and most never
// touch PostgreSQL.
var schemaName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,57}$`) })

const (
	// foldInterval is how often the store folds count_deltas into counts
	// (see migration 1).
	foldInterval = time.Second
	// maxTries bounds how often a transaction that PostgreSQL aborted for
	// a deadlock or a serialization failure is run again.
	maxTries = 5
	// connectTimeout applies when the URL sets no connect_timeout.
	connectTimeout = 10 * time.Second
)

// Store is the PostgreSQL engine.Store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	schema string

	// envs caches environments by id: rows never change once written and
	// ids are never used twice.
	envMu sync.Mutex
	envs  map[int64]*engine.BaseEnv

	// origin names this instance in its notices (see watch.go); notes
	// holds the notices of committed changes for the notifier.
	origin string
	notes  *notifier

	// pending hands plain enqueues to the inserters (see group.go).
	pending    chan *pendingEnqueue
	inserterWG sync.WaitGroup

	// oneByOne turns the pipelined cycle off, so that the conformance
	// suite holds the one-statement-at-a-time way to the same contract.
	// Set by tests only, before the store is used.
	oneByOne bool

	// paused is the store's reading of the paused queues (see held.go).
	paused pausedQueues

	closed      atomic.Bool
	closing     context.Context // ends at Close: the store's goroutines stop
	close       context.CancelFunc
	folderEnd   chan struct{} // closed by the folder as it returns
	notifierEnd chan struct{} // closed by the notifier as it returns
	closeOnce   sync.Once
}

var (
	_ engine.Store   = (*Store)(nil)
	_ engine.Watcher = (*Store)(nil)
)

// Open connects to the database, creates or migrates the schema under an
// advisory lock, and starts the store's folder. An error never shows the
// password.
func Open(ctx context.Context, opts Options) (*Store, error) {
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if !ValidSchema(schema) {
		return nil, fmt.Errorf("open store: %w: schema %q must be at most 58 letters, digits and underscores, starting with a letter or underscore", engine.ErrInvalid, schema)
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// pgconn's parse errors already redact the password.
		return nil, fmt.Errorf("open store: %w", err)
	}
	where := Redact(opts.URL)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without connect_timeout a dial to a host that drops packets
		// waits for the OS's TCP timeout, minutes; a daemon should say
		// sooner that it cannot reach its database.
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	switch strings.ToLower(opts.Synchronous) {
	case "", "full":
	case "normal":
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	default:
		return nil, fmt.Errorf("open store: %w: synchronous must be \"full\" or \"normal\", got %q", engine.ErrInvalid, opts.Synchronous)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "stq"
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	err = checkServer(ctx, conn.Conn())
	if err == nil {
		err = migrate(ctx, conn.Conn(), schema)
	}
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	s := &Store{pool: pool, schema: schema, origin: newOrigin(), notes: newNotifier(),
		folderEnd: make(chan struct{}), notifierEnd: make(chan struct{}), pending: make(chan *pendingEnqueue)}
	// A hint (held.go): if it cannot be read, the folder tries again.
	_ = s.readPaused(ctx)
	s.closing, s.close = context.WithCancel(context.Background())
	go s.runFolder(s.closing)
	go s.runNotifier(s.closing)
	s.inserterWG.Add(inserters)
	for range inserters {
		go s.runInserter(s.closing)
	}
	return s, nil
}

// minServerVersion is the oldest PostgreSQL (server_version_num) the store
// runs on: claims and cycles set plan_cache_mode, new in 12 (see
// qCyclePlans). Refused at start, an older server would otherwise fail
// every claim.
const minServerVersion = 120000

// checkServer refuses a server older than minServerVersion.
func checkServer(ctx context.Context, conn *pgx.Conn) error {
	var num int
	var version string
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&num, &version)
	if err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	return checkVersion(num, version)
}

// checkVersion is checkServer's rule, for the server_version_num num and
// the server_version it names in its error.
func checkVersion(num int, version string) error {
	if num < minServerVersion {
		return fmt.Errorf("the server runs PostgreSQL %s; stq needs 12 or newer", version)
	}
	return nil
}

// Redact returns a connection URL fit to print: its password, if any,
// replaced by "xxxxx". A string that is not a URL (keyword/value form)
// comes back with any password= value hidden.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		// Not a URL url.Parse takes: hide what looks like a password in
		// either form.
		raw = redactUserInfo().ReplaceAllString(raw, "${1}xxxxx@")
		return redactKV().ReplaceAllString(raw, "${1}xxxxx")
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

var redactUserInfo = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(://[^:/@]*:)[^@]*@`) })

var redactKV = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
})

// Schema is the namespace the store's tables live in.
func (s *Store) Schema() string { return s.schema }

// Close stops the folder, the notifier (notices not sent yet are
// dropped), the inserters (an Enqueue still waiting for one fails with
// engine.ErrClosed) and any Watch, and closes the pool, waiting for calls in
// progress to give their connections back. Calling it again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.close()
		<-s.folderEnd
		<-s.notifierEnd
		s.inserterWG.Wait()
		s.pool.Close()
	})
	return nil
}

// runFolder folds the count deltas every foldInterval until Close, so
// that Stats and Prune add up a short table, and reads the paused queues
// again (held.go). A failed fold is retried at the next tick; the deltas
// wait, nothing is lost.
func (s *Store) runFolder(ctx context.Context) {
	defer close(s.folderEnd)
	t := time.NewTicker(foldInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.fold(ctx)
			_ = s.readPaused(ctx)
		}
	}
}

// fold moves the count deltas into counts. Only one fold of a schema runs
// at a time (the others skip); deltas appended meanwhile wait for the next.
func (s *Store) fold(ctx context.Context) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey(s.schema, "fold")).Scan(&got); err != nil || !got {
			return err
		}
		_, err := tx.Exec(ctx, `WITH d AS (DELETE FROM count_deltas RETURNING queue, state, n)
			INSERT INTO counts (queue, state, n)
			SELECT queue, state, sum(n) FROM d GROUP BY queue, state ORDER BY queue, state
			ON CONFLICT (queue, state) DO UPDATE SET n = counts.n + excluded.n`)
		return err
	})
}

// write runs fn in a READ COMMITTED transaction and commits it; the rules
// that need more take their locks inside fn. A transaction PostgreSQL
// aborts for a deadlock or serialization failure runs again, so fn must
// set its results afresh on every run.
func (s *Store) write(ctx context.Context, fn func(pgx.Tx) error) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	for try := 1; ; try++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || try >= maxTries || !retryable(err) {
			return s.mapErr(err)
		}
	}
}

// read runs fn in a read-only REPEATABLE READ transaction, so that the
// several statements of one read see one snapshot.
func (s *Store) read(ctx context.Context, fn func(pgx.Tx) error) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	return s.mapErr(err)
}

func (s *Store) mapErr(err error) error {
	// A call that raced Close fails with the pool's own error; callers
	// test for engine.ErrClosed.
	if err != nil && s.closed.Load() && !errors.Is(err, engine.ErrClosed) {
		return fmt.Errorf("%w: %v", engine.ErrClosed, err)
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
