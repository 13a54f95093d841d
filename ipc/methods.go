package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"stq/engine"
)

// method is one entry of the method table: everything the server knows
// about a method. Methods() (and so docs/API.md's completeness test),
// request validation and dispatch all read the table, so adding a method
// is one entry plus its handler.
type method struct {
	name    string
	summary string
	// stream marks the open-ended methods, which a client's half-close
	// cancels (see conn.handle).
	stream bool
	// decode reads params strictly into the method's own type and checks
	// everything about them that needs no backend. It is pure, so a
	// request it rejects never reaches the backend.
	decode func(raw json.RawMessage) (any, error)
	// handle calls the backend with what decode returned.
	handle func(c *conn, ctx context.Context, params any) (any, error)
	// params returns a new zero value of the method's params type, so
	// tests can hold decoders to each other on every type the wire has.
	params func() any
}

// def builds a table entry from a params type P, a result type R, an
// optional check and a handler.
func def[P, R any](name, summary string, check func(*P) error, handle func(*conn, context.Context, *P) (R, error)) *method {
	return &method{
		name: name, summary: summary,
		decode: func(raw json.RawMessage) (any, error) {
			p := new(P)
			if err := decodeParams(raw, p); err != nil {
				return nil, err
			}
			if check != nil {
				if err := check(p); err != nil {
					return nil, err
				}
			}
			return p, nil
		},
		handle: func(c *conn, ctx context.Context, p any) (any, error) { return handle(c, ctx, p.(*P)) },
		params: func() any { return new(P) },
	}
}

// methodTable lists every method in documentation order. auth.v1 is
// answered by conn.authenticate, before anything else; its entry is here
// for Methods() and the docs.
var methodTable = []*method{
	def(MethodAuth, "authenticate the connection with the daemon's token; must come first", nil, handleAuthAgain),
	def(MethodEnqueue, "add a job", nil, handleEnqueue),
	def(MethodEnqueueMany, "add many jobs, all or nothing, in one commit", checkEnqueueMany, handleEnqueueMany),
	def(MethodCancel, "cancel a job by id, or the live jobs of a subject", nil, handleCancel),
	def(MethodGet, "read one job with its attempt history", checkGet, handleGet),
	def(MethodList, "list jobs newest first, one page at a time", checkList, handleList),
	stream(def(MethodWait, "wait until jobs end", checkWait, handleWait)),
	stream(def(MethodTail, "read a job's output, or follow output and job events", checkTail, handleTail)),
	def(MethodStats, "the daemon's state and job counts", nil, handleStats),
	def(MethodRecover, "end the attempts of jobs whose daemon died, now", nil, handleRecover),
	def(MethodPause, "stop a queue from starting jobs", checkQueue, handlePause),
	def(MethodResume, "let a paused queue start jobs again", checkQueue, handleResume),
	def(MethodRetry, "re-queue a FAILED, CANCELLED or EXPIRED job", checkRetry, handleRetry),
	def(MethodShutdown, "stop the daemon gracefully, as SIGTERM does", nil, handleShutdown),
	def(MethodReload, "read config.toml again and put it in force", nil, handleReload),
}

func stream(m *method) *method { m.stream = true; return m }

// lookup finds a method by name; nil when the server does not answer it.
func lookup(name string) *method {
	for _, m := range methodTable {
		if m.name == name {
			return m
		}
	}
	return nil
}

// Methods lists every method the server answers, in documentation order.
func Methods() []string {
	names := make([]string, len(methodTable))
	for i, m := range methodTable {
		names[i] = m.name
	}
	return names
}

// MethodSummary is the one-line description of a method; empty for a name
// the server does not answer.
func MethodSummary(name string) string {
	if m := lookup(name); m != nil {
		return m.summary
	}
	return ""
}

// Params of the methods without params of their own.
type (
	statsParams    struct{}
	recoverParams  struct{}
	shutdownParams struct{}
	reloadParams   struct{}
)

// QueueParams are the params of admin.pause.v1 and admin.resume.v1.
type QueueParams struct {
	Queue string `json:"queue"`
}

// RetryParams are the params of dev.retry.v1.
type RetryParams struct {
	ID string `json:"id"`
}

// decodeCall decodes a request's params with its method's decode. Errors
// map to codes with toRPCError (CodeInvalidParams; CodeMethodNotFound for
// a method the server does not answer).
func decodeCall(req *request) (any, error) {
	m := req.method()
	if m == nil || m.name == MethodAuth {
		return nil, rpcErr(CodeMethodNotFound, "method not found: %q", req.Method)
	}
	return m.decode(req.Params)
}

// dispatch decodes a request's params, calls the backend and returns the
// result to encode. Errors are mapped to codes by the caller.
func (c *conn) dispatch(ctx context.Context, req *request) (any, error) {
	params, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	return req.method().handle(c, ctx, params)
}

