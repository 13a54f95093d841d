package ipc

import (
	"bufio"
	"errors"
	"io"
)

// errLineTooLong is returned by lineReader.next when a line passes the limit.
var errLineTooLong = errors.New("line too long")

// readBufSize is the bufio buffer; lines that fit are returned without a
// copy, longer ones are gathered in lineReader.buf.
const readBufSize = 64 << 10

// keepBufCap: a gathering buffer grown past this is dropped after use, so one
// large request does not pin memory for the life of a connection.
const keepBufCap = 256 << 10

// lineReader reads '\n'-terminated lines while never holding more than max
// bytes of one line in memory, so a peer cannot make the reader buffer an
// unbounded line (bufio.Scanner would, up to its own limit, and ReadBytes
// would without any).
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, readBufSize), max: max}
}

// next returns the next line without its '\n' (and without a '\r' before
// it). The slice is only valid until the next call. A final line without a
// newline is returned before io.EOF. Over the limit it returns
// errLineTooLong; the rest of that line is not consumed.
func (lr *lineReader) next() ([]byte, error) {
	if cap(lr.buf) > keepBufCap {
		lr.buf = nil
	}
	lr.buf = lr.buf[:0]
	for {
		frag, err := lr.r.ReadSlice('\n')
		n := len(lr.buf) + len(frag)
		if err == nil {
			n-- // the newline does not count against the limit
		}
		if n > lr.max {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			line := frag[:len(frag)-1]
			if len(lr.buf) > 0 {
				lr.buf = append(lr.buf, line...)
				line = lr.buf
			}
			if k := len(line); k > 0 && line[k-1] == '\r' {
				line = line[:k-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			lr.buf = append(lr.buf, frag...)
		case errors.Is(err, io.EOF) && n > 0:
			lr.buf = append(lr.buf, frag...)
			return lr.buf, nil
		default:
			return nil, err
		}
	}
}
