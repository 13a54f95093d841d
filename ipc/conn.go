package ipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// conn is one client connection.
type conn struct {
	srv *Server
	nc  net.Conn
	lr  *lineReader
	uid uint32
	// enqLimit is this connection's enqueue bucket (see connLimit), made
	// under the server's limits of generation limitsGen.
	enqLimit  *rate.Limiter
	limitsGen atomic.Uint64

	// srvCtx ends when the server stops; ctx when the connection ends;
	// streamCtx also when the client stops sending (EOF), which cancels the
	// open-ended methods (wait, tail) while quick ones still get answered
	// to a client that half-closed.
	srvCtx       context.Context
	ctx          context.Context
	cancel       context.CancelFunc
	streamCtx    context.Context
	cancelStream context.CancelFunc

	// wmu serializes writes: one whole line at a time.
	wmu  sync.Mutex
	wbuf bytes.Buffer
	enc  *json.Encoder
	// out holds the lines appendResponse writes by hand, reused like wbuf.
	out    []byte
	broken bool

	// dmu orders read-deadline changes, so clearing the auth deadline can
	// never undo the interruption that shutdown set.
	dmu     sync.Mutex
	closing bool

	reqs     sync.WaitGroup
	inflight atomic.Int32
	// idle hands a request to the connection's runner goroutine while it
	// waits for one (see start); closed when the read loop ends.
	idle chan *request
}

func newConn(s *Server, base context.Context, nc net.Conn, uid uint32) *conn {
	gen := s.limitsGen.Load()
	l := s.limits.Load()
	c := &conn{srv: s, nc: nc, uid: uid, srvCtx: base,
		enqLimit: newLimiter(l.ConnEnqueueRate, l.ConnEnqueueBurst, DefaultConnEnqueueRate, DefaultConnEnqueueBurst)}
	c.limitsGen.Store(gen)
	c.lr = newLineReader(nc, min(authLineMax, s.opts.MaxLineBytes))
	c.ctx, c.cancel = context.WithCancel(base)
	c.streamCtx, c.cancelStream = context.WithCancel(c.ctx)
	c.enc = newLineEncoder(&c.wbuf)
	return c
}

// serve runs the connection to its end; it returns once every request
// goroutine it started has returned.
func (c *conn) serve() {
	stop := context.AfterFunc(c.ctx, c.interruptRead)
	defer stop()
	c.setReadDeadline(time.Now().Add(c.srv.opts.AuthTimeout))
	if c.authenticate() {
		c.setReadDeadline(time.Time{})
		c.idle = make(chan *request)
		c.reqs.Add(1)
		go c.runner()
		eof := c.readLoop()
		close(c.idle)
		if eof {
			c.cancelStream()
		} else {
			c.cancel()
		}
	}
	c.reqs.Wait()
	c.cancel()
	c.nc.Close()
}

func (c *conn) interruptRead() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.closing = true
	c.nc.SetReadDeadline(aLongTimeAgo())
}

func (c *conn) setReadDeadline(t time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !c.closing {
		c.nc.SetReadDeadline(t)
	}
}

// authenticate handles the first request, which must be a valid auth.v1.
// Every failure gets the same answer, so nothing tells a guesser how close
// they came.
func (c *conn) authenticate() bool {
	s := c.srv
	for {
		line, err := c.lr.next()
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				c.reply(nullID(), nil, rpcErr(CodeLimitExceeded, "line over the limit of %d bytes before authentication", c.lr.max))
			case isTimeout(err) && c.ctx.Err() == nil:
				c.reply(nullID(), nil, rpcErr(CodeUnauthorized, "unauthorized: no %s request within %s", MethodAuth, s.opts.AuthTimeout))
			}
			return false
		}
		if isBlank(line) {
			continue
		}
		req, id, perr := parseRequest(line)
		ok := perr == nil && req.Method == MethodAuth && !req.notification()
		if ok {
			var p AuthParams
			ok = decodeParams(req.Params, &p) == nil && s.checkToken(p.Token)
		}
		if !ok {
			// Failed attempts draw on one server-wide bucket: a guesser
			// gets the same answer, only slower, and every try is logged.
			if d := take(s.authLimit, time.Now()); d > 0 {
				s.log.Warn("ipc: authentication failed; slowing down repeated failures", "uid", c.uid, "delay", d)
				select {
				case <-time.After(d):
				case <-c.ctx.Done():
				}
			} else {
				s.log.Warn("ipc: authentication failed", "uid", c.uid)
			}
			c.reply(id, nil, rpcErr(CodeUnauthorized, "unauthorized"))
			return false
		}
		c.lr.max = s.opts.MaxLineBytes
		return c.reply(id, &AuthResult{OK: true, Version: s.opts.Version}, nil) == nil
	}
}

// readLoop reads requests after authentication and starts one goroutine per
// request or batch. It reports whether it ended at a clean EOF.
func (c *conn) readLoop() (eof bool) {
	for {
		line, err := c.lr.next()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				c.reply(nullID(), nil, rpcErr(CodeLimitExceeded, "request line over the limit of %d bytes", c.lr.max))
			}
			return errors.Is(err, io.EOF)
		}
		if first, ok := firstNonSpace(line); !ok {
			continue
		} else if first == '[' {
			c.startBatch(line)
			continue
		}
		req, id, perr := parseCall(line)
		if perr != nil {
			if req == nil || !req.notification() {
				c.reply(id, nil, perr)
			}
			continue
		}
		if !c.admit() {
			if !req.notification() {
				c.reply(id, nil, c.tooMany())
			}
			continue
		}
		c.start(req)
	}
}