func handleAuthAgain(*conn, context.Context, *AuthParams) (*AuthResult, error) {
	return nil, rpcErr(CodeInvalidRequest, "already authenticated")
}

func handleEnqueue(c *conn, ctx context.Context, p *engine.EnqueueRequest) (*engine.EnqueueResult, error) {
	if err := c.admitEnqueues(1); err != nil {
		return nil, err
	}
	res, err := c.srv.backend.Enqueue(ctx, *p)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func checkEnqueueMany(p *EnqueueManyParams) error {
	switch {
	case len(p.Jobs) == 0:
		return invalidParams("jobs must not be empty")
	case len(p.Jobs) > MaxBatch:
		return invalidParams("jobs has %d entries, over the limit of %d", len(p.Jobs), MaxBatch)
	case !validReply(p.Reply):
		return invalidParams("reply must be %q or %q, not %q", ReplyJobs, ReplyBrief, p.Reply)
	}
	return nil
}

// handleEnqueueMany answers with an *EnqueueManyResult, or with an
// *EnqueueManyBriefResult when p.Reply asks for it.
func handleEnqueueMany(c *conn, ctx context.Context, p *EnqueueManyParams) (any, error) {
	if err := c.admitEnqueues(len(p.Jobs)); err != nil {
		return nil, err
	}
	if p.BaseEnv != nil {
		// One map for all: the engine then encodes it once.
		for i := range p.Jobs {
			if p.Jobs[i].BaseEnv == nil {
				p.Jobs[i].BaseEnv = p.BaseEnv
			}
		}
	}
	res, err := c.srv.backend.EnqueueMany(ctx, p.Jobs)
	if err != nil {
		return nil, batchRefusal(err)
	}
	if p.Reply == ReplyBrief {
		return briefResults(res), nil
	}
	return &EnqueueManyResult{Results: res}, nil
}

func briefResults(res []engine.EnqueueResult) *EnqueueManyBriefResult {
	out := make([]Enqueued, len(res))
	for i, r := range res {
		out[i].Superseded = r.Superseded
		if r.Job != nil { // never nil from the engine; a reply beats a panic
			out[i].ID, out[i].State, out[i].Generation = r.Job.ID, r.Job.State, r.Job.Generation
		}
	}
	return &EnqueueManyBriefResult{Results: out}
}

// batchRefusal gives a refused all-or-nothing batch its wire form: the
// code its cause maps to, with the bad entry's index in the data.
func batchRefusal(err error) error {
	var be *engine.BatchError
	if !errors.As(err, &be) {
		return err
	}
	e := toRPCError(be.Err, false)
	e = rpcErr(e.Code, "jobs[%d]: %s; nothing was stored", be.Index, e.Message)
	e.Data, _ = json.Marshal(BatchErrorData{Index: be.Index})
	return e
}

func handleCancel(c *conn, ctx context.Context, p *engine.CancelRequest) (*JobsResult, error) {
	jobs, err := c.srv.backend.Cancel(ctx, *p)
	if err != nil {
		return nil, err
	}
	return &JobsResult{Jobs: nonNil(jobs)}, nil
}

func checkGet(p *GetParams) error { return idRequired(p.ID) }

// idRequired refuses a request for one job that names none.
func idRequired(id string) error {
	if id == "" {
		return invalidParams("id is required")
	}
	return nil
}

func handleGet(c *conn, ctx context.Context, p *GetParams) (*engine.Job, error) {
	return c.srv.backend.Get(ctx, p.ID)
}

// checkList checks a list request and fills in the default limit.
func checkList(p *ListParams) error {
	switch {
	case p.Limit < 0:
		return invalidParams("limit must not be negative, got %d", p.Limit)
	case p.Limit == 0:
		p.Limit = DefaultListLimit
	case p.Limit > MaxListLimit:
		return invalidParams("limit is %d, over the maximum of %d", p.Limit, MaxListLimit)
	}
	for _, s := range p.States {
		if _, err := engine.ParseState(s); err != nil {
			return err
		}
	}
	return nil
}

func handleList(c *conn, ctx context.Context, p *ListParams) (*ListResult, error) {
	f := engine.ListFilter{Queue: p.Queue, Type: p.Type, Subject: p.Subject, Limit: p.Limit, Cursor: p.Cursor}
	for _, s := range p.States {
		st, _ := engine.ParseState(s) // checked by checkList
		f.States = append(f.States, st)
	}
	page, err := c.srv.backend.List(ctx, f)
	if err != nil {
		return nil, err
	}
	return &ListResult{Jobs: nonNil(page.Jobs), NextCursor: page.Next}, nil
}

func checkWait(p *WaitParams) error {
	switch {
	case len(p.IDs) == 0:
		return invalidParams("ids must not be empty")
	case len(p.IDs) > MaxWaitIDs:
		return invalidParams("ids has %d entries, over the limit of %d", len(p.IDs), MaxWaitIDs)
	case p.Timeout != nil && *p.Timeout < 0:
		// engine.Duration refuses "-1s"; this also catches a days value
		// that overflows ("1e300d", "infd") should ParseDuration ever let
		// one through as negative again.
		return invalidParams("timeout is negative or out of range")
	}
	for i, id := range p.IDs {
		if id == "" {
			return invalidParams("ids[%d] must not be empty", i)
		}
	}
	return nil
}

func handleWait(c *conn, ctx context.Context, p *WaitParams) (*WaitResult, error) {
	return c.wait(ctx, p)
}

func checkTail(p *TailParams) error {
	switch {
	case p.AfterSeq < 0:
		return invalidParams("after_seq must not be negative, got %d", p.AfterSeq)
	case p.JobID != "" && p.Queue != "":
		return invalidParams("give job_id or queue, not both")
	case !p.Follow && p.JobID == "":
		return invalidParams("job_id is required unless follow is true")
	case p.Last != nil && *p.Last < 0:
		return invalidParams("last must not be negative, got %d", *p.Last)
	case p.Last != nil && p.JobID == "":
		return invalidParams("last needs job_id: following every job sends no stored lines")
	}
	return nil
}

func handleTail(c *conn, ctx context.Context, p *TailParams) (any, error) {
	return c.tail(ctx, p)
}

func handleStats(c *conn, ctx context.Context, _ *statsParams) (*engine.Stats, error) {
	return ptr(c.srv.backend.Stats(ctx))
}

// ptr is a backend's answer as the pointer a handler returns; nil with an
// error.
func ptr[T any](v T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func handleRecover(c *conn, ctx context.Context, _ *recoverParams) (*engine.RecoverReport, error) {
	rep, err := c.srv.backend.Recover(ctx)
	if err != nil {
		return nil, err
	}
	if rep.Recovered == nil {
		rep.Recovered = []engine.RecoveredJob{}
	}
	return &rep, nil
}

func checkQueue(p *QueueParams) error {
	if p.Queue == "" {
		return invalidParams("queue is required")
	}
	return nil
}

func handlePause(c *conn, ctx context.Context, p *QueueParams) (*QueueResult, error) {
	if err := c.srv.backend.Pause(ctx, p.Queue); err != nil {
		return nil, err
	}
	return &QueueResult{Queue: p.Queue, Paused: true}, nil
}

func handleResume(c *conn, ctx context.Context, p *QueueParams) (*QueueResult, error) {
	if err := c.srv.backend.Resume(ctx, p.Queue); err != nil {
		return nil, err
	}
	return &QueueResult{Queue: p.Queue, Paused: false}, nil
}

func checkRetry(p *RetryParams) error { return idRequired(p.ID) }

func handleRetry(c *conn, ctx context.Context, p *RetryParams) (*engine.Job, error) {
	return c.srv.backend.Retry(ctx, p.ID)
}

// handleShutdown answers once the shutdown has begun; the daemon then
// stops as on SIGTERM, and this connection is closed with the others.
func handleShutdown(c *conn, ctx context.Context, _ *shutdownParams) (*engine.ShutdownResult, error) {
	return ptr(c.srv.backend.Shutdown(ctx))
}

func handleReload(c *conn, ctx context.Context, _ *reloadParams) (*engine.ReloadResult, error) {
	res, err := c.srv.backend.Reload(ctx)
	if err != nil {
		return nil, err
	}
	if res.RestartNeeded == nil {
		res.RestartNeeded = []string{}
	}
	return &res, nil
}

// wait blocks until every job is terminal, the timeout passes (a result with
// timed_out, not an error: running out of patience is an answer) or the
// connection ends. p has passed decodeCall.
func (c *conn) wait(ctx context.Context, p *WaitParams) (*WaitResult, error) {
	b := c.srv.backend
	wctx := ctx
	if p.Timeout != nil {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, time.Duration(*p.Timeout))
		defer cancel()
	}
	jobs, err := b.Wait(wctx, p.IDs)
	if err == nil {
		return &WaitResult{Jobs: nonNil(jobs)}, nil
	}
	if p.Timeout == nil || ctx.Err() != nil || wctx.Err() == nil ||
		!(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return nil, err
	}
	// Timed out: report the jobs as they are now. A zero timeout makes this
	// a poll, so "timed out" is only claimed when something is still live.
	res := &WaitResult{Jobs: make([]*engine.Job, 0, len(p.IDs))}
	for _, id := range p.IDs {
		j, err := b.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		res.Jobs = append(res.Jobs, j)
		if !j.State.Terminal() {
			res.TimedOut = true
		}
	}
	return res, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil(jobs []*engine.Job) []*engine.Job {
	if jobs == nil {
		return []*engine.Job{}
	}
	return jobs
}

// QueueResult is the result of admin.pause.v1 and admin.resume.v1.
type QueueResult struct {
	Queue  string `json:"queue"`
	Paused bool   `json:"paused"`
}
