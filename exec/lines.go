package exec

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// DefaultMaxLine bounds one captured output line. A job that prints without
// newlines would otherwise make the reader buffer grow without limit; longer
// lines are split into pieces of at most this size.
const DefaultMaxLine = 64 << 10

// sink serialises calls to a run's Output callback, so the engine's callback
// never runs concurrently for one attempt, and drops lines once the attempt
// has ended (an in-process handler may leave goroutines behind that log).
type sink struct {
	mu     sync.Mutex
	out    func(stream, text string)
	closed bool
}

func newSink(out func(stream, text string)) *sink {
	return &sink{out: out}
}

func (s *sink) write(stream, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.out == nil {
		return
	}
	s.out(stream, text)
}

// writeLines splits text written by an in-process handler into lines, so its
// log has the same shape as a subprocess's.
func (s *sink) writeLines(stream, text string) {
	text = strings.TrimSuffix(text, "\n")
	for line := range strings.SplitSeq(text, "\n") {
		if !utf8.ValidString(line) {
			line = strings.ToValidUTF8(line, "\uFFFD")
		}
		s.write(stream, line)
	}
}

func (s *sink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// readChunk is how much readLines asks for per read. Lines are assembled in
// a separate buffer that grows only as long lines need it, so a run that
// prints little costs little.
const readChunk = 8 << 10

// readLines passes each line read from r to emit, without its "\n" (or
// "\r\n"), until r fails or ends; a final line without a newline counts too.
// Lines longer than limit bytes are split, at a rune boundary where the text
// is valid UTF-8, so memory stays bounded whatever the job prints.
func readLines(r io.Reader, limit int, emit func(text string)) {
	limit = max(limit, 2*utf8.UTFMax) // room to move a cut rune forward
	chunk := make([]byte, readChunk)
	var line []byte
	// add appends seg to the pending line, emitting a piece whenever the
	// line would grow past limit bytes; the start of a rune that the cut
	// would split moves on to the next piece.
	add := func(seg []byte) {
		for len(line)+len(seg) > limit {
			take := limit - len(line)
			line = append(line, seg[:take]...)
			seg = seg[take:]
			cut := runeCut(line)
			emit(validText(line[:cut]))
			line = append(line[:0], line[cut:]...)
		}
		line = append(line, seg...)
	}
	for {
		n, err := r.Read(chunk)
		data := chunk[:n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				add(data)
				break
			}
			add(data[:i])
			emit(validText(bytes.TrimSuffix(line, []byte{'\r'})))
			line = line[:0]
			data = data[i+1:]
		}
		if err != nil {
			// EOF, or the read end was closed to stop a drain.
			if len(line) > 0 {
				emit(validText(line))
			}
			return
		}
	}
}

// runeCut returns where to split b so that a multi-byte rune at its end is
// not cut in two. Invalid bytes are not worth keeping together.
func runeCut(b []byte) int {
	for i := len(b) - 1; i > 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}

// validText returns b as a string, replacing invalid UTF-8: the log is
// stored and served as text.
func validText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
