package ipc

import (
	"bytes"

	fastjson "github.com/segmentio/encoding/json"
)

// scanEnvelope reads the common shape of a request line in one pass
// instead of encoding/json's three (find the end, decode, skip the params
// again): one object holding only the members jsonrpc and method as plain
// strings, id as a plain string, a number or null, and params as null or
// an object, each at most once. It reports ok only for a line that
// encoding/json would decode without error to the very same request; for
// anything else (escapes in a string, a duplicate or unknown member, other
// member spellings, any syntax error) it reports false and parseRequest
// takes the decoder's path, which owns every error message. The params
// object is checked with segmentio's Valid, which allocates nothing and
// is about three times as fast as encoding/json's; FuzzFastValidAgrees
// holds it to encoding/json's answer on every line the server can get.
func scanEnvelope(line []byte) (req *request, ok bool) {
	s := envScanner{b: line}
	if !s.skip('{') {
		return nil, false
	}
	req = new(request)
	var seen [4]bool
	for {
		key, ok := s.plainString()
		if !ok || !s.skip(':') {
			return nil, false
		}
		k := envKey(key)
		if k < 0 || seen[k] {
			return nil, false
		}
		seen[k] = true
		switch k {
		case keyJSONRPC, keyMethod:
			v, ok := s.plainString()
			if !ok {
				return nil, false
			}
			if k == keyJSONRPC {
				req.JSONRPC = string(v)
			} else {
				req.Method = string(v)
			}
		case keyID:
			v, ok := s.scalarID()
			if !ok {
				return nil, false
			}
			req.ID = bytes.Clone(v)
		case keyParams:
			v, ok := s.params()
			if !ok {
				return nil, false
			}
			req.Params = bytes.Clone(v)
		}
		s.space()
		if s.i >= len(s.b) {
			return nil, false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			continue
		case '}':
			s.i++
			if !isBlank(s.b[s.i:]) {
				return nil, false
			}
			return req, true
		}
		return nil, false
	}
}

const (
	keyJSONRPC = iota
	keyID
	keyMethod
	keyParams
)

// envKey maps an exact member name to its index; encoding/json would also
// take other spellings ("Method"), which the decoder's path handles.
func envKey(k []byte) int {
	switch string(k) {
	case "jsonrpc":
		return keyJSONRPC
	case "id":
		return keyID
	case "method":
		return keyMethod
	case "params":
		return keyParams
	}
	return -1
}

// envScanner walks a line that is valid UTF-8 (parseRequest checked).
type envScanner struct {
	b []byte
	i int
}

func (s *envScanner) space() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

// skip consumes optional space and then c.
func (s *envScanner) skip(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// plainString reads a string without escapes or control characters and
// returns its content, which is then exactly what encoding/json decodes.
func (s *envScanner) plainString() ([]byte, bool) {
	if !s.skip('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// scalarID reads an id that is a plain string, a number or null and
// returns its raw bytes, as json.RawMessage would hold them.
func (s *envScanner) scalarID() ([]byte, bool) {
	s.space()
	start := s.i
	if s.i >= len(s.b) {
		return nil, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		if _, ok := s.plainString(); !ok {
			return nil, false
		}
	case c == 'n':
		if !bytes.HasPrefix(s.b[s.i:], []byte("null")) {
			return nil, false
		}
		s.i += len("null")
	case c == '-' || c >= '0' && c <= '9':
		if !s.number() {
			return nil, false
		}
	default:
		return nil, false
	}
	return s.b[start:s.i], true
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// A letter or digit right after it is left for the caller, which then
// finds no ',' or '}' and gives up.
func (s *envScanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more digits.
func (s *envScanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func (s *envScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// maxParamsDepth is the nesting params may reach inside the request
// object: encoding/json refuses a value nested deeper than 10,000 levels,
// the request object being one of them.
const maxParamsDepth = 10000

// params reads params that are null or an object and returns the raw
// value. The object's end is found by counting brackets outside strings;
// fastjson.Valid then checks the whole value, so a miscounted end can only
// make it report false.
func (s *envScanner) params() ([]byte, bool) {
	s.space()
	start := s.i
	switch s.peek() {
	case 'n':
		if !bytes.HasPrefix(s.b[s.i:], []byte("null")) {
			return nil, false
		}
		s.i += len("null")
		return s.b[start:s.i], true
	case '{':
	default:
		return nil, false
	}
	depth, inString := 0, false
	for ; s.i < len(s.b); s.i++ {
		c := s.b[s.i]
		if inString {
			switch c {
			case '\\':
				s.i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth >= maxParamsDepth {
				return nil, false
			}
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				v := s.b[start:s.i]
				return v, fastjson.Valid(v)
			}
		}
	}
	return nil, false
}
