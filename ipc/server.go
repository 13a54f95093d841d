package ipc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
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
