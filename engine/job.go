package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Job is one unit of work. Its JSON form is what `stq show --json` prints and
// what the socket API returns; field names are part of the contract.
type Job struct {
	ID string `json:"id"`
	// ShortID is the shortest prefix of ID (at least MinIDPrefix
	// characters) that no other stored job's id starts with, as of the
	// read; set by List, empty elsewhere. Computed, never stored.
	ShortID     string            `json:"short_id,omitempty"`
	Queue       string            `json:"queue"`
	Type        string            `json:"type"`
	Subject     string            `json:"subject"`
	Generation  int64             `json:"generation"`
	Priority    int               `json:"priority"`
	State       State             `json:"state"`
	Attempt     int               `json:"attempt"`
	MaxAttempts int               `json:"max_attempts"`
	Payload     json.RawMessage   `json:"payload"`
	Command     []string          `json:"command"`
	Cwd         string            `json:"cwd"`
	Env         map[string]string `json:"env"`
	BaseEnv     *BaseEnv          `json:"base_env"` // the captured environment it starts from; nil: the daemon's
	RunAt       time.Time         `json:"run_at"`
	Deadline    Duration          `json:"deadline"`
	TTL         Duration          `json:"ttl"`
	Backoff     Duration          `json:"backoff"`
	CreatedAt   time.Time         `json:"created_at"`
	StartedAt   *time.Time        `json:"started_at"`
	FinishedAt  *time.Time        `json:"finished_at"`
	ExitCode    *int              `json:"exit_code"`
	Error       string            `json:"error"`
	// WaitIdle holds the job until system CPU use is below the idle
	// threshold; RequireCharging until the machine is on AC power.
	WaitIdle        bool `json:"wait_idle"`
	RequireCharging bool `json:"require_charging"`
	// Debounce delays the start until no newer generation of the key has
	// arrived for this long (each new generation restarts the window).
	Debounce Duration `json:"debounce"`
	// Replace makes this job, on arrival, stop a running older generation
	// of its key (that job ends SUPERSEDED) instead of waiting for it.
	Replace bool `json:"replace"`
	// After lists jobs that must be DONE before this one starts.
	After []string `json:"after"`
	// Waiting says why a QUEUED job is not running yet ("run_at", "idle",
	// "power", "queue paused", "queue full", "older generation running",
	// "after <id>"); empty when it could start now or is not QUEUED. It is
	// computed when the job is read, never stored.
	Waiting string `json:"waiting"`
	// StopAsked is set only in the reply to a cancel of a job that was
	// running under another daemon on the same store: that daemon's Owner,
	// which was asked to stop it. The job is CANCELLED when it stopped in
	// time, still RUNNING when its owner did not answer. Never stored.
	StopAsked string `json:"stop_asked,omitempty"`
	// Owner names the daemon that claimed the job's current attempt
	// ("host/instance"). Recovery only touches jobs whose owner is a dead
	// daemon of this host, which keeps a shared database safe.
	Owner    string    `json:"owner"`
	Attempts []Attempt `json:"attempts"`
	// LogTruncated is set once older output lines were dropped to keep the
	// job's log under its bound.
	LogTruncated bool `json:"log_truncated"`
	// LogSeq is the highest log line sequence number stored for the job, so
	// a new attempt continues the numbering.
	LogSeq int64 `json:"-"`
}

// Key is the supersede key of a job. Jobs without a subject have no key.
type Key struct {
	Queue, Type, Subject string
}

// Key returns the job's supersede key.
func (j *Job) Key() Key { return Key{j.Queue, j.Type, j.Subject} }

// ExpiresAt is when a queued job that has not started becomes EXPIRED; zero
// when the job has no TTL.
func (j *Job) ExpiresAt() time.Time {
	if j.TTL <= 0 {
		return time.Time{}
	}
	return j.CreatedAt.Add(time.Duration(j.TTL))
}

// Due is when a QUEUED job next needs the dispatcher: its RunAt, or the
// expiry of its TTL when that comes first. It is what decides whether an
// enqueue, here or through another daemon, must wake a dispatcher that
// sleeps until a given time.
func (j *Job) Due() time.Time {
	if exp := j.ExpiresAt(); !exp.IsZero() && exp.Before(j.RunAt) {
		return exp
	}
	return j.RunAt
}

