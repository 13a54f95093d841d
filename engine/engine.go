package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultGrace     = 10 * time.Second
	DefaultKillGrace = 5 * time.Second
	DefaultLogLimit  = 1 << 20
	// logFlushInterval bounds how long captured output stays only in memory.
	logFlushInterval = 250 * time.Millisecond
	// claimRetryDelay spaces out claims after a store error so a broken disk
	// does not turn the dispatcher into a busy loop.
	claimRetryDelay = 500 * time.Millisecond
	// conditionRecheck is how often the dispatcher looks again while the
	// machine is busy or on battery (the probe samples once a second).
	conditionRecheck = time.Second
)

// Config tunes an Engine. Zero values take the defaults.
type Config struct {
	// Workers is how many attempts run at once (default: number of CPUs).
	Workers int
	// Host names this machine; Owner names this daemon instance. Recovery
	// only touches jobs claimed on the same host by another instance.
	Host  string
	Owner string
	// Grace is how long running jobs get to finish on shutdown before they
	// are killed and requeued.
	Grace time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL for a stopped job.
	KillGrace time.Duration
	// DefaultDeadline applies to jobs that set none; negative means none.
	DefaultDeadline time.Duration
	MaxPayload      int
	// LogLimit bounds each job's stored output in bytes.
	LogLimit int64
	// Types holds per-type handlers and defaults from config.toml.
	Types map[string]TypeConfig
	// Queues holds per-queue concurrency caps and weights.
	Queues map[string]QueueConfig
	// Retention bounds the finished history; see RetentionConfig.
	Retention RetentionConfig
	// Version is the daemon's version, reported by Stats.
	Version string
	// Pulse bounds the time between two rounds of the dispatcher, each
	// reported to Deps.Observer; zero leaves it to sleep until it has work.
	// A service manager's watchdog sets it.
	Pulse time.Duration
}

// Deps are the adapters an Engine drives.
type Deps struct {
	Store      Store
	Subprocess Executor
	InProcess  Executor
	Registry   *Registry
	Processes  Processes
	// Probe answers "is the machine idle / on AC?"; nil means always.
	Probe  Probe
	Clock  Clock
	Logger *slog.Logger
	// Control serves Shutdown and Reload; nil refuses them.
	Control Control
	// Observer hears of enqueues, attempts, expiries, recoveries and the
	// dispatcher's rounds (metrics, traces, a watchdog); nil: nobody.
	Observer Observer
}

// Engine schedules and runs jobs. Create it with New, start it with Run;
// its other methods are safe to call concurrently once New returns.
type Engine struct {
	cfg     Config
	store   Store
	sub     Executor
	inproc  Executor
	reg     *Registry
	procs   Processes
	probe   Probe
	obs     Observer
	clock   Clock
	log     *slog.Logger
	bus     *bus
	started time.Time

	wake chan struct{}
	// lookAt is when the dispatcher will next look at the store on its
	// own, as unix nanoseconds of e.clock; 0 while it is awake, since it
	// will look again anyway. An enqueue wakes it only for a job that
	// could start or expire before then: a burst of jobs scheduled for
	// later costs no claims.
	lookAt atomic.Int64

	// claimMu makes "claim, then register as running" atomic with respect to
	// a recovery scan, so a job that was just claimed is never mistaken for
	// one a dead daemon left behind.
	claimMu sync.Mutex

	mu      sync.Mutex
	running map[string]*activeJob
	// executing counts the attempts whose executor has not returned yet:
	// the workers in use. It drops before an attempt's completion is
	// committed, so the next claim can share that commit instead of waiting
	// a whole fsync behind it; the job stays in running until then.
	executing int
	// starts and ended hold the process records of attempts that have
	// just started and the completions of attempts whose executor has
	// returned, for the dispatcher to store together with its next claim.
	// batching says the dispatcher is there to take them; without it
	// (before Run, during shutdown) a worker stores its own.
	starts   []*pendingStart
	ended    []*endedAttempt
	batching bool
	rng      *mrand.Rand

	// live is the settings in force (see Reconfigure). cfg keeps what New
	// was given, for the fields that never change: Workers, Host, Owner.
	live atomic.Pointer[settings]
	// reconfigured wakes the maintenance loop after a Reconfigure.
	reconfigured chan struct{}
	control      Control

	recovered atomic.Int64
	jobs      sync.WaitGroup
}

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

// pendingStart is a process record waiting for the dispatcher's next
// commit; reply is nil when nobody waits for it.
type pendingStart struct {
	r     StartRecord
	reply chan error
}

