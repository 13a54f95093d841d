package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// Options tune a Store. The zero value is the safe default.
type Options struct {
	// Synchronous is "full" (the default: a change is on disk before its
	// call returns, even across power loss) or "normal" (faster; a power
	// loss may undo the last commits, a process crash never does).
	Synchronous string
	// Readers is the number of read-only connections; default 4.
	Readers int
	// MaxBatch caps how many writes share one transaction; default 256.
	MaxBatch int
}

const (
	defaultReaders  = 4
	defaultMaxBatch = 256
	// busyTimeout only matters if another process opens the database: within
	// one Store only the writer writes and WAL readers never block it.
	busyTimeout = 10 * time.Second
	// walSizeLimit truncates the WAL after checkpoints, so a burst does not
	// leave a large file behind for good.
	walSizeLimit = 4 << 20
)

// Store is the SQLite engine.Store. It is safe for concurrent use.
type Store struct {
	path     string
	maxBatch int

	w       *conn    // owned by the writer goroutine until it exits
	ops     chan *op // submitted writes
	closing chan struct{}
	// writerDone is closed once the writer has answered every op it took
	// and will take no more.
	writerDone chan struct{}
	// writes and txns count ops run and transactions used; their ratio is
	// the group commit's batching.
	writes, txns atomic.Int64

	readers  chan *conn
	nReaders int

	closeOnce sync.Once
	closeErr  error
}

var _ engine.Store = (*Store)(nil)

// Open opens or creates the database at path, migrates its schema, and starts
// the writer. A new file is created with mode 0600, and the WAL and
// shared-memory files follow the database's mode: job payloads, commands and
// environments may hold secrets.
func Open(path string, opts Options) (*Store, error) {
	syncMode, err := SynchronousPragma(opts.Synchronous)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.Readers <= 0 {
		opts.Readers = defaultReaders
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = defaultMaxBatch
	}
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	s := &Store{
		path:       path,
		maxBatch:   opts.MaxBatch,
		ops:        make(chan *op, opts.MaxBatch),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		readers:    make(chan *conn, opts.Readers),
	}

	if s.w, err = openWriter(path, syncMode); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	for range opts.Readers {
		r, err := openReader(path)
		if err != nil {
			_ = s.closeConns()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
		s.readers <- r
		s.nReaders++
	}
	go s.runWriter()
	return s, nil
}

// DurabilityModes are the values of Options.Synchronous, and so of the
// daemon's durability setting, in the words config.toml and flags use.
func DurabilityModes() []string { return []string{"full", "normal"} }

// SynchronousPragma is SQLite's synchronous setting for a durability mode
// ("" is "full"); the only place that maps one to the other.
func SynchronousPragma(v string) (string, error) {
	switch strings.ToLower(v) {
	case "", "full":
		return "FULL", nil
	case "normal":
		return "NORMAL", nil
	}
	return "", fmt.Errorf("%w: synchronous must be \"full\" or \"normal\", got %q", engine.ErrInvalid, v)
}

// createPrivate creates the database file with mode 0600 unless it exists.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// matchMode gives the WAL and shared-memory files the database file's mode,
// as SQLite's own unix VFS does; the Go VFS creates them 0666 less the umask,
// and the WAL holds the same job data as the database. It runs once the
// writer has opened the WAL and before any job is written through it. SQLite
// removes both files only when the last connection closes, so they keep the
// mode while the store is open.
func matchMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, fi.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func openWriter(path, syncMode string) (_ *conn, err error) {
	// No OPEN_URI: path is a file name taken literally, whatever it contains.
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE)
	if err != nil {
		return nil, err
	}
	c := newConn(db)
	defer func() {
		if err != nil {
			_ = c.close()
		}
	}()
	if err := c.configureWriter(syncMode); err != nil {
		return nil, err
	}
	if err := migrate(c); err != nil {
		return nil, err
	}
	if err := matchMode(path); err != nil {
		return nil, fmt.Errorf("set file mode: %w", err)
	}
	return c, nil
}

// configureWriter gives a new connection the settings the store writes
// with: WAL, which it insists on, synchronous at syncMode (see
// SynchronousPragma), and the pragmas below. The one place they are set:
// the benchmarks' bare-SQLite baselines use it too, so that they commit
// exactly as the store does.
func (c *conn) configureWriter(syncMode string) error {
	if err := c.db.BusyTimeout(busyTimeout); err != nil {
		return err
	}
	mode, err := c.pragmaText("PRAGMA journal_mode = WAL")
	if err != nil {
		return fmt.Errorf("set journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("database cannot use WAL mode (journal mode is %q); is it on a network file system?", mode)
	}
	// temp_store=MEMORY keeps the per-op savepoint journals in memory;
	// foreign keys guard the child tables against orphans.
	pragmas := fmt.Sprintf("PRAGMA synchronous = %s; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA journal_size_limit = %d;", syncMode, walSizeLimit)
	if err := c.db.Exec(pragmas); err != nil {
		return fmt.Errorf("set pragmas: %w", err)
	}
	return nil
}

func openReader(path string) (*conn, error) {
	db, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		return nil, fmt.Errorf("open read connection: %w", err)
	}
	c := newConn(db)
	if err := db.BusyTimeout(busyTimeout); err != nil {
		_ = c.close()
		return nil, fmt.Errorf("open read connection: %w", err)
	}
	return c, nil
}

// Close stops the writer, fails writes still waiting with an error wrapping
// engine.ErrClosed, waits for reads in progress, and closes the database.
// Calling it again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.writerDone
		s.closeErr = s.closeConns()
	})
	return s.closeErr
}

// closeConns closes the readers first so that the writer, closing last, can
// checkpoint the WAL into the database and remove it.
func (s *Store) closeConns() error {
	var errs []error
	for range s.nReaders {
		if err := (<-s.readers).close(); err != nil {
			errs = append(errs, fmt.Errorf("close read connection: %w", err))
		}
	}
	if err := s.w.close(); err != nil {
		errs = append(errs, fmt.Errorf("close write connection: %w", err))
	}
	return errors.Join(errs...)
}

// read borrows a read connection and runs fn inside a read transaction, so
// that the several statements of one read see one snapshot.
func (s *Store) read(ctx context.Context, fn func(*conn) error) (err error) {
	if err := s.usable(ctx); err != nil {
		return err
	}
	var c *conn
	select {
	case c = <-s.readers:
	case <-s.closing:
		return engine.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { s.readers <- c }()
	interruptible := ctx.Done() != nil
	if interruptible {
		c.db.SetInterrupt(ctx)
	}
	if err := c.exec(qBeginRead); err != nil {
		if interruptible {
			c.db.SetInterrupt(context.Background())
		}
		return fmt.Errorf("begin read: %w", err)
	}
	defer func() {
		// Clear the interrupt first: a cancelled context must not keep the
		// read transaction from ending.
		if interruptible {
			c.db.SetInterrupt(context.Background())
		}
		c.resetAll()
		if cerr := c.exec(qCommit); cerr != nil && err == nil {
			err = fmt.Errorf("end read: %w", cerr)
		}
	}()
	if err := c.call(fn); err != nil {
		if ctx.Err() != nil && errors.Is(err, sqlite3.INTERRUPT) {
			return ctx.Err()
		}
		return err
	}
	return nil
}
