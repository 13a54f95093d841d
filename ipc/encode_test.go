package ipc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"stq/engine"
)

// encodeByJSON is the line encoding/json writes for r, as conn.write
// writes it when appendResponse declines.
func encodeByJSON(r *response) ([]byte, error) {
	var buf bytes.Buffer
	enc := newLineEncoder(&buf)
	err := enc.Encode(r)
	return buf.Bytes(), err
}

// checkSameEncoding fails unless appendResponse writes r exactly as
// encoding/json does, or declines it; it returns whether it was taken.
func checkSameEncoding(t *testing.T, r *response) bool {
	t.Helper()
	want, werr := encodeByJSON(r)
	got, ok := appendResponse([]byte("prefix"), r)
	if !ok {
		if string(got) != "prefix" {
			t.Fatalf("appendResponse declined but left %q after what it was given", got[len("prefix"):])
		}
		return false
	}
	if werr != nil {
		t.Fatalf("appendResponse wrote %s; encoding/json: %v", got, werr)
	}
	if got := got[len("prefix"):]; !bytes.Equal(got, want) {
		t.Fatalf("appendResponse wrote\n%s\nencoding/json\n%s", got, want)
	}
	return true
}

var tricky = []string{
	"", "plain", `quote " and \ backslash`, "\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f",
	"<html> & </html>", "é☃😀", "\u2028 and \u2029", "bad \xff\xfe utf-8 \xe2\x80", "\xed\xa0\x80 surrogate",
}

