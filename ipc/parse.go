package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	fastjson "github.com/segmentio/encoding/json"

	"stq/engine"
)

// parseCall is what an authenticated connection's read loop does with a
// request object: parseRequest, then the checks that need no params
// (auth.v1 again, an unknown method). A request it returns is ready for
// decodeCall. On error it returns the id the error response carries, and
// the request too when it was well-formed enough to tell whether it is a
// notification (whose errors are never answered).
func parseCall(line []byte) (*request, json.RawMessage, *RPCError) {
	req, id, perr := parseRequest(line)
	switch {
	case perr != nil:
		return nil, id, perr
	case req.Method == MethodAuth:
		return req, id, rpcErr(CodeInvalidRequest, "already authenticated")
	case req.method() == nil:
		return req, id, rpcErr(CodeMethodNotFound, "method not found: %q", req.Method)
	}
	return req, id, nil
}

// parseRequest decodes and checks one request object. On error it still
// returns the request's id when it could be read, so the error response can
// carry it; otherwise the id is null. A request without an id member is a
// notification: its id stays empty.
func parseRequest(line []byte) (*request, json.RawMessage, *RPCError) {
	if !utf8.Valid(line) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: invalid UTF-8")
	}
	req, ok := scanEnvelope(line)
	if !ok {
		var id json.RawMessage
		var perr *RPCError
		if req, id, perr = decodeEnvelope(line); perr != nil {
			return nil, id, perr
		}
	}
	return checkRequest(req)
}

// decodeEnvelope is parseRequest's path for the lines scanEnvelope leaves
// alone; its errors are the wire's, in the order the wire has them.
func decodeEnvelope(line []byte) (*request, json.RawMessage, *RPCError) {
	req := new(request)
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	derr := dec.Decode(req)
	var se *json.SyntaxError
	if errors.As(derr, &se) || errors.Is(derr, io.ErrUnexpectedEOF) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: %s", trimJSONPrefix(derr.Error()))
	}
	if !isBlank(line[dec.InputOffset():]) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: unexpected data after the request object")
	}
	if first, _ := firstNonSpace(line); first != '{' {
		return nil, nullID(), rpcErr(CodeInvalidRequest, "invalid request: not a JSON object")
	}
	if derr != nil {
		// A member of the wrong type or an unknown one; the id may still be
		// readable on its own.
		var only struct {
			ID json.RawMessage `json:"id"`
		}
		id := nullID()
		if json.Unmarshal(line, &only) == nil && validID(only.ID) {
			id = only.ID
		}
		return nil, id, rpcErr(CodeInvalidRequest, "invalid request: %s", describeJSONError(derr))
	}
	return req, nil, nil
}

// checkRequest checks the members of a decoded request object.
func checkRequest(req *request) (*request, json.RawMessage, *RPCError) {
	if len(req.ID) > 0 && !validID(req.ID) && !isNullOrEmpty(req.ID) {
		return nil, nullID(), rpcErr(CodeInvalidRequest, "invalid request: id must be a string, a number or null")
	}
	id := req.ID
	if len(id) == 0 {
		id = nullID()
	}
	if req.JSONRPC != "2.0" {
		return nil, id, rpcErr(CodeInvalidRequest, `invalid request: jsonrpc must be "2.0"`)
	}
	if req.Method == "" {
		return nil, id, rpcErr(CodeInvalidRequest, "invalid request: method required")
	}
	return req, id, nil
}

// validID reports whether a raw id is a string or a number.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	switch b := id[0]; {
	case b == '"', b == '-', b >= '0' && b <= '9':
		return true
	}
	return false
}

func isNullOrEmpty(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func firstNonSpace(b []byte) (byte, bool) {
	for _, c := range b {
		if !isSpace(c) {
			return c, true
		}
	}
	return 0, false
}

func isBlank(b []byte) bool {
	_, ok := firstNonSpace(b)
	return !ok
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// decodeParams decodes params strictly into v, a pointer to a zero value:
// unknown members are an error, so a misspelled option fails loudly
// instead of being ignored. Absent or null params mean {}.
//
// segmentio's decoder reads them first. It is about twice as fast as
// encoding/json, whose decode of a bulk enqueue's thousand jobs was the
// largest share of the daemon's CPU, and the binary links it already
// (the MCP SDK decodes with it). encoding/json stays the reference:
// params the fast decoder refuses are decoded again by encoding/json,
// which so owns every error message, and FuzzFastParamsAgree holds the
// two to the same value wherever the fast one succeeds. One difference
// is handled before: segmentio has no nesting limit, encoding/json one
// of 10000, and parseRequest refuses a line nested past it, so params
// deeper than encoding/json takes never get here.
func decodeParams(raw json.RawMessage, v any) error {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if isNullOrEmpty(raw) {
		return nil
	}
	if raw[0] != '{' {
		return invalidParams("invalid params: params must be an object")
	}
	if fastDecode(raw, v) == nil {
		return nil
	}
	// The fast decoder may have filled part of v before it stopped, and
	// encoding/json adds to a map it finds instead of replacing it.
	reflect.ValueOf(v).Elem().SetZero()
	return strictDecode(raw, v)
}

// fastDecode is segmentio's Parse, not its Decoder: the Decoder allocates
// a 32 KiB buffer for every value it reads. What follows the value is
// left alone, as encoding/json's Decoder leaves it.
func fastDecode(raw json.RawMessage, v any) error {
	_, err := fastjson.Parse(raw, v, fastjson.DisallowUnknownFields)
	return err
}

// strictDecode is decodeParams with encoding/json alone.
func strictDecode(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, engine.ErrInvalid) {
			return invalidParams("%s", err.Error())
		}
		return invalidParams("invalid params: %s", describeJSONError(err))
	}
	return nil
}

// describeJSONError rewords encoding/json errors for the wire: they name Go
// types, which mean nothing to a client in another language.
func describeJSONError(err error) string {
	// Only a bare type error carries the field's name; one wrapped by a
	// type's own UnmarshalJSON (engine.Duration) does not, and its Go-level
	// tail is cut off below.
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s must be %s, got %s", field, jsonKind(te.Type), te.Value)
	}
	msg := trimJSONPrefix(err.Error())
	if i := strings.Index(msg, ": json: "); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

func trimJSONPrefix(s string) string { return strings.TrimPrefix(s, "json: ") }

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}
