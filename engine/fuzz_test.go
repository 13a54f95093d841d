package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzMaxInput bounds an expanded fuzz input (just over twice the default
// payload limit, so "over the limit" stays reachable).
const fuzzMaxInput = 2*DefaultMaxPayload + 64

// fuzzExpand turns a compact input into a large one. With n == 0 the data is
// used as it is. Otherwise data is split at 0xFF bytes and every
// odd-numbered part is repeated n%(1<<17) times, the total kept within
// limit: `{"payload":` "\xff[\xff\xff]\xff" `}` with n = 100000 nests 100000
// arrays.
func fuzzExpand(data []byte, n uint32, limit int) []byte {
	if n == 0 {
		return data
	}
	parts := bytes.Split(data, []byte{0xff})
	fixed, unit := 0, 0
	for i, p := range parts {
		if i%2 == 0 {
			fixed += len(p)
		} else {
			unit += len(p)
		}
	}
	reps := int(n % (1 << 17))
	if unit > 0 && fixed+reps*unit > limit {
		reps = max(0, (limit-fixed)/unit)
	}
	out := make([]byte, 0, fixed+reps*unit)
	for i, p := range parts {
		if i%2 == 0 {
			out = append(out, p...)
			continue
		}
		for range reps {
			out = append(out, p...)
		}
	}
	return out
}

// decodeAsServer decodes dev.enqueue.v1 params the way the ipc server does
// (ipc.decodeParams): absent or null is {}, anything else must be an object
// with no unknown members.
func decodeAsServer(raw []byte, r *EnqueueRequest) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 || string(raw) == "null" {
		return true
	}
	if raw[0] != '{' {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(r) == nil
}

// fuzzInject puts a raw string, which JSON decoding could never produce
// (invalid UTF-8), into the field where%11 selects. 0 injects nothing.
func fuzzInject(r *EnqueueRequest, s string, where uint8) {
	switch where % 11 {
	case 1:
		r.Queue = s
	case 2:
		r.Type = s
	case 3:
		r.Subject = s
	case 4:
		r.Command = append(r.Command, s)
	case 5:
		r.Command = append([]string{s}, r.Command...)
	case 6:
		r.Cwd = "/" + s
	case 7:
		r.Env = map[string]string{s: "v"}
	case 8:
		r.Env = map[string]string{"K": s}
	case 9:
		r.Payload = json.RawMessage(s)
	case 10:
		r.After = append(r.After, s)
	}
}

// FuzzEnqueueRequestValidate decodes fuzzed dev.enqueue.v1 params as the
// server does, fills in the defaults Engine.Enqueue fills in before
// validating, and runs validate. validate must not panic, must not change
// the request, must reject only with ErrInvalid, and what it accepts must
// hold everything the store and the executors rely on.
func FuzzEnqueueRequestValidate(f *testing.F) {
	for _, s := range []struct {
		params string
		n      uint32
		inject string
		where  uint8
		limit  uint32
	}{
		{`{"command":["true"]}`, 0, "", 0, 0},
		{`{"queue":"lint","type":"exec","subject":"src/main.go","generation":3,"priority":-5,"payload":{"a":[1,2,{"b":null}]},"command":["go","vet","./..."],"cwd":"/tmp","env":{"A":"1"},"deadline":"30s","ttl":"1d","backoff":"1.5d","max_attempts":1000}`, 0, "", 0, 0},
		{`null`, 0, "", 0, 0},
		{`{"queue":"` + "\xff" + `q` + "\xff" + `"}`, 1025, "", 0, 0},
		{`{"subject":"s","generation":-1}`, 0, "", 0, 0},
		{`{"generation":99999999999999999999}`, 0, "", 0, 0},
		{`{"payload":` + "\xff[\xff\xff]\xff" + `}`, 100000, "", 0, 0},
		{`{"payload":"\u0000"}`, 0, "", 0, 0},
		{`{"payload":1e400}`, 0, "", 0, 64},
		{`{"command":["true"]}`, 0, "\xff\xfe", 3, 0},
		{`{"command":["true"]}`, 0, "a\x00b", 7, 0},
		{`{"command":["true"]}`, 0, "\"\xff\"", 9, 0},
		{`{"command":["true"],"run_at":"9999-12-31T23:59:59Z"}`, 0, "", 0, 0},
		{`{"command":["true"],"delay":"2562047h"}`, 0, "", 0, 0},
		{`{"command":["true"],"ttl":"1xyzd"}`, 0, "", 0, 0},
		{`{"command":["true"],"deadline":"infd"}`, 0, "", 0, 0},
	} {
		f.Add([]byte(s.params), s.n, s.inject, s.where, s.limit)
	}
	f.Fuzz(func(t *testing.T, params []byte, n uint32, inject string, where uint8, limit uint32) {
		maxPayload := DefaultMaxPayload
		if limit > 0 {
			maxPayload = int(limit % (2 * DefaultMaxPayload))
		}
		raw := fuzzExpand(params, n, fuzzMaxInput)
		var r, orig EnqueueRequest
		if !decodeAsServer(raw, &r) {
			return // the server answers -32602; nothing reaches the engine
		}
		decodeAsServer(raw, &orig)
		for _, x := range []*EnqueueRequest{&r, &orig} {
			fuzzInject(x, inject, where)
			if x.Queue == "" { // as Engine.Enqueue does before validate
				x.Queue = DefaultQueue
			}
			if x.Type == "" {
				x.Type = DefaultType
			}
		}
		err := r.validate(maxPayload)
		if !reflect.DeepEqual(r, orig) {
			t.Fatalf("validate changed the request:\n%+v\nwas\n%+v", r, orig)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate: %v does not wrap ErrInvalid", err)
			}
			return
		}
		var known []string
		checkAccepted(t, &r, maxPayload, &known)
		checkDurationSyntax(raw, &known)
		knownEngineBugs(t, known)
	})
}

