package ipc

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// parseByDecoder is parseRequest as it was before scanEnvelope: every
// line through encoding/json. The tests hold the two side by side.
func parseByDecoder(line []byte) (*request, json.RawMessage, *RPCError) {
	if !utf8.Valid(line) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: invalid UTF-8")
	}
	req, id, perr := decodeEnvelope(line)
	if perr != nil {
		return nil, id, perr
	}
	return checkRequest(req)
}

// envelopeCases are lines at the edge of what scanEnvelope takes; scan
// says whether it should take the line itself (false: the decoder's path).
var envelopeCases = []struct {
	line string
	scan bool
}{
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"}`, true},
	{` { "params" : { "queue" : "q" } , "method" : "dev.enqueue.v1" , "id" : "a b" , "jsonrpc" : "2.0" } `, true},
	{"{\"jsonrpc\":\"2.0\",\r\n\t\"id\":-0.5e+3,\"method\":\"dev.get.v1\",\"params\":null}", true},
	{`{"jsonrpc":"2.0","id":null,"method":"dev.get.v1","params":{"id":"j\"}{[1"}}`, true},
	{`{"jsonrpc":"2.0","method":"admin.stats.v1"}`, true},
	{`{"jsonrpc":"1.0","id":1,"method":"admin.stats.v1"}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":""}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"nope.v1"}`, true},
	{`{"jsonrpc":"2.0","id":1e400,"method":"dev.lsit.v1"}`, true},
	{`{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"admin.stats.v1"}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"payload":[[[{"a":"]"}]]],"queue":"q"}}`, true},
	{`{"jsonrpc":"2.0","id":"é☃😀","method":"admin.stats.v1"}`, true},
	// Taken by the scanner alone; parseRequest refuses its UTF-8 before.
	{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"dev.get.v1\",\"params\":{\"id\":\"\xff\"}}", true},
	// What the scanner leaves to the decoder.
	{`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"payload":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"payload":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}}`, false},
	{`{"jsonrpc":"2.0","id":1,"id":2,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1","method":"dev.get.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1,"Method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1","extra":1}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin\u002estats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":"\u0031","method":"admin.stats.v1"}`, false},
	{`{"jsonr\u0070c":"2.0","id":1,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":01,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1.,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":-,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1x,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":nul,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":nullx,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":true,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":[1],"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":{},"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":2,"id":1,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":null,"id":1,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":null}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":[1]}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":"x"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":{"id":"j1"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":{"id":"j1"]}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":{"id":01}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":{"id":"j1",}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"} x`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"}{}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1",}`, false},
	{`{"jsonrpc":"2.0" "id":1,"method":"admin.stats.v1"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"admin.st` + "\x01" + `ats.v1"}`, false},
	{`{}`, false},
	{`[]`, false},
	{`[{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"}]`, false},
	{`"x"`, false},
	{`null`, false},
	{`{`, false},
	{`}`, false},
	{`{"`, false},
	{`{"id`, false},
	{`{"id":`, false},
	{`{"id":1`, false},
	{`{"id":1,`, false},
	{`{"params":{`, false},
	{`{"params":{"a":"\`, false},
}

func TestScanEnvelopeAgreesWithDecoder(t *testing.T) {
	for _, tc := range envelopeCases {
		_, scanned := scanEnvelope([]byte(tc.line))
		if scanned != tc.scan {
			t.Errorf("scanEnvelope(%q) took it = %v, want %v", tc.line, scanned, tc.scan)
		}
		checkSameParse(t, []byte(tc.line))
	}
	for _, s := range fuzzSeeds {
		checkSameParse(t, expandFuzz([]byte(s.line), s.n, DefaultMaxLineBytes))
	}
}

// checkSameParse fails unless parseRequest and parseByDecoder agree on
// line: the same request, the same id, the same error.
func checkSameParse(t *testing.T, line []byte) {
	t.Helper()
	req, id, perr := parseRequest(line)
	wreq, wid, wperr := parseByDecoder(line)
	if !bytes.Equal(id, wid) || !reflect.DeepEqual(perr, wperr) {
		t.Fatalf("parseRequest(%.300q) = id %s, error %v; decoder: id %s, error %v", line, id, perr, wid, wperr)
	}
	if (req == nil) != (wreq == nil) {
		t.Fatalf("parseRequest(%.300q) = request %+v; decoder: %+v", line, req, wreq)
	}
	if req != nil && (req.JSONRPC != wreq.JSONRPC || req.Method != wreq.Method ||
		!sameRaw(req.ID, wreq.ID) || !sameRaw(req.Params, wreq.Params)) {
		t.Fatalf("parseRequest(%.300q) = %+v; decoder: %+v", line, req, wreq)
	}
	buf := bytes.Clone(line)
	if scanned, ok := scanEnvelope(buf); ok {
		// What the scanner takes must not alias the line, which the
		// connection's reader reuses.
		clear(buf)
		dreq, _, derr := decodeEnvelope(line)
		if derr != nil {
			t.Fatalf("scanEnvelope took %.300q, which the decoder refuses: %v", line, derr)
		}
		if !sameRaw(scanned.ID, dreq.ID) || !sameRaw(scanned.Params, dreq.Params) {
			t.Fatalf("scanEnvelope(%.300q) returns members inside the line", line)
		}
	}
}

// sameRaw compares raw members, telling an absent one (nil) from any other.
func sameRaw(a, b json.RawMessage) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// FuzzScanEnvelope holds parseRequest to what encoding/json alone says
// about any line: the same request or the same error, byte for byte.
func FuzzScanEnvelope(f *testing.F) {
	for _, tc := range envelopeCases {
		f.Add([]byte(tc.line), uint32(0))
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.line), s.n)
	}
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"payload":`+"\xff"+`{"a":[`+"\xff\xff"+`]}`+"\xff"+`}}`), uint32(300))
	f.Fuzz(func(t *testing.T, data []byte, n uint32) {
		line := expandFuzz(data, n, 1<<20)
		if strings.ContainsRune(string(line), '\n') {
			return // the line reader splits there
		}
		checkSameParse(t, line)
	})
}

func BenchmarkParseRequest(b *testing.B) {
	lines := map[string][]byte{
		"enqueue": []byte(`{"jsonrpc":"2.0","id":17,"method":"dev.enqueue.v1","params":{"type":"noop","payload":{"path":"src/main.rs","reason":"save"},"delay":"1h0m0s"}}`),
		"bulk":    bulkLine(1000),
	}
	for _, name := range []string{"enqueue", "bulk"} {
		line := lines[name]
		for _, path := range []struct {
			name  string
			parse func([]byte) (*request, json.RawMessage, *RPCError)
		}{{"decoder", parseByDecoder}, {"scan", parseRequest}} {
			b.Run(name+"/"+path.name, func(b *testing.B) {
				b.SetBytes(int64(len(line)))
				b.ReportAllocs()
				for b.Loop() {
					req, _, perr := path.parse(line)
					if perr != nil {
						b.Fatal(perr)
					}
					if _, err := decodeCall(req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// bulkLine is a dev.enqueue_many.v1 line of n jobs as stq bench sends it.
func bulkLine(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"jsonrpc":"2.0","id":3,"method":"dev.enqueue_many.v1","params":{"jobs":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"noop","payload":{"path":"src/main.rs","reason":"save"},"delay":"1h0m0s"}`)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}
