package mcpserver

import (
	"encoding/json"
	"time"

	"stq/engine"
)

// Output structs are the tools' structured results. They are the API's
// types cut down to what an agent acts on, and they only use types whose
// inferred schema matches their JSON (engine.Duration and json.RawMessage
// would not), because the SDK validates every result against the schema.

type enqueueOut struct {
	ID         string   `json:"id" jsonschema:"the new job's id"`
	State      string   `json:"state" jsonschema:"QUEUED, or SUPERSEDED if a newer generation of its subject was already there"`
	Generation int64    `json:"generation"`
	Superseded []string `json:"superseded,omitempty" jsonschema:"ids of older queued jobs of the same subject that this one replaced"`
	Error      string   `json:"error,omitempty" jsonschema:"why the job was superseded on arrival"`
}

// jobHead is what every view of a job starts with: the job, its state,
// and the key it is a generation of.
type jobHead struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Queue      string `json:"queue"`
	Type       string `json:"type"`
	Subject    string `json:"subject,omitempty"`
	Generation int64  `json:"generation"`
}

func head(j *engine.Job) jobHead {
	return jobHead{ID: j.ID, State: string(j.State), Queue: j.Queue, Type: j.Type, Subject: j.Subject, Generation: j.Generation}
}

type jobSummary struct {
	jobHead
	Attempt     int       `json:"attempt" jsonschema:"current or last attempt; 0 before the first"`
	MaxAttempts int       `json:"max_attempts"`
	CreatedAt   time.Time `json:"created_at"`
	Error       string    `json:"error,omitempty" jsonschema:"why the last attempt failed"`
	Waiting     string    `json:"waiting,omitempty" jsonschema:"why a QUEUED job is not running yet"`
}

type listOut struct {
	Jobs       []jobSummary `json:"jobs" jsonschema:"newest first"`
	NextCursor string       `json:"next_cursor,omitempty" jsonschema:"pass as cursor for the next page; absent on the last page"`
}

type attemptOut struct {
	N          int        `json:"n"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Outcome    string     `json:"outcome" jsonschema:"running, succeeded, failed, cancelled, superseded, interrupted or crashed"`
	Reason     string     `json:"reason,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	PID        int        `json:"pid,omitempty"`
}

type jobOut struct {
	jobHead
	Priority        int               `json:"priority"`
	Attempt         int               `json:"attempt"`
	MaxAttempts     int               `json:"max_attempts"`
	Command         []string          `json:"command,omitempty"`
	Cwd             string            `json:"cwd,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Payload         any               `json:"payload,omitempty"`
	RunAt           time.Time         `json:"run_at" jsonschema:"not started before this"`
	Deadline        string            `json:"deadline" jsonschema:"time limit per attempt; 0s for none"`
	TTL             string            `json:"ttl,omitempty" jsonschema:"expires if not started within this long of creation"`
	Backoff         string            `json:"backoff"`
	Debounce        string            `json:"debounce,omitempty"`
	Replace         bool              `json:"replace,omitempty"`
	After           []string          `json:"after,omitempty"`
	WaitIdle        bool              `json:"wait_idle,omitempty"`
	RequireCharging bool              `json:"require_charging,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	StartedAt       *time.Time        `json:"started_at,omitempty"`
	FinishedAt      *time.Time        `json:"finished_at,omitempty"`
	ExitCode        *int              `json:"exit_code,omitempty"`
	Error           string            `json:"error,omitempty"`
	Waiting         string            `json:"waiting,omitempty"`
	Owner           string            `json:"owner,omitempty"`
	LogTruncated    bool              `json:"log_truncated,omitempty" jsonschema:"older output lines were dropped to keep the log under its size limit"`
	Attempts        []attemptOut      `json:"attempts"`
}

type logLine struct {
	Seq    int64  `json:"seq"`
	Stream string `json:"stream" jsonschema:"stdout, stderr, or stq for the daemon's own notes"`
	Text   string `json:"text"`
}