// variedJobs returns jobs that between them set every member of
// engine.Job to the values its encoding turns on.
func variedJobs() []*engine.Job {
	t0 := time.Date(2026, 12, 6, 17, 4, 5, 123456789, time.UTC)
	east := time.FixedZone("east", 5*3600+30*60)
	code, neg := 0, -9
	later := t0.Add(90 * time.Minute).In(east)
	jobs := []*engine.Job{
		{}, // every zero value: nil slices and maps, the zero time
		{ID: "j1", Queue: "q", Type: "noop", State: engine.StateQueued, Payload: json.RawMessage(`{"path":"src/main.rs","reason":"save"}`),
			Command: []string{}, Env: map[string]string{}, RunAt: t0, CreatedAt: t0, Attempts: []engine.Attempt{}, After: []string{}},
		{ID: "j2", ShortID: "j", Queue: "q2", Type: "t2", Subject: "s2", State: engine.StateRunning, StopAsked: "host/1", Owner: "host/2", Generation: -1 << 62, Priority: -5, Attempt: 3, MaxAttempts: 1 << 40,
			Payload: json.RawMessage(`[1,2.5e-3,"a b",null,true,{"x":{}}]`), Command: []string{"sh", "-c", "echo \"hi\""},
			Cwd: "/tmp", Env: map[string]string{"B": "2", "A": "1", "É": "x", "a": "\n"}, BaseEnv: &engine.BaseEnv{SHA256: "ab12", Vars: 3},
			RunAt: later, Deadline: engine.Duration(90 * time.Second), TTL: engine.Duration(-time.Nanosecond),
			Backoff: engine.Duration(1500 * time.Microsecond), CreatedAt: t0.In(time.Local), StartedAt: &t0, FinishedAt: &later,
			ExitCode: &neg, Error: "exit 9", WaitIdle: true, RequireCharging: true, Debounce: engine.Duration(time.Hour * 1000),
			Replace: true, After: []string{"j0", ""}, Waiting: "after j0", LogTruncated: true, LogSeq: 99,
			Attempts: []engine.Attempt{
				{N: 1, StartedAt: t0, Outcome: engine.OutcomeRunning, PID: 42, PIDStart: 1 << 50},
				{N: 2, StartedAt: later, FinishedAt: &later, Outcome: engine.OutcomeFailed, Reason: "deadline", ExitCode: &code, PID: -1, PIDStart: -1},
			}},
		{ID: "j3", Payload: json.RawMessage(`"a string with \"escapes\" \u2028 and spaces"`), RunAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, east)},
		{ID: "j4", Payload: json.RawMessage(`null`), RunAt: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for i, s := range tricky {
		jobs = append(jobs, &engine.Job{
			ID: s, ShortID: s, Queue: s, Type: s, Subject: s, State: engine.State(s), Cwd: s, Error: s, Waiting: s, StopAsked: s, Owner: s,
			Command: []string{s, s}, After: []string{s}, Env: map[string]string{s: s, s + "z": ""},
			BaseEnv:   &engine.BaseEnv{SHA256: s, Vars: i},
			Attempts:  []engine.Attempt{{N: i, Outcome: engine.Outcome(s), Reason: s}},
			CreatedAt: t0.Add(time.Duration(i) * time.Millisecond), Deadline: engine.Duration(time.Duration(i) * 1234567),
		})
	}
	return jobs
}

func TestAppendResponseMatchesEncodingJSON(t *testing.T) {
	jobs := variedJobs()
	// A member added to engine.Job or engine.Attempt must be added to
	// appendJob too; one job sets them all, so the comparison sees it.
	full := reflect.ValueOf(*jobs[2])
	for i := range full.NumField() {
		if full.Field(i).IsZero() {
			t.Errorf("variedJobs()[2] leaves engine.Job.%s unset", full.Type().Field(i).Name)
		}
	}
	attempt := reflect.ValueOf(jobs[2].Attempts[1])
	for i := range attempt.NumField() {
		if attempt.Field(i).IsZero() {
			t.Errorf("variedJobs()[2].Attempts[1] leaves engine.Attempt.%s unset", attempt.Type().Field(i).Name)
		}
	}
	var results []engine.EnqueueResult
	for i, j := range jobs {
		for _, id := range []string{`1`, `"a \"b\" \u00e9"`, `-1.5e+300`, `null`, `123456789012345678901234567890`} {
			res := &engine.EnqueueResult{Job: j, Cancelled: []*engine.Job{j}}
			if i%2 == 1 {
				res.Superseded = []string{"old", tricky[i%len(tricky)]}
			}
			for _, r := range []*response{
				{JSONRPC: "2.0", ID: json.RawMessage(id), Result: res},
				{JSONRPC: "2.0", ID: json.RawMessage(id), Result: j},
			} {
				if !checkSameEncoding(t, r) {
					t.Fatalf("appendResponse declined job %d: %+v", i, j)
				}
			}
			results = append(results, *res)
		}
	}
	for _, many := range []*EnqueueManyResult{{Results: results}, {Results: []engine.EnqueueResult{}}, {}, {Results: []engine.EnqueueResult{{}}}} {
		if !checkSameEncoding(t, &response{JSONRPC: "2.0", ID: json.RawMessage(`7`), Result: many}) {
			t.Fatalf("appendResponse declined %d results", len(many.Results))
		}
	}
	for _, brief := range []*EnqueueManyBriefResult{briefResults(results), briefResults([]engine.EnqueueResult{{}}), {Results: []Enqueued{}}, {}, {Results: []Enqueued{{}}}} {
		if !checkSameEncoding(t, &response{JSONRPC: "2.0", ID: json.RawMessage(`8`), Result: brief}) {
			t.Fatalf("appendResponse declined %d brief results", len(brief.Results))
		}
	}
}

// TestAppendResponseDeclines lists what is left to encoding/json: errors
// (whose reply it words), payloads it would compact or refuse, other
// result types, nil results.
func TestAppendResponseDeclines(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []*response{
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Error: rpcErr(CodeNotFound, "no such job")},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.Job{Payload: json.RawMessage(`{ "a": 1 }`)}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.Job{Payload: json.RawMessage("[1,\n2]")}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.Job{Payload: json.RawMessage(`{"a":}`)}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.Job{Payload: json.RawMessage{}}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.Job{RunAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.Job{RunAt: t0, StartedAt: new(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC))}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &engine.EnqueueResult{Job: &engine.Job{Attempts: []engine.Attempt{{StartedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: (*engine.Job)(nil)},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: (*engine.EnqueueResult)(nil)},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: (*EnqueueManyResult)(nil)},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: (*EnqueueManyBriefResult)(nil)},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: &AuthResult{OK: true}},
		{JSONRPC: "2.0", ID: json.RawMessage(`1`)},
		{JSONRPC: "2.0", ID: json.RawMessage(` 1`), Result: &engine.Job{}},
		{JSONRPC: "2.0", ID: json.RawMessage(`[1]`), Result: &engine.Job{}},
		{JSONRPC: "2.0", Result: &engine.Job{}},
	}
	for i, r := range cases {
		if checkSameEncoding(t, r) {
			t.Errorf("case %d: appendResponse took %+v", i, r)
		}
	}
}

