package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

const (
	// claimRetryDelay spaces out claims after a store error so a broken disk
	// does not turn the dispatcher into a busy loop.
	claimRetryDelay = 500 * time.Millisecond
	// conditionRecheck is how often the dispatcher looks again while the
	// machine is busy or on battery (the probe samples once a second).
	conditionRecheck = time.Second
)

// QueueConfig limits one queue, from [queues.NAME] in config.toml.
type QueueConfig struct {
	// Concurrency caps the queue's RUNNING jobs; 0 means no cap.
	Concurrency int
	// Weight shares free workers between queues with ready jobs: a queue
	// of weight 2 gets about twice the claims of a queue of weight 1.
	Weight int
}

// Check reports a queue setting no scheduler can honour.
func (q QueueConfig) Check() error {
	if q.Concurrency < 0 || q.Weight < 0 {
		return errors.New("concurrency and weight must not be negative")
	}
	return nil
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

// dispatch claims and starts jobs until ctx ends. It sleeps only on the wake
// channel (enqueues and finished jobs) and on one timer armed for the next
// due run_at or TTL expiry: there is no polling interval, except on a
// store other daemons share (SharedPoll, cluster.go).
func (e *Engine) dispatch(ctx context.Context, jobsCtx context.Context) {
	e.startBatching()
	defer e.stopBatching()
	timer := e.clock.NewTimer(time.Hour)
	defer timer.Stop()
	var nextExpiry time.Time
	var kept keptWake
	timed := true // the last sleep ended on the timer: read the wake time
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
				// That round is the dispatcher alive too: a watchdog
				// must not starve through a long burst.
				e.obs.Pulse()
				timed = false
				continue
			}
		}
		wake, err := e.nextWake(ctx, now, free, timed, &kept)
		if err != nil && ctx.Err() == nil {
			e.log.Error("read next wake time", "err", err)
			retry = claimRetryDelay
		}
		nextExpiry = wake.NextExpiry
		d, at := e.nextLook(now, free, wake, retry)
		rearm(timer, d)
		e.lookAt.Store(now.Add(d).UnixNano())
		// Pulse once the next look is armed, so that whoever hears it
		// knows the dispatcher will go round again within d.
		e.obs.Pulse()
		// The clock may have passed `at` while the timer was being armed
		// (a timer is relative, `at` is not): go round rather than sleep
		// past it.
		if retry == 0 && !at.IsZero() && !e.clock.Now().Before(at) {
			timed = true
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
			timed = false
		case <-timer.C():
			timed = true
		}
	}
}

// keptWake is the dispatcher's last reading of NextWake.
type keptWake struct {
	wake    Wake
	at      time.Time // when it was read
	changes uint64    // e.changes before it was read
	ok      bool
}

// nextWake reads when the next run_at and TTL expiry fall, or keeps the
// last reading when nothing can have brought either earlier: no worker is
// free (so no run_at matters), no change was signalled since (notify), the
// dispatcher was not woken by its timer (a due time, a poll), the kept
// expiry is still ahead, and the reading is less than SharedPoll old (a
// bound for changes whose notice was lost). Under a burst of short jobs
// the dispatcher goes round once per job end with every worker busy; it
// then pays no store read for it (on PostgreSQL, a transaction of three
// round trips).
func (e *Engine) nextWake(ctx context.Context, now time.Time, free int, timed bool, k *keptWake) (Wake, error) {
	if k.ok && free == 0 && !timed && k.changes == e.changes.Load() && now.Sub(k.at) < SharedPoll &&
		(k.wake.NextExpiry.IsZero() || now.Before(k.wake.NextExpiry)) {
		return k.wake, nil
	}
	changes := e.changes.Load()
	w, err := e.store.NextWake(ctx, now)
	*k = keptWake{wake: w, at: now, changes: changes, ok: err == nil}
	return w, err
}

// nextLook says how long the dispatcher sleeps after a round at now: until
// the next due run_at (worth waking for only with a worker free) or TTL
// expiry, whichever comes first, and an hour when neither is known. A store
// error (retry), Config.Pulse and an unmet machine condition shorten the
// sleep. at is the due time the sleep ends at, zero when there is none.
func (e *Engine) nextLook(now time.Time, free int, wake Wake, retry time.Duration) (d time.Duration, at time.Time) {
	if free > 0 && !wake.NextRunAt.IsZero() {
		at = wake.NextRunAt
	}
	if !wake.NextExpiry.IsZero() && (at.IsZero() || wake.NextExpiry.Before(at)) {
		at = wake.NextExpiry
	}
	d = time.Hour
	if !at.IsZero() {
		d = max(at.Sub(now), 0)
	}
	if retry > 0 && retry < d {
		d = retry
	}
	// On a shared store a notice can be lost: look anyway (SharedPoll).
	if e.shared.watcher != nil && d > SharedPoll {
		d = SharedPoll
	}
	if e.cfg.Pulse > 0 && d > e.cfg.Pulse {
		d = e.cfg.Pulse
	}
	// Nothing signals the machine turning idle or going on AC, so
	// while either condition is unmet, look again each probe beat:
	// held jobs start within a second of their condition holding.
	if d > conditionRecheck && (!e.probe.Idle() || !e.probe.Power().OnAC) {
		d = conditionRecheck
	}
	return d, at
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

// notify wakes the dispatcher without ever blocking the caller, for a
// change that may bring the next wake time earlier.
func (e *Engine) notify() {
	e.changes.Add(1)
	e.signal()
}

// notifyDue is notify for a change that matters only from due on (zero:
// now), such as a job stored for later. It is counted at once, so that a
// kept NextWake reading is not trusted past it (nextWake), but it wakes
// the dispatcher only if it would not look by due on its own: a burst of
// jobs scheduled for later costs no claims.
func (e *Engine) notifyDue(due time.Time) {
	e.changes.Add(1)
	if !e.looksBy(due) {
		e.signal()
	}
}

// signal wakes the dispatcher for an attempt that started or ended, which
// frees or takes a worker but schedules nothing.
func (e *Engine) signal() {
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
	if ctx.Err() != nil || e.fenced() {
		limit = 0 // shutting down or fenced: store the completions, claim nothing
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
