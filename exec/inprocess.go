package exec

import (
	"context"
	"fmt"
	"runtime/debug"

	"stq/engine"
)

// InProcess runs an attempt by calling a handler registered for its type, in
// the daemon's own process.
type InProcess struct {
	Registry *engine.Registry
}

var _ engine.Executor = InProcess{}

// Execute calls the handler named by run.Handler, or by the job's type when
// that is empty, and returns when the handler does. Handlers are expected to
// return soon after ctx is done; a goroutine cannot be killed, so one that
// does not is waited for.
func (p InProcess) Execute(ctx context.Context, run *engine.Run) engine.Result {
	name := run.Handler
	if name == "" && run.Job != nil {
		name = run.Job.Type
	}
	h, ok := p.Registry.Lookup(name)
	if !ok {
		return engine.Result{Err: fmt.Errorf("no in-process handler for type %q: %w", name, engine.ErrPermanent)}
	}
	out := newSink(run.Output)
	// Lines logged after the handler returned (from goroutines it left
	// behind) would land in a finished attempt's log: drop them.
	defer out.close()
	if err := callHandler(engine.WithOutput(ctx, out.writeLines), h, run.Job, out); err != nil {
		return engine.Result{Err: err}
	}
	return engine.Result{}
}

// callHandler turns a panic in the handler into an error, so a buggy handler
// fails its attempt instead of the daemon.
func callHandler(ctx context.Context, h engine.Handler, job *engine.Job, out *sink) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		out.writeLines("stderr", fmt.Sprintf("panic: %v\n\n%s", r, debug.Stack()))
		if e, ok := r.(error); ok {
			err = fmt.Errorf("handler panicked: %w", e)
			return
		}
		err = fmt.Errorf("handler panicked: %v", r)
	}()
	return h(ctx, job)
}

// Noop is the built-in "noop" job type: it succeeds at once. It is useful to
// check that a queue is being worked.
func Noop(ctx context.Context, job *engine.Job) error {
	return nil
}
