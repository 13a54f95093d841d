package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
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
