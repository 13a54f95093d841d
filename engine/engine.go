package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultGrace     = 10 * time.Second
	DefaultKillGrace = 5 * time.Second
	DefaultLogLimit  = 1 << 20
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
	// StoreName describes the store for Stats (a path, or a URL without
	// its password); empty: Stats leaves it out.
	StoreName string
	// Lease is the length of the daemon's lease on a store that is a
	// Leaser (default DefaultLease, at least MinLease); see lease.go.
	Lease time.Duration
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
	// changes counts what may bring the next due run_at or TTL expiry
	// earlier than the dispatcher last read (every notify and notifyDue:
	// enqueues, notices, control requests, whether or not they wake it);
	// an attempt starting or ending does not, nor a retry, whose run_at
	// matters only with a worker free, when nextWake reads anyway, and
	// which has no expiry (a TTL ends at the first start). See nextWake.
	changes atomic.Uint64
	// stopping is closed once Run's context ends: the daemon is shutting
	// down and running jobs are in their grace period. Set by Run before
	// any attempt starts.
	stopping <-chan struct{}

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

	// shared is set when other daemons share the store (cluster.go).
	shared cluster
	lease  lease
}

// withDefaults fills in the defaults of the fields left zero.
func withDefaults(cfg Config) Config {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.DefaultDeadline == 0 {
		cfg.DefaultDeadline = DefaultDeadline
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.LogLimit <= 0 {
		cfg.LogLimit = DefaultLogLimit
	}
	if cfg.Host == "" {
		cfg.Host = "localhost"
	}
	if cfg.Retention.MaxAge == 0 {
		cfg.Retention.MaxAge = DefaultRetentionAge
	}
	if cfg.Retention.Keep == 0 {
		cfg.Retention.Keep = DefaultRetentionKeep
	}
	if cfg.Retention.Interval <= 0 {
		cfg.Retention.Interval = DefaultRetentionInterval
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	return cfg
}

// New checks the configuration and returns an engine ready to Run.
func New(cfg Config, d Deps) (*Engine, error) {
	if d.Store == nil {
		return nil, errors.New("new engine: no store")
	}
	cfg = withDefaults(cfg)
	if cfg.Lease < MinLease {
		return nil, fmt.Errorf("new engine: %w: lease %s is shorter than the minimum %s", ErrInvalid, cfg.Lease, MinLease)
	}
	if cfg.Owner == "" {
		cfg.Owner = cfg.Host + "/" + newInstanceID()
	}
	d = withDefaultDeps(d)
	live, err := newSettings(cfg, d.Registry)
	if err != nil {
		return nil, err
	}
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
		rng:     newRand(),
	}
	e.reconfigured = make(chan struct{}, 1)
	e.live.Store(live)
	e.shared.watcher, _ = d.Store.(Watcher)
	if l, ok := d.Store.(Leaser); ok {
		e.lease = lease{leaser: l, ttl: cfg.Lease}
	}
	return e, nil
}

// withDefaultDeps fills in the adapters an engine can do without: the
// system clock, a silent logger, an empty registry, a probe that always
// says ready and an observer that hears nothing.
func withDefaultDeps(d Deps) Deps {
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
	return d
}

// newRand returns the source of retry jitter, seeded from crypto/rand so
// that daemons started together do not retry in step.
func newRand() *mrand.Rand {
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	return mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
}

// Owner is the name this engine claims jobs under.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Workers is how many attempts run at once, the default filled in.
func (e *Engine) Workers() int { return e.cfg.Workers }

// Run recovers jobs a dead daemon left RUNNING, then schedules jobs until ctx
// ends. On shutdown it stops claiming, gives running jobs the grace period,
// then kills what is left and requeues it without using up an attempt. On a
// shared store it first takes a lease, which it renews until its jobs are
// done; if the lease is lost (see lease.go) it stops every job at once and
// returns an error wrapping ErrLeaseLost, so the daemon exits and starts
// afresh under a new lease rather than carry on with stale state.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.join(ctx); err != nil {
		return err
	}
	ctx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	// The lease is renewed from the join on, through a start-up recovery
	// however long, and outlives the dispatcher: jobs in their grace
	// period still need it, or others would recover them while they run.
	stopLease := service(func(ctx context.Context) {
		if e.lease.leaser != nil {
			e.leaseLoop(ctx, lose)
		}
	})
	defer stopLease()
	if _, err := e.Recover(ctx); err != nil {
		stopLease()
		e.leave()
		return fmt.Errorf("recover on start: %w", err)
	}
	e.stopping = ctx.Done()
	jobsCtx, stopJobs := context.WithCancelCause(context.Background())
	defer stopJobs(nil)

	stopFlush := service(e.flushLoop)
	defer stopFlush()
	maintDone := make(chan struct{})
	go func() {
		defer close(maintDone)
		e.maintain(ctx)
	}()
	defer func() { <-maintDone }()
	// The watch outlives the dispatcher: during the grace period another
	// daemon may still cancel a job running here.
	stopWatch := service(func(ctx context.Context) {
		if e.shared.watcher != nil {
			e.watch(ctx)
		}
	})
	defer stopWatch()

	e.dispatch(ctx, jobsCtx)

	lost := errors.Is(context.Cause(ctx), ErrLeaseLost)
	e.endJobs(lost, stopJobs)
	stopFlush()
	e.bus.closeAll()
	stopLease()
	if lost {
		return fmt.Errorf("run: %w", context.Cause(ctx))
	}
	e.leave()
	return nil
}

// service runs loop on a goroutine of its own until the returned stop is
// called; stop waits for it to return and may be called more than once.
func service(loop func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop(ctx)
	}()
	return sync.OnceFunc(func() {
		cancel()
		<-done
	})
}

// endJobs lets the running jobs finish within the grace period, then
// stops the rest; with the lease lost they are stopped at once.
func (e *Engine) endJobs(lost bool, stopJobs context.CancelCauseFunc) {
	if lost {
		stopJobs(errFenced)
	}
	if n := e.runningCount(); n > 0 && !lost {
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
}

func (e *Engine) runningCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.running)
}
