package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"time"

	"stq/engine"
)

// Errors a caller can act on. An error from a Client method matches one of
// them with errors.Is when the daemon answered with the matching code;
// errors.As with *RPCError gives the code and message themselves.
var (
	// ErrNotFound: no job has the id (CodeNotFound).
	ErrNotFound = engine.ErrNotFound
	// ErrInvalidRequest: the daemon refused the request's params
	// (CodeInvalidParams, CodeInvalidRequest); nothing was changed.
	ErrInvalidRequest = engine.ErrInvalid
	// ErrConflict: the job already finished (CodeConflict).
	ErrConflict = engine.ErrFinished
	// ErrUnavailable: the daemon is shutting down (CodeUnavailable).
	ErrUnavailable = engine.ErrClosed
	// ErrUnauthorized: the token or the peer was refused (CodeUnauthorized).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited: over an enqueue rate limit; nothing was stored. See
	// RetryAfter for how long to wait (CodeRateLimited).
	ErrRateLimited = errors.New("rate limited")
	// ErrLimitExceeded: a size or count bound was hit (CodeLimitExceeded).
	ErrLimitExceeded = errors.New("limit exceeded")
)

// Is matches the error's code to the sentinels above.
func (e *RPCError) Is(target error) bool {
	switch e.Code {
	case CodeNotFound:
		return target == ErrNotFound
	case CodeInvalidParams, CodeInvalidRequest:
		return target == ErrInvalidRequest
	case CodeConflict:
		return target == ErrConflict
	case CodeUnavailable:
		return target == ErrUnavailable
	case CodeUnauthorized:
		return target == ErrUnauthorized
	case CodeRateLimited:
		return target == ErrRateLimited
	case CodeLimitExceeded:
		return target == ErrLimitExceeded
	}
	return false
}

// RetryAfter is how long a rate-limited caller should wait before sending
// again; zero for other errors.
func (e *RPCError) RetryAfter() time.Duration {
	var d RateLimitedData
	if e.Code != CodeRateLimited || json.Unmarshal(e.Data, &d) != nil {
		return 0
	}
	return time.Duration(d.RetryAfterMS) * time.Millisecond
}

// RetryAfter returns the wait a rate-limited error asks for, and whether
// err is one.
func RetryAfter(err error) (time.Duration, bool) {
	var re *RPCError
	if !errors.As(err, &re) || re.Code != CodeRateLimited {
		return 0, false
	}
	return re.RetryAfter(), true
}

// BatchIndex returns the index of the entry that made the daemon refuse a
// whole EnqueueMany, and whether err is such a refusal.
func BatchIndex(err error) (int, bool) {
	var re *RPCError
	var d BatchErrorData
	if !errors.As(err, &re) || len(re.Data) == 0 || json.Unmarshal(re.Data, &d) != nil {
		return 0, false
	}
	return d.Index, true
}

