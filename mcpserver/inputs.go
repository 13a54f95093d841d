package mcpserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"stq/engine"
	"stq/ipc"
)

// Bounds of the tools' inputs. They are tighter than the API's: an agent
// pays for every byte of a result in its context window.
const (
	defaultListLimit = 50
	maxListLimit     = 500

	defaultWaitTimeout = 60 * time.Second
	maxWaitTimeout     = 10 * time.Minute

	defaultDigestLines = 20
	maxDigestLines     = 200

	defaultLogsLimit = 100
	maxLogsLimit     = 1000
)

// Input structs: the SDK infers each tool's input schema from them, so a
// field's jsonschema tag is the description the agent reads, and a field
// without omitempty is required.

type enqueueIn struct {
	Command    []string `json:"command,omitempty" jsonschema:"program and arguments to run as a subprocess, e.g. [\"go\", \"test\", \"./...\"]; not run through a shell (use [\"sh\", \"-c\", \"...\"] for pipes or globs). Give command or type."`
	Type       string   `json:"type,omitempty" jsonschema:"job type; without a command the daemon runs the handler configured for it in config.toml. Default \"exec\"."`
	Subject    string   `json:"subject,omitempty" jsonschema:"what the job is about (a file, a branch); with queue and type it forms a key, and a newer job of the same key supersedes older queued ones"`
	Generation *int64   `json:"generation,omitempty" jsonschema:"generation within the subject key (needs subject); default: one more than the highest seen. A generation not above the highest seen is superseded at once."`
	Payload    any      `json:"payload,omitempty" jsonschema:"any JSON value handed to the job on stdin (at most 1 MiB)"`
	Queue      string   `json:"queue,omitempty" jsonschema:"queue name; default \"default\""`
	Priority   int      `json:"priority,omitempty" jsonschema:"higher runs first; default 0"`
	After      []string `json:"after,omitempty" jsonschema:"ids of jobs that must end DONE before this one starts; if one ends otherwise this job is cancelled"`
	Debounce   string   `json:"debounce,omitempty" jsonschema:"Go duration such as \"2s\" (needs subject): start only once no newer generation of the subject has arrived for this long"`
	Replace    bool     `json:"replace,omitempty" jsonschema:"true (needs subject): stop a running older generation of the subject instead of waiting for it to finish"`
	Deadline   string   `json:"deadline,omitempty" jsonschema:"Go duration such as \"5m\": time limit per attempt; default the job type's, else 60s; \"0\" for none"`
	Cwd        string   `json:"cwd,omitempty" jsonschema:"absolute working directory for the command; default the directory the MCP server runs in"`
}

type listIn struct {
	State   []string `json:"state,omitempty" jsonschema:"only jobs in one of these states: QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED, EXPIRED (any case)"`
	Queue   string   `json:"queue,omitempty" jsonschema:"only jobs of this queue"`
	Type    string   `json:"type,omitempty" jsonschema:"only jobs of this type"`
	Subject string   `json:"subject,omitempty" jsonschema:"only jobs with this subject"`
	Limit   int      `json:"limit,omitempty" jsonschema:"jobs per page, 1-500; default 50"`
	Cursor  string   `json:"cursor,omitempty" jsonschema:"next_cursor of the previous page, to get the page after it"`
}

type idIn struct {
	ID string `json:"id" jsonschema:"job id, as enqueue or list returned it"`
}

type waitIn struct {
	ID      string `json:"id" jsonschema:"job id, as enqueue or list returned it"`
	Timeout string `json:"timeout,omitempty" jsonschema:"Go duration such as \"30s\": how long to wait for the job to end, at most \"10m\"; default \"60s\"; \"0s\" only looks"`
	Lines   int    `json:"lines,omitempty" jsonschema:"how many of the last output lines to include, 1-200; default 20"`
}

type logsIn struct {
	ID     string `json:"id" jsonschema:"job id, as enqueue or list returned it"`
	Offset int64  `json:"offset,omitempty" jsonschema:"line number (seq) to start after; default 0, the beginning. Pass the previous result's next_offset to read on."`
	Limit  int    `json:"limit,omitempty" jsonschema:"most lines to return, 1-1000; default 100"`
}

type cancelIn struct {
	ID      string `json:"id,omitempty" jsonschema:"id of the job to cancel; give id or subject"`
	Subject string `json:"subject,omitempty" jsonschema:"cancel every queued and running job of this subject key instead of one job"`
	Queue   string `json:"queue,omitempty" jsonschema:"queue of the subject key; default \"default\""`
	Type    string `json:"type,omitempty" jsonschema:"type of the subject key; default \"exec\""`
}

type statsIn struct{}

