package engine

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// activeJob is an attempt in progress in this daemon.
type activeJob struct {
	job    *Job
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu        sync.Mutex
	pending   []LogLine // captured but not yet stored
	pendBytes int64
	seq       int64
	// flushMu makes one flush of the job at a time, so its batches reach
	// the store in seq order: the store reads a seq gap as lines dropped.
	flushMu sync.Mutex
}

// start registers a claimed job as running and runs its attempt in a
// goroutine owned by the engine (tracked in e.jobs).
func (e *Engine) start(jobsCtx context.Context, j *Job) {
	ctx, cancel := context.WithCancelCause(jobsCtx)
	a := &activeJob{job: j, cancel: cancel, done: make(chan struct{}), seq: j.LogSeq}
	e.mu.Lock()
	e.running[j.ID] = a
	e.executing++
	// Claimed just before the fence: never start it. Checked under e.mu,
	// which stopOwnJobs holds too, so no job slips between the two.
	if e.fenced() {
		cancel(errFenced)
	}
	e.mu.Unlock()
	e.publishJob(j)
	e.jobs.Add(1)
	go func() {
		defer e.jobs.Done()
		e.runAttempt(ctx, a)
	}()
}

// runAttempt runs one attempt of a claimed job to its end: it executes the
// job, decides what the end means (Decide), stores that and frees the job's
// slot in e.running.
func (e *Engine) runAttempt(ctx context.Context, a *activeJob) {
	j := a.job
	defer close(a.done)
	defer a.cancel(nil)
	defer e.watchDeadline(a)()

	run := e.newRun(a)
	extra, observed := e.obs.AttemptStarting(j)
	run.Env = append(run.Env, extra...)
	began := e.clock.Now()
	exec, err := e.resolve(j, run)
	if err == nil && len(run.Command) > 0 {
		err = j.BaseEnv.usable()
	}
	var res Result
	switch {
	case err != nil:
		res = Result{Err: err}
	case ctx.Err() != nil:
		// Stopped before it started (fenced): nothing ran.
	default:
		res = e.safeExecute(ctx, exec, run)
	}
	cause := e.endCause(ctx, res)
	now := e.clock.Now()
	c := Decide(j, AttemptEnd{Result: res, Cause: cause}, now, e.jitter())
	if c.Reason != "" && c.Outcome != OutcomeSucceeded {
		e.output(a, "stq", fmt.Sprintf("attempt %d: %s", j.Attempt, c.Reason))
	}
	e.flushJob(a)
	done, err := e.complete(c)
	if observed != nil {
		observed(AttemptEnded{Completion: c, Job: done.Job, Err: err, Took: now.Sub(began)})
	}
	if err != nil {
		// The job stays RUNNING in the store; `stq recover` or the next
		// start will find it, since it is no longer in e.running.
		e.log.Error("complete job", "job", j.ID, "err", err)
	}
	e.mu.Lock()
	// A retry's completion is stored with the claim that may start the
	// job's next attempt, which can be registered here already.
	if e.running[j.ID] == a {
		delete(e.running, j.ID)
	}
	e.mu.Unlock()
	if done.Job != nil {
		e.log.Debug("attempt ended", "job", j.ID, "attempt", j.Attempt, "state", done.Job.State, "reason", c.Reason)
	}
	e.signal()
}

// watchDeadline cancels the attempt when its job's deadline passes on the
// engine's clock. The returned func ends the watch and its goroutine; the
// attempt calls it when it ends.
func (e *Engine) watchDeadline(a *activeJob) (stop func()) {
	if a.job.Deadline <= 0 {
		return func() {}
	}
	timer := e.clock.NewTimer(time.Duration(a.job.Deadline))
	done := make(chan struct{})
	go func() {
		select {
		case <-timer.C():
			a.cancel(errDeadline)
		case <-done:
			timer.Stop()
		}
	}()
	return func() { close(done) }
}

// newRun describes the attempt to its executor, with the callbacks that
// bring its output and its process back to the engine.
func (e *Engine) newRun(a *activeJob) *Run {
	j := a.job
	return &Run{
		Job:     j,
		Env:     jobEnv(j),
		BaseEnv: j.BaseEnv.list(), // nil: the daemon's environment
		Grace:   e.conf().KillGrace,
		Output: func(stream, text string) {
			e.output(a, stream, text)
		},
		Started: func(pid int, pidStart int64) {
			e.recordStart(StartRecord{ID: j.ID, Attempt: j.Attempt, PID: pid, PIDStart: pidStart}, true)
		},
		Spawned: func(pid int, pidStart int64) {
			e.recordStart(StartRecord{ID: j.ID, Attempt: j.Attempt, PID: pid, PIDStart: pidStart}, false)
		},
	}
}

// jitter draws the random factor of a retry's backoff; e.rng is not safe
// for concurrent use.
func (e *Engine) jitter() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rng.Float64()
}

