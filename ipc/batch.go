package ipc

import (
	"bytes"
	"encoding/json"
	"sync"
	"unicode/utf8"

	"stq/engine"
)

// startBatch answers a JSON-RPC batch (a JSON array of requests) with one
// array of responses, in the order of the requests that get one. A batch
// takes one in-flight slot; its entries run side by side within it, and
// its enqueues are stored together, in one commit.
func (c *conn) startBatch(line []byte) {
	var entries []json.RawMessage
	if !utf8.Valid(line) {
		c.reply(nullID(), nil, rpcErr(CodeParseError, "parse error: invalid UTF-8"))
		return
	}
	if err := json.Unmarshal(line, &entries); err != nil {
		c.reply(nullID(), nil, rpcErr(CodeParseError, "parse error: %s", trimJSONPrefix(err.Error())))
		return
	}
	switch {
	case len(entries) == 0:
		c.reply(nullID(), nil, rpcErr(CodeInvalidRequest, "invalid request: empty batch"))
		return
	case len(entries) > MaxBatch:
		c.reply(nullID(), nil, rpcErr(CodeLimitExceeded, "batch of %d requests, over the limit of %d; nothing was run", len(entries), MaxBatch))
		return
	}
	if !c.admit() {
		c.reply(nullID(), nil, c.tooMany())
		return
	}
	c.reqs.Add(1)
	go func() {
		defer c.reqs.Done()
		defer c.inflight.Add(-1)
		c.writeBatch(c.runBatch(entries))
	}()
}

// runBatch runs a batch's entries and returns one response per entry,
// nil for notifications.
func (c *conn) runBatch(entries []json.RawMessage) []*response {
	out := make([]*response, len(entries))
	reqs := make([]*request, len(entries))
	var enqueues []int
	for i, raw := range entries {
		req, id, perr := parseCall(raw)
		reqs[i] = req
		if perr != nil {
			if req == nil || !req.notification() {
				out[i] = &response{JSONRPC: "2.0", ID: id, Error: perr}
			}
			continue
		}
		if req.Method == MethodEnqueue {
			enqueues = append(enqueues, i)
		}
	}
	var wg sync.WaitGroup
	// Entries run at most MaxInFlight at a time, as they would on their own.
	sem := make(chan struct{}, c.srv.opts.MaxInFlight)
	for i, req := range reqs {
		if req == nil || out[i] != nil || req.Method == MethodEnqueue {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if r := c.run(req); !req.notification() {
				out[i] = r
			}
		}()
	}
	c.enqueueTogether(reqs, enqueues, out)
	wg.Wait()
	return out
}

// enqueueTogether runs the batch's dev.enqueue.v1 entries (at idx) as one
// store step, each still answered, validated and rate-limited on its own.
func (c *conn) enqueueTogether(reqs []*request, idx []int, out []*response) {
	var (
		params []engine.EnqueueRequest
		owners []int
	)
	fail := func(i int, err error) {
		if !reqs[i].notification() {
			out[i] = c.respond(c.ctx, reqs[i], nil, err)
		}
	}
	for _, i := range idx {
		p, err := decodeCall(reqs[i])
		if err == nil {
			err = c.admitEnqueues(1)
		}
		if err != nil {
			fail(i, err)
			continue
		}
		params = append(params, *p.(*engine.EnqueueRequest))
		owners = append(owners, i)
	}
	if len(params) == 0 {
		return
	}
	results, errs := c.enqueueEach(params)
	for k, i := range owners {
		if errs[k] != nil {
			fail(i, errs[k])
			continue
		}
		if !reqs[i].notification() {
			out[i] = c.respond(c.ctx, reqs[i], &results[k], nil)
		}
	}
}

// enqueueEach calls the backend, turning a panic into an internal error
// for every entry, as call does for one request.
func (c *conn) enqueueEach(params []engine.EnqueueRequest) (results []engine.EnqueueResult, errs []error) {
	defer func() {
		if v := recover(); v != nil {
			c.srv.log.Error("ipc: panic in request handler", "method", MethodEnqueue, "panic", v)
			results, errs = make([]engine.EnqueueResult, len(params)), make([]error, len(params))
			for i := range errs {
				errs[i] = rpcErr(CodeInternal, "internal error")
			}
		}
	}()
	return c.srv.backend.EnqueueEach(c.ctx, params)
}

// writeBatch writes the responses of a batch as one array, leaving out the
// nil ones (notifications); a batch of notifications only gets nothing. A
// result that cannot be encoded becomes an internal error for its entry
// alone.
func (c *conn) writeBatch(out []*response) {
	line := rawLine{'['}
	for _, r := range out {
		if r == nil {
			continue
		}
		if len(line) > 1 {
			line = append(line, ',')
		}
		if b, ok := appendResponse(line, r); ok {
			line = b[:len(b)-1] // without its newline
			continue
		}
		var buf bytes.Buffer
		enc := newLineEncoder(&buf)
		if err := enc.Encode(r); err != nil {
			c.srv.log.Error("ipc: cannot encode result", "err", err)
			buf.Reset()
			enc.Encode(&response{JSONRPC: "2.0", ID: r.ID, Error: rpcErr(CodeInternal, "encode result: %v", err)})
		}
		line = append(line, bytes.TrimRight(buf.Bytes(), "\n")...)
	}
	if len(line) == 1 {
		return
	}
	c.write(append(line, "]\n"...))
}
