package ipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"stq/engine"
)

// Params of the methods without params of their own: distinct types, so
// decodeCall's result says which method it is for.
type (
	statsParams   struct{}
	recoverParams struct{}
)

// QueueParams are the params of admin.pause.v1 and admin.resume.v1.
type QueueParams struct {
	Queue string `json:"queue"`
}

// RetryParams are the params of dev.retry.v1.
type RetryParams struct {
	ID string `json:"id"`
}

// pauseParams and resumeParams tell the two queue methods apart.
type (
	pauseParams  QueueParams
	resumeParams QueueParams
)

// decodeCall decodes a request's params strictly into the method's own type
// and checks everything about them that needs no backend. It is pure: the
// server calls it before anything reaches the backend, so a request it
// rejects never does. The result is one of *engine.EnqueueRequest,
// *engine.CancelRequest, *GetParams, *engine.ListFilter (limit and states
// already checked and defaulted), *WaitParams, *TailParams, *statsParams or
// *recoverParams. Errors map to codes with toRPCError (CodeInvalidParams;
// CodeMethodNotFound for a method the server does not answer).
func decodeCall(req *request) (any, error) {
	switch req.Method {
	case MethodEnqueue:
		var p engine.EnqueueRequest
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		return &p, nil

	case MethodCancel:
		var p engine.CancelRequest
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		return &p, nil

	case MethodGet:
		var p GetParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		if p.ID == "" {
			return nil, invalidParams("id is required")
		}
		return &p, nil

	case MethodList:
		return decodeList(req.Params)

	case MethodWait:
		var p WaitParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		switch {
		case len(p.IDs) == 0:
			return nil, invalidParams("ids must not be empty")
		case len(p.IDs) > MaxWaitIDs:
			return nil, invalidParams("ids has %d entries, over the limit of %d", len(p.IDs), MaxWaitIDs)
		case p.Timeout != nil && *p.Timeout < 0:
			// engine.Duration refuses "-1s"; this also catches a days value
			// that overflows ("1e300d", "infd") should ParseDuration ever
			// let one through as negative again.
			return nil, invalidParams("timeout is negative or out of range")
		}
		for i, id := range p.IDs {
			if id == "" {
				return nil, invalidParams("ids[%d] must not be empty", i)
			}
		}
		return &p, nil

	case MethodTail:
		var p TailParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		switch {
		case p.AfterSeq < 0:
			return nil, invalidParams("after_seq must not be negative, got %d", p.AfterSeq)
		case p.JobID != "" && p.Queue != "":
			return nil, invalidParams("give job_id or queue, not both")
		case !p.Follow && p.JobID == "":
			return nil, invalidParams("job_id is required unless follow is true")
		}
		return &p, nil

	case MethodStats:
		var p statsParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		return &p, nil

	case MethodRecover:
		var p recoverParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		return &p, nil

	case MethodPause, MethodResume:
		var p QueueParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		if p.Queue == "" {
			return nil, invalidParams("queue is required")
		}
		if req.Method == MethodPause {
			return (*pauseParams)(&p), nil
		}
		return (*resumeParams)(&p), nil

	case MethodRetry:
		var p RetryParams
		if err := decodeParams(req.Params, &p); err != nil {
			return nil, err
		}
		if p.ID == "" {
			return nil, invalidParams("id is required")
		}
		return &p, nil
	}
	return nil, rpcErr(CodeMethodNotFound, "method not found: %q", req.Method)
}

func decodeList(raw json.RawMessage) (*engine.ListFilter, error) {
	var p ListParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	f := engine.ListFilter{Queue: p.Queue, Type: p.Type, Subject: p.Subject, Limit: p.Limit}
	switch {
	case p.Limit < 0:
		return nil, invalidParams("limit must not be negative, got %d", p.Limit)
	case p.Limit == 0:
		f.Limit = DefaultListLimit
	case p.Limit > MaxListLimit:
		return nil, invalidParams("limit is %d, over the maximum of %d", p.Limit, MaxListLimit)
	}
	for _, s := range p.States {
		st, err := engine.ParseState(s)
		if err != nil {
			return nil, err
		}
		f.States = append(f.States, st)
	}
	return &f, nil
}