// endedAttempt is a completion waiting for the dispatcher's next commit,
// and where its worker waits for the outcome.
type endedAttempt struct {
	c     Completion
	reply chan endedReply
}

type endedReply struct {
	res CompleteResult
	err error
}

// New checks the configuration and returns an engine ready to Run.
func New(cfg Config, d Deps) (*Engine, error) {
	if d.Store == nil {
		return nil, errors.New("new engine: no store")
	}
	cfg = withDefaults(cfg)
	if cfg.Owner == "" {
		cfg.Owner = cfg.Host + "/" + newInstanceID()
	}
	if d.Clock == nil {
		d.Clock = SystemClock{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Registry == nil {
		d.Registry = NewRegistry()
	}
	if d.Probe == nil {
		d.Probe = alwaysReady{}
	}
	if d.Observer == nil {
		d.Observer = nopObserver{}
	}
	live, err := newSettings(cfg, d.Registry)
	if err != nil {
		return nil, err
	}
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	e := &Engine{
		cfg:     cfg,
		control: d.Control,
		store:   d.Store,
		sub:     d.Subprocess,
		inproc:  d.InProcess,
		reg:     d.Registry,
		procs:   d.Processes,
		probe:   d.Probe,
		obs:     d.Observer,
		clock:   d.Clock,
		log:     d.Logger,
		bus:     newBus(),
		started: d.Clock.Now(),
		wake:    make(chan struct{}, 1),
		running: make(map[string]*activeJob),
		rng:     mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
	}
	e.reconfigured = make(chan struct{}, 1)
	e.live.Store(live)
	return e, nil
}

// Owner is the name this engine claims jobs under.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Workers is how many attempts run at once, the default filled in.
func (e *Engine) Workers() int { return e.cfg.Workers }

// Run recovers jobs a dead daemon left RUNNING, then schedules jobs until ctx
// ends. On shutdown it stops claiming, gives running jobs the grace period,
// then kills what is left and requeues it without using up an attempt.
func (e *Engine) Run(ctx context.Context) error {
	if _, err := e.Recover(ctx); err != nil {
		return fmt.Errorf("recover on start: %w", err)
	}
	jobsCtx, stopJobs := context.WithCancelCause(context.Background())
	defer stopJobs(nil)

	flushDone := make(chan struct{})
	flushCtx, stopFlush := context.WithCancel(context.Background())
	go func() {
		defer close(flushDone)
		e.flushLoop(flushCtx)
	}()
	maintDone := make(chan struct{})
	go func() {
		defer close(maintDone)
		e.maintain(ctx)
	}()
	defer func() { <-maintDone }()

	e.dispatch(ctx, jobsCtx)

	if n := e.runningCount(); n > 0 {
		e.log.Info("waiting for running jobs", "count", n, "grace", e.conf().Grace)
	}
	allDone := make(chan struct{})
	go func() { e.jobs.Wait(); close(allDone) }()
	grace := e.clock.NewTimer(e.conf().Grace)
	select {
	case <-allDone:
		grace.Stop()
	case <-grace.C():
		e.log.Warn("grace period over: stopping running jobs")
		stopJobs(errShutdown)
		<-allDone
	}
	stopFlush()
	<-flushDone
	e.bus.closeAll()
	return nil
}

// dispatch claims and starts jobs until ctx ends. It sleeps only on the wake
// channel (enqueues and finished jobs) and on one timer armed for the next
// due run_at or TTL expiry: there is no polling interval.
func (e *Engine) dispatch(ctx context.Context, jobsCtx context.Context) {
	e.startBatching()
	defer e.stopBatching()
	timer := e.clock.NewTimer(time.Hour)
	defer timer.Stop()
	var nextExpiry time.Time
	for {
		if ctx.Err() != nil {
			return
		}
		// Awake from here until the timer is armed again: every enqueue
		// notifies, so none can slip in between the NextWake read below
		// and the arming.
		e.lookAt.Store(0)
		now := e.clock.Now()
		if !nextExpiry.IsZero() && !now.Before(nextExpiry) {
			e.expire(ctx, now)
		}
		e.gather(ctx)
		free := e.cfg.Workers - e.executingCount()
		retry := time.Duration(0)
		if starts, ended := e.takePending(); free > 0 || len(starts) > 0 || len(ended) > 0 {
			n, err := e.claim(ctx, jobsCtx, now, free, starts, ended)
			switch {
			case err != nil && ctx.Err() == nil:
				e.log.Error("claim jobs", "err", err)
				retry = claimRetryDelay
			case n == free:
				// Every worker got a job; more may be ready. Go round
				// again without sleeping so a burst drains in batches.
				continue
			}
		}
		wake, err := e.store.NextWake(ctx, now)
		if err != nil && ctx.Err() == nil {
			e.log.Error("read next wake time", "err", err)
			retry = claimRetryDelay
		}
		nextExpiry = wake.NextExpiry
		var at time.Time
		if free > 0 && !wake.NextRunAt.IsZero() {
			at = wake.NextRunAt
		}
		if !nextExpiry.IsZero() && (at.IsZero() || nextExpiry.Before(at)) {
			at = nextExpiry
		}
		d := time.Hour
		if !at.IsZero() {
			d = max(at.Sub(now), 0)
		}
		if retry > 0 && retry < d {
			d = retry
		}
		if e.cfg.Pulse > 0 && d > e.cfg.Pulse {
			d = e.cfg.Pulse
		}
		e.obs.Pulse()
		// Nothing signals the machine turning idle or going on AC, so
		// while either condition is unmet, look again each probe beat:
		// held jobs start within a second of their condition holding.
		if d > conditionRecheck && (!e.probe.Idle() || !e.probe.Power().OnAC) {
			d = conditionRecheck
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(d)
		e.lookAt.Store(now.Add(d).UnixNano())
		// The clock may have passed `at` while the timer was being armed
		// (a timer is relative, `at` is not): go round rather than sleep
		// past it.
		if retry == 0 && !at.IsZero() && !e.clock.Now().Before(at) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-timer.C():
		}
	}
}

// gatherFor is how long the dispatcher waits for more attempts to end
// before it commits the ones that have.
const gatherFor = 200 * time.Microsecond

// gather lets completions pile up briefly when some have arrived and other
// attempts are still executing: jobs claimed together tend to end
// together, and one commit for all of them beats one each. It never waits
// when nothing else is executing, so a lone job's completion is not
// delayed. The wait is wall time, not e.clock's: it is a batching window,
// not a rule of the schedule, and a manual clock would never end it.
func (e *Engine) gather(ctx context.Context) {
	e.mu.Lock()
	waiting := len(e.ended) > 0 && e.executing > 0
	e.mu.Unlock()
	if !waiting {
		return
	}
	t := time.NewTimer(gatherFor)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-e.wake:
		}
		e.mu.Lock()
		busy := e.executing > 0
		e.mu.Unlock()
		if !busy {
			return
		}
	}
}

