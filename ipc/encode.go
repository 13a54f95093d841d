package ipc

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"stq/engine"
)

// The replies every enqueue gets (and dev.get.v1's) are written by hand,
// appended into the connection's buffer: encoding/json spends most of its
// time on reflection and on the calls into each time and duration's
// MarshalJSON, whose output it then checks and copies again. The output
// is byte for byte what encoding/json writes with SetEscapeHTML(false);
// encode_test.go holds the two side by side over varied and fuzzed jobs.
// Anything the hand path cannot write exactly as encoding/json would (a
// time outside years 0-9999, an invalid payload) makes it report false,
// and the reply takes encoding/json's path, errors and all.

// appendResponse appends r as one line, reporting false, with b as it
// was, when its result is not one of the types written by hand.
func appendResponse(b []byte, r *response) ([]byte, bool) {
	if r.Error != nil || !plainID(r.ID) {
		return b, false
	}
	orig := b
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, r.ID...)
	b = append(b, `,"result":`...)
	var ok bool
	switch res := r.Result.(type) {
	case *engine.EnqueueResult:
		if res != nil {
			b, ok = appendEnqueueResult(b, res)
		}
	case *EnqueueManyResult:
		if res != nil {
			b, ok = appendEnqueueMany(b, res)
		}
	case *EnqueueManyBriefResult:
		if res != nil {
			b, ok = appendBrief(b, res), true
		}
	case *engine.Job:
		if res != nil {
			b, ok = appendJob(b, res)
		}
	}
	if !ok {
		return orig, false
	}
	return append(b, "}\n"...), true
}

// plainID reports an id that encoding/json would copy unchanged: what
// parseRequest lets through (a string, a number or null) has no space
// outside a string to compact away.
func plainID(id json.RawMessage) bool {
	return validID(id) || string(id) == "null"
}

func appendEnqueueMany(b []byte, r *EnqueueManyResult) ([]byte, bool) {
	b = append(b, `{"results":`...)
	if r.Results == nil {
		return append(b, "null}"...), true
	}
	b = append(b, '[')
	for i := range r.Results {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendEnqueueResult(b, &r.Results[i]); !ok {
			return b, false
		}
	}
	return append(b, "]}"...), true
}

