package ipc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const testToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// ioTimeout bounds every read a test waits on, so a bug fails the test
// instead of hanging it.
const ioTimeout = 5 * time.Second

type testServer struct {
	path string
	fake *fakeBackend
	stop func() error
}

// startServer runs a server on a socket in a short temp dir (t.TempDir
// paths can pass the ~104-byte sun_path limit on macOS).
func startServer(t testing.TB, fake *fakeBackend, opts ServerOptions) *testServer {
	t.Helper()
	if fake == nil {
		fake = newFake()
	}
	ts := startServerWith(t, fake, opts)
	ts.fake = fake
	return ts
}

func startServerWith(t testing.TB, backend Backend, opts ServerOptions) *testServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "stq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Token == "" {
		opts.Token = testToken
	}
	if opts.Version == "" {
		opts.Version = "test-1"
	}
	srv := NewServer(backend, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	stopped := false
	var stopErr error
	stop := func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-done:
		case <-time.After(15 * time.Second):
			stopErr = errors.New("Serve did not return")
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
	})
	return &testServer{path: path, stop: stop}
}

// testResp is any line the server sends.
type testResp struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   *RPCError       `json:"error"`
}

type rawConn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, path string) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawConn) send(line string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawConn) recv() testResp {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	var r testResp
	if err := json.Unmarshal(line, &r); err != nil {
		c.t.Fatalf("bad line from server %q: %v", line, err)
	}
	if r.JSONRPC != "2.0" {
		c.t.Fatalf("line without jsonrpc 2.0: %q", line)
	}
	return r
}

// recvErr reads a response and checks it is an error with code.
func (c *rawConn) recvErr(code int) *RPCError {
	c.t.Helper()
	r := c.recv()
	if r.Error == nil {
		c.t.Fatalf("want error %d, got result %s", code, r.Result)
	}
	if r.Error.Code != code {
		c.t.Fatalf("want error %d, got %d %q", code, r.Error.Code, r.Error.Message)
	}
	if r.Result != nil {
		c.t.Fatalf("error response also has a result: %s", r.Result)
	}
	return r.Error
}

// expectClosed checks the server closes the connection: the next read
// ends (EOF or reset) rather than timing out.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadBytes('\n')
	if err == nil {
		c.t.Fatalf("connection still open; got %q", line)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection not closed within %s", ioTimeout)
	}
}

func (c *rawConn) auth() {
	c.t.Helper()
	c.send(`{"jsonrpc":"2.0","id":0,"method":"auth.v1","params":{"token":"` + testToken + `"}}`)
	if r := c.recv(); r.Error != nil {
		c.t.Fatalf("auth: %v", r.Error)
	}
}

func authedRaw(t testing.TB, path string) *rawConn {
	t.Helper()
	c := dialRaw(t, path)
	c.auth()
	return c
}

func dialClient(t testing.TB, path string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, err := Dial(ctx, path, testToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the time runs out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func req(id int, method, params string) string {
	s := `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"` + method + `"`
	if params != "" {
		s += `,"params":` + params
	}
	return s + "}"
}

// poll is eventually for goroutines other than the test's: it never fails
// the test, it just gives up.
func poll(cond func() bool) bool {
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func isMethod(name string) bool { return lookup(name) != nil }
