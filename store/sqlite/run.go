package sqlite

import (
	"fmt"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// Every statement runs through one of the runners below: run (no rows),
// queryOne (the first row), queryEach (every row), or queryRows, queryJobs
// and oneJob (rows of jobCols, in conn.go). Each takes the statement from
// the cache, binds it with args (nil: it has no parameters), checks that
// every parameter was bound, steps it, and leaves it reset, so a later use
// starts fresh. Callers wrap the error once, with what they were doing.
//
// args and row are called, never kept, so the closures callers pass stay
// on the stack, and the binder is the connection's own: running a
// statement allocates nothing.

// run runs a statement that returns no rows.
func (c *conn) run(id stmtID, args func(*binder)) error {
	st, err := c.bound(id, args)
	if err != nil {
		return err
	}
	return st.Exec()
}

// queryOne steps a statement once and hands row the first result row, if
// there is one; found says whether there was.
func (c *conn) queryOne(id stmtID, args func(*binder), row func(*sqlite3.Stmt)) (found bool, err error) {
	st, err := c.bound(id, args)
	if err != nil {
		return false, err
	}
	if found = st.Step(); found && row != nil {
		row(st)
	}
	return found, st.Reset()
}

// queryEach hands row every result row until it returns false (nil: it
// steps through them all).
func (c *conn) queryEach(id stmtID, args func(*binder), row func(*sqlite3.Stmt) (more bool)) error {
	st, err := c.stmt(id)
	if err != nil {
		return err
	}
	return c.each(st, args, row)
}

// each is queryEach for a statement outside the cache.
func (c *conn) each(st *sqlite3.Stmt, args func(*binder), row func(*sqlite3.Stmt) (more bool)) error {
	if err := c.bindAll(st, args); err != nil {
		return err
	}
	for st.Step() && (row == nil || row(st)) {
	}
	return st.Reset()
}

// bound returns the cached statement id with its parameters bound by args.
func (c *conn) bound(id stmtID, args func(*binder)) (*sqlite3.Stmt, error) {
	st, err := c.stmt(id)
	if err != nil {
		return nil, err
	}
	return st, c.bindAll(st, args)
}

// bindAll binds st's parameters with args and checks that each was bound.
func (c *conn) bindAll(st *sqlite3.Stmt, args func(*binder)) error {
	c.binder = binder{s: st}
	if args != nil {
		args(&c.binder)
	}
	return c.binder.check()
}

// binder binds parameters 1, 2, 3... in order, or where at says, and keeps
// the first error, so statements with many parameters read as one list.
type binder struct {
	s   *sqlite3.Stmt
	pos int // the parameter bound last
	n   int // how many were bound
	err error
}

func (b *binder) next() int {
	b.pos++
	b.n++
	return b.pos
}

// at makes param the next parameter bound: a named parameter's index (see
// Stmt.BindIndex).
func (b *binder) at(param int) *binder {
	b.pos = param - 1
	return b
}

// check returns the first bind error, or an error if fewer or more
// parameters were bound than the statement has.
func (b *binder) check() error {
	if b.err == nil {
		if n := b.s.BindCount(); b.n != n {
			b.err = fmt.Errorf("bound %d parameters of %d in %.40q", b.n, n, b.s.SQL())
		}
	}
	return b.err
}

func (b *binder) int64(v int64) {
	if i := b.next(); b.err == nil {
		b.err = b.s.BindInt64(i, v)
	}
}

func (b *binder) text(v string) {
	if i := b.next(); b.err == nil {
		b.err = b.s.BindText(i, v)
	}
}

// optText binds "" as NULL: optional text columns hold NULL, never "".
func (b *binder) optText(v string) {
	if v == "" {
		b.null()
		return
	}
	b.text(v)
}

// optBytes binds empty as NULL.
func (b *binder) optBytes(v []byte) {
	if len(v) == 0 {
		b.null()
	} else {
		b.blob(v)
	}
}

// blob binds v as a BLOB, the empty one included (optBytes binds it as
// NULL): the empty environment is a zero-length body.
func (b *binder) blob(v []byte) {
	if i := b.next(); b.err == nil {
		if len(v) == 0 {
			b.err = b.s.BindZeroBlob(i, 0)
		} else {
			b.err = b.s.BindBlob(i, v)
		}
	}
}

// optJSONText binds JSON that is known to be UTF-8 text, empty as NULL.
func (b *binder) optJSONText(v []byte) {
	if len(v) == 0 {
		b.null()
	} else if i := b.next(); b.err == nil {
		b.err = b.s.BindRawText(i, v)
	}
}

func (b *binder) null() {
	if i := b.next(); b.err == nil {
		b.err = b.s.BindNull(i)
	}
}

// time binds the zero time as NULL, anything else as unix nanoseconds.
func (b *binder) time(t time.Time) {
	if t.IsZero() {
		b.null()
		return
	}
	b.int64(t.UnixNano())
}

func (b *binder) optInt(v *int) {
	if v == nil {
		b.null()
		return
	}
	b.int64(int64(*v))
}

// optInt64 binds 0 as NULL.
func (b *binder) optInt64(v int64) {
	if v == 0 {
		b.null()
		return
	}
	b.int64(v)
}

func (b *binder) bool(v bool) {
	var i int64
	if v {
		i = 1
	}
	b.int64(i)
}
