package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"stq/engine"
)

// Backend is what the server needs from the daemon. The engine implements
// it; tests use an in-memory fake.
type Backend interface {
	Enqueue(ctx context.Context, req engine.EnqueueRequest) (engine.EnqueueResult, error)
	Cancel(ctx context.Context, req engine.CancelRequest) ([]*engine.Job, error)
	Get(ctx context.Context, id string) (*engine.Job, error)
	List(ctx context.Context, f engine.ListFilter) (engine.ListPage, error)
	// EnqueueMany stores jobs all or nothing in one commit; a refusal is an
	// *engine.BatchError naming the bad entry.
	EnqueueMany(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, error)
	// EnqueueEach stores jobs in one commit, each on its own: errs[i] is
	// the refusal of reqs[i]. A JSON-RPC batch of enqueues uses it.
	EnqueueEach(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, []error)
	Wait(ctx context.Context, ids []string) ([]*engine.Job, error) // blocks until all are terminal or ctx ends
	Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]engine.LogLine, error)
	// LogStart returns the seq after which the newest last lines of a job's
	// log (of those after afterSeq) begin: afterSeq when there are no more.
	LogStart(ctx context.Context, id string, afterSeq int64, last int) (int64, error)
	Subscribe(f engine.EventFilter) *engine.Subscription
	Stats(ctx context.Context) (engine.Stats, error)
	Recover(ctx context.Context) (engine.RecoverReport, error)
	Pause(ctx context.Context, queue string) error
	Resume(ctx context.Context, queue string) error
	Retry(ctx context.Context, id string) (*engine.Job, error)
	// Shutdown begins a graceful shutdown (as SIGTERM does) and returns
	// at once; Reload reads the configuration again and puts it in force.
	Shutdown(ctx context.Context) (engine.ShutdownResult, error)
	Reload(ctx context.Context) (engine.ReloadResult, error)
}

// JSON-RPC error codes. The -327xx/-326xx ones are the standard's; the
// -320xx ones are stq's application codes. Their numbers are part of the
// wire contract and never change.
const (
	CodeParseError     = -32700 // the line is not valid JSON or not valid UTF-8
	CodeInvalidRequest = -32600 // not a valid request object (or a batch)
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602 // wrong or unknown params, or validation failed
	CodeInternal       = -32603

	CodeUnauthorized  = -32000 // auth failed or missing; the server closes the connection
	CodeNotFound      = -32001 // no such job
	CodeConflict      = -32003 // the job already finished
	CodeUnavailable   = -32004 // the daemon is shutting down
	CodeLimitExceeded = -32005 // a size, count or rate bound was hit
	// CodeRateLimited: over the enqueue rate limit; the error data's
	// retry_after_ms says when to try again.
	CodeRateLimited = -32006
)

// Method names. Every method ends in a version suffix so that an
// incompatible change becomes a new method rather than a silent break.
const (
	MethodAuth        = "auth.v1"
	MethodEnqueue     = "dev.enqueue.v1"
	MethodEnqueueMany = "dev.enqueue_many.v1"
	MethodCancel      = "dev.cancel.v1"
	MethodGet         = "dev.get.v1"
	MethodList        = "dev.list.v1"
	MethodWait        = "dev.wait.v1"
	MethodTail        = "logs.tail.v1"
	MethodStats       = "admin.stats.v1"
	MethodRecover     = "admin.recover.v1"
	MethodPause       = "admin.pause.v1"
	MethodResume      = "admin.resume.v1"
	MethodRetry       = "dev.retry.v1"
	MethodShutdown    = "admin.shutdown.v1"
	MethodReload      = "admin.reload.v1"

	// NotifyLogsEvent is the method of the notifications logs.tail.v1 sends;
	// their params are an engine.Event.
	NotifyLogsEvent = "logs.event"
)