func appendBrief(b []byte, r *EnqueueManyBriefResult) []byte {
	b = append(b, `{"results":`...)
	if r.Results == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i := range r.Results {
		e := &r.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, e.ID)
		b = append(b, `,"state":`...)
		b = appendString(b, string(e.State))
		b = append(b, `,"generation":`...)
		b = strconv.AppendInt(b, e.Generation, 10)
		if len(e.Superseded) > 0 {
			b = append(b, `,"superseded":`...)
			b = appendStrings(b, e.Superseded)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendEnqueueResult(b []byte, r *engine.EnqueueResult) ([]byte, bool) {
	b = append(b, `{"job":`...)
	if r.Job == nil {
		b = append(b, "null"...)
	} else {
		var ok bool
		if b, ok = appendJob(b, r.Job); !ok {
			return b, false
		}
	}
	if len(r.Superseded) > 0 {
		b = append(b, `,"superseded":`...)
		b = appendStrings(b, r.Superseded)
	}
	return append(b, '}'), true
}

// appendJob writes a job in engine.Job's field order. It is one long list
// of members, kept whole so it reads side by side with the struct.
func appendJob(b []byte, j *engine.Job) ([]byte, bool) {
	ok := true
	b = append(b, `{"id":`...)
	b = appendString(b, j.ID)
	if j.ShortID != "" {
		b = append(b, `,"short_id":`...)
		b = appendString(b, j.ShortID)
	}
	b = append(b, `,"queue":`...)
	b = appendString(b, j.Queue)
	b = append(b, `,"type":`...)
	b = appendString(b, j.Type)
	b = append(b, `,"subject":`...)
	b = appendString(b, j.Subject)
	b = append(b, `,"generation":`...)
	b = strconv.AppendInt(b, j.Generation, 10)
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(j.Priority), 10)
	b = append(b, `,"state":`...)
	b = appendString(b, string(j.State))
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(j.Attempt), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(j.MaxAttempts), 10)
	b = append(b, `,"payload":`...)
	if b, ok = appendRaw(b, j.Payload); !ok {
		return b, false
	}
	b = append(b, `,"command":`...)
	b = appendStrings(b, j.Command)
	b = append(b, `,"cwd":`...)
	b = appendString(b, j.Cwd)
	b = append(b, `,"env":`...)
	b = appendStringMap(b, j.Env)
	b = append(b, `,"base_env":`...)
	if j.BaseEnv == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"sha256":`...)
		b = appendString(b, j.BaseEnv.SHA256)
		b = append(b, `,"vars":`...)
		b = strconv.AppendInt(b, int64(j.BaseEnv.Vars), 10)
		b = append(b, '}')
	}
	b = append(b, `,"run_at":`...)
	if b, ok = appendTime(b, j.RunAt); !ok {
		return b, false
	}
	b = append(b, `,"deadline":`...)
	b = appendDuration(b, j.Deadline)
	b = append(b, `,"ttl":`...)
	b = appendDuration(b, j.TTL)
	b = append(b, `,"backoff":`...)
	b = appendDuration(b, j.Backoff)
	b = append(b, `,"created_at":`...)
	if b, ok = appendTime(b, j.CreatedAt); !ok {
		return b, false
	}
	b = append(b, `,"started_at":`...)
	if b, ok = appendTimePtr(b, j.StartedAt); !ok {
		return b, false
	}
	b = append(b, `,"finished_at":`...)
	if b, ok = appendTimePtr(b, j.FinishedAt); !ok {
		return b, false
	}
	b = append(b, `,"exit_code":`...)
	b = appendIntPtr(b, j.ExitCode)
	b = append(b, `,"error":`...)
	b = appendString(b, j.Error)
	b = append(b, `,"wait_idle":`...)
	b = strconv.AppendBool(b, j.WaitIdle)
	b = append(b, `,"require_charging":`...)
	b = strconv.AppendBool(b, j.RequireCharging)
	b = append(b, `,"debounce":`...)
	b = appendDuration(b, j.Debounce)
	b = append(b, `,"replace":`...)
	b = strconv.AppendBool(b, j.Replace)
	b = append(b, `,"after":`...)
	b = appendStrings(b, j.After)
	b = append(b, `,"waiting":`...)
	b = appendString(b, j.Waiting)
	if j.StopAsked != "" {
		b = append(b, `,"stop_asked":`...)
		b = appendString(b, j.StopAsked)
	}
	b = append(b, `,"owner":`...)
	b = appendString(b, j.Owner)
	b = append(b, `,"attempts":`...)
	if b, ok = appendAttempts(b, j.Attempts); !ok {
		return b, false
	}
	b = append(b, `,"log_truncated":`...)
	b = strconv.AppendBool(b, j.LogTruncated)
	return append(b, '}'), true
}

func appendAttempts(b []byte, as []engine.Attempt) ([]byte, bool) {
	if as == nil {
		return append(b, "null"...), true
	}
	b = append(b, '[')
	for i := range as {
		a := &as[i]
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		b = append(b, `{"n":`...)
		b = strconv.AppendInt(b, int64(a.N), 10)
		b = append(b, `,"started_at":`...)
		if b, ok = appendTime(b, a.StartedAt); !ok {
			return b, false
		}
		b = append(b, `,"finished_at":`...)
		if b, ok = appendTimePtr(b, a.FinishedAt); !ok {
			return b, false
		}
		b = append(b, `,"outcome":`...)
		b = appendString(b, string(a.Outcome))
		b = append(b, `,"reason":`...)
		b = appendString(b, a.Reason)
		b = append(b, `,"exit_code":`...)
		b = appendIntPtr(b, a.ExitCode)
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(a.PID), 10)
		b = append(b, `,"pid_start":`...)
		b = strconv.AppendInt(b, a.PIDStart, 10)
		b = append(b, '}')
	}
	return append(b, ']'), true
}

// appendRaw writes a raw JSON value as encoding/json does: nil is null,
// and the value is compacted. A value that is already compact (the usual
// case: the store keeps what a client sent, which is compact when it came
// from an encoder) is copied; any other, valid or not, is left to
// encoding/json.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	if !compactJSON(raw) || !json.Valid(raw) {
		return b, false
	}
	return append(b, raw...), true
}

// compactJSON reports that raw has no space outside its strings.
func compactJSON(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && isSpace(c):
			return false
		}
	}
	return true
}

func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	b, err := t.AppendText(b) // the RFC 3339 form MarshalJSON quotes
	if err != nil {
		return b, false
	}
	return append(b, '"'), true
}

func appendTimePtr(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	return appendTime(b, *t)
}

// appendDuration writes what engine.Duration.MarshalJSON returns.
func appendDuration(b []byte, d engine.Duration) []byte {
	b = append(b, '"')
	b = append(b, time.Duration(d).String()...)
	return append(b, '"')
}

func appendIntPtr(b []byte, n *int) []byte {
	if n == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(*n), 10)
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendStringMap writes a map with its keys sorted, as encoding/json does.
func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does without HTML escaping:
// '"', '\\' and control characters escaped (the short forms where JSON
// has one), invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// newLineEncoder is how both ends of the socket encode JSON: one value per
// line, and '<', '>' and '&' as themselves, since no HTML ever reads them.
func newLineEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
