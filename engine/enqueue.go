package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// TypeConfig holds the defaults and handler for one job type, from the
// [handlers.TYPE] tables of config.toml.
type TypeConfig struct {
	// Command runs jobs of this type that carry no command of their own.
	Command     []string
	Deadline    *time.Duration
	MaxAttempts *int
	Backoff     *time.Duration
	// Mode is "subprocess" (the default when Command is set) or "inprocess"
	// (run the in-process handler registered for Handler, or for the type).
	Mode    string
	Handler string
	// WaitIdle, RequireCharging and ReplaceRunning are defaults for jobs of
	// the type that do not say.
	WaitIdle        bool
	RequireCharging bool
	ReplaceRunning  bool
}

// Execution modes of a job type.
const (
	ModeSubprocess = "subprocess"
	ModeInProcess  = "inprocess"
)

// Enqueue validates a request, fills in defaults and stores the job. The
// job is durable when Enqueue returns.
func (e *Engine) Enqueue(ctx context.Context, req EnqueueRequest) (EnqueueResult, error) {
	if err := e.resolveAfter(ctx, &req); err != nil {
		return EnqueueResult{}, err
	}
	j, err := e.prepare(&req, e.clock.Now(), nil)
	if err != nil {
		return EnqueueResult{}, err
	}
	res, err := e.store.Enqueue(ctx, j, req.Generation != nil)
	if err != nil {
		return EnqueueResult{}, err // the store says "enqueue"
	}
	e.enqueued(res)
	return res, nil
}

// MaxEnqueueBatch bounds the requests of one EnqueueMany or EnqueueEach.
const MaxEnqueueBatch = 10000

// EnqueueMany stores jobs all or nothing, in one durable step and in order:
// a later request of a subject supersedes an earlier one of the batch as if
// they had come one by one. If any request is invalid or cannot be stored,
// nothing is stored and the error is a *BatchError naming its index.
func (e *Engine) EnqueueMany(ctx context.Context, reqs []EnqueueRequest) ([]EnqueueResult, error) {
	b, errs := e.prepareBatch(ctx, reqs, true)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	res, err := e.store.EnqueueMany(ctx, b)
	if err != nil {
		return nil, err // the store's error says "enqueue batch" or is a *BatchError
	}
	for _, r := range res.Results {
		e.enqueued(r)
	}
	return res.Results, nil
}

// EnqueueEach stores jobs in one durable step, each on its own: errs[i] is
// the refusal of reqs[i], which leaves the others stored. It is how a
// JSON-RPC batch of separate enqueues shares one commit.
func (e *Engine) EnqueueEach(ctx context.Context, reqs []EnqueueRequest) ([]EnqueueResult, []error) {
	b, errs := e.prepareBatch(ctx, reqs, false)
	results := make([]EnqueueResult, len(reqs))
	if len(b.Jobs) == 0 {
		return results, errs
	}
	res, err := e.store.EnqueueMany(ctx, b)
	k := 0
	for i := range reqs {
		if errs[i] != nil {
			continue
		}
		switch {
		case err != nil:
			errs[i] = err // the store's errors say "enqueue" already
		case res.Errs[k] != nil:
			errs[i] = res.Errs[k]
		default:
			results[i] = res.Results[k]
			e.enqueued(results[i])
		}
		k++
	}
	return results, errs
}

// prepareBatch turns requests into the jobs of one store batch. errs[i] is
// set for a request that is refused before the store sees it: with atomic,
// the first such refusal as a *BatchError and nothing else.
func (e *Engine) prepareBatch(ctx context.Context, reqs []EnqueueRequest, atomic bool) (EnqueueBatch, []error) {
	errs := make([]error, len(reqs))
	if len(reqs) > MaxEnqueueBatch {
		err := fmt.Errorf("%w: %d requests, over the batch limit of %d", ErrInvalid, len(reqs), MaxEnqueueBatch)
		if atomic {
			return EnqueueBatch{}, []error{err}
		}
		for i := range errs {
			errs[i] = err
		}
		return EnqueueBatch{}, errs
	}
	now := e.clock.Now()
	b := EnqueueBatch{Atomic: atomic, Jobs: make([]*Job, 0, len(reqs)), ExplicitGen: make([]bool, 0, len(reqs))}
	var envs envMemo
	for i := range reqs {
		err := e.resolveAfter(ctx, &reqs[i])
		var j *Job
		if err == nil {
			j, err = e.prepare(&reqs[i], now, &envs)
		}
		if err != nil {
			if atomic {
				return EnqueueBatch{}, []error{&BatchError{Index: i, Err: err}}
			}
			errs[i] = err
			continue
		}
		b.Jobs = append(b.Jobs, j)
		b.ExplicitGen = append(b.ExplicitGen, reqs[i].Generation != nil)
	}
	return b, errs
}

// resolveAfter turns the id prefixes of a request's After list into ids,
// on a copy: the caller's slice is left alone.
func (e *Engine) resolveAfter(ctx context.Context, req *EnqueueRequest) error {
	if len(req.After) == 0 || len(req.After) > MaxAfter {
		return nil // validate reports an oversized list
	}
	req.After = slices.Clone(req.After)
	return e.resolveIDs(ctx, req.After)
}

