package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Executor runs one attempt of a job. It returns when the work has ended and,
// for a subprocess, when nothing of its process group is left running.
//
// When ctx is done the executor stops the work: a subprocess executor sends
// SIGTERM to the whole process group, then SIGKILL after run.Grace. The
// engine reads context.Cause(ctx) to tell a deadline from a cancel.
type Executor interface {
	Execute(ctx context.Context, run *Run) Result
}

// Run is everything an executor needs for one attempt.
type Run struct {
	Job *Job
	// Command is the resolved argv: the job's own, or its type's handler
	// command from the configuration. Empty for in-process handlers.
	Command []string
	// Handler names the in-process handler to run when Command is empty.
	Handler string
	// Env holds the additions to the base environment, "K=V": the job's
	// env, then the STQ_* variables.
	Env []string
	// BaseEnv is the environment the process starts from instead of the
	// daemon's ("K=V", the job's BaseEnv.List); nil: the daemon's. A
	// subprocess executor runs with ProcessEnv.
	BaseEnv []string
	// Grace is how long a stopped subprocess group gets between SIGTERM and
	// SIGKILL.
	Grace time.Duration
	// Output receives each line the job prints. It must not block for long.
	Output func(stream, text string)
	// Started is called once the process exists, with its PID and start time
	// (milliseconds since the epoch), and returns once they are durably
	// recorded: an executor that holds the command back until then (a start
	// gate) uses it. In-process handlers never call it.
	Started func(pid int, pidStart int64)
	// Spawned is Started without the wait: the record is stored with the
	// engine's next commit. An executor whose processes recovery can find
	// without the record (Processes.KillJob) uses it.
	Spawned func(pid int, pidStart int64)
}

// Result is how an attempt ended, as the executor saw it.
type Result struct {
	// ExitCode is the process exit status, nil when it did not exit normally
	// (killed by a signal, never started) or for in-process handlers.
	ExitCode *int
	// Signal names the signal that ended the process, if one did.
	Signal string
	// Err describes a failure other than a plain non-zero exit: the process
	// could not start, a handler returned an error or panicked.
	Err error
}

// Processes finds and kills the process groups of attempts that a crashed
// daemon left behind.
type Processes interface {
	// KillGroup kills the process group led by pid if it belongs to the
	// attempt that recorded (pid, pidStart): a live process with that PID but
	// another start time is a reused PID and is left alone. It reports
	// whether anything was killed.
	KillGroup(pid int, pidStart int64) (bool, error)
	// KillJob kills every process of this user that carries the job's
	// STQ_JOB_ID in its environment, with its process group: recovery's way
	// to the processes of an attempt whose PID was never recorded. It
	// reports whether anything was killed.
	KillJob(jobID string) (bool, error)
}

// Handler is an in-process job handler. Returning an error wrapping
// ErrPermanent fails the job without retrying.
type Handler func(ctx context.Context, job *Job) error

// Registry maps job types to in-process handlers. Programs that embed the
// engine register their own; the stq binary registers "noop".
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: make(map[string]Handler)}
}

// Register adds a handler for a job type, replacing any earlier one.
func (r *Registry) Register(jobType string, h Handler) error {
	if err := checkName("type", jobType); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("register %q: nil handler", jobType)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[jobType] = h
	return nil
}

// Lookup returns the handler for a type.
func (r *Registry) Lookup(jobType string) (Handler, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[jobType]
	return h, ok
}

// Types lists the registered types, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.handlers))
	for t := range r.handlers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

type outputKey struct{}

// WithOutput returns a context that carries a job's output sink; in-process
// executors use it so handlers can write to the job's log.
func WithOutput(ctx context.Context, out func(stream, text string)) context.Context {
	return context.WithValue(ctx, outputKey{}, out)
}

// Logf writes a line to the log of the job whose handler received ctx. It
// does nothing outside a handler.
func Logf(ctx context.Context, format string, args ...any) {
	if out, ok := ctx.Value(outputKey{}).(func(stream, text string)); ok && out != nil {
		out("stdout", fmt.Sprintf(format, args...))
	}
}
