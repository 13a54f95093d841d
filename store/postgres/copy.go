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

func (c *copyRows) fields(n int) { c.buf.Write(binary.BigEndian.AppendUint16(nil, uint16(n))) }

func (c *copyRows) null() { c.buf.Write([]byte{0xff, 0xff, 0xff, 0xff}) }

func (c *copyRows) length(n int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	c.buf.Write(b[:])
}

func (c *copyRows) text(s string) {
	c.length(len(s))
	c.buf.WriteString(s)
}

func (c *copyRows) optText(s *string) {
	if s == nil {
		c.null()
		return
	}
	c.text(*s)
}

// bytea writes nil as NULL, as pgx does.
func (c *copyRows) bytea(b []byte) {
	if b == nil {
		c.null()
		return
	}
	c.length(len(b))
	c.buf.Write(b)
}

func (c *copyRows) int8(v int64) {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], 8)
	binary.BigEndian.PutUint64(b[4:], uint64(v))
	c.buf.Write(b[:])
}

func (c *copyRows) optInt8(v *int64) {
	if v == nil {
		c.null()
		return
	}
	c.int8(*v)
}

// int4 refuses what the column cannot hold, as pgx would, rather than
// storing a truncated value.
func (c *copyRows) int4(name string, v int) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		if c.err == nil {
			c.err = fmt.Errorf("%s %d is out of range for a 32-bit integer", name, v)
		}
		v = 0
	}
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], 4)
	binary.BigEndian.PutUint32(b[4:], uint32(int32(v)))
	c.buf.Write(b[:])
}

func (c *copyRows) bool(v bool) {
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

// copyFrom sends the rows to the server on conn and returns the number
// stored.
func (c *copyRows) copyFrom(ctx context.Context, conn *pgconn.PgConn) (int64, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.buf.Write([]byte{0xff, 0xff}) // the trailer: a field count of -1
	tag, err := conn.CopyFrom(ctx, &c.buf, copySQL)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