// Stored is the job a store returns for a definition it has just stored:
// the definition as given, times in UTC and no attempts yet, with the
// payload as stored and what the store decided (generation, state, error).
// A job stored already ended (superseded or cancelled on arrival) finished
// at its CreatedAt. Slices and maps are copies; BaseEnv, never changed once
// made, is shared.
func (j *Job) Stored(payload json.RawMessage, generation int64, state State, errText string) *Job {
	stored := &Job{
		ID: j.ID, Queue: j.Queue, Type: j.Type, Subject: j.Subject,
		Priority: j.Priority, MaxAttempts: j.MaxAttempts,
		Payload: payload, Command: slices.Clone(j.Command),
		Cwd: j.Cwd, Env: maps.Clone(j.Env), RunAt: j.RunAt.UTC(),
		Deadline: j.Deadline, TTL: j.TTL, Backoff: j.Backoff,
		CreatedAt: j.CreatedAt.UTC(), Attempts: []Attempt{},
		WaitIdle: j.WaitIdle, RequireCharging: j.RequireCharging,
		Debounce: j.Debounce, Replace: j.Replace,
		BaseEnv:    j.BaseEnv,
		Generation: generation, State: state, Error: errText,
	}
	if len(j.After) > 0 {
		stored.After = slices.Clone(j.After) // none reads back as null, not []
	}
	if state != StateQueued {
		t := stored.CreatedAt
		stored.FinishedAt = &t
	}
	return stored
}

// Outcome says how an attempt ended.
type Outcome string

const (
	OutcomeRunning     Outcome = "running"     // still in progress
	OutcomeSucceeded   Outcome = "succeeded"   // exit 0 / handler returned nil
	OutcomeFailed      Outcome = "failed"      // non-zero exit, signal, handler error, deadline
	OutcomeCancelled   Outcome = "cancelled"   // a user cancelled the job
	OutcomeSuperseded  Outcome = "superseded"  // a newer generation replaced the running job
	OutcomeInterrupted Outcome = "interrupted" // daemon shutdown; the attempt is not counted
	OutcomeCrashed     Outcome = "crashed"     // the daemon died while it ran
)

// Attempt is one run of a job.
type Attempt struct {
	N          int        `json:"n"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Outcome    Outcome    `json:"outcome"`
	Reason     string     `json:"reason"`
	ExitCode   *int       `json:"exit_code"`
	PID        int        `json:"pid"`
	// PIDStart is the process start time in milliseconds since the epoch, as
	// the OS reports it. Recovery compares it before killing anything so a
	// reused PID is never signalled.
	PIDStart int64 `json:"pid_start"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1m30s"), so the wire format stays readable by people and scripts.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON quotes the duration's string as is: its characters (digits,
// '.', '-', unit letters and 'µ') are none that JSON escapes, and going
// through json.Marshal cost a fifth of a bulk enqueue's reply.
func (d Duration) MarshalJSON() ([]byte, error) {
	s := time.Duration(d).String()
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s, ok := plainJSONString(b)
	if !ok {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
		}
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// plainJSONString returns the content of a JSON string literal that has
// no escapes and only printable ASCII, which is what a duration looks
// like; ok is false for anything else, which json.Unmarshal then reads.
func plainJSONString(b []byte) (s string, ok bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	inner := b[1 : len(b)-1]
	for _, c := range inner {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(inner), true
}

// ParseDuration parses a Go duration, and also accepts "0" and a trailing "d"
// for days, which people reach for when setting TTLs.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if n := len(s); s[n-1] == 'd' {
		num := s[:n-1]
		if num != "" && strings.Trim(num, "0123456789.") == "" {
			days, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 5m, 2h, 1d)", s)
			}
			// Bound before converting: a float past int64 (or NaN) turns
			// into a negative or arbitrary Duration.
			if !(days >= 0 && days*float64(24*time.Hour) < float64(math.MaxInt64)) {
				return 0, fmt.Errorf("duration %q is out of range", s)
			}
			return time.Duration(days * float64(24*time.Hour)), nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 5m, 2h, 1d)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return v, nil
}