// checkAccepted checks the properties of a request validate accepted.
func checkAccepted(t *testing.T, r *EnqueueRequest, maxPayload int, known *[]string) {
	t.Helper()
	text := func(field, v string) {
		t.Helper()
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			t.Fatalf("accepted %s %q: NUL or invalid UTF-8", field, v)
		}
	}
	name := func(field, v string) {
		t.Helper()
		if len(v) < 1 || len(v) > MaxNameBytes {
			t.Fatalf("accepted %s of %d bytes", field, len(v))
		}
		text(field, v)
	}
	name("queue", r.Queue)
	name("type", r.Type)
	if r.Subject != "" {
		name("subject", r.Subject)
	}
	if len(r.Command) > MaxCommandArgs || (len(r.Command) > 0 && r.Command[0] == "") {
		t.Fatalf("accepted command of %d arguments, first %q", len(r.Command), r.Command[0])
	}
	for i, a := range r.Command {
		text(fmt.Sprintf("command[%d]", i), a)
	}
	text("cwd", r.Cwd)
	if r.Cwd != "" && r.Cwd[0] != '/' {
		t.Fatalf("accepted relative cwd %q", r.Cwd)
	}
	if len(r.After) > MaxAfter {
		t.Fatalf("accepted %d dependencies", len(r.After))
	}
	for i, id := range r.After {
		name(fmt.Sprintf("after[%d]", i), id)
	}
	if len(r.Env) > MaxEnvVars {
		t.Fatalf("accepted %d environment variables", len(r.Env))
	}
	for k, v := range r.Env {
		if k == "" || strings.Contains(k, "=") || strings.HasPrefix(k, "STQ_") {
			t.Fatalf("accepted environment variable name %q", k)
		}
		text("env name", k)
		text("env "+k, v)
	}
	if len(r.Payload) > maxPayload {
		t.Fatalf("accepted a payload of %d bytes over the limit of %d", len(r.Payload), maxPayload)
	}
	if len(r.Payload) > 0 {
		if !json.Valid(r.Payload) {
			t.Fatalf("accepted a payload that is not JSON: %.200q", r.Payload)
		}
		dec := json.NewDecoder(bytes.NewReader(r.Payload))
		dec.UseNumber() // 1e400 is valid JSON but no float64
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted payload %.200q does not decode: %v", r.Payload, err)
		}
		if s, ok := nulString(v); ok {
			t.Fatalf("accepted a payload with a NUL in %q", s)
		}
		if !utf8.Valid(r.Payload) {
			*known = append(*known, fmt.Sprintf("[payload-utf8] validate accepts a payload with invalid UTF-8 (json.Valid does not check it): %.200q", r.Payload))
		}
	}
	if r.Generation != nil && (*r.Generation < 0 || r.Subject == "") {
		t.Fatalf("accepted generation %d with subject %q", *r.Generation, r.Subject)
	}
	if r.MaxAttempts != nil && (*r.MaxAttempts < 1 || *r.MaxAttempts > 1000) {
		t.Fatalf("accepted max_attempts %d", *r.MaxAttempts)
	}
	if r.RunAt != nil && r.Delay != nil {
		t.Fatal("accepted both run_at and delay")
	}
	if r.Subject == "" && (r.Debounce != nil || (r.Replace != nil && *r.Replace)) {
		t.Fatal("accepted debounce or replace without a subject")
	}
	for name, d := range map[string]*Duration{"delay": r.Delay, "deadline": r.Deadline, "ttl": r.TTL, "backoff": r.Backoff, "debounce": r.Debounce} {
		if d != nil && *d < 0 {
			t.Fatalf("accepted a negative %s %v", name, *d)
		}
	}
}

// nulString finds a string or member name with a NUL in a decoded value.
func nulString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, strings.IndexByte(v, 0) >= 0
	case []any:
		for _, e := range v {
			if s, ok := nulString(e); ok {
				return s, true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 {
				return k, true
			}
			if s, ok := nulString(e); ok {
				return s, true
			}
		}
	}
	return "", false
}

// daysDuration is the documented days form: a decimal number and "d".
var daysDuration = regexp.MustCompile(`^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?d$`)

// checkDurationSyntax checks that every duration string of an accepted
// request has the documented syntax: a Go duration, "0", or a decimal
// number of days. (A run_at outside 1678..2262, which validate accepts, is
// refused by the store, so it is not checked here.)
func checkDurationSyntax(raw []byte, known *[]string) {
	var ds struct {
		Delay, Deadline, TTL, Backoff, Debounce *string
	}
	if json.Unmarshal(bytes.TrimLeft(raw, " \t\r\n"), &ds) != nil {
		return // the first value decoded; trailing bytes are not the server's concern
	}
	for _, s := range []*string{ds.Delay, ds.Deadline, ds.TTL, ds.Backoff, ds.Debounce} {
		if s == nil || *s == "0" || daysDuration.MatchString(*s) {
			continue
		}
		if _, err := time.ParseDuration(*s); err != nil {
			*known = append(*known, fmt.Sprintf("[duration-syntax] ParseDuration accepts %q, which is neither a Go duration nor a number of days", *s))
		}
	}
}

// knownEngineBugs fails on property violations that were once real bugs
// (ParseDuration accepting junk before "d", validate accepting a payload that
// is not UTF-8), now fixed: they must not come back.
func knownEngineBugs(t *testing.T, known []string) {
	t.Helper()
	if len(known) > 0 {
		t.Fatal("engine regression: " + strings.Join(known, "; "))
	}
}
