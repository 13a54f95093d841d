package engine

import (
	"context"
	"errors"
	"fmt"
)

// CancelRequest names the jobs to cancel: one id, or every QUEUED or RUNNING
// job of a subject key. It is also the params of dev.cancel.v1.
type CancelRequest struct {
	ID      string `json:"id,omitempty"`
	Queue   string `json:"queue,omitempty"`
	Type    string `json:"type,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// Cancel cancels one job by id, or every QUEUED and RUNNING job of a subject
// key. A running job's process group is killed; Cancel returns once the job
// is recorded CANCELLED. Cancelling a finished job is an error that changes
// nothing.
func (e *Engine) Cancel(ctx context.Context, req CancelRequest) ([]*Job, error) {
	var targets []*Job
	switch {
	case req.ID != "" && req.Subject != "":
		return nil, fmt.Errorf("%w: cancel by id or by subject, not both", ErrInvalid)
	case req.ID != "":
		j, err := e.Get(ctx, req.ID)
		if err != nil {
			return nil, err
		}
		if j.State.Terminal() {
			return nil, fmt.Errorf("%w: job %s is %s", ErrFinished, j.ID, j.State)
		}
		targets = []*Job{j}
	case req.Subject != "":
		if req.Queue == "" {
			req.Queue = DefaultQueue
		}
		if req.Type == "" {
			req.Type = DefaultType
		}
		for _, f := range []struct{ n, v string }{{"queue", req.Queue}, {"type", req.Type}, {"subject", req.Subject}} {
			if err := checkName(f.n, f.v); err != nil {
				return nil, err
			}
		}
		page, err := e.store.List(ctx, ListFilter{States: []State{StateQueued, StateRunning}, Queue: req.Queue, Type: req.Type, Subject: req.Subject, Limit: 10000})
		if err != nil {
			return nil, fmt.Errorf("find jobs to cancel: %w", err)
		}
		targets = page.Jobs
	default:
		return nil, fmt.Errorf("%w: cancel needs a job id or a subject", ErrInvalid)
	}

	var out []*Job
	for _, j := range targets {
		c, err := e.cancelOne(ctx, j.ID)
		if err != nil {
			if req.ID == "" && errors.Is(err, ErrFinished) {
				continue // ended on its own meanwhile
			}
			return out, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (e *Engine) cancelOne(ctx context.Context, id string) (*Job, error) {
	now := e.clock.Now()
	changed, err := e.store.CancelQueued(ctx, []string{id}, ReasonCancelled, now)
	if err != nil {
		return nil, fmt.Errorf("cancel %s: %w", id, err)
	}
	e.publishJobs(changed...)
	for _, c := range changed {
		if c.ID == id {
			e.notify()
			return c, nil
		}
	}
	// Not QUEUED any more: it is running here, running elsewhere, or done.
	a := e.runningHere(id)
	if a != nil {
		a.cancel(errCancelled)
		select {
		case <-a.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("cancel %s: %w", id, ctx.Err())
		}
	}
	j, err := e.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case j.State == StateCancelled && a != nil:
		return j, nil
	case j.State.Terminal():
		return nil, fmt.Errorf("%w: job %s is %s", ErrFinished, id, j.State)
	case j.State == StateRunning && j.Owner == e.cfg.Owner && e.isRunning(id, a):
		// The attempt we stopped had already ended in a retry, and the
		// claim that stored it started the next one: stop that one.
		return e.cancelOne(ctx, id)
	case j.State == StateRunning && j.Owner == e.cfg.Owner:
		return e.cancelUnseen(ctx, id, j)
	case j.State == StateRunning && e.shared.watcher != nil:
		return e.cancelElsewhere(ctx, j)
	case j.State == StateRunning:
		return nil, fmt.Errorf("%w: job %s is running under another daemon (%s)", ErrInvalid, id, j.Owner)
	default:
		// It went back to QUEUED (a retry) between our looks: try again.
		return e.cancelOne(ctx, id)
	}
}

// cancelUnseen cancels job id, which the store showed as seen, RUNNING
// under this daemon, when this daemon was then found not running it. An
// attempt leaves e.running only once its completion is stored, so the
// attempt seen may have ended between the read and the look: read again,
// and only a job still in the same attempt (every start adds one to its
// history) lost its completion. (A cancel racing a retry's second attempt,
// which ended at once, was told to run `stq recover` by the reliability
// soak.)
func (e *Engine) cancelUnseen(ctx context.Context, id string, seen *Job) (*Job, error) {
	j, err := e.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if j.State == StateRunning && j.Owner == e.cfg.Owner && len(j.Attempts) == len(seen.Attempts) {
		return nil, fmt.Errorf("%w: job %s is marked RUNNING but this daemon is not running it; run `stq recover`", ErrInvalid, id)
	}
	return e.cancelOne(ctx, id)
}

// isRunning says whether this daemon runs an attempt of job id other than
// the one in old.
func (e *Engine) isRunning(id string, old *activeJob) bool {
	e.claimMu.Lock()
	defer e.claimMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.running[id]
	return a != nil && a != old
}

// Pause stops a queue from starting new jobs; running ones finish. The
// pause is stored, so it survives restarts.
func (e *Engine) Pause(ctx context.Context, queue string) error {
	return e.setPaused(ctx, queue, true)
}

// Resume lets a paused queue start jobs again.
func (e *Engine) Resume(ctx context.Context, queue string) error {
	return e.setPaused(ctx, queue, false)
}

func (e *Engine) setPaused(ctx context.Context, queue string, paused bool) error {
	if err := checkName("queue", queue); err != nil {
		return err
	}
	if err := e.store.SetPaused(ctx, queue, paused); err != nil {
		verb := "resume"
		if paused {
			verb = "pause"
		}
		return fmt.Errorf("%s %s: %w", verb, queue, err)
	}
	if !paused {
		e.notify() // its jobs may start now
	}
	return nil
}

// Retry re-queues a FAILED, CANCELLED or EXPIRED job as a new attempt
// series (attempt 0, due now); its history is kept.
func (e *Engine) Retry(ctx context.Context, id string) (*Job, error) {
	id, err := e.callerID(ctx, id)
	if err != nil {
		return nil, err
	}
	j, err := e.store.Retry(ctx, id, e.clock.Now())
	if err != nil {
		return nil, err // the store's error says "retry job ID" already
	}
	e.publishJob(j)
	e.notify()
	return j, nil
}
