package ipc

import (
	"context"
	"time"

	"stq/engine"
)

// tailPage is how many stored lines one backend.Logs call fetches.
const tailPage = 1000

// sharedBackend is a backend whose store other daemons share: a job may
// run, print and end under another daemon, which no local subscription
// hears of, so a follow reads the store too.
type sharedBackend interface{ Shared() bool }

// tailPoll is how often a follow on a shared store reads the job and its
// stored lines: the owning daemon stores a running job's output every
// 250 ms (engine/output.go), so reading more often finds nothing new.
const tailPoll = 250 * time.Millisecond

// maxQueueCache bounds the job-id → queue memo of a queue-filtered follow.
const maxQueueCache = 4096

// tail serves logs.tail.v1. p has passed decodeCall.
func (c *conn) tail(ctx context.Context, p *TailParams) (any, error) {
	if p.Last != nil {
		// The newest lines are those after a later start; the rest of the
		// request runs as if that start had been asked for.
		start, err := c.srv.backend.LogStart(ctx, p.JobID, p.AfterSeq, *p.Last)
		if err != nil {
			return nil, err
		}
		p.AfterSeq = start
	}
	if !p.Follow {
		return c.storedLines(ctx, p.JobID, p.AfterSeq)
	}
	if p.JobID == "" {
		return nil, c.followAll(ctx, p.Queue)
	}
	return c.followJob(ctx, p.JobID, p.AfterSeq)
}

// storedLines returns up to MaxTailLines stored lines after afterSeq.
func (c *conn) storedLines(ctx context.Context, id string, afterSeq int64) (*LinesResult, error) {
	b := c.srv.backend
	// Ask for the job first so an unknown id is "not found", not an empty
	// log; and so a prefix becomes the job's id.
	j, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	id = j.ID
	res := &LinesResult{Lines: []engine.LogLine{}}
	for len(res.Lines) < MaxTailLines {
		n := min(tailPage, MaxTailLines-len(res.Lines))
		page, err := b.Logs(ctx, id, afterSeq, n)
		if err != nil {
			return nil, err
		}
		res.Lines = append(res.Lines, page...)
		if len(page) < n || page[len(page)-1].Seq <= afterSeq {
			return res, nil
		}
		afterSeq = page[len(page)-1].Seq
	}
	more, err := b.Logs(ctx, id, afterSeq, 1)
	if err != nil {
		return nil, err
	}
	res.More = len(more) > 0
	return res, nil
}

// followJob streams one job's log: stored lines first, then live events,
// until the job is terminal. It subscribes before reading anything stored,
// so no line falls between the two; lines seen twice are dropped by seq.
func (c *conn) followJob(ctx context.Context, id string, afterSeq int64) (any, error) {
	b := c.srv.backend
	// The subscription filters by the whole id, which a prefix is not.
	first, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	id = first.ID
	sub := b.Subscribe(engine.EventFilter{JobID: id})
	if sub == nil {
		return nil, rpcErr(CodeInternal, "subscribe failed")
	}
	defer sub.Close()
	job, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	last := afterSeq
	if err := c.replay(ctx, id, &last); err != nil {
		return nil, err
	}
	if job.State.Terminal() {
		return &TailResult{Job: job}, nil
	}
	var poll <-chan time.Time
	if sb, ok := b.(sharedBackend); ok && sb.Shared() {
		t := time.NewTicker(tailPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-poll:
			if res, err := c.pollJob(ctx, id, &last); res != nil || err != nil {
				return res, err
			}
			continue
		case ev, ok := <-sub.C:
			if !ok {
				return nil, subscriptionEnded(sub)
			}
			switch ev.Kind {
			case engine.EventLog:
				if ev.Line == nil || ev.Line.Seq <= last {
					continue
				}
				last = ev.Line.Seq
			case engine.EventJob:
				j := ev.Job
				if j == nil {
					if j, err = b.Get(ctx, id); err != nil {
						return nil, err
					}
				}
				if j.State.Terminal() {
					// Catch up on lines stored but not yet seen live, so the
					// final result really comes after the last line.
					if err := c.replay(ctx, id, &last); err != nil {
						return nil, err
					}
					if err := c.sendEvent(&ev); err != nil {
						return nil, err
					}
					// Events may carry a partial job (a superseded one is
					// just its key); the final result is the stored job.
					if full, err := b.Get(ctx, id); err == nil {
						j = full
					}
					return &TailResult{Job: j}, nil
				}
			}
			if err := c.sendEvent(&ev); err != nil {
				return nil, err
			}
		}
	}
}

