package engine

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Input limits.
const (
	MaxNameBytes      = 1024    // queue, type and subject
	DefaultMaxPayload = 1 << 20 // bytes of payload JSON
	MaxCommandArgs    = 4096
	MaxEnvVars        = 1024
	DefaultQueue      = "default"
	DefaultType       = "exec"
)

// EnqueueRequest is a request to add a job. It is also the params object of
// the dev.enqueue.v1 method; optional fields left out take their defaults
// (from the job type's configuration, then the built-in ones).
//
// BaseEnv is the whole environment the job starts from instead of the
// daemon's: the enqueuing client's, as `stq enqueue` sends it. Env is added
// on top. nil means the daemon's environment; an empty map an empty one.
// The six variables the daemon sets for every attempt (STQ_JOB_ID,
// STQ_QUEUE, STQ_TYPE, STQ_SUBJECT, STQ_GENERATION, STQ_ATTEMPT) are
// dropped from it, not refused.
type EnqueueRequest struct {
	Queue       string            `json:"queue,omitempty"`
	Type        string            `json:"type,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	Generation  *int64            `json:"generation,omitempty"`
	Priority    int               `json:"priority,omitempty"`
	Payload     json.RawMessage   `json:"payload,omitempty"`
	Command     []string          `json:"command,omitempty"`
	Cwd         string            `json:"cwd,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	BaseEnv     map[string]string `json:"base_env,omitempty"` // the whole environment to start from instead of the daemon's; see BaseEnv
	RunAt       *time.Time        `json:"run_at,omitempty"`
	Delay       *Duration         `json:"delay,omitempty"`
	Deadline    *Duration         `json:"deadline,omitempty"`
	TTL         *Duration         `json:"ttl,omitempty"`
	Backoff     *Duration         `json:"backoff,omitempty"`
	MaxAttempts *int              `json:"max_attempts,omitempty"`
	// WaitIdle, RequireCharging, Debounce and Replace: see Job. Left out,
	// they take the job type's configured defaults.
	WaitIdle        *bool     `json:"wait_idle,omitempty"`
	RequireCharging *bool     `json:"require_charging,omitempty"`
	Debounce        *Duration `json:"debounce,omitempty"`
	Replace         *bool     `json:"replace,omitempty"`
	// After names jobs that must end DONE before this one starts.
	After []string `json:"after,omitempty"`
}

// MaxAfter bounds the dependencies of one job.
const MaxAfter = 256

func checkName(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s must not be empty", ErrInvalid, field)
	case len(v) > MaxNameBytes:
		return fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalid, field, len(v), MaxNameBytes)
	}
	return checkText(field, v)
}

func checkText(field, v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, field)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	return nil
}

// validate checks everything about a request that does not depend on the
// daemon's configuration. It changes nothing. The checks run in this order
// and the first refusal is the error.
func (r *EnqueueRequest) validate(maxPayload int) error {
	if err := r.checkKey(); err != nil {
		return err
	}
	if err := r.checkPayload(maxPayload); err != nil {
		return err
	}
	if err := r.checkCommand(); err != nil {
		return err
	}
	if err := r.checkEnv(); err != nil {
		return err
	}
	if err := r.checkAfter(); err != nil {
		return err
	}
	return r.checkSchedule()
}

// checkKey checks the queue, type, subject and generation.
func (r *EnqueueRequest) checkKey() error {
	if err := checkName("queue", r.Queue); err != nil {
		return err
	}
	if err := checkName("type", r.Type); err != nil {
		return err
	}
	if r.Subject != "" {
		if err := checkName("subject", r.Subject); err != nil {
			return err
		}
	}
	if r.Generation != nil {
		if *r.Generation < 0 {
			return fmt.Errorf("%w: generation must not be negative, got %d", ErrInvalid, *r.Generation)
		}
		if r.Subject == "" {
			return fmt.Errorf("%w: generation needs a subject", ErrInvalid)
		}
	}
	return nil
}