// dispatch decodes a request's params, calls the backend and returns the
// result to encode. Errors are mapped to codes by the caller.
func (c *conn) dispatch(ctx context.Context, req *request) (any, error) {
	params, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	b := c.srv.backend
	switch p := params.(type) {
	case *engine.EnqueueRequest:
		if err := c.admitEnqueue(); err != nil {
			return nil, err
		}
		res, err := b.Enqueue(ctx, *p)
		if err != nil {
			return nil, err
		}
		return &res, nil

	case *engine.CancelRequest:
		jobs, err := b.Cancel(ctx, *p)
		if err != nil {
			return nil, err
		}
		return &JobsResult{Jobs: nonNil(jobs)}, nil

	case *GetParams:
		return b.Get(ctx, p.ID)

	case *engine.ListFilter:
		jobs, err := b.List(ctx, *p)
		if err != nil {
			return nil, err
		}
		return &JobsResult{Jobs: nonNil(jobs)}, nil

	case *WaitParams:
		return c.wait(ctx, p)

	case *TailParams:
		return c.tail(ctx, p)

	case *statsParams:
		st, err := b.Stats(ctx)
		if err != nil {
			return nil, err
		}
		return &st, nil

	case *recoverParams:
		rep, err := b.Recover(ctx)
		if err != nil {
			return nil, err
		}
		if rep.Recovered == nil {
			rep.Recovered = []engine.RecoveredJob{}
		}
		return &rep, nil

	case *pauseParams:
		if err := b.Pause(ctx, p.Queue); err != nil {
			return nil, err
		}
		return &QueueResult{Queue: p.Queue, Paused: true}, nil

	case *resumeParams:
		if err := b.Resume(ctx, p.Queue); err != nil {
			return nil, err
		}
		return &QueueResult{Queue: p.Queue, Paused: false}, nil

	case *RetryParams:
		return b.Retry(ctx, p.ID)
	}
	return nil, rpcErr(CodeInternal, "no handler for method %q", req.Method)
}

// wait blocks until every job is terminal, the timeout passes (a result with
// timed_out, not an error: running out of patience is an answer) or the
// connection ends. p has passed decodeCall.
func (c *conn) wait(ctx context.Context, p *WaitParams) (any, error) {
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

// decodeParams decodes params strictly into v: unknown members are an
// error, so a misspelled option fails loudly instead of being ignored.
// Absent or null params mean {}.
func decodeParams(raw json.RawMessage, v any) error {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if isNullOrEmpty(raw) {
		return nil
	}
	if raw[0] != '{' {
		return invalidParams("invalid params: params must be an object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, engine.ErrInvalid) {
			return invalidParams("%s", err.Error())
		}
		return invalidParams("invalid params: %s", describeJSONError(err))
	}
	return nil
}

// describeJSONError rewords encoding/json errors for the wire: they name Go
// types, which mean nothing to a client in another language.
func describeJSONError(err error) string {
	// Only a bare type error carries the field's name; one wrapped by a
	// type's own UnmarshalJSON (engine.Duration) does not, and its Go-level
	// tail is cut off below.
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s must be %s, got %s", field, jsonKind(te.Type), te.Value)
	}
	msg := trimJSONPrefix(err.Error())
	if i := strings.Index(msg, ": json: "); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

func trimJSONPrefix(s string) string { return strings.TrimPrefix(s, "json: ") }

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// QueueResult is the result of admin.pause.v1 and admin.resume.v1.
type QueueResult struct {
	Queue  string `json:"queue"`
	Paused bool   `json:"paused"`
}

// admitEnqueue applies the connection's and the server's enqueue buckets.
// A refused request consumes nothing from either.
func (c *conn) admitEnqueue() error {
	now := time.Now()
	for _, l := range []*rate.Limiter{c.enqLimit, c.srv.enqLimit} {
		if l == nil {
			continue // a conn or server built without limits (tests)
		}
		if d := take(l, now); d > 0 {
			return rateLimited(d)
		}
	}
	return nil
}

func rateLimited(d time.Duration) *RPCError {
	// Round up: a client that waits exactly this long must get through.
	ms := max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
	e := rpcErr(CodeRateLimited, "rate limited: too many enqueues; retry in %dms", ms)
	e.Data, _ = json.Marshal(RateLimitedData{RetryAfterMS: ms})
	return e
}
