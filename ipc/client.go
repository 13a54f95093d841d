package ipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrNoDaemon means nothing listens on the socket. Dial's error is then a
// *NoDaemonError, which matches it and the underlying cause.
var ErrNoDaemon = errors.New("no daemon")

// maxResponseLine bounds one response line read by the client. It is large
// because a list of many jobs with payloads is one line; it exists so a
// broken server cannot make the client allocate without end.
const maxResponseLine = 256 << 20

// NoDaemonError says no daemon answers at a socket path. It states the
// fact only: what to do about it (start one, wait longer) is for the
// program that prints it to say, in its own words.
type NoDaemonError struct {
	Path string // the socket dialled
	// Starting, when set, says a daemon is starting (it holds the home's
	// lock) but did not answer in time.
	Starting string
	// Err is what the dial or the token read returned.
	Err error
}

func (e *NoDaemonError) Error() string {
	if e.Starting != "" {
		return "no daemon answers at " + e.Path + ": " + e.Starting
	}
	return "no daemon at " + e.Path
}

// Unwrap makes the error match ErrNoDaemon and its cause.
func (e *NoDaemonError) Unwrap() []error { return []error{ErrNoDaemon, e.Err} }

// Client is one authenticated connection to the daemon, with a typed
// method per API method (Enqueue, List, Tail, ...). It is safe for
// concurrent use, but calls are sent one at a time: a long Wait holds the
// connection, so a program that waits and works at once should use two
// clients. Tail with Follow opens a connection of its own.
type Client struct {
	mu      sync.Mutex
	nc      net.Conn
	lr      *lineReader
	wbuf    bytes.Buffer
	enc     *json.Encoder
	resp    clientResponse
	nextID  uint64
	err     error // sticky: once set the connection is unusable
	version string
	path    string
	// token is set until the auth request has been sent (see Connect).
	token string
	// secret is the token for the side connections a follow opens.
	secret string
}

type clientRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  any    `json:"params,omitempty"`
}

// clientResponse is reused between calls so its raw buffers keep their
// capacity; it reads both responses and notifications.
type clientResponse struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
}

// Dial connects to the daemon at socketPath and authenticates with token.
// When nothing listens there the error wraps ErrNoDaemon.
func Dial(ctx context.Context, socketPath, token string) (*Client, error) {
	c, err := Connect(ctx, socketPath, token)
	if err != nil {
		return nil, err
	}
	if err := c.authNow(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// authNow authenticates a Connect client here and now, not with its first
// call; on failure the connection is closed.
func (c *Client) authNow(ctx context.Context) error {
	token := c.token
	c.token = ""
	var res AuthResult
	if err := c.Call(ctx, MethodAuth, &AuthParams{Token: token}, &res); err != nil {
		c.nc.Close()
		return fmt.Errorf("authenticate to daemon at %s: %w", c.path, err)
	}
	c.version = res.Version
	return nil
}

// Connect is Dial without the wait for authentication: the auth request
// goes out in the same write as the first call, and the first call fails
// with the authentication error if the token is refused. A one-shot client
// (`stq enqueue` from an editor hook) so pays one round trip, not two.
func Connect(ctx context.Context, socketPath, token string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &NoDaemonError{Path: socketPath, Err: err}
		}
		return nil, fmt.Errorf("connect to daemon at %s: %w", socketPath, err)
	}
	c := &Client{nc: nc, lr: newLineReader(nc, maxResponseLine), path: socketPath, token: token, secret: token}
	c.enc = newLineEncoder(&c.wbuf)
	return c, nil
}

// ServerVersion is the version the daemon reported when authenticating;
// empty on a Connect client before its first call.
func (c *Client) ServerVersion() string { return c.version }

// Close closes the connection; a call blocked in another goroutine returns
// with an error.
func (c *Client) Close() error { return c.nc.Close() }

// Call sends one request and decodes its result into result (which may be
// nil to discard it). An error response is returned as *RPCError.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	return c.do(ctx, method, params, nil, result)
}

// Stream is Call for methods that send notifications before their response
// (logs.tail.v1 with follow): onNotify gets each one's method and params,
// which are only valid during the call. If onNotify returns an error, Stream
// closes the connection (the protocol has no way to stop one request) and
// returns that error.
func (c *Client) Stream(ctx context.Context, method string, params any, onNotify func(method string, params json.RawMessage) error, result any) error {
	return c.do(ctx, method, params, onNotify, result)
}

func (c *Client) do(ctx context.Context, method string, params any, onNotify func(string, json.RawMessage) error, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Only ctx ends a call: it interrupts blocked I/O through a past
	// deadline once ctx.Err is already set, so a timeout is reported as the
	// context's error. (Copying ctx's deadline onto the socket would race
	// with ctx's own timer and surface as a bare i/o timeout.)
	c.nc.SetDeadline(time.Time{})
	if ctx.Done() != nil {
		// If the interruption raced with a finished call, wait for it so
		// the next call's deadline is not overwritten behind its back.
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			c.nc.SetDeadline(aLongTimeAgo())
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
			}
		}()
	}
	c.nextID++
	broken, err := c.roundTrip(c.nextID, method, params, onNotify, result)
	if !broken {
		return err
	}
	// The stream is in an unknown state (or the server is closing it): no
	// later call may use it.
	if ctxErr := ctx.Err(); ctxErr != nil && !isRPCError(err) {
		err = fmt.Errorf("%s: %w", method, ctxErr)
	}
	c.err = fmt.Errorf("connection to daemon unusable after an earlier error: %w", err)
	c.nc.Close()
	return err
}

