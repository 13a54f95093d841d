package engine

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestEnqueueRequestValidate(t *testing.T) {
	t.Parallel()
	gen := func(v int64) *int64 { return &v }
	dur := func(d time.Duration) *Duration { v := Duration(d); return &v }
	now := time.Now()
	base := func() EnqueueRequest {
		return EnqueueRequest{Queue: "default", Type: "exec", Command: []string{"true"}}
	}
	tests := []struct {
		name   string
		mutate func(r *EnqueueRequest)
		errHas string // empty: valid
	}{
		{"a plain command is valid", func(r *EnqueueRequest) {}, ""},
		{"a subject with a generation is valid", func(r *EnqueueRequest) { r.Subject = "src/main.rs"; r.Generation = gen(3) }, ""},
		{"generation zero is valid", func(r *EnqueueRequest) { r.Subject = "s"; r.Generation = gen(0) }, ""},
		{"a JSON payload is valid", func(r *EnqueueRequest) { r.Payload = json.RawMessage(`{"path":"a"}`) }, ""},
		{"an empty queue is rejected", func(r *EnqueueRequest) { r.Queue = "" }, "queue must not be empty"},
		{"an empty type is rejected", func(r *EnqueueRequest) { r.Type = "" }, "type must not be empty"},
		{"an over-long queue is rejected", func(r *EnqueueRequest) { r.Queue = strings.Repeat("q", 1025) }, "over the limit of 1024"},
		{"a queue of exactly 1024 bytes is fine", func(r *EnqueueRequest) { r.Queue = strings.Repeat("q", 1024) }, ""},
		{"an over-long subject is rejected", func(r *EnqueueRequest) { r.Subject = strings.Repeat("s", 1025) }, "subject is 1025 bytes"},
		{"a NUL in the queue is rejected", func(r *EnqueueRequest) { r.Queue = "a\x00b" }, "queue contains a NUL byte"},
		{"a NUL in the type is rejected", func(r *EnqueueRequest) { r.Type = "a\x00" }, "type contains a NUL byte"},
		{"a NUL in the subject is rejected", func(r *EnqueueRequest) { r.Subject = "\x00" }, "subject contains a NUL byte"},
		{"a NUL in an argument is rejected", func(r *EnqueueRequest) { r.Command = []string{"echo", "a\x00"} }, "command[1] contains a NUL byte"},
		{"a NUL in the cwd is rejected", func(r *EnqueueRequest) { r.Cwd = "/tmp\x00" }, "cwd contains a NUL byte"},
		{"a NUL in an env value is rejected", func(r *EnqueueRequest) { r.Env = map[string]string{"A": "b\x00"} }, "contains a NUL byte"},
		{"an escaped NUL in the payload is rejected", func(r *EnqueueRequest) { r.Payload = json.RawMessage(`{"a":"\u0000"}`) }, "payload contains a NUL"},
		{"invalid UTF-8 in the subject is rejected", func(r *EnqueueRequest) { r.Subject = "\xff" }, "not valid UTF-8"},
		{"a negative generation is rejected", func(r *EnqueueRequest) { r.Subject = "s"; r.Generation = gen(-1) }, "generation must not be negative"},
		{"a generation without a subject is rejected", func(r *EnqueueRequest) { r.Generation = gen(2) }, "generation needs a subject"},
		{"a payload that is not JSON is rejected", func(r *EnqueueRequest) { r.Payload = json.RawMessage(`{nope`) }, "payload is not valid JSON"},
		{"a payload over the limit is rejected", func(r *EnqueueRequest) { r.Payload = json.RawMessage(`"` + strings.Repeat("x", 100) + `"`) }, "over the limit of 64"},
		{"an empty command name is rejected", func(r *EnqueueRequest) { r.Command = []string{""} }, "command name must not be empty"},
		{"a relative cwd is rejected", func(r *EnqueueRequest) { r.Cwd = "rel/dir" }, "cwd must be an absolute path"},
		{"an env name with = is rejected", func(r *EnqueueRequest) { r.Env = map[string]string{"A=B": "c"} }, "invalid environment variable name"},
		{"an STQ_ env name is reserved", func(r *EnqueueRequest) { r.Env = map[string]string{"STQ_JOB_ID": "x"} }, "reserved for stq"},
		{"run_at and delay together are rejected", func(r *EnqueueRequest) { r.RunAt = &now; r.Delay = dur(time.Second) }, "not both"},
		{"zero max attempts is rejected", func(r *EnqueueRequest) { r.MaxAttempts = new(int) }, "max_attempts must be between 1 and 1000"},
		{"a negative deadline is rejected", func(r *EnqueueRequest) { r.Deadline = dur(-time.Second) }, "deadline must not be negative"},
		{"a negative ttl is rejected", func(r *EnqueueRequest) { r.TTL = dur(-time.Second) }, "ttl must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.mutate(&r)
			err := r.validate(64)
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("validate: unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("validate = %v, want an error containing %q", err, tt.errHas)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"1m30s", 90 * time.Second, true},
		{"0", 0, true},
		{"1d", 24 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"", 0, false},
		{"ten", 0, false},
		{"-5s", 0, false},
		{"5", 0, false},
		{"1e300d", 0, false},
		{"NaNd", 0, false},
		{"-1d", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestDurationJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := Duration(90 * time.Second)
	b, err := json.Marshal(in)
	if err != nil || string(b) != `"1m30s"` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var out Duration
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("unmarshal = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`90`), &out); err == nil {
		t.Fatal("a bare number was accepted as a duration")
	}
}

// TestDurationJSONMatchesEncodingJSON: Duration's own quoting and its
// fast read give what going through encoding/json gave, byte for byte and
// error for error, so the wire format is unchanged.
func TestDurationJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 1, 999, 1500, 999999, time.Millisecond, 90 * time.Second,
		-time.Minute, 36 * time.Hour, math.MaxInt64, math.MinInt64} {
		got, err := json.Marshal(Duration(d))
		want, _ := json.Marshal(d.String())
		if err != nil || string(got) != string(want) {
			t.Errorf("marshal %v = %s, %v; want %s", d, got, err, want)
		}
	}
	for _, in := range []string{`"30s"`, `"1.5d"`, `"0"`, `""`, `"1\u006d"`, `"5µs"`, `"30s\n"`, `"\"30s\""`,
		`30`, `null`, `"-5s"`, `"\u00b5"`, `"a\tb"`} {
		var got Duration
		gotErr := json.Unmarshal([]byte(in), &got)
		var s string
		var want time.Duration
		wantErr := json.Unmarshal([]byte(in), &s)
		if wantErr == nil {
			want, wantErr = ParseDuration(s)
		}
		if (gotErr == nil) != (wantErr == nil) || (gotErr == nil && got != Duration(want)) {
			t.Errorf("unmarshal %s = %v, %v; want %v, %v", in, got, gotErr, want, wantErr)
		}
	}
}

// TestNewIDsAreUniqueAndOrderedByMillisecond: ids sort by the millisecond
// they were made in; within one they are random, so that jobs enqueued
// together have short distinct prefixes.
func TestNewIDsAreUniqueAndOrderedByMillisecond(t *testing.T) {
	t.Parallel()
	e := &Engine{}
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	maxPrev := "" // the largest id of the milliseconds before
	maxCur := ""
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		if i%100 == 0 {
			maxPrev = max(maxPrev, maxCur)
		}
		id := e.newID(now.Add(time.Duration(i/100) * time.Millisecond))
		if len(id) != 26 {
			t.Fatalf("id %q has length %d", id, len(id))
		}
		if seen[id] || id <= maxPrev {
			t.Fatalf("id %q is not new, or sorts before an id of an earlier millisecond (%q)", id, maxPrev)
		}
		seen[id], maxCur = true, max(maxCur, id)
	}
}