// Bounds of list-like requests.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10000
	MaxWaitIDs       = 10000
	// MaxTailLines bounds the lines of one non-following logs.tail.v1
	// response; "more" tells the client to ask again from the last seq.
	MaxTailLines = 10000
	// MaxBatch bounds the entries of a JSON-RPC batch and the jobs of one
	// dev.enqueue_many.v1.
	MaxBatch = engine.MaxEnqueueBatch
)

// RPCError is a JSON-RPC error object. Client methods return it (as
// *RPCError) for error responses, so callers can errors.As on it and switch
// on Code.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string {
	return "rpc error " + strconv.Itoa(e.Code) + ": " + e.Message
}

// AuthParams are the params of auth.v1.
type AuthParams struct {
	Token string `json:"token"`
}

// AuthResult is the result of auth.v1.
type AuthResult struct {
	OK      bool   `json:"ok"`
	Version string `json:"version"`
}

// GetParams are the params of dev.get.v1.
type GetParams struct {
	ID string `json:"id"`
}

// ListParams are the params of dev.list.v1. States are matched in any
// case. Cursor continues after the page whose next_cursor it is.
type ListParams struct {
	States  []string `json:"states,omitempty"`
	Queue   string   `json:"queue,omitempty"`
	Type    string   `json:"type,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Limit   int      `json:"limit,omitempty"`
	Cursor  string   `json:"cursor,omitempty"`
}

// ListResult is the result of dev.list.v1: one page, newest first.
// NextCursor, when not empty, is the cursor of the next page; empty means
// this page is the last.
type ListResult struct {
	Jobs       []*engine.Job `json:"jobs"`
	NextCursor string        `json:"next_cursor"`
}

// JobsResult is the result of dev.cancel.v1.
type JobsResult struct {
	Jobs []*engine.Job `json:"jobs"`
}

// EnqueueManyParams are the params of dev.enqueue_many.v1: enqueue
// requests, each with the members of dev.enqueue.v1's params.
type EnqueueManyParams struct {
	Jobs []engine.EnqueueRequest `json:"jobs"`
	// BaseEnv is the base environment of every job in Jobs that has none
	// of its own (engine.EnqueueRequest.BaseEnv), sent and encoded once
	// for the whole batch rather than once per job.
	BaseEnv map[string]string `json:"base_env,omitempty"`
	// Reply is the form of the result: ReplyJobs (or empty) for each job
	// as stored, ReplyBrief for its id, state and generation only. A bulk
	// loader that never reads the jobs back spares the daemon encoding
	// them and itself decoding them: most of a large call's time.
	Reply string `json:"reply,omitempty"`
}

// The forms of a dev.enqueue_many.v1 result (EnqueueManyParams.Reply).
const (
	ReplyJobs  = "jobs"
	ReplyBrief = "brief"
)

// validReply reports a Reply the server takes; empty means ReplyJobs.
func validReply(r string) bool { return r == "" || r == ReplyJobs || r == ReplyBrief }

// EnqueueManyResult is the result of dev.enqueue_many.v1: one entry per
// request, in order.
type EnqueueManyResult struct {
	Results []engine.EnqueueResult `json:"results"`
}

// EnqueueManyBriefResult is the result of dev.enqueue_many.v1 with reply
// "brief": one entry per request, in order.
type EnqueueManyBriefResult struct {
	Results []Enqueued `json:"results"`
}

// Enqueued is one job of a brief dev.enqueue_many.v1 result: what a
// caller needs to follow the job, without the job.
type Enqueued struct {
	ID string `json:"id"`
	// State is QUEUED, or SUPERSEDED when the job's generation was
	// already outdated on arrival.
	State      engine.State `json:"state"`
	Generation int64        `json:"generation"`
	// Superseded lists the ids of older QUEUED jobs this one superseded.
	Superseded []string `json:"superseded,omitempty"`
}

// BatchErrorData is the error data of a refused dev.enqueue_many.v1: the
// index of the entry that was refused. Nothing of the batch was stored.
type BatchErrorData struct {
	Index int `json:"index"`
}

// WaitParams are the params of dev.wait.v1. A nil Timeout waits for as long
// as the connection stays open.
type WaitParams struct {
	IDs     []string         `json:"ids"`
	Timeout *engine.Duration `json:"timeout,omitempty"`
}

// WaitResult is the result of dev.wait.v1. TimedOut is set when the timeout
// passed first; Jobs then holds the jobs as they are now.
type WaitResult struct {
	Jobs     []*engine.Job `json:"jobs"`
	TimedOut bool          `json:"timed_out"`
}

// TailParams are the params of logs.tail.v1.
type TailParams struct {
	JobID    string `json:"job_id,omitempty"`
	Queue    string `json:"queue,omitempty"`
	Follow   bool   `json:"follow,omitempty"`
	AfterSeq int64  `json:"after_seq,omitempty"`
	// Last, when set, starts with the newest Last stored lines (of those
	// after AfterSeq) instead of all of them; with Follow, live lines
	// follow. It needs JobID.
	Last *int `json:"last,omitempty"`
}

// LinesResult is the result of logs.tail.v1 without follow. More is set when
// the response stopped at MaxTailLines; ask again with after_seq set to the
// last line's seq.
type LinesResult struct {
	Lines []engine.LogLine `json:"lines"`
	More  bool             `json:"more"`
}

// TailResult is the final response of logs.tail.v1 with follow and a job_id:
// the job in its terminal state.
type TailResult struct {
	Job *engine.Job `json:"job"`
}

// wire forms

// request is a decoded request line. Params stays raw until the method is
// known, so it can be decoded strictly into the method's own type.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`

	m *method // the table entry, looked up once by method()
}