func (e *Engine) executingCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.executing
}

func (e *Engine) runningCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.running)
}

// notify wakes the dispatcher without ever blocking the caller.
func (e *Engine) notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// claim stores the started attempts' process records and the ended
// attempts' completions and claims up to limit jobs in the same commit,
// then starts the jobs. It returns how many it claimed.
func (e *Engine) claim(ctx, jobsCtx context.Context, now time.Time, limit int, starts []*pendingStart, ended []*endedAttempt) (int, error) {
	e.claimMu.Lock()
	defer e.claimMu.Unlock()
	if ctx.Err() != nil {
		limit = 0 // shutting down: store the completions, claim nothing
	}
	req := ClaimRequest{Owner: e.cfg.Owner, Now: now, Limit: limit, Idle: e.probe.Idle(), OnAC: e.probe.Power().OnAC,
		QueueLimits: e.conf().queueLimits}
	// With weights, this first pass gives each queue its share of the
	// free workers and the second pass fills what the shares left idle, so
	// weights never keep a worker from a ready job.
	quota, def, weighted := e.shares(limit)
	req.Quota, req.DefaultQuota = quota, def
	jobs, err := e.completeAndClaim(starts, ended, req)
	if err != nil {
		return 0, err
	}
	for _, j := range jobs {
		e.start(jobsCtx, j)
	}
	claimed := len(jobs)
	if !weighted || claimed == limit {
		return claimed, nil
	}
	req.Quota, req.DefaultQuota, req.Limit = nil, 0, limit-claimed
	if jobs, err = e.store.Claim(ctx, req); err != nil {
		return claimed, fmt.Errorf("claim: %w", err)
	}
	for _, j := range jobs {
		e.start(jobsCtx, j)
	}
	return claimed + len(jobs), nil
}