// FuzzAppendJob holds appendResponse to encoding/json's bytes over jobs
// built from fuzzed strings, numbers, times and payloads.
func FuzzAppendJob(f *testing.F) {
	for i, s := range tricky {
		f.Add(s, s+"x", []byte(`{"a":[1,"b"]}`), int64(i)<<40, int64(i*1e9), int64(i*3600))
	}
	f.Add("", "", []byte(nil), int64(0), int64(0), int64(0))
	f.Add("a", "b", []byte("{ }"), int64(-1), int64(-62135596800-1), int64(-50400))
	f.Add("a", "b", []byte(`"\ud800"`), int64(1<<62), int64(253402300800), int64(86399))
	f.Fuzz(func(t *testing.T, s1, s2 string, payload []byte, n, sec, zone int64) {
		loc := time.FixedZone(s2, int(zone%(48*3600)))
		at := time.Unix(sec, n%1e9).In(loc)
		code := int(n)
		j := &engine.Job{
			ID: s1, Queue: s2, Subject: s1 + s2, State: engine.State(s2), Generation: n, Priority: int(sec),
			Payload: payload, Command: []string{s1, s2}, Env: map[string]string{s1: s2, s2: s1},
			RunAt: at, CreatedAt: at.UTC(), FinishedAt: &at, ExitCode: &code,
			Deadline: engine.Duration(n), TTL: engine.Duration(sec), Error: s2, ShortID: s2, StopAsked: s1,
			Attempts: []engine.Attempt{{N: int(zone), StartedAt: at, Reason: s1, PIDStart: n}},
		}
		res := &engine.EnqueueResult{Job: j, Superseded: []string{s1}}
		if !checkSameEncoding(t, &response{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: res}) {
			// Declined: only for what the hand path leaves alone.
			_, err := encodeByJSON(&response{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: res})
			if err == nil && compactJSON(payload) && payload != nil {
				t.Fatalf("appendResponse declined a job encoding/json writes: %+v", j)
			}
		}
		brief := briefResults([]engine.EnqueueResult{*res})
		if !checkSameEncoding(t, &response{JSONRPC: "2.0", ID: json.RawMessage(`1`), Result: brief}) {
			t.Fatalf("appendResponse declined a brief result: %+v", brief.Results[0])
		}
	})
}

func BenchmarkEncodeReply(b *testing.B) {
	jobs := variedJobs()
	one := &engine.EnqueueResult{Job: jobs[1]}
	many := &EnqueueManyResult{Results: slices.Repeat([]engine.EnqueueResult{*one}, 1000)}
	for _, tc := range []struct {
		name   string
		result any
	}{{"enqueue", one}, {"bulk", many}} {
		r := &response{JSONRPC: "2.0", ID: json.RawMessage(`17`), Result: tc.result}
		b.Run(tc.name+"/json", func(b *testing.B) {
			var buf bytes.Buffer
			enc := newLineEncoder(&buf)
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := enc.Encode(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/append", func(b *testing.B) {
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				var ok bool
				if out, ok = appendResponse(out[:0], r); !ok {
					b.Fatal("declined")
				}
			}
		})
	}
}

// replyByDecoder is what the client's general path does with a reply
// line: the whole message, then its result.
func replyByDecoder(line, want []byte, result any) (taken bool, err error) {
	var r clientResponse
	if json.Unmarshal(line, &r) != nil || !bytes.Equal(r.ID, want) || r.Error != nil || r.Method != "" {
		return false, nil
	}
	if result != nil && len(r.Result) > 0 {
		return true, json.Unmarshal(r.Result, result)
	}
	return true, nil
}