// method is the request's entry in the method table, nil for a method the
// server does not answer. The read loop looks it up once; validation,
// dispatch and the choice of context reuse it.
func (r *request) method() *method {
	if r.m == nil {
		r.m = lookup(r.Method)
	}
	return r.m
}

// notification reports a request without an id member, which JSON-RPC
// says is executed and never answered. An explicit "id": null is a request
// like any other, answered with a null id.
func (r *request) notification() bool { return len(r.ID) == 0 }

// response is an outgoing reply. ID is the request's id verbatim, or null.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *RPCError       `json:"error,omitempty"`
}

// notification is an outgoing message that expects no reply.
type notification struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// nullID is the id of responses to requests whose id is unknown.
func nullID() json.RawMessage { return json.RawMessage("null") }

func rpcErr(code int, format string, args ...any) *RPCError {
	return &RPCError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidParams(format string, args ...any) *RPCError {
	return rpcErr(CodeInvalidParams, format, args...)
}

// toRPCError maps a backend (or handler) error to its wire form. shutdown
// reports whether the server is stopping, which turns a cancelled context
// into "unavailable" rather than an internal error.
func toRPCError(err error, shutdown bool) *RPCError {
	var re *RPCError
	switch {
	case errors.As(err, &re):
		return re
	case errors.As(err, new(*engine.BatchError)):
		return toRPCError(batchRefusal(err), shutdown)
	case errors.Is(err, engine.ErrInvalid),
		// A request the job's state does not allow (dev.retry.v1 of a
		// QUEUED job): the caller's mistake, not a daemon failure.
		errors.Is(err, engine.ErrInvalidTransition):
		return &RPCError{Code: CodeInvalidParams, Message: err.Error()}
	case errors.Is(err, engine.ErrNotFound):
		return &RPCError{Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, engine.ErrFinished):
		return &RPCError{Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, engine.ErrClosed):
		return &RPCError{Code: CodeUnavailable, Message: err.Error()}
	case shutdown && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return &RPCError{Code: CodeUnavailable, Message: "daemon shutting down"}
	default:
		return &RPCError{Code: CodeInternal, Message: err.Error()}
	}
}
