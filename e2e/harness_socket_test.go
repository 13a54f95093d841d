package e2e

// The socket side of the harness: raw JSON-RPC lines for protocol tests,
// and the ipc.Client the CLI itself uses, for load that the CLI's process
// start-up would swamp.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

// rpc is a raw socket client for protocol-level tests.
type rpc struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) dialRaw() *rpc {
	e.t.Helper()
	conn, err := net.Dial("unix", e.path("stq.sock"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return &rpc{t: e.t, conn: conn, r: bufio.NewReaderSize(conn, 1<<16)}
}

func (e *testEnv) token() string {
	b, err := os.ReadFile(e.path("token"))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (r *rpc) send(line string) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.conn.Write([]byte(line + "\n")); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

type rpcReply struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// recv reads one reply; ok is false when the server closed the connection.
func (r *rpc) recv() (rpcReply, bool) {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	line, err := r.r.ReadBytes('\n')
	if err != nil {
		return rpcReply{}, false
	}
	var rep rpcReply
	if err := json.Unmarshal(line, &rep); err != nil {
		r.t.Fatalf("server sent invalid JSON %q: %v", line, err)
	}
	return rep, true
}

func (r *rpc) closed() bool {
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.r.ReadByte()
	return err != nil
}

func (r *rpc) auth(token string) {
	r.t.Helper()
	r.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":0,"method":"auth.v1","params":{"token":%q}}`, token))
	rep, ok := r.recv()
	if !ok || rep.Error != nil {
		r.t.Fatalf("auth failed: %+v", rep.Error)
	}
}

// rawReply dials the socket, sends one line and returns the raw bytes of
// the first reply line and whether the server closed the connection after
// it. It does not touch t, so goroutines may call it.
func (e *testEnv) rawReply(line string) (reply []byte, closed bool, err error) {
	conn, err := net.Dial("unix", e.path("stq.sock"))
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	// The server may answer and close before it has read all of a long
	// line; a failed write is then expected.
	go func() { _, _ = conn.Write([]byte(line + "\n")) }()
	r := bufio.NewReader(conn)
	reply, err = r.ReadBytes('\n')
	if err != nil {
		return reply, false, fmt.Errorf("no reply line: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, rerr := r.ReadByte()
	return reply, rerr != nil && !isTimeout(rerr), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dial opens an authenticated ipc.Client, the client the CLI itself uses.
// It does not touch t, so goroutines may call it.
func (e *testEnv) dial() (*ipc.Client, error) {
	tok, err := os.ReadFile(e.path("token"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ipc.Dial(ctx, e.path("stq.sock"), strings.TrimSpace(string(tok)))
}

// mustDial is dial for the test goroutine.
func (e *testEnv) mustDial() *ipc.Client {
	e.t.Helper()
	c, err := e.dial()
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// call is one request with a generous bound, so a wedged daemon fails the
// test instead of hanging it.
func call(c *ipc.Client, method string, params, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Call(ctx, method, params, result)
}

func enqueueRPC(c *ipc.Client, req engine.EnqueueRequest) (string, error) {
	var res struct {
		Job job `json:"job"`
	}
	if err := call(c, ipc.MethodEnqueue, req, &res); err != nil {
		return "", err
	}
	if res.Job.ID == "" {
		return "", errors.New("enqueue reply without a job id")
	}
	return res.Job.ID, nil
}

func rpcCode(err error) int {
	var re *ipc.RPCError
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

// waitAll blocks until every job is terminal, in chunks the API accepts,
// and returns the jobs as they ended. An acknowledged id the daemon does not
// know fails the test, naming it.
func waitAll(t *testing.T, c *ipc.Client, ids []string, timeout time.Duration) map[string]job {
	t.Helper()
	out := make(map[string]job, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		var res struct {
			Jobs     []job `json:"jobs"`
			TimedOut bool  `json:"timed_out"`
		}
		// The client waits longer than the server-side timeout, so a slow
		// drain is reported as timed_out with the jobs still live, not as a
		// bare client deadline (call's 60s) that says nothing.
		ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
		err := c.Call(ctx, ipc.MethodWait, map[string]any{"ids": ids[:n], "timeout": timeout.String()}, &res)
		cancel()
		if rpcCode(err) == -32001 {
			for _, id := range ids[:n] {
				if err := call(c, ipc.MethodGet, map[string]string{"id": id}, nil); rpcCode(err) == -32001 {
					t.Errorf("acknowledged job %s is missing", id)
				}
			}
			t.FailNow()
		}
		if err != nil {
			t.Fatalf("wait for %d jobs: %v", n, err)
		}
		if res.TimedOut {
			var live []string
			for _, j := range res.Jobs {
				if !terminal(j.State) {
					live = append(live, j.ID+"="+j.State)
				}
			}
			t.Fatalf("%d jobs not finished after %s: %v", len(live), timeout, live[:min(len(live), 20)])
		}
		for _, j := range res.Jobs {
			out[j.ID] = j
		}
		ids = ids[n:]
	}
	return out
}

func terminal(state string) bool {
	switch state {
	case "DONE", "FAILED", "CANCELLED", "SUPERSEDED", "EXPIRED":
		return true
	}
	return false
}

// allJobs lists every job of the home (newest first), without attempts.
func allJobs(t *testing.T, c *ipc.Client) []job {
	t.Helper()
	var res struct {
		Jobs []job `json:"jobs"`
	}
	if err := call(c, ipc.MethodList, map[string]any{"limit": 10000}, &res); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(res.Jobs) == 10000 {
		t.Fatal("10000 jobs or more: the check would miss some; lower the load")
	}
	return res.Jobs
}

func getJob(t *testing.T, c *ipc.Client, id string) job {
	t.Helper()
	var j job
	if err := call(c, ipc.MethodGet, map[string]string{"id": id}, &j); err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return j
}

// connectionLost reports an error that only says the daemon went away
// mid-request (it was killed), as the CLI and ipc.Client word it.
func connectionLost(msg string) bool {
	for _, s := range []string{"EOF", "connection reset", "broken pipe", "no daemon", "connection refused", "use of closed network connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