// checkPayload checks that the payload is JSON within the size limit.
func (r *EnqueueRequest) checkPayload(maxPayload int) error {
	if len(r.Payload) > maxPayload {
		return fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalid, len(r.Payload), maxPayload)
	}
	if len(r.Payload) > 0 {
		if !json.Valid(r.Payload) {
			return fmt.Errorf("%w: payload is not valid JSON", ErrInvalid)
		}
		if !utf8.Valid(r.Payload) {
			return fmt.Errorf("%w: payload is not valid UTF-8", ErrInvalid)
		}
		if strings.Contains(string(r.Payload), `\u0000`) {
			return fmt.Errorf("%w: payload contains a NUL character", ErrInvalid)
		}
	}
	return nil
}

// checkCommand checks the command line and the working directory.
func (r *EnqueueRequest) checkCommand() error {
	if len(r.Command) > MaxCommandArgs {
		return fmt.Errorf("%w: command has %d arguments, over the limit of %d", ErrInvalid, len(r.Command), MaxCommandArgs)
	}
	if len(r.Command) > 0 && r.Command[0] == "" {
		return fmt.Errorf("%w: command name must not be empty", ErrInvalid)
	}
	for i, a := range r.Command {
		if err := checkText(fmt.Sprintf("command[%d]", i), a); err != nil {
			return err
		}
	}
	if err := checkText("cwd", r.Cwd); err != nil {
		return err
	}
	if r.Cwd != "" && !strings.HasPrefix(r.Cwd, "/") {
		return fmt.Errorf("%w: cwd must be an absolute path, got %q", ErrInvalid, r.Cwd)
	}
	return nil
}

// checkEnv checks the variables added to the environment and the base
// environment they are added to.
func (r *EnqueueRequest) checkEnv() error {
	if len(r.Env) > MaxEnvVars {
		return fmt.Errorf("%w: %d environment variables, over the limit of %d", ErrInvalid, len(r.Env), MaxEnvVars)
	}
	for k, v := range r.Env {
		if k == "" || strings.ContainsAny(k, "=") {
			return fmt.Errorf("%w: invalid environment variable name %q", ErrInvalid, k)
		}
		if strings.HasPrefix(k, "STQ_") {
			return fmt.Errorf("%w: environment variable %s is reserved for stq", ErrInvalid, k)
		}
		if err := checkText("env "+k, k+v); err != nil {
			return err
		}
	}
	if r.BaseEnv != nil {
		if err := checkBaseEnv(r.BaseEnv); err != nil {
			return err
		}
	}
	return nil
}

// checkAfter checks the dependencies' ids.
func (r *EnqueueRequest) checkAfter() error {
	if len(r.After) > MaxAfter {
		return fmt.Errorf("%w: %d dependencies, over the limit of %d", ErrInvalid, len(r.After), MaxAfter)
	}
	for _, id := range r.After {
		if err := checkName("after", id); err != nil {
			return err
		}
	}
	return nil
}

// checkSchedule checks when and how often the job may run: the options
// that need a subject, run_at, attempts and the durations.
func (r *EnqueueRequest) checkSchedule() error {
	if r.Debounce != nil && r.Subject == "" {
		return fmt.Errorf("%w: debounce needs a subject", ErrInvalid)
	}
	if r.Replace != nil && *r.Replace && r.Subject == "" {
		return fmt.Errorf("%w: replace needs a subject", ErrInvalid)
	}
	if r.RunAt != nil && (r.RunAt.Year() < 1970 || r.RunAt.Year() > 2200) {
		return fmt.Errorf("%w: run_at %s is outside the years 1970-2200", ErrInvalid, r.RunAt.Format(time.RFC3339))
	}
	if r.RunAt != nil && r.Delay != nil {
		return fmt.Errorf("%w: give run_at or delay, not both", ErrInvalid)
	}
	if r.MaxAttempts != nil && (*r.MaxAttempts < 1 || *r.MaxAttempts > 1000) {
		return fmt.Errorf("%w: max_attempts must be between 1 and 1000, got %d", ErrInvalid, *r.MaxAttempts)
	}
	for _, d := range []struct {
		name string
		v    *Duration
	}{{"delay", r.Delay}, {"deadline", r.Deadline}, {"ttl", r.TTL}, {"backoff", r.Backoff}, {"debounce", r.Debounce}} {
		if d.v != nil && *d.v < 0 {
			return fmt.Errorf("%w: %s must not be negative", ErrInvalid, d.name)
		}
	}
	return nil
}