// completeAndClaim stores process records and completions with a claim
// and answers the workers that wait for them. The records and completions
// are durable work already done, so the store call does not give up with
// the dispatcher's context.
func (e *Engine) completeAndClaim(starts []*pendingStart, ended []*endedAttempt, req ClaimRequest) ([]*Job, error) {
	if len(starts) == 0 && len(ended) == 0 {
		jobs, err := e.store.Claim(context.Background(), req)
		if err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		return jobs, nil
	}
	cy := Cycle{Started: make([]StartRecord, len(starts)), Done: make([]Completion, len(ended)), Claim: req}
	for i, ps := range starts {
		cy.Started[i] = ps.r
	}
	for i, ea := range ended {
		cy.Done[i] = ea.c
	}
	res, err := e.store.CompleteAndClaim(context.Background(), cy)
	for i, ps := range starts {
		serr := err
		if err == nil {
			serr = res.StartErrs[i]
		}
		e.startRecorded(ps, serr)
	}
	for i, ea := range ended {
		r := endedReply{err: err}
		if err == nil {
			r = endedReply{res: res.Completed[i], err: res.Errs[i]}
			if r.err == nil {
				e.publishCompletion(r.res)
			}
		}
		ea.reply <- r
	}
	if err != nil {
		return nil, fmt.Errorf("complete and claim: %w", err)
	}
	if res.ClaimErr != nil {
		return res.Claimed, fmt.Errorf("claim: %w", res.ClaimErr)
	}
	return res.Claimed, nil
}

// shares splits free workers between queues by weight: configured queues
// by their weight, every other queue with weight 1. It reports false when no
// weights are configured, so the common case costs one claim.
func (e *Engine) shares(free int) (map[string]int, int, bool) {
	total := 1 // the unlisted queues together weigh 1 each; count one
	weighted := false
	queues := e.conf().Queues
	for _, q := range queues {
		if q.Weight > 0 {
			weighted = true
			total += q.Weight
		} else {
			total++
		}
	}
	if !weighted || free < 2 {
		return nil, 0, false
	}
	share := func(w int) int { return max(1, free*w/total) }
	quota := make(map[string]int, len(queues))
	for name, q := range queues {
		quota[name] = share(max(q.Weight, 1))
	}
	return quota, share(1), true
}

// start registers a claimed job as running and runs its attempt in a
// goroutine owned by the engine (tracked in e.jobs).
func (e *Engine) start(jobsCtx context.Context, j *Job) {
	ctx, cancel := context.WithCancelCause(jobsCtx)
	a := &activeJob{job: j, cancel: cancel, done: make(chan struct{}), seq: j.LogSeq}
	e.mu.Lock()
	e.running[j.ID] = a
	e.executing++
	e.mu.Unlock()
	e.publishJob(j)
	e.jobs.Add(1)
	go func() {
		defer e.jobs.Done()
		e.runAttempt(ctx, a)
	}()
}

func (e *Engine) runAttempt(ctx context.Context, a *activeJob) {
	j := a.job
	defer close(a.done)
	defer a.cancel(nil)

	if j.Deadline > 0 {
		timer := e.clock.NewTimer(time.Duration(j.Deadline))
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-timer.C():
				a.cancel(errDeadline)
			case <-stop:
				timer.Stop()
			}
		}()
	}

	run := &Run{
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
	extra, observed := e.obs.AttemptStarting(j)
	run.Env = append(run.Env, extra...)
	began := e.clock.Now()
	exec, err := e.resolve(j, run)
	if err == nil && len(run.Command) > 0 {
		err = j.BaseEnv.usable()
	}
	var res Result
	if err != nil {
		res = Result{Err: err}
	} else {
		res = e.safeExecute(ctx, exec, run)
	}
	var cause error
	if ctx.Err() != nil {
		cause = context.Cause(ctx)
	}
	now := e.clock.Now()
	e.mu.Lock()
	rnd := e.rng.Float64()
	e.mu.Unlock()
	c := Decide(j, AttemptEnd{Result: res, Cause: cause}, now, rnd)
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
	e.notify()
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
	e.notify()
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
	e.notify()
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

// takePending hands the dispatcher the records and completions waiting for
// it.
func (e *Engine) takePending() ([]*pendingStart, []*endedAttempt) {
	e.mu.Lock()
	defer e.mu.Unlock()
	starts, ended := e.starts, e.ended
	e.starts, e.ended = nil, nil
	return starts, ended
}

// startBatching and stopBatching bracket the dispatcher. stopBatching
// stores what is still waiting, so no worker is left without an answer.
func (e *Engine) startBatching() {
	e.mu.Lock()
	e.batching = true
	e.mu.Unlock()
}

func (e *Engine) stopBatching() {
	e.mu.Lock()
	e.batching = false
	starts, ended := e.starts, e.ended
	e.starts, e.ended = nil, nil
	e.mu.Unlock()
	for _, ps := range starts {
		e.startRecorded(ps, e.store.MarkStarted(context.Background(), ps.r.ID, ps.r.Attempt, ps.r.PID, ps.r.PIDStart))
	}
	for _, ea := range ended {
		res, err := e.storeCompletion(ea.c)
		ea.reply <- endedReply{res: res, err: err}
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
