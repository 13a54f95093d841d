package ipc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"unicode/utf8"
)

// Defaults of ServerOptions.
const (
	DefaultMaxLineBytes    = 2 << 20
	DefaultMaxConns        = 256
	DefaultMaxInFlight     = 64
	DefaultAuthTimeout     = 5 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// authLineMax bounds lines before authentication: an auth.v1 request is
// tiny, so an unauthenticated peer never gets to make the server buffer
// megabytes.
const authLineMax = 4 << 10

// rejectWriteTimeout bounds the one error line written to a connection that
// is refused at accept time, so the accept loop never waits on a peer.
const rejectWriteTimeout = time.Second

// aLongTimeAgo is a deadline in the past, used to interrupt blocked I/O.
func aLongTimeAgo() time.Time { return time.Unix(1, 0) }

// ServerOptions configure a Server. Zero fields take the defaults above.
type ServerOptions struct {
	// Token is the shared secret clients send in auth.v1. Required. Only
	// its SHA-256 is kept; it is never logged.
	Token string
	// Version is reported to clients by auth.v1.
	Version string
	// AllowedUIDs are the peer uids that may connect. Nil means the
	// daemon's own uid and root; an empty non-nil list lets no one in.
	AllowedUIDs []uint32
	// MaxLineBytes bounds one request line, not counting the newline.
	MaxLineBytes int
	// MaxConns bounds open connections; more are answered with
	// CodeLimitExceeded and closed.
	MaxConns int
	// MaxInFlight bounds the requests one connection may have running at
	// once; more are answered with CodeLimitExceeded.
	MaxInFlight int
	// AuthTimeout is how long a new connection has to authenticate, counted
	// from accept (not per read), so trickling bytes does not extend it.
	AuthTimeout time.Duration
	// WriteTimeout bounds every write; a client that stops reading is
	// disconnected after it rather than holding a handler forever.
	WriteTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for connections to end
	// after its context is cancelled, before closing them hard.
	ShutdownTimeout time.Duration
	// Limits are the token buckets on enqueues and failed auths.
	Limits RateLimits
	// Logger receives refusals and errors; nil discards them.
	Logger *slog.Logger
	// Observer hears of connections and rate-limit refusals; nil: no one.
	Observer ServerObserver
}

// Server answers API requests on a listener. Create it with NewServer.
type Server struct {
	backend   Backend
	opts      ServerOptions
	tokenHash [sha256.Size]byte
	log       *slog.Logger
	// err is a configuration error, reported by Serve: a server without a
	// token or a backend must not serve anyone.
	err error

	enqLimit  *rate.Limiter // enqueues, all connections
	authLimit *rate.Limiter // failed auths, all connections
	// limits are the limits in force (see SetLimits); limitsGen counts
	// their changes, so a connection sees when its own bucket is stale.
	limits    atomic.Pointer[RateLimits]
	limitsGen atomic.Uint64
}

// NewServer returns a server for backend. A missing token or backend is
// reported by Serve, which then refuses to serve.
func NewServer(backend Backend, opts ServerOptions) *Server {
	s := &Server{backend: backend}
	switch {
	case backend == nil:
		s.err = errors.New("ipc: nil backend")
	case opts.Token == "":
		s.err = errors.New("ipc: empty auth token")
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.AllowedUIDs == nil {
		opts.AllowedUIDs = []uint32{uint32(os.Getuid()), 0}
	}
	opts.AllowedUIDs = slices.Clone(opts.AllowedUIDs)
	setDefault(&opts.MaxLineBytes, DefaultMaxLineBytes)
	setDefault(&opts.MaxConns, DefaultMaxConns)
	setDefault(&opts.MaxInFlight, DefaultMaxInFlight)
	setDefault(&opts.AuthTimeout, DefaultAuthTimeout)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.ShutdownTimeout, DefaultShutdownTimeout)
	if opts.Observer == nil {
		opts.Observer = nopServerObserver{}
	}
	s.log = opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	l := opts.Limits
	s.limits.Store(&l)
	s.enqLimit = newLimiter(l.EnqueueRate, l.EnqueueBurst, DefaultEnqueueRate, DefaultEnqueueBurst)
	s.authLimit = newLimiter(l.AuthFailureRate, l.AuthFailureBurst, DefaultAuthFailureRate, DefaultAuthFailureBurst)
	s.tokenHash = sha256.Sum256([]byte(opts.Token))
	opts.Token = "" // keep only the hash
	s.opts = opts
	return s
}

// SetLimits puts new rate limits in force, for the daemon-wide buckets at
// once and for each connection's own bucket from its next enqueue on (a
// reload of config.toml calls it). Tokens already in a bucket stay, up to
// the new burst.
func (s *Server) SetLimits(l RateLimits) {
	s.limits.Store(&l)
	setLimiter(s.enqLimit, l.EnqueueRate, l.EnqueueBurst, DefaultEnqueueRate, DefaultEnqueueBurst)
	setLimiter(s.authLimit, l.AuthFailureRate, l.AuthFailureBurst, DefaultAuthFailureRate, DefaultAuthFailureBurst)
	s.limitsGen.Add(1)
}

// connLimit is c's enqueue bucket, brought up to date after a SetLimits.
func (c *conn) connLimit() *rate.Limiter {
	if gen := c.srv.limitsGen.Load(); c.limitsGen.Load() != gen {
		l := c.srv.limits.Load()
		setLimiter(c.enqLimit, l.ConnEnqueueRate, l.ConnEnqueueBurst, DefaultConnEnqueueRate, DefaultConnEnqueueBurst)
		c.limitsGen.Store(gen)
	}
	return c.enqLimit
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// checkToken compares hashes, so the comparison is constant-time and over
// equal lengths whatever the client sends: neither the token's bytes nor its
// length leak through timing.
func (s *Server) checkToken(tok string) bool {
	h := sha256.Sum256([]byte(tok))
	return tok != "" && subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1
}

func (s *Server) uidAllowed(uid uint32) bool {
	return slices.Contains(s.opts.AllowedUIDs, uid)
}

// Serve accepts connections on ln until ctx is cancelled, then closes ln,
// stops every connection (requests in flight get CodeUnavailable) and waits
// up to ShutdownTimeout for them, then closes what is left and waits at
// most one second more. It returns nil after a clean shutdown.
//
// Serve owns ln and closes it. ln should come from Listen. Peers whose uid cannot be read (any listener
// that is not a Unix socket) are refused: the check fails closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.err != nil {
		ln.Close()
		return s.err
	}
	st := &serving{srv: s, conns: make(map[*conn]struct{})}
	base, cancel := context.WithCancel(ctx)
	defer cancel()
	stopClose := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopClose()

	var serveErr error
	delay := time.Duration(0)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				serveErr = fmt.Errorf("ipc: accept: %w", err)
				break
			}
			// Out of file descriptors and the like: back off and retry
			// rather than spin or give up on the daemon.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("ipc: accept failed", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		delay = 0
		st.accept(base, nc)
	}
	ln.Close()
	cancel()
	return errors.Join(serveErr, st.drain())
}

