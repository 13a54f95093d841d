package ipc

// The server reads params and checks envelopes with segmentio's decoder
// (decodeParams, scanEnvelope) and keeps encoding/json as the reference.
// These tests hold the fast path to the reference: same value wherever it
// succeeds, same verdict on validity, and taken for what clients send.

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	fastjson "github.com/segmentio/encoding/json"

	"stq/engine"
)

// fastParamsSeeds are params objects chosen where two JSON decoders are
// most likely to differ: member names in other cases, duplicates, numbers
// an integer cannot hold, nulls, escapes, raw payloads with whitespace,
// trailing data, and members unknown at each depth.
var fastParamsSeeds = []string{
	`{"queue":"lint","subject":"src/main.go","command":["go","vet","./..."],"cwd":"/home/ann","delay":"2s","payload":{"file":"src/main.go"}}`,
	`{"type":"noop","delay":"1h0m0s","payload":{"path":"src/main.rs","reason":"save"}}`,
	`{"jobs":[{"type":"noop","delay":"1h0m0s","payload":{"path":"a"}},{"queue":"q","after":["j1"]}],"reply":"brief"}`,
	`{"jobs":[{"type":"a"}],"base_env":{"PATH":"/bin","HOME":"/h"}}`,
	`{"Type":"noop","QUEUE":"x","Payload":{}}`,
	`{"type":"a","type":"b"}`,
	`{"env":{"A":"1","A":"2"}}`,
	`{"priority":1.0}`, `{"priority":1e2}`, `{"priority":-0}`, `{"priority":99999999999999999999}`,
	`{"max_attempts":2147483648}`, `{"generation":-9223372036854775808}`, `{"generation":9223372036854775808}`,
	`{"generation":null,"delay":null,"env":null,"command":null,"payload":null}`,
	`{"type":"\u00e9\ud83d\ude00","subject":"a\/b\\c\"d"}`, `{"type":"\ud800"}`, `{"type":"\u0000"}`,
	`{"run_at":"2026-12-07T04:00:00.123456789+01:00"}`, `{"run_at":"2026-12-07 04:00:00Z"}`, `{"run_at":0}`,
	`{"delay":"1h","delay":5}`, `{"delay":"\u0031s"}`, `{"delay":30}`, `{"timeout":"-1s","ids":["a","b"]}`,
	`{"payload": [1, 2 ,{"a" : "b"}] , "type":"x"}`, `{"payload":"str"}`, `{"payload":1e999}`,
	`{"type":"a"} trailing`, `{"type":"a"}{"type":"b"}`, `{"type":"a",}`, `{"type":'a'}`,
	`{"jobs":[{"bogus":1}]}`, `{"bogus":1}`, `{"jobs":{}}`, `{"jobs":[null]}`, `{"states":["done",null]}`,
	`{"wait_idle":true,"require_charging":false,"replace":null,"debounce":"500ms"}`,
	`{"follow":true,"after_seq":12,"last":0,"job_id":"abcd"}`, `{"last":-1}`, `{"after_seq":"12"}`,
	`{"limit":5,"cursor":"c","states":["QUEUED","running"]}`,
	`{"token":"` + string(bytes.Repeat([]byte("a"), 64)) + `"}`,
	`{}`, `{ }`, "{\n\t\"id\" : \"j1\"\r\n}",
}

// FuzzFastParamsAgree decodes params objects for every method's params
// type with decodeParams (segmentio first, encoding/json when it refuses)
// and with strictDecode (encoding/json alone): both must give the same
// value, or the same error message.
func FuzzFastParamsAgree(f *testing.F) {
	for _, s := range fastParamsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !utf8.Valid(raw) { // parseRequest refuses such lines first
			return
		}
		if first, ok := firstNonSpace(raw); !ok || first != '{' {
			return // decodeParams answers these itself, before either decoder
		}
		for _, m := range methodTable {
			got, want := m.params(), m.params()
			gotErr, wantErr := decodeParams(raw, got), strictDecode(bytes.TrimLeft(raw, " \t\r\n"), want)
			switch {
			case (gotErr == nil) != (wantErr == nil):
				t.Fatalf("%s: decodeParams(%q) = %v, encoding/json alone = %v", m.name, raw, gotErr, wantErr)
			case gotErr != nil && gotErr.Error() != wantErr.Error():
				t.Fatalf("%s: decodeParams(%q) error %q, encoding/json alone %q", m.name, raw, gotErr, wantErr)
			case gotErr == nil && !reflect.DeepEqual(got, want):
				t.Fatalf("%s: decodeParams(%q) = %+v, encoding/json alone = %+v", m.name, raw, got, want)
			}
		}
	})
}

