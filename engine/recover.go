package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RecoverReport says what a recovery scan did.
type RecoverReport struct {
	// Scanned is the number of RUNNING jobs examined.
	Scanned int `json:"scanned"`
	// Recovered lists the jobs whose attempt was ended as crashed.
	Recovered []RecoveredJob `json:"recovered"`
}

// RecoveredJob is one job a recovery scan dealt with.
type RecoveredJob struct {
	ID       string `json:"id"`
	PID      int    `json:"pid,omitempty"`
	Killed   bool   `json:"killed"`
	NewState State  `json:"new_state"`
}

// Recover ends the attempts of RUNNING jobs that no live daemon is running:
// those a crashed daemon left behind, and any whose completion could not be
// stored. Without leases (SQLite) that means jobs of this host's other
// daemons; on a store that is a Leaser, jobs of any host whose owner holds
// no unexpired lease. On this host their process groups are killed if still
// alive (never a reused PID); the attempt is recorded as crashed, and the
// retry policy requeues or fails each job. Jobs running in this daemon are
// left alone. Safe to call at any time.
func (e *Engine) Recover(ctx context.Context) (RecoverReport, error) {
	e.claimMu.Lock()
	defer e.claimMu.Unlock()
	jobs, err := e.store.Running(ctx)
	if err != nil {
		return RecoverReport{}, fmt.Errorf("list running jobs: %w", err)
	}
	// Read after the jobs: a daemon takes its lease before it claims, so
	// the owner of every job listed is in this list unless its lease has
	// expired since.
	live, err := e.liveOwners(ctx)
	if err != nil {
		return RecoverReport{}, err
	}
	rep := RecoverReport{Scanned: len(jobs), Recovered: []RecoveredJob{}}
	for _, j := range jobs {
		e.mu.Lock()
		_, mine := e.running[j.ID]
		e.mu.Unlock()
		if mine || !e.orphaned(j.Owner, live) {
			continue
		}
		r := RecoveredJob{ID: j.ID}
		// Another host's processes are beyond reach: its daemon, fenced,
		// stopped them before its lease expired.
		if e.sameHost(j.Owner) {
			r.PID, r.Killed = e.killLeftovers(j)
		}
		c := Decide(j, AttemptEnd{Cause: errRecoverKill}, e.clock.Now(), e.jitter())
		res, err := e.store.Complete(ctx, c)
		if errors.Is(err, ErrStale) {
			continue // it ended meanwhile
		}
		if err != nil {
			return rep, fmt.Errorf("recover job %s: %w", j.ID, err)
		}
		r.NewState = res.Job.State
		rep.Recovered = append(rep.Recovered, r)
		e.recovered.Add(1)
		e.obs.Recovered(res.Job)
		e.publishJobs(res.Job)
		e.publishJobs(res.Cancelled...)
		e.log.Info("recovered job", "job", j.ID, "pid", r.PID, "killed", r.Killed, "state", res.Job.State)
	}
	if len(rep.Recovered) > 0 {
		e.notify()
	}
	if e.lease.leaser != nil {
		// A dead daemon of this host gives its lease back through us, so
		// the cluster view stops listing it.
		for _, d := range live {
			if e.diedHere(d) {
				if err := e.lease.leaser.Leave(ctx, d.Owner); err != nil {
					return rep, fmt.Errorf("give up the lease of dead daemon %s: %w", d.Owner, err)
				}
			}
		}
		if _, err := e.lease.leaser.ForgetExpired(ctx); err != nil {
			return rep, fmt.Errorf("forget expired leases: %w", err)
		}
	}
	return rep, nil
}

// killLeftovers kills what may remain of a dead local daemon's attempt:
// its recorded process group (never a reused PID) and any process still
// carrying the job's marker. It returns the recorded PID and whether
// anything was killed.
func (e *Engine) killLeftovers(j *Job) (pid int, killed bool) {
	var last Attempt
	if n := len(j.Attempts); n > 0 {
		last = j.Attempts[n-1]
		pid = last.PID
	}
	if e.procs == nil {
		return pid, false
	}
	if last.PID > 1 {
		k, err := e.procs.KillGroup(last.PID, last.PIDStart)
		if err != nil {
			e.log.Warn("kill leftover process group", "job", j.ID, "pid", last.PID, "err", err)
		}
		killed = k
	}
	// The attempt's process may have started without being recorded
	// before the daemon died, and members may have left the recorded
	// group (setsid): find them by their marker.
	k, err := e.procs.KillJob(j.ID)
	if err != nil {
		e.log.Warn("kill processes by job marker", "job", j.ID, "err", err)
	}
	return pid, killed || k
}

// orphaned reports whether a RUNNING job's owner is gone: without leases,
// any other daemon of this host (this one's jobs not in e.running
// included); with them, an owner without a live lease, a daemon of this
// host whose process is gone, or this daemon.
func (e *Engine) orphaned(owner string, live map[string]DaemonInfo) bool {
	if live == nil {
		return e.sameHost(owner)
	}
	d, ok := live[owner]
	return owner == e.cfg.Owner || !ok || e.diedHere(d)
}

// sameHost reports whether a job's owner ran on this host; an empty owner
// counts as local.
func (e *Engine) sameHost(owner string) bool {
	host, _, ok := strings.Cut(owner, "/")
	return !ok || host == e.cfg.Host
}

// expire is one round of expiry: it ends the QUEUED jobs whose TTL has
// passed by now. The dispatcher runs it when its timer reaches the next
// expiry the store reported.
func (e *Engine) expire(ctx context.Context, now time.Time) {
	jobs, err := e.store.ExpireDue(ctx, now)
	if err != nil {
		e.log.Error("expire jobs", "err", err)
		return
	}
	if len(jobs) > 0 {
		e.obs.Expired(jobs)
	}
	e.publishJobs(jobs...)
}
