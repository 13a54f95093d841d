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

// Recover ends the attempts of RUNNING jobs that no live daemon of this host
// is running: those a crashed daemon left behind, and any whose completion
// could not be stored. Their process groups are killed if still alive (never
// a reused PID), the attempt is recorded as crashed, and the retry policy
// requeues or fails each job. Jobs running in this daemon, or claimed by a
// daemon on another host, are left alone. Safe to call at any time.
func (e *Engine) Recover(ctx context.Context) (RecoverReport, error) {
	e.claimMu.Lock()
	defer e.claimMu.Unlock()
	jobs, err := e.store.Running(ctx)
	if err != nil {
		return RecoverReport{}, fmt.Errorf("list running jobs: %w", err)
	}
	rep := RecoverReport{Scanned: len(jobs), Recovered: []RecoveredJob{}}
	for _, j := range jobs {
		e.mu.Lock()
		_, mine := e.running[j.ID]
		e.mu.Unlock()
		if mine || !e.sameHost(j.Owner) {
			continue
		}
		r := RecoveredJob{ID: j.ID}
		if n := len(j.Attempts); n > 0 {
			last := j.Attempts[n-1]
			r.PID = last.PID
			if last.PID > 1 && e.procs != nil {
				killed, err := e.procs.KillGroup(last.PID, last.PIDStart)
				if err != nil {
					e.log.Warn("kill leftover process group", "job", j.ID, "pid", last.PID, "err", err)
				}
				r.Killed = killed
			}
		}
		if e.procs != nil {
			// The attempt's process may have started without being
			// recorded before the daemon died, and members may have left
			// the recorded group (setsid): find them by their marker.
			killed, err := e.procs.KillJob(j.ID)
			if err != nil {
				e.log.Warn("kill processes by job marker", "job", j.ID, "err", err)
			}
			r.Killed = r.Killed || killed
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
	return rep, nil
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
