package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SharedPoll is how often a daemon on a shared store (one that implements
// Watcher) looks at it on its own: the dispatcher claims at least this
// often, and wait, a cross-daemon cancel and tail -f re-read what they
// follow. Notices are hints; a daemon that dies between a commit and its
// notice, or a watch connection that drops, loses some. The poll bounds
// what a lost notice costs (a job starts, a wait returns at most this
// late) for one claim and one wake-time read per second per idle daemon.
const SharedPoll = time.Second

const (
	// watchRetryMin and watchRetryMax bound the pause before watching
	// again after the watch's connection failed; it doubles per failure.
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 10 * time.Second
	// noticeReadTimeout bounds the one store read a replace notice needs:
	// the watch's callback must not hold up the notices behind it.
	noticeReadTimeout = 5 * time.Second
	// stopMargin is how long, beyond its own kill grace, a cancel waits for
	// another daemon to record the job it was asked to stop.
	stopMargin = 2 * time.Second
)

// cluster is what an engine keeps for a store other daemons share.
type cluster struct {
	// watcher is nil when the store is this daemon's alone.
	watcher Watcher
	// changed fires on notices of changes other daemons made that may
	// have ended a job, for those who wait for one.
	changed signal
}

// signal is a broadcast: next returns a channel that fire closes.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// Shared reports whether other daemons share this engine's store, so
// that its jobs may run, print and end elsewhere.
func (e *Engine) Shared() bool { return e.shared.watcher != nil }

// changedElsewhere returns a channel closed at the next notice of another
// daemon's change that may have ended a job (a job freed, cancelled or
// superseded; a watch resync). It never fires for a store nobody shares.
func (e *Engine) changedElsewhere() <-chan struct{} { return e.shared.changed.next() }

// watch relays a shared store's notices until ctx ends; Run owns it.
// When the watch fails it starts again after a pause that doubles up to
// watchRetryMax, and logs once per streak of failures: meanwhile the
// SharedPoll safety net keeps jobs moving.
func (e *Engine) watch(ctx context.Context) {
	delay := watchRetryMin
	var failing atomic.Bool
	for {
		var listened atomic.Bool
		err := e.shared.watcher.Watch(ctx, func(n Notice) {
			if n.Kind == NoticeResync {
				listened.Store(true)
				if failing.Swap(false) {
					e.log.Info("watching the shared store again")
				}
			}
			e.onNotice(ctx, n)
		})
		if ctx.Err() != nil {
			return
		}
		if listened.Load() {
			delay = watchRetryMin
		}
		if !failing.Swap(true) {
			e.log.Warn("watch the shared store: retrying; until then jobs of other daemons are seen by polling",
				"err", err, "poll", SharedPoll)
		}
		t := e.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		delay = min(2*delay, watchRetryMax)
	}
}

// onNotice acts on one notice as a poll would, and stops a job running
// here that another daemon cancelled or replaced. Notices of this
// daemon's own changes (Self) need nothing: it acted when it made them.
func (e *Engine) onNotice(ctx context.Context, n Notice) {
	if n.Self {
		return
	}
	switch n.Kind {
	case NoticeCancel:
		e.stopHere(n.ID, errCancelled)
		e.shared.changed.fire()
	case NoticeReplace:
		e.replaceHere(ctx, n)
	case NoticeEnqueue:
		// A job due only after the dispatcher's next look is found by
		// that look; waking for it would cost a claim and a read.
		e.notifyDue(n.Due)
		e.shared.changed.fire() // an enqueue may have superseded a waited-for job
	case NoticeFree, NoticeResync:
		e.notify()
		e.shared.changed.fire()
	case NoticeResume:
		e.notify()
	}
}

// runningHere returns the attempt of job id running here, nil when none.
// claimMu makes sure a job whose claim has just committed is registered in
// e.running before we look: it is never taken for another daemon's, and a
// notice that follows the claim closely still finds it.
func (e *Engine) runningHere(id string) *activeJob {
	e.claimMu.Lock()
	defer e.claimMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[id]
}

// stopHere stops job id if it runs here, exactly as a local cancel does.
func (e *Engine) stopHere(id string, cause error) {
	if a := e.runningHere(id); a != nil {
		e.log.Info("stopping a job as another daemon asked", "job", id, "reason", cause)
		a.cancel(cause)
	}
}

// replaceHere stops the older generations running here of the key of
// the job a replace notice names. It reads that job only when a keyed job
// of its queue runs here.
func (e *Engine) replaceHere(ctx context.Context, n Notice) {
	// claimMu as in runningHere; not held over the read, which would hold up
	// claims. A job registered by now stays until it ends.
	e.claimMu.Lock()
	keyed := e.runsKeyed(n.Queue)
	e.claimMu.Unlock()
	if !keyed {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, noticeReadTimeout)
	defer cancel()
	newer, err := e.store.Get(rctx, n.ID)
	if err != nil {
		e.log.Warn("read the job of a replace notice", "job", n.ID, "err", err)
		return
	}
	e.replaceRunning(newer)
}

// runsKeyed says whether a job with a subject runs here in queue (any
// queue when it is empty).
func (e *Engine) runsKeyed(queue string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.running {
		if a.job.Subject != "" && (queue == "" || a.job.Queue == queue) {
			return true
		}
	}
	return false
}

// cancelElsewhere asks the daemon running j to stop it, and waits until it
// is recorded ended, or for that daemon's kill grace (taken to be ours)
// and stopMargin. The reply names that daemon in StopAsked; a job still
// RUNNING then has an owner that did not answer (dead: the lease recovery
// ends it). The ask is repeated each SharedPoll, since a notice can be lost.
func (e *Engine) cancelElsewhere(ctx context.Context, j *Job) (*Job, error) {
	ask := func() error {
		return e.shared.watcher.Announce(ctx, Notice{Kind: NoticeCancel, Queue: j.Queue, ID: j.ID})
	}
	if err := ask(); err != nil {
		return nil, fmt.Errorf("cancel %s: ask daemon %s to stop it: %w", j.ID, j.Owner, err)
	}
	giveUp := e.clock.NewTimer(e.conf().KillGrace + stopMargin)
	defer giveUp.Stop()
	tick := e.clock.NewTimer(SharedPoll)
	defer tick.Stop()
	for {
		changed := e.changedElsewhere()
		cur, err := e.Get(ctx, j.ID)
		if err != nil {
			return nil, err
		}
		switch {
		case cur.State == StateCancelled:
			cur.StopAsked = j.Owner
			return cur, nil
		case cur.State.Terminal():
			return nil, fmt.Errorf("%w: job %s is %s", ErrFinished, j.ID, cur.State)
		case cur.State != StateRunning || cur.Owner != j.Owner:
			// Requeued by a retry, or recovered and claimed again (maybe
			// here): cancel it where it is now.
			return e.cancelOne(ctx, j.ID)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cancel %s: wait for daemon %s to stop it: %w", j.ID, j.Owner, ctx.Err())
		case <-changed:
		case <-tick.C():
			tick.Reset(SharedPoll)
			if err := ask(); err != nil {
				e.log.Warn("ask another daemon again to stop a job", "job", j.ID, "owner", j.Owner, "err", err)
			}
		case <-giveUp.C():
			cur.StopAsked = j.Owner
			return cur, nil
		}
	}
}