type waitOut struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	TimedOut    bool      `json:"timed_out" jsonschema:"the timeout passed before the job ended; state is as it is now"`
	ExitCode    *int      `json:"exit_code,omitempty" jsonschema:"of the last attempt; absent when there was no process exit"`
	Error       string    `json:"error,omitempty"`
	Duration    string    `json:"duration,omitempty" jsonschema:"run time of the last attempt, once the job has finished"`
	Attempt     int       `json:"attempt"`
	MaxAttempts int       `json:"max_attempts"`
	Waiting     string    `json:"waiting,omitempty" jsonschema:"why a QUEUED job is not running yet"`
	Lines       []logLine `json:"lines" jsonschema:"the last lines of output, oldest first; lines over 500 bytes are cut and end with …"`
	// LogTruncated is what tells the agent there is more to read, so it is
	// always present.
	LogTruncated bool   `json:"log_truncated" jsonschema:"lines before these exist or were dropped; read them with logs"`
	Note         string `json:"note,omitempty"`
}

type logsOut struct {
	Lines      []logLine `json:"lines" jsonschema:"oldest first; lines over 4096 bytes are cut and end with …"`
	NextOffset int64     `json:"next_offset" jsonschema:"offset for the next window"`
	More       bool      `json:"more" jsonschema:"more lines are stored after this window"`
}

type cancelOut struct {
	Cancelled []string `json:"cancelled" jsonschema:"ids of the jobs that were cancelled; empty when a subject key had none queued or running"`
}

type statsOut struct {
	Queues  map[string]map[string]int64 `json:"queues" jsonschema:"job count per queue and state; states with no jobs may be absent"`
	Workers int                         `json:"workers" jsonschema:"jobs that can run at once"`
	Running int                         `json:"running" jsonschema:"jobs running now"`
	Paused  []string                    `json:"paused" jsonschema:"queues that start no new jobs"`
}

func summarize(j *engine.Job) jobSummary {
	return jobSummary{
		jobHead:     head(j),
		Attempt:     j.Attempt,
		MaxAttempts: j.MaxAttempts,
		CreatedAt:   j.CreatedAt,
		Error:       j.Error,
		Waiting:     j.Waiting,
	}
}

func detail(j *engine.Job) jobOut {
	o := jobOut{
		jobHead:         head(j),
		Priority:        j.Priority,
		Attempt:         j.Attempt,
		MaxAttempts:     j.MaxAttempts,
		Command:         j.Command,
		Cwd:             j.Cwd,
		Env:             j.Env,
		RunAt:           j.RunAt,
		Deadline:        j.Deadline.String(),
		Backoff:         j.Backoff.String(),
		Replace:         j.Replace,
		After:           j.After,
		WaitIdle:        j.WaitIdle,
		RequireCharging: j.RequireCharging,
		CreatedAt:       j.CreatedAt,
		StartedAt:       j.StartedAt,
		FinishedAt:      j.FinishedAt,
		ExitCode:        j.ExitCode,
		Error:           j.Error,
		Waiting:         j.Waiting,
		Owner:           j.Owner,
		LogTruncated:    j.LogTruncated,
		Attempts:        make([]attemptOut, 0, len(j.Attempts)),
	}
	if j.TTL > 0 {
		o.TTL = j.TTL.String()
	}
	if j.Debounce > 0 {
		o.Debounce = j.Debounce.String()
	}
	// The payload is shown as the JSON it is, not as the base64 a []byte
	// would become; "null" is how the API says there is none.
	if len(j.Payload) > 0 && string(j.Payload) != "null" {
		o.Payload = json.RawMessage(j.Payload)
	}
	for _, a := range j.Attempts {
		o.Attempts = append(o.Attempts, attemptOut{
			N:          a.N,
			StartedAt:  a.StartedAt,
			FinishedAt: a.FinishedAt,
			Outcome:    string(a.Outcome),
			Reason:     a.Reason,
			ExitCode:   a.ExitCode,
			PID:        a.PID,
		})
	}
	return o
}

func stats(st *engine.Stats) statsOut {
	o := statsOut{
		Queues:  make(map[string]map[string]int64, len(st.Queues)),
		Workers: st.Workers,
		Running: st.Running,
		Paused:  st.Paused,
	}
	for q, counts := range st.Queues {
		m := make(map[string]int64, len(counts))
		for s, n := range counts {
			m[string(s)] = n
		}
		o.Queues[q] = m
	}
	if o.Paused == nil {
		o.Paused = []string{}
	}
	return o
}