// checkSameReply fails unless takeResult, when it takes a line, decodes
// it as the general path does: the same error, the same result.
func checkSameReply(t *testing.T, line []byte) {
	t.Helper()
	var got, want engine.EnqueueResult
	ok, err := takeResult(line, []byte("7"), &got)
	if !ok {
		return
	}
	wok, werr := replyByDecoder(line, []byte("7"), &want)
	if !wok || fmt.Sprint(err) != fmt.Sprint(werr) || !reflectEqualJSON(got, want) {
		t.Fatalf("takeResult(%.300q) = %v, %+v; general path: taken %v, %v, %+v", line, err, got, wok, werr, want)
	}
	if ok, _ := takeResult(line, []byte("7"), nil); !ok {
		t.Fatalf("takeResult(%.300q) without a result declined", line)
	}
}

// reflectEqualJSON compares two results by their encoding, which also
// covers times whose monotonic or location parts differ.
func reflectEqualJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

var replyLines = []string{
	`{"jsonrpc":"2.0","id":7,"result":{"job":{"id":"j1","state":"QUEUED","deadline":"1m0s","run_at":"2026-01-02T03:04:05.5+05:30"},"superseded":["a"]}}`,
	`{"jsonrpc":"2.0","id":7,"result":null}`,
	`{"jsonrpc":"2.0","id":7,"result": {"job":null} }`,
	`{"jsonrpc":"2.0","id":7,"result":{"job":{"id":1}}}`,
	`{"jsonrpc":"2.0","id":7,"result":{"job":{"deadline":"forever"}}}`,
	`{"jsonrpc":"2.0","id":7,"result":{"job":{"run_at":"yesterday"}}}`,
	`{"jsonrpc":"2.0","id":7,"result":[]}`,
	`{"jsonrpc":"2.0","id":7,"result":{},"result":{"job":{"id":"x"}}}`,
	`{"jsonrpc":"2.0","id":7,"result":{},"error":{"code":-32603,"message":"m"}}`,
	`{"jsonrpc":"2.0","id":7,"result":{"job":{"id":"j1"}}`,
	`{"jsonrpc":"2.0","id":7,"result":}`,
	`{"jsonrpc":"2.0","id":70,"result":{}}`,
	`{"jsonrpc":"2.0","id":7,"result":{"job":{"id":"\ud800\u00e9"}}}`,
	"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"job\":{\"id\":\"\xff\"}}}",
}

func TestTakeResultMatchesGeneralPath(t *testing.T) {
	for _, l := range replyLines {
		checkSameReply(t, []byte(l))
	}
	for _, j := range variedJobs() {
		line, ok := appendResponse(nil, &response{JSONRPC: "2.0", ID: json.RawMessage(`7`), Result: &engine.EnqueueResult{Job: j}})
		if !ok {
			t.Fatalf("appendResponse declined %+v", j)
		}
		line = line[:len(line)-1]
		if ok, _ := takeResult(line, []byte("7"), new(engine.EnqueueResult)); !ok {
			t.Fatalf("takeResult declined %s", line)
		}
		checkSameReply(t, line)
	}
}

// FuzzTakeResult holds takeResult to the general path over any line.
func FuzzTakeResult(f *testing.F) {
	for _, l := range replyLines {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkSameReply(t, line)
	})
}

func BenchmarkDecodeReply(b *testing.B) {
	one := &engine.EnqueueResult{Job: variedJobs()[1]}
	many := &EnqueueManyResult{Results: slices.Repeat([]engine.EnqueueResult{*one}, 1000)}
	for _, tc := range []struct {
		name   string
		result any
		into   func() any
	}{
		{"enqueue", one, func() any { return new(engine.EnqueueResult) }},
		{"bulk", many, func() any { return new(EnqueueManyResult) }},
	} {
		line, ok := appendResponse(nil, &response{JSONRPC: "2.0", ID: json.RawMessage(`17`), Result: tc.result})
		if !ok {
			b.Fatal("declined")
		}
		line = line[:len(line)-1]
		b.Run(tc.name+"/general", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := replyByDecoder(line, []byte("17"), tc.into()); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
		b.Run(tc.name+"/take", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := takeResult(line, []byte("17"), tc.into()); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