// complete frees the attempt's worker and stores and publishes its
// completion. While the dispatcher runs, the completion goes with its next
// claim (the one that refills this worker), so the pair costs one commit.
// Until that commit a claim still sees the job RUNNING, which only ever
// holds jobs back (queue caps, one running per key, dependencies).
func (e *Engine) complete(c Completion) (CompleteResult, error) {
	e.mu.Lock()
	e.executing--
	if !e.batching {
		e.mu.Unlock()
		e.notify()
		return e.storeCompletion(c)
	}
	ea := &endedAttempt{c: c, reply: make(chan endedReply, 1)}
	e.ended = append(e.ended, ea)
	e.mu.Unlock()
	e.signal()
	r := <-ea.reply
	return r.res, r.err
}

// recordStart stores an attempt's process. With wait it returns once the
// record is durable, as a start gate needs; without, the record goes with
// the dispatcher's next commit and recordStart returns at once.
func (e *Engine) recordStart(r StartRecord, wait bool) {
	e.mu.Lock()
	if !e.batching {
		e.mu.Unlock()
		e.startRecorded(&pendingStart{r: r}, e.store.MarkStarted(context.Background(), r.ID, r.Attempt, r.PID, r.PIDStart))
		return
	}
	ps := &pendingStart{r: r}
	if wait {
		ps.reply = make(chan error, 1)
	}
	e.starts = append(e.starts, ps)
	e.mu.Unlock()
	e.signal()
	if wait {
		<-ps.reply
	}
}

// startRecorded logs a failed process record and answers whoever waits.
func (e *Engine) startRecorded(ps *pendingStart, err error) {
	if err != nil {
		e.log.Error("record process start", "job", ps.r.ID, "pid", ps.r.PID, "err", err)
	}
	if ps.reply != nil {
		ps.reply <- err
	}
}

func (e *Engine) storeCompletion(c Completion) (CompleteResult, error) {
	res, err := e.store.Complete(context.Background(), c)
	if err == nil {
		e.publishCompletion(res)
	}
	return res, err
}

// publishCompletion announces what a completion changed. It runs before
// the jobs claimed in the same commit start, so a retry's QUEUED event
// never follows its next attempt's RUNNING one.
func (e *Engine) publishCompletion(res CompleteResult) {
	if res.Job != nil {
		e.publishJobs(res.Job)
		e.publishJobs(res.Cancelled...)
	}
}

// safeExecute keeps a misbehaving executor from taking the daemon down.
func (e *Engine) safeExecute(ctx context.Context, ex Executor, run *Run) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			res = Result{Err: fmt.Errorf("executor panicked: %v", r)}
		}
	}()
	return ex.Execute(ctx, run)
}

// resolve picks the executor for a job and fills in the command or handler.
func (e *Engine) resolve(j *Job, run *Run) (Executor, error) {
	if len(j.Command) > 0 {
		run.Command = j.Command
		return e.needExec(e.sub, "subprocess")
	}
	command, handler := e.typeHandler(j.Type)
	switch {
	case len(command) > 0:
		run.Command = command
		return e.needExec(e.sub, "subprocess")
	case handler != "":
		run.Handler = handler
		return e.needExec(e.inproc, "in-process")
	}
	return nil, fmt.Errorf("no command and no handler for type %q: %w", j.Type, ErrPermanent)
}

// typeHandler says what runs jobs of a type that carry no command of their
// own: the configured command, or the name of a registered in-process
// handler; neither when the type has nothing.
func (e *Engine) typeHandler(jobType string) (command []string, handler string) {
	tc, ok := e.conf().Types[jobType]
	if ok && tc.Mode != ModeInProcess && len(tc.Command) > 0 {
		return tc.Command, ""
	}
	name := jobType
	if ok && tc.Handler != "" {
		name = tc.Handler
	}
	if _, found := e.reg.Lookup(name); found {
		return nil, name
	}
	return nil, ""
}

func (e *Engine) needExec(ex Executor, kind string) (Executor, error) {
	if ex == nil {
		return nil, fmt.Errorf("no %s executor configured: %w", kind, ErrPermanent)
	}
	return ex, nil
}

// jobEnv is the attempt's additions to its base environment: the job's env,
// then the STQ_* variables (jobEnvNames), last so that they always win.
func jobEnv(j *Job) []string {
	env := make([]string, 0, 6+len(j.Env))
	keys := make([]string, 0, len(j.Env))
	for k := range j.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+j.Env[k])
	}
	return append(env,
		"STQ_JOB_ID="+j.ID,
		"STQ_QUEUE="+j.Queue,
		"STQ_TYPE="+j.Type,
		"STQ_SUBJECT="+j.Subject,
		"STQ_GENERATION="+strconv.FormatInt(j.Generation, 10),
		"STQ_ATTEMPT="+strconv.Itoa(j.Attempt),
	)
}

// endCause is why an attempt was stopped, if the engine stopped it. A job
// killed by a signal while the daemon is stopping counts as stopped by the
// shutdown: the signal most likely came from whoever stopped the daemon (a
// service manager signals every process of the unit: systemd's
// KillMode=control-group), so the attempt is requeued and refunded rather
// than failed.
func (e *Engine) endCause(ctx context.Context, res Result) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if res.Signal != "" && e.stopping != nil {
		select {
		case <-e.stopping:
			return errShutdown
		default:
		}
	}
	return nil
}