// callFor makes one call and returns its result: what every typed method
// below does, with its own method, params and result type.
func callFor[T any](ctx context.Context, c *Client, method string, params any) (*T, error) {
	var res T
	if err := c.Call(ctx, method, params, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Enqueue adds a job. The job is stored durably when Enqueue returns.
func (c *Client) Enqueue(ctx context.Context, req engine.EnqueueRequest) (*engine.EnqueueResult, error) {
	return callFor[engine.EnqueueResult](ctx, c, MethodEnqueue, &req)
}

// EnqueueMany adds up to MaxBatch jobs all or nothing, in one commit and in
// order: the last generation of a subject in the batch wins. On refusal
// nothing is stored, and BatchIndex(err) says which entry was bad.
func (c *Client) EnqueueMany(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, error) {
	res, err := callFor[EnqueueManyResult](ctx, c, MethodEnqueueMany, &EnqueueManyParams{Jobs: reqs})
	if err != nil {
		return nil, err
	}
	return res.Results, nil
}

// EnqueueManyEnv is EnqueueMany with baseEnv as the base environment of
// every request that has none of its own (see
// engine.EnqueueRequest.BaseEnv). It is sent once for the whole batch,
// not once per job.
func (c *Client) EnqueueManyEnv(ctx context.Context, baseEnv map[string]string, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, error) {
	res, err := callFor[EnqueueManyResult](ctx, c, MethodEnqueueMany, &EnqueueManyParams{Jobs: reqs, BaseEnv: baseEnv})
	if err != nil {
		return nil, err
	}
	return res.Results, nil
}

// EnqueueManyBrief is EnqueueManyEnv answered briefly: each job's id,
// state and generation rather than the whole job (reply "brief"). A nil
// baseEnv sends none. Loading thousands of jobs, most of a call's time
// otherwise goes on encoding and decoding the jobs it sent.
func (c *Client) EnqueueManyBrief(ctx context.Context, baseEnv map[string]string, reqs []engine.EnqueueRequest) ([]Enqueued, error) {
	res, err := callFor[EnqueueManyBriefResult](ctx, c, MethodEnqueueMany,
		&EnqueueManyParams{Jobs: reqs, BaseEnv: baseEnv, Reply: ReplyBrief})
	if err != nil {
		return nil, err
	}
	return res.Results, nil
}

// Cancel cancels one job by id, or every queued and running job of a
// subject key, and returns the jobs it cancelled.
func (c *Client) Cancel(ctx context.Context, req engine.CancelRequest) ([]*engine.Job, error) {
	res, err := callFor[JobsResult](ctx, c, MethodCancel, &req)
	if err != nil {
		return nil, err
	}
	return res.Jobs, nil
}

// Get returns a job with its attempt history.
func (c *Client) Get(ctx context.Context, id string) (*engine.Job, error) {
	return callFor[engine.Job](ctx, c, MethodGet, &GetParams{ID: id})
}

// List returns one page of jobs, newest first. Pass the page's NextCursor
// as p.Cursor for the next one; ListAll does that for you.
func (c *Client) List(ctx context.Context, p ListParams) (*ListResult, error) {
	return callFor[ListResult](ctx, c, MethodList, &p)
}

// ListAll yields every job matching p, newest first, fetching a page of
// p.Limit jobs at a time (DefaultListLimit when zero), so memory stays
// bounded by one page. An error ends the sequence.
func (c *Client) ListAll(ctx context.Context, p ListParams) iter.Seq2[*engine.Job, error] {
	return func(yield func(*engine.Job, error) bool) {
		for {
			page, err := c.List(ctx, p)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, j := range page.Jobs {
				if !yield(j, nil) {
					return
				}
			}
			if page.NextCursor == "" {
				return
			}
			p.Cursor = page.NextCursor
		}
	}
}

// Wait blocks until every job in p.IDs has ended, or p.Timeout passes (the
// result then says TimedOut and holds the jobs as they are), or ctx ends.
func (c *Client) Wait(ctx context.Context, p WaitParams) (*WaitResult, error) {
	return callFor[WaitResult](ctx, c, MethodWait, &p)
}

// Logs returns a page of a job's stored output after afterSeq; More says
// whether to ask again from the last line's Seq.
func (c *Client) Logs(ctx context.Context, id string, afterSeq int64) (*LinesResult, error) {
	return callFor[LinesResult](ctx, c, MethodTail, &TailParams{JobID: id, AfterSeq: afterSeq})
}

// Stats describes the daemon and its queues.
func (c *Client) Stats(ctx context.Context) (*engine.Stats, error) {
	return callFor[engine.Stats](ctx, c, MethodStats, nil)
}

// Recover runs a recovery scan now.
func (c *Client) Recover(ctx context.Context) (*engine.RecoverReport, error) {
	return callFor[engine.RecoverReport](ctx, c, MethodRecover, nil)
}

// Pause stops a queue from starting jobs; running ones finish. The pause
// survives restarts.
func (c *Client) Pause(ctx context.Context, queue string) error {
	return c.Call(ctx, MethodPause, &QueueParams{Queue: queue}, nil)
}

// Resume lets a paused queue start jobs again.
func (c *Client) Resume(ctx context.Context, queue string) error {
	return c.Call(ctx, MethodResume, &QueueParams{Queue: queue}, nil)
}

// Retry re-queues a FAILED, CANCELLED or EXPIRED job as a new attempt
// series.
func (c *Client) Retry(ctx context.Context, id string) (*engine.Job, error) {
	return callFor[engine.Job](ctx, c, MethodRetry, &RetryParams{ID: id})
}

// Shutdown asks the daemon to stop gracefully, as SIGTERM does: it stops
// taking requests, gives running jobs the grace period, then kills and
// requeues what is left. It returns once the shutdown has begun, with the
// daemon's PID and grace periods; the daemon exits after them.
func (c *Client) Shutdown(ctx context.Context) (*engine.ShutdownResult, error) {
	return callFor[engine.ShutdownResult](ctx, c, MethodShutdown, nil)
}

// Reload makes the daemon read its config.toml again and put it in force
// without a restart. An invalid file changes nothing: the error says why.
func (c *Client) Reload(ctx context.Context) (*engine.ReloadResult, error) {
	return callFor[engine.ReloadResult](ctx, c, MethodReload, nil)
}

// errStopTail ends a follow whose consumer stopped iterating.
var errStopTail = errors.New("tail stopped")

// Tail yields a job's output as log events. Without p.Follow it yields the
// stored lines after p.AfterSeq (only the newest p.Last of them, when set)
// and ends. With p.Follow and a JobID it
// yields lines and the job's state changes as they happen, and ends after
// the event of the job's terminal state (always the last one); with Follow
// and no JobID it yields every job's events (or p.Queue's) until ctx ends.
// Cancelling ctx ends the sequence without an error. A follow runs on a
// connection of its own, so c stays usable meanwhile and stopping early is
// safe.
func (c *Client) Tail(ctx context.Context, p TailParams) iter.Seq2[engine.Event, error] {
	if !p.Follow {
		return c.tailStored(ctx, p)
	}
	return func(yield func(engine.Event, error) bool) {
		side, err := Dial(ctx, c.path, c.secret)
		if err != nil {
			if ctx.Err() == nil {
				yield(engine.Event{}, err)
			}
			return
		}
		defer side.Close()
		ended := "" // the job whose terminal event was yielded
		onNotify := func(method string, params json.RawMessage) error {
			if method != NotifyLogsEvent {
				return nil // a kind this client does not know
			}
			var ev engine.Event
			if err := json.Unmarshal(params, &ev); err != nil {
				return err
			}
			if ev.Kind == engine.EventJob && ev.Job != nil && ev.Job.State.Terminal() {
				ended = ev.JobID
			}
			if !yield(ev, nil) {
				return errStopTail
			}
			return nil
		}
		var final TailResult
		err = side.Stream(ctx, MethodTail, &p, onNotify, &final)
		switch {
		case errors.Is(err, errStopTail), ctx.Err() != nil:
		case err != nil:
			yield(engine.Event{}, err)
		case final.Job != nil && ended != final.Job.ID:
			// A job that had ended before the follow began sends no event.
			yield(engine.Event{Kind: engine.EventJob, JobID: final.Job.ID, Job: final.Job}, nil)
		}
	}
}

// tailStored pages through a job's stored lines; p.Last applies to the
// first page, which then says where the next begins.
func (c *Client) tailStored(ctx context.Context, p TailParams) iter.Seq2[engine.Event, error] {
	return func(yield func(engine.Event, error) bool) {
		for {
			var res LinesResult
			err := c.Call(ctx, MethodTail, &TailParams{JobID: p.JobID, AfterSeq: p.AfterSeq, Last: p.Last}, &res)
			if err != nil {
				yield(engine.Event{}, err)
				return
			}
			for i := range res.Lines {
				if !yield(engine.Event{Kind: engine.EventLog, JobID: p.JobID, Line: &res.Lines[i]}, nil) {
					return
				}
			}
			if !res.More || len(res.Lines) == 0 {
				return
			}
			p.AfterSeq, p.Last = res.Lines[len(res.Lines)-1].Seq, nil
		}
	}
}
