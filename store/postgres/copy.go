package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The bulk path writes COPY's binary format itself instead of handing pgx
// a []any per row: pgx looks up an encode plan for every value of every
// row, and boxing the values allocates; together they were a third of the
// daemon's CPU for a batch of plain jobs (docs/SCALING.md, "Bulk").
// The format is PostgreSQL's documented, versioned file format: a header,
// then per row a field count and per field a length (-1 for NULL) and the
// value in the type's binary send form.

// copySQL is the statement copyRows go to.
var copySQL = "COPY jobs (" + strings.Join(newJobCols, ", ") + ") FROM STDIN (FORMAT binary)"

// copyHeader is the binary format's signature, flags (none) and header
// extension length (none).
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// copyRows holds rows in COPY's binary format.
type copyRows struct {
	buf bytes.Buffer
	err error // the first value that cannot be stored
}

func newCopyRows(rows int) *copyRows {
	c := &copyRows{}
	c.buf.Grow(len(copyHeader) + rows*320 + 2) // about a plain job's row
	c.buf.Write(copyHeader)
	return c
}

func (c *copyRows) fields(n int) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(n))
	c.buf.Write(b[:])
}

func (c *copyRows) null() { c.buf.Write([]byte{0xff, 0xff, 0xff, 0xff}) }

func (c *copyRows) length(n int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	c.buf.Write(b[:])
}

func (c *copyRows) text(_, v string) {
	c.length(len(v))
	c.buf.WriteString(v)
}

func (c *copyRows) optText(col string, v *string) {
	if v == nil {
		c.null()
		return
	}
	c.text(col, *v)
}

// bytea writes nil as NULL, as pgx does.
func (c *copyRows) bytea(_ string, v []byte) {
	if v == nil {
		c.null()
		return
	}
	c.length(len(v))
	c.buf.Write(v)
}

func (c *copyRows) int8(_ string, v int64) {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], 8)
	binary.BigEndian.PutUint64(b[4:], uint64(v))
	c.buf.Write(b[:])
}

func (c *copyRows) optInt8(col string, v *int64) {
	if v == nil {
		c.null()
		return
	}
	c.int8(col, *v)
}

// int4 refuses what the column cannot hold, as pgx would, rather than
// storing a truncated value.
func (c *copyRows) int4(col string, v int) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		if c.err == nil {
			c.err = fmt.Errorf("%s %d is out of range for a 32-bit integer", col, v)
		}
		v = 0
	}
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], 4)
	binary.BigEndian.PutUint32(b[4:], uint32(int32(v)))
	c.buf.Write(b[:])
}

func (c *copyRows) bool(_ string, v bool) {
	b := []byte{0, 0, 0, 1, 0}
	if v {
		b[4] = 1
	}
	c.buf.Write(b)
}

// job writes the row of a new job.
func (c *copyRows) job(in *newJob, out *enqueued) {
	c.fields(len(newJobCols))
	writeJobRow(c, in, out)
}

// copyFrom sends the rows to the server on conn.
func (c *copyRows) copyFrom(ctx context.Context, conn *pgconn.PgConn) error {
	if c.err != nil {
		return c.err
	}
	c.buf.Write([]byte{0xff, 0xff}) // the trailer: a field count of -1
	_, err := conn.CopyFrom(ctx, &c.buf, copySQL)
	return err
}