// FuzzFastValidAgrees holds segmentio's Valid, which scanEnvelope uses on
// params, to encoding/json's on every line the server gets that far.
func FuzzFastValidAgrees(f *testing.F) {
	for _, s := range fastParamsSeeds {
		f.Add([]byte(s))
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.line))
	}
	f.Add([]byte(`{"a":[1,2,{"b":null}],"c":true,"d":-1.5e-3}`))
	f.Add([]byte(`{"a":01}`))
	f.Add([]byte(`{"a":1.}`))
	f.Add([]byte(`{"a":"\x"}`))
	f.Add([]byte("{\"a\":\"\x01\"}"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !utf8.Valid(raw) {
			return
		}
		if got, want := fastjson.Valid(raw), json.Valid(raw); got != want {
			t.Fatalf("Valid(%q): segmentio %v, encoding/json %v", raw, got, want)
		}
	})
}

// TestFastDecoderTakesWhatClientsSend checks that the fast path is the one
// taken for params as a Client sends them, every option set: were it to
// refuse them, every request would be decoded twice and nothing would
// fail. Each request line is encoded as Client encodes it and read as
// the server reads it.
func TestFastDecoderTakesWhatClientsSend(t *testing.T) {
	d := engine.Duration(90 * time.Second)
	gen, n, yes := int64(7), 3, true
	at := time.Date(2026, 12, 7, 4, 0, 0, 5, time.FixedZone("x", 3600))
	full := engine.EnqueueRequest{
		Queue: "lint", Type: "vet", Subject: "src/<a>&b.go", Generation: &gen, Priority: -2,
		Payload: json.RawMessage(`{"file":"src/a.go","n":[1,2]}`), Command: []string{"go", "vet"},
		Cwd: "/w", Env: map[string]string{"A": "1"}, BaseEnv: map[string]string{"PATH": "/bin"},
		RunAt: &at, Delay: &d, Deadline: &d, TTL: &d, Backoff: &d, MaxAttempts: &n,
		WaitIdle: &yes, RequireCharging: &yes, Debounce: &d, Replace: &yes, After: []string{"j1"},
	}
	for _, call := range []struct {
		method string
		params any
	}{
		{MethodEnqueue, &full},
		{MethodEnqueueMany, &EnqueueManyParams{Jobs: []engine.EnqueueRequest{full, {Type: "noop"}}, BaseEnv: map[string]string{"HOME": "/h"}, Reply: ReplyBrief}},
		{MethodList, &ListParams{States: []string{"QUEUED"}, Queue: "q", Type: "t", Subject: "s", Limit: 5, Cursor: "c"}},
		{MethodWait, &WaitParams{IDs: []string{"a"}, Timeout: &d}},
		{MethodTail, &TailParams{JobID: "a", Follow: true, AfterSeq: 3, Last: &n}},
		{MethodAuth, &AuthParams{Token: "t"}}, {MethodGet, &GetParams{ID: "a"}},
		{MethodPause, &QueueParams{Queue: "q"}}, {MethodRetry, &RetryParams{ID: "a"}},
	} {
		var line bytes.Buffer
		if err := newLineEncoder(&line).Encode(&clientRequest{JSONRPC: "2.0", ID: 1, Method: call.method, Params: call.params}); err != nil {
			t.Fatal(err)
		}
		req, _, perr := parseRequest(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		if perr != nil {
			t.Fatalf("%s: %v", call.method, perr)
		}
		// Compared with encoding/json's reading, not with the params sent:
		// a time comes back with its offset but not its zone's name.
		typ := reflect.TypeOf(call.params).Elem()
		got, want := reflect.New(typ).Interface(), reflect.New(typ).Interface()
		if err := strictDecode(req.Params, want); err != nil {
			t.Fatalf("encoding/json refused %s: %v", req.Params, err)
		}
		if err := fastDecode(req.Params, got); err != nil {
			t.Errorf("fast decoder refused %s: %v", req.Params, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("fast decoder read %s as %+v, encoding/json as %+v", req.Params, got, want)
		}
	}
}

// BenchmarkDecodeParams compares the params decode of the two hottest
// requests on encoding/json alone and on decodeParams, in one run.
func BenchmarkDecodeParams(b *testing.B) {
	for _, name := range []string{"enqueue", "bulk"} {
		line := []byte(`{"jsonrpc":"2.0","id":17,"method":"dev.enqueue.v1","params":{"type":"noop","payload":{"path":"src/main.rs","reason":"save"},"delay":"1h0m0s"}}`)
		if name == "bulk" {
			line = bulkLine(1000)
		}
		req, _, perr := parseRequest(line)
		if perr != nil {
			b.Fatal(perr)
		}
		m := req.method()
		for _, path := range []struct {
			name   string
			decode func(json.RawMessage, any) error
			valid  func([]byte) bool
		}{{"encoding-json", strictDecode, json.Valid}, {"fast", decodeParams, fastjson.Valid}} {
			b.Run(name+"/"+path.name, func(b *testing.B) {
				b.SetBytes(int64(len(req.Params)))
				b.ReportAllocs()
				for b.Loop() {
					if !path.valid(req.Params) {
						b.Fatal("invalid")
					}
					if err := path.decode(req.Params, m.params()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestNoParamsPastEncodingJSONDepth checks what decodeParams relies on:
// segmentio decodes params nested past encoding/json's depth limit, so
// the request path must refuse such lines before their params are
// decoded, and take exactly what encoding/json takes below the limit.
func TestNoParamsPastEncodingJSONDepth(t *testing.T) {
	var took, refused int
	for n := 9990; n <= 10010; n++ {
		deep := string(bytes.Repeat([]byte("["), n)) + string(bytes.Repeat([]byte("]"), n))
		line := []byte(`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"type":"t","payload":` + deep + `}}`)
		req, _, perr := parseCall(line)
		if perr != nil {
			if perr.Code != CodeParseError {
				t.Fatalf("nesting %d: %v, want a parse error", n, perr)
			}
			refused++
			continue
		}
		_, err := decodeCall(req)
		if want := strictDecode(req.Params, new(engine.EnqueueRequest)); (err == nil) != (want == nil) {
			t.Fatalf("nesting %d: decodeCall %v, encoding/json alone %v", n, err, want)
		}
		took++
	}
	if took == 0 || refused == 0 {
		t.Fatalf("took %d and refused %d lines: the limit is not between 9990 and 10010", took, refused)
	}
}

// TestDecodedParamsOwnTheirBytes checks that nothing decodeParams returns
// points into the line it read: the connection's line reader reuses that
// buffer for the next request, while an enqueue may still be storing
// what came out of this one. (segmentio's ZeroCopy and
// DontCopyRawMessage flags would break this.)
func TestDecodedParamsOwnTheirBytes(t *testing.T) {
	line := []byte(`{"queue":"qqqq","type":"tttt","subject":"ssss","payload":{"pppp":"pppp"},` +
		`"command":["cccc"],"cwd":"/www","env":{"KKKK":"vvvv"},"base_env":{"BBBB":"bbbb"},"after":["aaaa"]}`)
	var got engine.EnqueueRequest
	if err := decodeParams(line, &got); err != nil {
		t.Fatal(err)
	}
	for i := range line {
		line[i] = 'X'
	}
	if string(got.Payload) != `{"pppp":"pppp"}` {
		t.Errorf("payload changed with the line: %q", got.Payload)
	}
	for _, f := range []struct{ got, want string }{
		{got.Queue, "qqqq"}, {got.Type, "tttt"}, {got.Subject, "ssss"}, {got.Command[0], "cccc"},
		{got.Cwd, "/www"}, {got.Env["KKKK"], "vvvv"}, {got.BaseEnv["BBBB"], "bbbb"}, {got.After[0], "aaaa"},
	} {
		if f.got != f.want {
			t.Errorf("%q changed with the line: %q", f.want, f.got)
		}
	}
	for k := range got.Env {
		if k != "KKKK" {
			t.Errorf("env key changed with the line: %q", k)
		}
	}
}