// serving is the state of one Serve call.
type serving struct {
	srv   *Server
	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
}

func (st *serving) accept(base context.Context, nc net.Conn) {
	s := st.srv
	uid, err := peerUID(nc)
	if err != nil || !s.uidAllowed(uid) {
		if err != nil {
			s.log.Warn("ipc: refused connection: cannot read peer credentials", "err", err)
		} else {
			s.log.Warn("ipc: refused connection from a uid not allowed", "uid", uid)
		}
		reject(nc, rpcErr(CodeUnauthorized, "unauthorized"))
		return
	}
	st.mu.Lock()
	if len(st.conns) >= s.opts.MaxConns {
		st.mu.Unlock()
		s.log.Warn("ipc: refused connection: too many connections", "limit", s.opts.MaxConns)
		reject(nc, rpcErr(CodeLimitExceeded, "too many connections (limit %d)", s.opts.MaxConns))
		return
	}
	c := newConn(s, base, nc, uid)
	st.conns[c] = struct{}{}
	st.wg.Add(1)
	st.mu.Unlock()
	s.opts.Observer.ConnOpened()
	go func() {
		defer st.wg.Done()
		c.serve()
		st.mu.Lock()
		delete(st.conns, c)
		st.mu.Unlock()
		s.opts.Observer.ConnClosed()
	}()
}

// reject writes one error line with a null id and closes nc. A fresh
// socket's send buffer is empty, so the write does not block in practice;
// the deadline makes sure of it.
func reject(nc net.Conn, e *RPCError) {
	b, err := json.Marshal(response{JSONRPC: "2.0", ID: nullID(), Error: e})
	if err == nil {
		nc.SetWriteDeadline(time.Now().Add(rejectWriteTimeout))
		nc.Write(append(b, '\n'))
	}
	nc.Close()
}