func isRPCError(err error) bool {
	var re *RPCError
	return errors.As(err, &re)
}

// roundTrip sends one request and reads up to its response. broken reports
// that the connection can no longer be used.
func (c *Client) roundTrip(id uint64, method string, params any, onNotify func(string, json.RawMessage) error, result any) (broken bool, err error) {
	c.wbuf.Reset()
	var authID uint64
	if c.token != "" {
		// The server reads the auth request before anything else on the
		// connection, so the call can follow it in the same write.
		authID, id = id, id+1
		c.nextID++
		if err := c.enc.Encode(&clientRequest{JSONRPC: "2.0", ID: authID, Method: MethodAuth, Params: &AuthParams{Token: c.token}}); err != nil {
			return false, fmt.Errorf("%s: encode params: %w", MethodAuth, err)
		}
	}
	if err := c.enc.Encode(&clientRequest{JSONRPC: "2.0", ID: id, Method: method, Params: params}); err != nil {
		return false, fmt.Errorf("%s: encode params: %w", method, err)
	}
	// A failed write still reads on: a server that refused the connection
	// (limit, uid) wrote why before closing, and that beats "broken pipe".
	_, werr := c.nc.Write(c.wbuf.Bytes())
	if c.wbuf.Cap() > keepBufCap {
		c.wbuf = bytes.Buffer{}
	}
	if authID != 0 {
		var res AuthResult
		if _, err := c.readReply(authID, MethodAuth, nil, &res, werr); err != nil {
			// Refused: the server closes the connection.
			return true, fmt.Errorf("authenticate to daemon at %s: %w", c.path, err)
		}
		c.token, c.version = "", res.Version
	}
	return c.readReply(id, method, onNotify, result, werr)
}

// readReply reads up to the response with the given id, handing
// notifications before it to onNotify. werr is the error of the write that
// sent the request, if any.
func (c *Client) readReply(id uint64, method string, onNotify func(string, json.RawMessage) error, result any, werr error) (broken bool, err error) {
	var idBuf [20]byte
	want := strconv.AppendUint(idBuf[:0], id, 10)
	r := &c.resp
	for {
		line, err := c.lr.next()
		if err != nil {
			if werr != nil {
				err = werr
			}
			return true, fmt.Errorf("%s: %w", method, err)
		}
		if isBlank(line) {
			continue
		}
		if werr == nil {
			if ok, err := takeResult(line, want, result); ok {
				if err != nil {
					return false, fmt.Errorf("decode %s result: %w", method, err)
				}
				return false, nil
			}
		}
		r.ID, r.Method, r.Params, r.Result, r.Error = r.ID[:0], "", r.Params[:0], r.Result[:0], nil
		if err := json.Unmarshal(line, r); err != nil {
			return true, fmt.Errorf("%s: malformed message from daemon: %w", method, err)
		}
		if isNullOrEmpty(r.ID) && r.Method != "" {
			if onNotify != nil {
				if err := onNotify(r.Method, r.Params); err != nil {
					return true, err
				}
			}
			continue
		}
		if r.Error != nil && isNullOrEmpty(r.ID) {
			// An error with a null id is the server refusing the whole
			// connection (auth, a limit); it closes it afterwards.
			e := r.Error
			r.Error = nil
			return true, e
		}
		if werr != nil {
			return true, fmt.Errorf("%s: %w", method, werr)
		}
		if !bytes.Equal(r.ID, want) {
			return true, fmt.Errorf("%s: response for id %s while waiting for %s", method, r.ID, want)
		}
		if r.Error != nil {
			e := r.Error
			r.Error = nil
			return false, e
		}
		if result != nil && len(r.Result) > 0 {
			if err := json.Unmarshal(r.Result, result); err != nil {
				return false, fmt.Errorf("decode %s result: %w", method, err)
			}
		}
		return false, nil
	}
}

// takeResult reads the reply a call almost always gets,
// {"jsonrpc":"2.0","id":<want>,"result":VALUE} exactly as the server
// writes it, decoding VALUE straight into result: one pass over the line
// to check it and one to decode, where the general path (clientResponse,
// then the raw result) makes five. It reports ok when the reply was that
// one, with the error the general path would then return for the result.
// For any other line, or a syntax error in VALUE (found before anything
// is written into result), it reports false and the general path reads
// the line.
func takeResult(line, want []byte, result any) (ok bool, err error) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"jsonrpc":"2.0","id":`))
	if ok {
		rest, ok = bytes.CutPrefix(rest, want)
	}
	if ok {
		rest, ok = bytes.CutPrefix(rest, []byte(`,"result":`))
	}
	if !ok || len(rest) == 0 || rest[len(rest)-1] != '}' {
		return false, nil
	}
	v := rest[:len(rest)-1]
	if result == nil {
		return json.Valid(v), nil
	}
	err = json.Unmarshal(v, result)
	if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
		return false, nil
	}
	return true, err
}
