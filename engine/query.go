package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Get returns a job with its attempt history.
func (e *Engine) Get(ctx context.Context, id string) (*Job, error) {
	id, err := e.callerID(ctx, id)
	if err != nil {
		return nil, err
	}
	j, err := e.store.Get(ctx, id)
	if err != nil {
		return nil, err // the store's error says "get job ID" already
	}
	if err := e.annotate(ctx, []*Job{j}); err != nil {
		return nil, err
	}
	return j, nil
}

// Reasons a QUEUED job is not running yet, as Job.Waiting reports them.
const (
	WaitRunAt       = "run_at"
	WaitPaused      = "queue paused"
	WaitQueueFull   = "queue full"
	WaitOlderGen    = "older generation running"
	WaitIdle        = "idle"
	WaitPower       = "power"
	WaitAfterPrefix = "after "
)

// annotate fills Job.Waiting for QUEUED jobs. It costs one query for the
// running jobs and one per unfinished dependency, and only when a listed job
// is QUEUED.
func (e *Engine) annotate(ctx context.Context, jobs []*Job) error {
	var queued []*Job
	for _, j := range jobs {
		if j.State == StateQueued {
			queued = append(queued, j)
		}
	}
	if len(queued) == 0 {
		return nil
	}
	now := e.clock.Now()
	// Running walks the index of RUNNING jobs: a List filtered by state
	// would walk the whole history, and this runs for every read of a
	// queued job.
	running, err := e.store.Running(ctx)
	if err != nil {
		return fmt.Errorf("list running jobs: %w", err)
	}
	paused, err := e.store.PausedQueues(ctx)
	if err != nil {
		return fmt.Errorf("read paused queues: %w", err)
	}
	runningKeys := make(map[Key]bool, len(running))
	perQueue := make(map[string]int)
	for _, r := range running {
		if r.Subject != "" {
			runningKeys[r.Key()] = true
		}
		perQueue[r.Queue]++
	}
	idle, onAC := e.probe.Idle(), e.probe.Power().OnAC
	limits := e.conf().queueLimits
	for _, j := range queued {
		dep, err := e.pendingDependency(ctx, j)
		if err != nil {
			return err
		}
		switch {
		case slices.Contains(paused, j.Queue):
			j.Waiting = WaitPaused
		case j.RunAt.After(now):
			j.Waiting = WaitRunAt
		case dep != "":
			j.Waiting = WaitAfterPrefix + dep
		case j.Subject != "" && runningKeys[j.Key()]:
			j.Waiting = WaitOlderGen
		case j.WaitIdle && !idle:
			j.Waiting = WaitIdle
		case j.RequireCharging && !onAC:
			j.Waiting = WaitPower
		case limits[j.Queue] > 0 && perQueue[j.Queue] >= limits[j.Queue]:
			j.Waiting = WaitQueueFull
		}
	}
	return nil
}

// pendingDependency returns the first job of j.After that is not DONE yet.
func (e *Engine) pendingDependency(ctx context.Context, j *Job) (string, error) {
	for _, id := range j.After {
		d, err := e.store.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // pruned: it finished long ago
		}
		if err != nil {
			return "", fmt.Errorf("read dependency %s: %w", id, err)
		}
		if d.State != StateDone {
			return id, nil
		}
	}
	return "", nil
}

// List returns a page of jobs matching f, newest first.
func (e *Engine) List(ctx context.Context, f ListFilter) (ListPage, error) {
	for _, s := range f.States {
		if !s.Valid() {
			return ListPage{}, fmt.Errorf("%w: unknown state %q", ErrInvalid, s)
		}
	}
	if f.Limit < 0 {
		return ListPage{}, fmt.Errorf("%w: limit must not be negative", ErrInvalid)
	}
	page, err := e.store.List(ctx, f)
	if err != nil {
		return ListPage{}, err // the store's error says "list jobs" already
	}
	if err := e.annotate(ctx, page.Jobs); err != nil {
		return ListPage{}, err
	}
	if err := e.fillShortIDs(ctx, page.Jobs); err != nil {
		return ListPage{}, err
	}
	return page, nil
}

