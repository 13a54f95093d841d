package storetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"stq/engine"
)

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func intEq(a, b *int) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.Format(time.RFC3339Nano)
}

func fmtInt(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// diffJob lists the fields in which got differs from want. Attempts are
// compared only when want has them (non-nil). It is long because Job is
// wide: one plain comparison per field, in the struct's order, so that a
// field added to Job and missed here shows in review, and each field's
// equality (times by instant, pointers by value) is read where it is used.
func diffJob(got, want *engine.Job) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Queue != want.Queue || got.Type != want.Type || got.Subject != want.Subject {
		add("key", got.Key(), want.Key())
	}
	if got.Generation != want.Generation {
		add("Generation", got.Generation, want.Generation)
	}
	if got.Priority != want.Priority {
		add("Priority", got.Priority, want.Priority)
	}
	if got.State != want.State {
		add("State", got.State, want.State)
	}
	if got.Attempt != want.Attempt {
		add("Attempt", got.Attempt, want.Attempt)
	}
	if got.MaxAttempts != want.MaxAttempts {
		add("MaxAttempts", got.MaxAttempts, want.MaxAttempts)
	}
	if string(got.Payload) != string(want.Payload) {
		add("Payload", string(got.Payload), string(want.Payload))
	}
	if !slices.Equal(got.Command, want.Command) {
		add("Command", got.Command, want.Command)
	}
	if got.Cwd != want.Cwd {
		add("Cwd", got.Cwd, want.Cwd)
	}
	if !maps.Equal(got.Env, want.Env) {
		add("Env", got.Env, want.Env)
	}
	if !baseEnvEq(got.BaseEnv, want.BaseEnv) {
		add("BaseEnv", got.BaseEnv, want.BaseEnv)
	}
	if !got.RunAt.Equal(want.RunAt) {
		add("RunAt", got.RunAt, want.RunAt)
	}
	if got.Deadline != want.Deadline || got.TTL != want.TTL || got.Backoff != want.Backoff {
		add("Deadline/TTL/Backoff", []engine.Duration{got.Deadline, got.TTL, got.Backoff}, []engine.Duration{want.Deadline, want.TTL, want.Backoff})
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if !timeEq(got.StartedAt, want.StartedAt) {
		add("StartedAt", fmtTime(got.StartedAt), fmtTime(want.StartedAt))
	}
	if !timeEq(got.FinishedAt, want.FinishedAt) {
		add("FinishedAt", fmtTime(got.FinishedAt), fmtTime(want.FinishedAt))
	}
	if !intEq(got.ExitCode, want.ExitCode) {
		add("ExitCode", fmtInt(got.ExitCode), fmtInt(want.ExitCode))
	}
	if got.Error != want.Error {
		add("Error", got.Error, want.Error)
	}
	if got.Owner != want.Owner {
		add("Owner", got.Owner, want.Owner)
	}
	if got.LogTruncated != want.LogTruncated {
		add("LogTruncated", got.LogTruncated, want.LogTruncated)
	}
	if got.WaitIdle != want.WaitIdle || got.RequireCharging != want.RequireCharging || got.Replace != want.Replace {
		add("WaitIdle/RequireCharging/Replace", []bool{got.WaitIdle, got.RequireCharging, got.Replace}, []bool{want.WaitIdle, want.RequireCharging, want.Replace})
	}
	if got.Debounce != want.Debounce {
		add("Debounce", got.Debounce, want.Debounce)
	}
	if !slices.Equal(got.After, want.After) {
		add("After", got.After, want.After)
	}
	if got.Waiting != "" {
		add("Waiting", got.Waiting, "(never stored)")
	}
	if want.Attempts != nil {
		if got.Attempts == nil {
			add("Attempts", "nil", "[]")
		}
		if len(got.Attempts) != len(want.Attempts) {
			add("len(Attempts)", len(got.Attempts), len(want.Attempts))
		} else {
			for i := range want.Attempts {
				if a := diffAttempt(got.Attempts[i], want.Attempts[i]); a != "" {
					add(fmt.Sprintf("Attempts[%d]", i), a, "")
				}
			}
		}
	}
	return d
}

func diffAttempt(g, w engine.Attempt) string {
	if g.N != w.N || !g.StartedAt.Equal(w.StartedAt) || !timeEq(g.FinishedAt, w.FinishedAt) ||
		g.Outcome != w.Outcome || g.Reason != w.Reason || !intEq(g.ExitCode, w.ExitCode) ||
		g.PID != w.PID || g.PIDStart != w.PIDStart {
		return fmt.Sprintf("{N:%d Started:%s Finished:%s Outcome:%s Reason:%q Exit:%s PID:%d PIDStart:%d} differs from {N:%d Started:%s Finished:%s Outcome:%s Reason:%q Exit:%s PID:%d PIDStart:%d}",
			g.N, g.StartedAt.Format(time.RFC3339Nano), fmtTime(g.FinishedAt), g.Outcome, g.Reason, fmtInt(g.ExitCode), g.PID, g.PIDStart,
			w.N, w.StartedAt.Format(time.RFC3339Nano), fmtTime(w.FinishedAt), w.Outcome, w.Reason, fmtInt(w.ExitCode), w.PID, w.PIDStart)
	}
	return ""
}

func (f *fx) wantJob(what string, got, want *engine.Job) {
	f.Helper()
	if d := diffJob(got, want); len(d) > 0 {
		f.Fatalf("%s:\n\t%s", what, strings.Join(d, "\n\t"))
	}
}