// drain waits for the connections, which stop on their own once base is
// cancelled; connections still open after ShutdownTimeout are closed hard.
func (st *serving) drain() error {
	done := make(chan struct{})
	go func() { // ends when the last connection goroutine does
		st.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(st.srv.opts.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	st.mu.Lock()
	n := len(st.conns)
	for c := range st.conns {
		c.nc.Close()
	}
	st.mu.Unlock()
	st.srv.log.Warn("ipc: closing connections that did not end in time", "count", n)
	t.Reset(time.Second)
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("ipc: %d connections still running after shutdown", n)
	}
}

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
	wmu    sync.Mutex
	wbuf   bytes.Buffer
	enc    *json.Encoder
	broken bool

	// dmu orders read-deadline changes, so clearing the auth deadline can
	// never undo the interruption that shutdown set.
	dmu     sync.Mutex
	closing bool

	reqs     sync.WaitGroup
	inflight atomic.Int32
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
	c.enc = json.NewEncoder(&c.wbuf)
	c.enc.SetEscapeHTML(false)
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
		if c.readLoop() {
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
		c.reqs.Add(1)
		go func() {
			defer c.reqs.Done()
			defer c.inflight.Add(-1)
			c.handle(req)
		}()
	}
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
	c.wbuf.Reset()
	if err := c.enc.Encode(v); err != nil {
		return &encodeError{err}
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	_, err := c.nc.Write(c.wbuf.Bytes())
	if c.wbuf.Cap() > keepBufCap {
		c.wbuf = bytes.Buffer{}
	}
	if err != nil {
		c.broken = true
		c.cancel()
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// parseCall is what an authenticated connection's read loop does with a
// request object: parseRequest, then the checks that need no params
// (auth.v1 again, an unknown method). A request it returns is ready for
// decodeCall. On error it returns the id the error response carries, and
// the request too when it was well-formed enough to tell whether it is a
// notification (whose errors are never answered).
func parseCall(line []byte) (*request, json.RawMessage, *RPCError) {
	req, id, perr := parseRequest(line)
	switch {
	case perr != nil:
		return nil, id, perr
	case req.Method == MethodAuth:
		return req, id, rpcErr(CodeInvalidRequest, "already authenticated")
	case req.method() == nil:
		return req, id, rpcErr(CodeMethodNotFound, "method not found: %q", req.Method)
	}
	return req, id, nil
}

// parseRequest decodes and checks one request object. On error it still
// returns the request's id when it could be read, so the error response can
// carry it; otherwise the id is null. A request without an id member is a
// notification: its id stays empty.
func parseRequest(line []byte) (*request, json.RawMessage, *RPCError) {
	if !utf8.Valid(line) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: invalid UTF-8")
	}
	req := new(request)
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	derr := dec.Decode(req)
	var se *json.SyntaxError
	if errors.As(derr, &se) || errors.Is(derr, io.ErrUnexpectedEOF) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: %s", trimJSONPrefix(derr.Error()))
	}
	if !isBlank(line[dec.InputOffset():]) {
		return nil, nullID(), rpcErr(CodeParseError, "parse error: unexpected data after the request object")
	}
	if first, _ := firstNonSpace(line); first != '{' {
		return nil, nullID(), rpcErr(CodeInvalidRequest, "invalid request: not a JSON object")
	}
	if derr != nil {
		// A member of the wrong type or an unknown one; the id may still be
		// readable on its own.
		var only struct {
			ID json.RawMessage `json:"id"`
		}
		id := nullID()
		if json.Unmarshal(line, &only) == nil && validID(only.ID) {
			id = only.ID
		}
		return nil, id, rpcErr(CodeInvalidRequest, "invalid request: %s", describeJSONError(derr))
	}
	if len(req.ID) > 0 && !validID(req.ID) && !isNullOrEmpty(req.ID) {
		return nil, nullID(), rpcErr(CodeInvalidRequest, "invalid request: id must be a string, a number or null")
	}
	id := req.ID
	if len(id) == 0 {
		id = nullID()
	}
	if req.JSONRPC != "2.0" {
		return nil, id, rpcErr(CodeInvalidRequest, `invalid request: jsonrpc must be "2.0"`)
	}
	if req.Method == "" {
		return nil, id, rpcErr(CodeInvalidRequest, "invalid request: method required")
	}
	return req, id, nil
}

// validID reports whether a raw id is a string or a number.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	switch b := id[0]; {
	case b == '"', b == '-', b >= '0' && b <= '9':
		return true
	}
	return false
}

func isNullOrEmpty(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func firstNonSpace(b []byte) (byte, bool) {
	for _, c := range b {
		if !isSpace(c) {
			return c, true
		}
	}
	return 0, false
}

func isBlank(b []byte) bool {
	_, ok := firstNonSpace(b)
	return !ok
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