// pollJob sends the lines stored since *last, and when the job has ended
// (read before the lines, so none stored before its end is missed) its
// final event, and returns the result that ends the follow.
func (c *conn) pollJob(ctx context.Context, id string, last *int64) (*TailResult, error) {
	j, err := c.srv.backend.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := c.replay(ctx, id, last); err != nil {
		return nil, err
	}
	if !j.State.Terminal() {
		return nil, nil
	}
	ev := engine.Event{Kind: engine.EventJob, JobID: id, Job: j}
	if err := c.sendEvent(&ev); err != nil {
		return nil, err
	}
	return &TailResult{Job: j}, nil
}

// replay sends the stored lines of job id after *last as notifications and
// advances *last.
func (c *conn) replay(ctx context.Context, id string, last *int64) error {
	for {
		page, err := c.srv.backend.Logs(ctx, id, *last, tailPage)
		if err != nil {
			return err
		}
		advanced := false
		for i := range page {
			if page[i].Seq <= *last {
				continue
			}
			advanced = true
			*last = page[i].Seq
			ev := engine.Event{Kind: engine.EventLog, JobID: id, Line: &page[i]}
			if err := c.sendEvent(&ev); err != nil {
				return err
			}
		}
		// A short page is the end; a backend that does not advance would
		// otherwise loop forever.
		if len(page) < tailPage || !advanced {
			return nil
		}
	}
}

// followAll streams every event, or a queue's, until the connection ends.
// The queue is filtered here rather than by the subscription because log
// events need not carry their job, and the engine's queue filter drops
// events without one.
func (c *conn) followAll(ctx context.Context, queue string) error {
	b := c.srv.backend
	sub := b.Subscribe(engine.EventFilter{})
	if sub == nil {
		return rpcErr(CodeInternal, "subscribe failed")
	}
	defer sub.Close()
	inQueue := make(map[string]bool)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-sub.C:
			if !ok {
				return subscriptionEnded(sub)
			}
			if queue != "" && !c.eventInQueue(ctx, &ev, queue, inQueue) {
				continue
			}
			if err := c.sendEvent(&ev); err != nil {
				return err
			}
		}
	}
}

// eventInQueue reports whether ev's job belongs to queue, remembering the
// answer per job so that a job's log lines cost one lookup in all.
func (c *conn) eventInQueue(ctx context.Context, ev *engine.Event, queue string, memo map[string]bool) bool {
	if ev.Job != nil {
		in := ev.Job.Queue == queue
		remember(memo, ev.JobID, in)
		return in
	}
	if in, ok := memo[ev.JobID]; ok {
		return in
	}
	j, err := c.srv.backend.Get(ctx, ev.JobID)
	in := err == nil && j.Queue == queue
	remember(memo, ev.JobID, in)
	return in
}

func remember(memo map[string]bool, id string, in bool) {
	if len(memo) >= maxQueueCache {
		clear(memo)
	}
	memo[id] = in
}

// sendEvent sends one logs.event notification. A log event goes out
// without its job: the engine attaches the whole job to every line, which
// would repeat the payload and env on the wire for each line printed.
func (c *conn) sendEvent(ev *engine.Event) error {
	if ev.Kind == engine.EventLog && ev.Job != nil {
		stripped := *ev
		stripped.Job = nil
		ev = &stripped
	}
	return c.notify(NotifyLogsEvent, ev)
}

// subscriptionEnded says why the engine closed a subscription.
func subscriptionEnded(sub *engine.Subscription) error {
	if sub.Lagged() {
		return rpcErr(CodeLimitExceeded, "subscriber fell behind")
	}
	return rpcErr(CodeUnavailable, "daemon shutting down")
}