// prepare validates a request and builds the job it asks for, with the
// defaults of its type and of the daemon filled in. envs, when not nil,
// encodes the base environments of a batch (see envMemo).
func (e *Engine) prepare(req *EnqueueRequest, now time.Time, envs *envMemo) (*Job, error) {
	if req.Queue == "" {
		req.Queue = DefaultQueue
	}
	if req.Type == "" {
		req.Type = DefaultType
	}
	cfg := e.conf()
	if err := req.validate(cfg.MaxPayload); err != nil {
		return nil, err
	}
	if command, handler := e.typeHandler(req.Type); len(req.Command) == 0 && command == nil && handler == "" {
		return nil, fmt.Errorf("%w: job type %q has no handler: give a command after -- or add [handlers.%s] with a command to config.toml", ErrInvalid, req.Type, req.Type)
	}
	tc := cfg.Types[req.Type]
	j := &Job{
		ID:          e.newID(now),
		Queue:       req.Queue,
		Type:        req.Type,
		Subject:     req.Subject,
		Priority:    req.Priority,
		State:       StateQueued,
		Payload:     req.Payload,
		Command:     req.Command,
		Cwd:         req.Cwd,
		Env:         req.Env,
		RunAt:       now,
		CreatedAt:   now,
		MaxAttempts: DefaultMaxAttempts,
		Backoff:     Duration(DefaultBackoff),
		Attempts:    []Attempt{},
	}
	if req.BaseEnv != nil {
		j.BaseEnv = envs.encode(req.BaseEnv)
	}
	setPolicy(j, req, cfg.DefaultDeadline, tc)
	if req.Generation != nil {
		j.Generation = *req.Generation
	}
	j.WaitIdle = pick(req.WaitIdle, tc.WaitIdle)
	j.RequireCharging = pick(req.RequireCharging, tc.RequireCharging)
	j.Replace = j.Subject != "" && pick(req.Replace, tc.ReplaceRunning)
	j.After = req.After
	setSchedule(j, req, now)
	return j, nil
}

// setPolicy fills a job's deadline, attempts, backoff and TTL: the
// request's, else its type's, else the daemon's, else the built-in ones.
func setPolicy(j *Job, req *EnqueueRequest, defaultDeadline time.Duration, tc TypeConfig) {
	if defaultDeadline > 0 {
		j.Deadline = Duration(defaultDeadline)
	}
	if tc.Deadline != nil {
		j.Deadline = Duration(*tc.Deadline)
	}
	if tc.MaxAttempts != nil {
		j.MaxAttempts = *tc.MaxAttempts
	}
	if tc.Backoff != nil {
		j.Backoff = Duration(*tc.Backoff)
	}
	if req.Deadline != nil {
		j.Deadline = *req.Deadline
	}
	if req.MaxAttempts != nil {
		j.MaxAttempts = *req.MaxAttempts
	}
	if req.Backoff != nil {
		j.Backoff = *req.Backoff
	}
	if req.TTL != nil {
		j.TTL = *req.TTL
	}
}

// setSchedule sets when a job is due: now, or run_at, or after delay, and
// no earlier than its debounce window.
func setSchedule(j *Job, req *EnqueueRequest, now time.Time) {
	switch {
	case req.RunAt != nil:
		j.RunAt = req.RunAt.UTC()
	case req.Delay != nil:
		j.RunAt = now.Add(time.Duration(*req.Delay))
	}
	if req.Debounce != nil {
		// A newer generation supersedes this job, so delaying each
		// generation by the window restarts the window on every arrival:
		// only a generation left alone for that long ever starts.
		j.Debounce = *req.Debounce
		if at := now.Add(time.Duration(j.Debounce)); at.After(j.RunAt) {
			j.RunAt = at
		}
	}
}

// enqueued tells subscribers and the dispatcher about a stored job.
func (e *Engine) enqueued(res EnqueueResult) {
	j := res.Job
	e.obs.Enqueued(res)
	if e.bus.active() {
		e.publishJob(j)
		for _, id := range res.Superseded {
			e.publishJob(&Job{ID: id, Queue: j.Queue, Type: j.Type, Subject: j.Subject, State: StateSuperseded})
		}
		e.publishJobs(res.Cancelled...)
	}
	if j.Replace && j.State == StateQueued {
		e.replaceRunning(j)
	}
	if j.State == StateQueued { // a job stored in any other state frees nothing
		e.notifyDue(j.Due())
	}
}

// looksBy says whether the sleeping dispatcher will look at the store on
// its own by due: then a job due then needs no wake-up. Zero due means now.
func (e *Engine) looksBy(due time.Time) bool {
	return lookedBy(e.lookAt.Load(), due)
}

// lookedBy is looksBy for a dispatcher that looks next at lookAt (Unix
// nanoseconds; 0 while it is awake, when it will read the store again
// before it sleeps).
func lookedBy(lookAt int64, due time.Time) bool {
	return lookAt != 0 && !due.IsZero() && due.UnixNano() >= lookAt
}

func pick(v *bool, def bool) bool {
	if v != nil {
		return *v
	}
	return def
}

// replaceRunning stops the running older generations of a job's key: their
// process groups are killed and they end SUPERSEDED. It does not wait; the
// new job starts once the old one is recorded, as the one-running-per-key
// rule says.
func (e *Engine) replaceRunning(newer *Job) {
	cause := supersededCause(SupersededBy(newer.Generation, newer.ID))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.running {
		if a.job.Key() == newer.Key() && a.job.Generation < newer.Generation {
			a.cancel(cause)
		}
	}
}