// start runs req on the connection's runner when it is idle, else on a
// goroutine of its own, so requests still run side by side. The runner
// keeps the stack the first request's JSON decoding grew; a goroutine per
// request grew a fresh one every time (copystack was 6.7% of the
// daemon's CPU under 16 enqueuing clients).
func (c *conn) start(req *request) {
	c.reqs.Add(1)
	select {
	case c.idle <- req:
	default:
		go c.finish(req)
	}
}

// runner runs the requests start hands it until the read loop ends.
func (c *conn) runner() {
	defer c.reqs.Done()
	for req := range c.idle {
		c.finish(req)
	}
}

// finish handles one admitted request and gives back its slot.
func (c *conn) finish(req *request) {
	defer c.reqs.Done()
	defer c.inflight.Add(-1)
	c.handle(req)
}

// admit takes one of the connection's in-flight slots.
func (c *conn) admit() bool {
	if c.inflight.Add(1) > int32(c.srv.opts.MaxInFlight) {
		c.inflight.Add(-1)
		return false
	}
	return true
}

func (c *conn) tooMany() *RPCError {
	return rpcErr(CodeLimitExceeded, "too many requests in flight on this connection (limit %d)", c.srv.opts.MaxInFlight)
}

// handle runs one request and writes its response; a notification's
// response is dropped, as JSON-RPC says.
func (c *conn) handle(req *request) {
	res := c.run(req)
	if req.notification() {
		return
	}
	c.reply(req.ID, res.Result, res.Error)
}

// run runs one request and returns its response.
func (c *conn) run(req *request) *response {
	ctx := c.ctx
	if m := req.method(); m != nil && m.stream {
		ctx = c.streamCtx
	}
	result, err := c.call(ctx, req)
	return c.respond(ctx, req, result, err)
}

// respond makes the response to req from its result or error.
func (c *conn) respond(ctx context.Context, req *request, result any, err error) *response {
	r := &response{JSONRPC: "2.0", ID: req.ID}
	if r.ID == nil {
		r.ID = nullID()
	}
	shutdown := c.srvCtx.Err() != nil
	switch {
	case err == nil:
		r.Result = result
	case ctx.Err() != nil && !shutdown && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		r.Error = rpcErr(CodeInternal, "cancelled: the connection is closing")
	default:
		r.Error = toRPCError(err, shutdown)
	}
	return r
}

// call runs dispatch, turning a panic in the backend into an internal error
// for this request instead of a crash of the whole daemon.
func (c *conn) call(ctx context.Context, req *request) (result any, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.srv.log.Error("ipc: panic in request handler", "method", req.Method, "panic", v)
			result, err = nil, rpcErr(CodeInternal, "internal error")
		}
	}()
	return c.dispatch(ctx, req)
}

// reply writes a response. A result that cannot be encoded becomes an
// internal error, so the client always gets an answer to its id.
func (c *conn) reply(id json.RawMessage, result any, rerr *RPCError) error {
	err := c.write(&response{JSONRPC: "2.0", ID: id, Result: result, Error: rerr})
	var ee *encodeError
	if errors.As(err, &ee) {
		c.srv.log.Error("ipc: cannot encode result", "err", ee.err)
		err = c.write(&response{JSONRPC: "2.0", ID: id, Error: rpcErr(CodeInternal, "encode result: %v", ee.err)})
	}
	return err
}

// notify writes a notification.
func (c *conn) notify(method string, params any) error {
	return c.write(&notification{JSONRPC: "2.0", Method: method, Params: params})
}

type encodeError struct{ err error }

func (e *encodeError) Error() string { return "encode: " + e.err.Error() }

var errConnBroken = errors.New("connection closed")

// write sends one line. A failed or timed-out write leaves the stream in an
// unknown state, so it ends the connection.
func (c *conn) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.broken {
		return errConnBroken
	}
	line, err := c.encode(v)
	if err != nil {
		return err
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	_, err = c.nc.Write(line)
	if c.wbuf.Cap() > keepBufCap {
		c.wbuf = bytes.Buffer{}
	}
	if cap(c.out) > keepBufCap {
		c.out = nil
	}
	if err != nil {
		c.broken = true
		c.cancel()
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// rawLine is a reply already encoded, newline and all: a batch's array,
// whose entries writeBatch wrote by hand.
type rawLine []byte

// encode makes v's line, in a buffer of c's that stays valid until the
// next call; the caller holds wmu.
func (c *conn) encode(v any) ([]byte, error) {
	switch v := v.(type) {
	case rawLine:
		return v, nil
	case *response:
		if out, ok := appendResponse(c.out[:0], v); ok {
			c.out = out
			return out, nil
		}
	}
	c.wbuf.Reset()
	if err := c.enc.Encode(v); err != nil {
		return nil, &encodeError{err}
	}
	return c.wbuf.Bytes(), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