// request builds the enqueue request. Whatever can be checked here is, so
// the agent gets a precise message without a round trip; the daemon checks
// again.
func (in enqueueIn) request(getwd func() (string, error)) (engine.EnqueueRequest, error) {
	req := engine.EnqueueRequest{
		Queue:      in.Queue,
		Type:       in.Type,
		Subject:    in.Subject,
		Generation: in.Generation,
		Priority:   in.Priority,
		Command:    in.Command,
		After:      in.After,
	}
	if len(in.Command) == 0 && in.Type == "" {
		return req, errors.New("give command (the program and arguments to run) or type (a job type with a handler in config.toml)")
	}
	if len(in.Command) > 0 && in.Command[0] == "" {
		return req, errors.New("command[0], the program, must not be empty")
	}
	needsSubject := func(field string) error {
		return fmt.Errorf("%s needs a subject: it works across the generations of one subject key", field)
	}
	if in.Generation != nil {
		if in.Subject == "" {
			return req, needsSubject("generation")
		}
		if *in.Generation < 0 {
			return req, fmt.Errorf("generation must not be negative, got %d", *in.Generation)
		}
	}
	if in.Replace {
		if in.Subject == "" {
			return req, needsSubject("replace")
		}
		// Only set when true: left out, the job type's default applies.
		req.Replace = &in.Replace
	}
	for i, id := range in.After {
		if id == "" {
			return req, fmt.Errorf("after[%d] must be a job id, not empty", i)
		}
	}
	if in.Debounce != "" {
		if in.Subject == "" {
			return req, needsSubject("debounce")
		}
		d, err := parseDuration("debounce", in.Debounce)
		if err != nil {
			return req, err
		}
		req.Debounce = &d
	}
	if in.Deadline != "" {
		d, err := parseDuration("deadline", in.Deadline)
		if err != nil {
			return req, err
		}
		req.Deadline = &d
	}
	if in.Payload != nil {
		b, err := json.Marshal(in.Payload)
		if err != nil {
			return req, fmt.Errorf("payload: %w", err)
		}
		req.Payload = b
	}
	switch {
	case in.Cwd != "":
		if !filepath.IsAbs(in.Cwd) {
			return req, fmt.Errorf("cwd must be an absolute path, got %q", in.Cwd)
		}
		req.Cwd = in.Cwd
	case len(in.Command) > 0:
		wd, err := getwd()
		if err != nil {
			return req, fmt.Errorf("find the server's working directory for the command (give cwd): %w", err)
		}
		req.Cwd = wd
	}
	return req, nil
}

func parseDuration(field, s string) (engine.Duration, error) {
	d, err := engine.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return engine.Duration(d), nil
}

// params builds the list request.
func (in listIn) params() (ipc.ListParams, error) {
	p := ipc.ListParams{Queue: in.Queue, Type: in.Type, Subject: in.Subject, Cursor: in.Cursor, Limit: in.Limit}
	switch {
	case in.Limit == 0:
		p.Limit = defaultListLimit
	case in.Limit < 0 || in.Limit > maxListLimit:
		return p, fmt.Errorf("limit must be between 1 and %d, got %d", maxListLimit, in.Limit)
	}
	for _, s := range in.State {
		st := engine.State(strings.ToUpper(strings.TrimSpace(s)))
		if !st.Valid() {
			return p, fmt.Errorf("unknown state %q; states are %s", s, stateNames())
		}
		p.States = append(p.States, string(st))
	}
	return p, nil
}

func stateNames() string {
	names := make([]string, len(engine.States))
	for i, s := range engine.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func checkID(id string) error {
	if strings.TrimSpace(id) == "" {
		return errors.New("id is required: a job id as enqueue or list returned it")
	}
	return nil
}

// options returns the wait's timeout and how many lines its digest keeps.
func (in waitIn) options() (timeout time.Duration, lines int, err error) {
	if err := checkID(in.ID); err != nil {
		return 0, 0, err
	}
	timeout = defaultWaitTimeout
	if in.Timeout != "" {
		d, err := engine.ParseDuration(in.Timeout)
		if err != nil {
			return 0, 0, fmt.Errorf("timeout: %w", err)
		}
		if d > maxWaitTimeout {
			return 0, 0, fmt.Errorf("timeout %s is over the maximum of %s; wait again after it if the job is still running", in.Timeout, maxWaitTimeout)
		}
		timeout = d
	}
	lines, err = count("lines", in.Lines, defaultDigestLines, maxDigestLines, "; read more with the logs tool")
	if err != nil {
		return 0, 0, err
	}
	return timeout, lines, nil
}

// count is an agent's count argument n: def when it is 0 (left out), else
// n if it is 1 to most. The error names the argument, its range and, as
// more, where to go for what the range leaves out.
func count(name string, n, def, most int, more string) (int, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 0 || n > most:
		return 0, fmt.Errorf("%s must be between 1 and %d, got %d%s", name, most, n, more)
	}
	return n, nil
}

// window returns the seq to read after and the most lines to return.
func (in logsIn) window() (offset int64, limit int, err error) {
	if err := checkID(in.ID); err != nil {
		return 0, 0, err
	}
	if in.Offset < 0 {
		return 0, 0, fmt.Errorf("offset must not be negative, got %d", in.Offset)
	}
	if limit, err = count("limit", in.Limit, defaultLogsLimit, maxLogsLimit, ""); err != nil {
		return 0, 0, err
	}
	return in.Offset, limit, nil
}

// request builds the cancel request: one job, or a subject key.
func (in cancelIn) request() (engine.CancelRequest, error) {
	req := engine.CancelRequest{ID: in.ID, Queue: in.Queue, Type: in.Type, Subject: in.Subject}
	switch {
	case in.ID != "" && in.Subject != "":
		return req, errors.New("give id or subject, not both")
	case in.ID == "" && in.Subject == "":
		return req, errors.New("give id (one job) or subject (every queued and running job of that subject key)")
	case in.ID != "" && (in.Queue != "" || in.Type != ""):
		return req, errors.New("queue and type go with subject; an id names one job on its own")
	}
	return req, nil
}