// Wait blocks until every listed job is in a terminal state, or ctx ends,
// and returns the jobs as they are then.
func (e *Engine) Wait(ctx context.Context, ids []string) ([]*Job, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: wait needs at least one job id", ErrInvalid)
	}
	ids = slices.Clone(ids)
	if err := e.resolveIDs(ctx, ids); err != nil {
		return nil, err
	}
	sub := e.Subscribe(EventFilter{Kind: EventJob})
	defer func() { sub.Close() }()
	jobs := make([]*Job, len(ids))
	for {
		// Taken before the reads, so a change elsewhere during them is
		// not missed.
		var elsewhere <-chan struct{}
		if e.Shared() {
			elsewhere = e.changedElsewhere()
		}
		pending := 0
		for i, id := range ids {
			if jobs[i] != nil && jobs[i].State.Terminal() {
				continue
			}
			j, err := e.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			jobs[i] = j
			if !j.State.Terminal() {
				pending++
			}
		}
		if pending == 0 {
			return jobs, nil
		}
		if err := e.waitForChange(ctx, sub, ids, elsewhere); err != nil {
			return jobs, err
		}
		if sub.Lagged() {
			sub.Close()
			sub = e.Subscribe(EventFilter{Kind: EventJob})
		}
	}
}

// waitForChange returns when one of ids may have ended. On a shared store
// a job may end under another daemon, which the local events do not see:
// the notices of other daemons' changes (elsewhere) and the SharedPoll
// tick say when to read the jobs again.
func (e *Engine) waitForChange(ctx context.Context, sub *Subscription, ids []string, elsewhere <-chan struct{}) error {
	var tick <-chan time.Time
	if e.Shared() {
		t := e.clock.NewTimer(SharedPoll)
		defer t.Stop()
		tick = t.C()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-elsewhere:
			return nil
		case <-tick:
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil // lagged or shutting down: re-read the jobs
			}
			if ev.Kind == EventJob && slices.Contains(ids, ev.JobID) && ev.Job != nil && ev.Job.State.Terminal() {
				return nil
			}
		}
	}
}

// Stats describes the daemon and its queues.
type Stats struct {
	StoreStats
	Workers int       `json:"workers"`
	Running int       `json:"running"`
	Owner   string    `json:"owner"`
	Started time.Time `json:"started"`
	// PID is the daemon's process id, Version its version (what
	// `stq --version` prints; Config.Version).
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Recovered counts jobs found RUNNING from a dead daemon since start.
	Recovered int64 `json:"recovered"`
	// Paused lists paused queues.
	Paused []string `json:"paused"`
	// Idle and Power are the conditions jobs with --wait-idle and
	// --require-charging wait for, as last measured.
	Idle  bool       `json:"idle"`
	Power PowerState `json:"power"`
	// Retention is what finished history is kept (0: no limit).
	Retention RetentionStats `json:"retention"`
	// Daemons lists the live daemons sharing the store (leases); absent
	// on a store of one host. Store is Config.StoreName.
	Daemons []DaemonInfo `json:"daemons,omitempty"`
	Store   string       `json:"store,omitempty"`
}

// RetentionStats reports the retention settings in force.
type RetentionStats struct {
	MaxAge Duration `json:"max_age"`
	Keep   int      `json:"keep"`
}

// Stats reports the daemon's state and job counts.
func (e *Engine) Stats(ctx context.Context) (Stats, error) {
	st, err := e.store.Stats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("read stats: %w", err)
	}
	paused, err := e.store.PausedQueues(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("read paused queues: %w", err)
	}
	daemons, err := e.daemons(ctx)
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Daemons:    daemons,
		Store:      e.cfg.StoreName,
		StoreStats: st,
		Workers:    e.cfg.Workers,
		Running:    e.runningCount(),
		Owner:      e.cfg.Owner,
		Started:    e.started,
		PID:        os.Getpid(),
		Version:    e.cfg.Version,
		Recovered:  e.recovered.Load(),
		Paused:     paused,
		Idle:       e.probe.Idle(),
		Power:      e.probe.Power(),
		Retention: RetentionStats{
			MaxAge: Duration(max(e.conf().Retention.MaxAge, 0)),
			Keep:   max(e.conf().Retention.Keep, 0),
		},
	}, nil
}
