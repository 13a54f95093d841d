package sqlite

import (
	"context"
	"fmt"

	"stq/engine"
)

// op is one write waiting for the writer. fn runs on the write connection
// inside the batch's transaction; it must only use values the caller will
// not touch again, because a caller whose context ends stops waiting while
// fn may still run.
type op struct {
	ctx context.Context
	fn  func(*conn) error
	// direct ops run on the connection outside any transaction, after the
	// batch's transaction has committed (a checkpoint cannot run inside
	// one). They are not counted as writes.
	direct bool
	err    error
	done   chan error
}

// write hands fn to the writer and waits until the transaction holding it
// has committed (or failed). If ctx ends first the caller gets ctx's error,
// though fn may still be committed after that: a timed-out write is
// "unknown", not "not done". Writes must therefore be safe to retry, which
// the engine's ids and attempt numbers make them.
func (s *Store) write(ctx context.Context, fn func(*conn) error) error {
	return s.submit(&op{ctx: ctx, fn: fn})
}

// writeDirect is write for an op that must run outside a transaction; the
// writer runs it between transactions, so it never races one.
func (s *Store) writeDirect(ctx context.Context, fn func(*conn) error) error {
	return s.submit(&op{ctx: ctx, fn: fn, direct: true})
}

// usable returns why a call must not start: its context has ended, or
// the store is closing.
func (s *Store) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return engine.ErrClosed
	default:
		return nil
	}
}

func (s *Store) submit(o *op) error {
	ctx := o.ctx
	if err := s.usable(ctx); err != nil {
		return err
	}
	o.done = make(chan error, 1)
	select {
	case s.ops <- o:
	case <-s.closing:
		return engine.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		select {
		case err := <-o.done:
			return err
		default:
			return ctx.Err()
		}
	case <-s.writerDone:
		// The writer answers before it exits; no answer means it never took
		// the op.
		select {
		case err := <-o.done:
			return err
		default:
			return engine.ErrClosed
		}
	}
}

// runWriter is the only goroutine that writes. It takes the first waiting op,
// adds whatever else is already queued, and commits them all at once, so
// concurrent callers share one fsync while a lone caller waits for no one.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	batch := make([]*op, 0, s.maxBatch)
	for {
		select {
		case <-s.closing:
			s.failQueued()
			return
		case o := <-s.ops:
			batch = append(batch[:0], o)
		}
	fill:
		for len(batch) < s.maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		if n := s.w.runBatch(batch); n > 0 {
			s.writes.Add(int64(n))
			s.txns.Add(1)
		}
		s.explainFull(batch)
		answer(batch)
		clear(batch) // let answered ops be collected
	}
}

// failQueued answers the ops left in the queue at close.
func (s *Store) failQueued() {
	for {
		select {
		case o := <-s.ops:
			o.done <- engine.ErrClosed
		default:
			return
		}
	}
}

// runBatch runs the ops in one IMMEDIATE transaction, each inside its own
// savepoint so that a failing op undoes only itself, and commits once. It
// records each op's result for answer, which runs after the commit, so
// nobody hears back before their change is durable. Direct ops run after
// the commit, outside any transaction. It returns how many ops it ran in
// the transaction.
func (c *conn) runBatch(batch []*op) int {
	live, direct := 0, 0
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			// The caller has gone; skip the work.
			o.err = err
			o.fn = nil
			continue
		}
		if o.direct {
			direct++
		} else {
			live++
		}
	}
	if live > 0 {
		if err := c.runTxn(batch, live > 1); err != nil {
			for _, o := range batch {
				if o.fn != nil && !o.direct {
					o.err = err
				}
			}
		}
	}
	if direct > 0 {
		for _, o := range batch {
			if o.fn != nil && o.direct {
				o.err = c.call(o.fn)
			}
		}
	}
	return live
}

// answer sends every op its result.
func answer(batch []*op) {
	for _, o := range batch {
		o.fn = nil
		o.done <- o.err
	}
}

// runTxn returns an error only if the whole transaction failed.
func (c *conn) runTxn(batch []*op, savepoints bool) (err error) {
	if err := c.exec(qBegin); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	c.pausedRead = false // another process may have paused or resumed since
	defer func() {
		if err != nil {
			c.resetAll()
			if !c.db.GetAutocommit() {
				_ = c.exec(qRollback)
			}
		}
	}()
	for _, o := range batch {
		if o.fn == nil || o.direct {
			continue
		}
		if !savepoints {
			if o.err = c.call(o.fn); o.err != nil {
				// The op is alone: rolling back the transaction undoes it.
				c.resetAll()
				if err := c.exec(qRollback); err != nil {
					return fmt.Errorf("roll back: %w", err)
				}
				return nil
			}
			continue
		}
		if err := c.exec(qSavepoint); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		if o.err = c.call(o.fn); o.err != nil {
			c.resetAll()
			if err := c.exec(qRollbackTo); err != nil {
				return fmt.Errorf("roll back to savepoint: %w", err)
			}
		}
		if err := c.exec(qRelease); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	if err := c.exec(qCommit); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// call runs fn and turns a panic into an error, so one bad op cannot take
// the writer, and with it every caller, down.
func (c *conn) call(fn func(*conn) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in store: %v", r)
		}
	}()
	return fn(c)
}
