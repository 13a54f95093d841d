package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Lease length: Config.Lease. A daemon renews every third of it and is
// fenced once two renewals in a row have failed (see fenced).
const (
	DefaultLease = 30 * time.Second
	// MinLease leaves a renewal a few round trips of a loaded database
	// and a fenced daemon time to stop its jobs before others take them.
	MinLease = 2 * time.Second
)

// ErrLeaseLost is a renewal refused because the lease had expired (or its
// row was removed once other daemons recovered its jobs). An expired lease
// never comes back: its daemon was presumed dead, so it must not carry on
// with what it thinks it runs.
var ErrLeaseLost = errors.New("lease lost")

// errFenced stops the attempts of a daemon that cannot renew its lease;
// they end as crashed, as recovery by another daemon would end them.
var errFenced = errors.New("daemon lost its lease")

// DaemonInfo is one daemon's lease on a shared store.
type DaemonInfo struct {
	Owner   string    `json:"owner"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Heartbeat and Expires are the last renewal and when the lease runs
	// out, both on the database's clock, so hosts' clocks never matter.
	Heartbeat time.Time `json:"heartbeat"`
	Expires   time.Time `json:"expires"`
	// PIDStart is the daemon process's start time as ProcessStarts reads
	// it (0: unknown), so a daemon of the same host can tell at once that
	// it died, without waiting for its lease.
	PIDStart int64 `json:"-"`
}

// ProcessStarts is implemented by a Processes that can tell a process by
// its start time (exec.Processes). With it, a daemon recovers the jobs of
// a dead daemon of its own host at once, as without leases, rather than
// after the dead one's lease expires: a restart after a crash picks up its
// jobs immediately.
type ProcessStarts interface {
	StartTime(pid int) (int64, error)
	// Alive reports whether (pid, pidStart) still runs; a process it
	// cannot read counts as alive.
	Alive(pid int, pidStart int64) bool
}

// Leaser is implemented by a store that daemons on several hosts share
// (PostgreSQL): each daemon holds a lease it renews, and the RUNNING jobs
// of a daemon whose lease expired are recovered by the others. Lease times
// are the store's clock. The SQLite store has none: one host, and the PID
// recovery of recover.go covers it.
type Leaser interface {
	// Join takes a lease for d.Owner (a new owner), ttl from now.
	Join(ctx context.Context, d DaemonInfo, ttl time.Duration) error
	// Renew extends owner's lease to ttl from now, or returns an error
	// wrapping ErrLeaseLost if it had expired or is gone.
	Renew(ctx context.Context, owner string, ttl time.Duration) error
	// Leave gives the lease up: the owner's RUNNING jobs, if any, are
	// recovered by the next daemon that looks.
	Leave(ctx context.Context, owner string) error
	// Daemons lists the unexpired leases.
	Daemons(ctx context.Context) ([]DaemonInfo, error)
	// ForgetExpired removes the expired leases whose owners hold no
	// RUNNING job any more, and returns how many.
	ForgetExpired(ctx context.Context) (int, error)
}

// lease is an engine's side of its lease; leaser is nil when the store
// has no leases, and then nothing here runs.
type lease struct {
	leaser Leaser
	ttl    time.Duration

	mu sync.Mutex
	// renewed is when the last successful renewal (or the join) was
	// sent, on the engine's clock: the store's expiry is at least ttl
	// after that, whatever the hosts' clocks say.
	renewed time.Time
	// stopped says the jobs of the current fence have been stopped.
	stopped bool
}

// fenceAfter is how long after a renewal was sent the daemon stops trusting
// it: after two missed renewals (every ttl/3), a third of the lease before
// it can expire, which is the time the fenced daemon has to kill its jobs.
func (l *lease) fenceAfter() time.Duration { return l.ttl - l.ttl/3 }

// fenced reports whether the daemon may not claim or start jobs now: its
// last renewal is too old to be sure the lease still holds.
func (e *Engine) fenced() bool {
	if e.lease.leaser == nil {
		return false
	}
	e.lease.mu.Lock()
	defer e.lease.mu.Unlock()
	return e.clock.Now().Sub(e.lease.renewed) >= e.lease.fenceAfter()
}

// untilFence is how long until the daemon is fenced if no renewal
// succeeds meanwhile; zero or less once it is.
func (e *Engine) untilFence() time.Duration {
	e.lease.mu.Lock()
	defer e.lease.mu.Unlock()
	return e.lease.renewed.Add(e.lease.fenceAfter()).Sub(e.clock.Now())
}

// join takes the daemon's lease before it recovers or claims anything.
func (e *Engine) join(ctx context.Context) error {
	if e.lease.leaser == nil {
		return nil
	}
	at := e.clock.Now()
	d := DaemonInfo{Owner: e.cfg.Owner, Host: e.cfg.Host, PID: os.Getpid(), Version: e.cfg.Version, Started: e.started}
	if ps, ok := e.procs.(ProcessStarts); ok {
		d.PIDStart, _ = ps.StartTime(d.PID) // unknown: others wait for the lease
	}
	if err := e.lease.leaser.Join(ctx, d, e.lease.ttl); err != nil {
		return fmt.Errorf("take lease: %w", err)
	}
	e.lease.mu.Lock()
	e.lease.renewed = at
	e.lease.mu.Unlock()
	return nil
}

// leave gives the lease up on a clean shutdown, so other daemons need not
// wait for it to expire to recover what is left RUNNING.
func (e *Engine) leave() {
	if e.lease.leaser == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.lease.ttl/3)
	defer cancel()
	if err := e.lease.leaser.Leave(ctx, e.cfg.Owner); err != nil {
		e.log.Warn("give up lease", "err", err)
	}
}

// leaseLoop renews the lease every ttl/3 and fences the daemon when
// renewals fail, until ctx ends or the lease is lost; then it calls lost
// with ErrLeaseLost. Its recoverLoop recovers dead daemons' jobs meanwhile,
// on a goroutine of its own: a long recovery must not delay a renewal.
func (e *Engine) leaseLoop(ctx context.Context, lost context.CancelCauseFunc) {
	recoverCtx, stopRecover := context.WithCancel(ctx)
	recoverDone := make(chan struct{})
	go func() {
		defer close(recoverDone)
		e.recoverLoop(recoverCtx)
	}()
	defer func() { stopRecover(); <-recoverDone }()
	ttl := e.lease.ttl
	// The first renewal counts from the join, not from now: a long
	// start-up recovery must not eat into the lease.
	renew := e.clock.NewTimer(max(e.untilFence()-ttl/3, 0))
	defer renew.Stop()
	fence := e.clock.NewTimer(max(e.untilFence(), 0))
	defer fence.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fence.C():
			// Not re-armed: the next renewal that succeeds arms it.
			e.checkFence()
			continue
		case <-renew.C():
		}
		err := e.leaseOnce(ctx)
		if errors.Is(err, ErrLeaseLost) {
			lost(err)
			return
		}
		if err != nil {
			// Try again sooner: two more tries before the fence.
			rearm(renew, ttl/6)
			continue
		}
		rearm(renew, ttl/3)
		rearm(fence, max(e.untilFence(), 0))
	}
}

// recoverLoop runs Recover every half lease until ctx ends, except while
// the daemon is fenced: its view of the cluster is then in doubt.
func (e *Engine) recoverLoop(ctx context.Context) {
	t := e.clock.NewTimer(e.lease.ttl / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if !e.fenced() {
			if _, err := e.Recover(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("recover dead daemons' jobs", "err", err)
			}
		}
		t.Reset(e.lease.ttl / 2)
	}
}

// leaseOnce is one renewal. It never waits for the store past the moment
// the daemon becomes fenced, so a hung connection cannot keep it from
// stopping its jobs in time. A success lifts a fence; a lost lease stops
// every job at once and is returned (it wraps ErrLeaseLost).
func (e *Engine) leaseOnce(ctx context.Context) error {
	at := e.clock.Now()
	wait := min(e.lease.ttl/3, e.untilFence())
	if wait <= 0 {
		e.checkFence()
		wait = e.lease.ttl / 3
	}
	// Wall time, not e.clock: a bound on a network call, not a rule of
	// the schedule.
	rctx, cancel := context.WithTimeout(ctx, wait)
	err := e.lease.leaser.Renew(rctx, e.cfg.Owner, e.lease.ttl)
	cancel()
	switch {
	case err == nil:
		e.lease.mu.Lock()
		// The dispatcher may have passed up claims while fenced, with or
		// without checkFence having run yet: wake it either way.
		wasFenced := e.lease.stopped || at.Sub(e.lease.renewed) >= e.lease.fenceAfter()
		e.lease.renewed, e.lease.stopped = at, false
		e.lease.mu.Unlock()
		if wasFenced {
			e.log.Warn("lease renewed again: claiming jobs again")
			e.notify()
		}
		return nil
	case errors.Is(err, ErrLeaseLost):
		e.log.Error("lease expired: other daemons may already run this daemon's jobs; stopping them and exiting", "owner", e.cfg.Owner)
		e.stopOwnJobs()
		return fmt.Errorf("renew lease: %w", err)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	e.log.Warn("renew lease", "err", err)
	e.checkFence()
	return fmt.Errorf("renew lease: %w", err)
}

// checkFence stops the daemon's running jobs once when it becomes fenced:
// its lease may expire before it can renew it, and then another daemon
// recovers and reruns them. Claims stop by themselves (see claim).
func (e *Engine) checkFence() {
	if !e.fenced() {
		return
	}
	e.lease.mu.Lock()
	already := e.lease.stopped
	e.lease.stopped = true
	e.lease.mu.Unlock()
	if already {
		return
	}
	n := e.stopOwnJobs()
	e.log.Warn("lease not renewed in time: fenced, claiming nothing and stopping running jobs", "jobs", n, "lease", e.lease.ttl)
}

// stopOwnJobs cancels every attempt this daemon runs with errFenced and
// returns how many it cancelled.
func (e *Engine) stopOwnJobs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.running {
		a.cancel(errFenced)
	}
	return len(e.running)
}

// liveOwners returns the owners holding an unexpired lease, or nil when
// the store has no leases.
func (e *Engine) liveOwners(ctx context.Context) (map[string]DaemonInfo, error) {
	if e.lease.leaser == nil {
		return nil, nil
	}
	ds, err := e.lease.leaser.Daemons(ctx)
	if err != nil {
		return nil, fmt.Errorf("list daemons: %w", err)
	}
	live := make(map[string]DaemonInfo, len(ds))
	for _, d := range ds {
		live[d.Owner] = d
	}
	return live, nil
}

// diedHere reports whether d is a daemon of this host whose process is
// gone, though its lease has not expired yet.
func (e *Engine) diedHere(d DaemonInfo) bool {
	ps, ok := e.procs.(ProcessStarts)
	if !ok || d.PIDStart == 0 || d.Owner == e.cfg.Owner || !e.sameHost(d.Owner) {
		return false
	}
	return !ps.Alive(d.PID, d.PIDStart)
}

// daemons lists the live daemons for Stats; nil without leases.
func (e *Engine) daemons(ctx context.Context) ([]DaemonInfo, error) {
	if e.lease.leaser == nil {
		return nil, nil
	}
	ds, err := e.lease.leaser.Daemons(ctx)
	if err != nil {
		return nil, fmt.Errorf("list daemons: %w", err)
	}
	return ds, nil
}
