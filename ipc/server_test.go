package ipc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

func TestAuthSuccess(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := dialRaw(t, ts.path)
	c.send(`{"jsonrpc":"2.0","id":"a-1","method":"auth.v1","params":{"token":"` + testToken + `"}}`)
	r := c.recv()
	if r.Error != nil || string(r.ID) != `"a-1"` {
		t.Fatalf("auth response %+v", r)
	}
	var res AuthResult
	if err := json.Unmarshal(r.Result, &res); err != nil || !res.OK || res.Version != "test-1" {
		t.Fatalf("auth result %s (%v)", r.Result, err)
	}
	// The connection now answers requests, and a second auth is refused.
	c.send(req(2, MethodStats, ""))
	if r := c.recv(); r.Error != nil {
		t.Fatalf("stats after auth: %v", r.Error)
	}
	c.send(req(3, MethodAuth, `{"token":"`+testToken+`"}`))
	c.recvErr(CodeInvalidRequest)
}

func TestRequestBeforeAuthIsRefused(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	for _, line := range []string{
		req(1, MethodGet, `{"id":"j1"}`),
		req(1, "no.such.method", ""),
		`{not json`,
		`[` + req(1, MethodAuth, `{"token":"`+testToken+`"}`) + `]`,
		`{"jsonrpc":"2.0","method":"auth.v1","params":{"token":"` + testToken + `"}}`, // no id
		`{"jsonrpc":"1.0","id":1,"method":"auth.v1","params":{"token":"` + testToken + `"}}`,
	} {
		c := dialRaw(t, ts.path)
		c.send(line)
		e := c.recvErr(CodeUnauthorized)
		if e.Message != "unauthorized" {
			t.Errorf("%s: message %q", line, e.Message)
		}
		c.expectClosed()
	}
}

func TestAuthFailuresLookIdentical(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	oneOff := []byte(testToken)
	oneOff[len(oneOff)-1] ^= 1
	cases := map[string]string{
		"wrong":       `{"token":"deadbeef"}`,
		"empty":       `{"token":""}`,
		"one-off":     `{"token":"` + string(oneOff) + `"}`,
		"overlong":    `{"token":"` + testToken + strings.Repeat("0", 2000) + `"}`,
		"prefix":      `{"token":"` + testToken[:len(testToken)-1] + `"}`,
		"missing":     `{}`,
		"no-params":   ``,
		"wrong-type":  `{"token":12345}`,
		"extra-field": `{"token":"` + testToken + `","x":1}`,
	}
	var first []byte
	for name, params := range cases {
		c := dialRaw(t, ts.path)
		c.send(req(7, MethodAuth, params))
		r := c.recv()
		if r.Error == nil {
			t.Fatalf("%s: auth succeeded", name)
		}
		got, _ := json.Marshal(r.Error)
		if first == nil {
			first = got
		} else if !bytes.Equal(got, first) {
			t.Errorf("%s: error %s differs from %s", name, got, first)
		}
		if string(r.ID) != "7" {
			t.Errorf("%s: id %s", name, r.ID)
		}
		c.expectClosed()
	}
	if string(first) != `{"code":-32000,"message":"unauthorized"}` {
		t.Errorf("error object %s", first)
	}
}

func TestPeerUIDNotAllowed(t *testing.T) {
	other := uint32(os.Getuid()) + 4242
	ts := startServer(t, nil, ServerOptions{AllowedUIDs: []uint32{other}})
	c := dialRaw(t, ts.path)
	r := c.recv() // sent at accept, before any request
	if r.Error == nil || r.Error.Code != CodeUnauthorized || string(r.ID) != "null" {
		t.Fatalf("want unauthorized with null id, got %+v", r)
	}
	c.expectClosed()
}

func TestServerRefusesEmptyToken(t *testing.T) {
	ln, err := Listen(filepath.Join(shortDir(t), "s"))
	if err != nil {
		t.Fatal(err)
	}
	err = NewServer(newFake(), ServerOptions{}).Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "empty auth token") {
		t.Fatalf("Serve without a token: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener left open")
	}
}

func TestParseErrorsKeepConnection(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	c := authedRaw(t, ts.path)
	for _, line := range []string{
		`{bad json`,
		`{"jsonrpc":"2.0","id":1,"method":"dev.get.v1"} trailing`,
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"dev.get.v1\",\"params\":{\"id\":\"\xff\xfe\"}}",
		"\xc3\x28",
	} {
		c.send(line)
		r := c.recv()
		if r.Error == nil || r.Error.Code != CodeParseError || string(r.ID) != "null" {
			t.Fatalf("%q: want parse error with null id, got %+v", line, r)
		}
	}
	c.send(req(9, MethodGet, `{"id":"j1"}`))
	if r := c.recv(); r.Error != nil || string(r.ID) != "9" {
		t.Fatalf("connection broken after parse errors: %+v", r)
	}
}

func TestInvalidRequests(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := authedRaw(t, ts.path)
	cases := []struct {
		line, msg string
		code      int
		id        string
	}{
		{`"just a string"`, "not a JSON object", CodeInvalidRequest, "null"},
		{`{"jsonrpc":"2.0","id":{"a":1},"method":"admin.stats.v1"}`, "string, a number or null", CodeInvalidRequest, "null"},
		{`{"jsonrpc":"1.0","id":3,"method":"admin.stats.v1"}`, `jsonrpc must be "2.0"`, CodeInvalidRequest, "3"},
		{`{"id":3,"method":"admin.stats.v1"}`, `jsonrpc must be "2.0"`, CodeInvalidRequest, "3"},
		{`{"jsonrpc":"2.0","id":4}`, "method required", CodeInvalidRequest, "4"},
		{`{"jsonrpc":"2.0","id":5,"method":7}`, "method must be a string", CodeInvalidRequest, "5"},
		{`{"jsonrpc":"2.0","id":6,"method":"admin.stats.v1","extra":true}`, `unknown field "extra"`, CodeInvalidRequest, "6"},
		{req(7, "dev.nope.v1", ""), `method not found: "dev.nope.v1"`, CodeMethodNotFound, "7"},
		{`{"jsonrpc":"2.0","id":"s","method":"dev.get.v2"}`, "method not found", CodeMethodNotFound, `"s"`},
		{req(8, MethodGet, `{"id":5}`), "id must be a string, got number", CodeInvalidParams, "8"},
		{req(9, MethodGet, `{"id":"j1","extra":1}`), `unknown field "extra"`, CodeInvalidParams, "9"},
		{req(10, MethodGet, `["j1"]`), "params must be an object", CodeInvalidParams, "10"},
		{req(11, MethodGet, `{}`), "id is required", CodeInvalidParams, "11"},
		{req(12, MethodList, `{"states":["QUEUED","SLEEPING"]}`), `unknown state "SLEEPING"`, CodeInvalidParams, "12"},
		{req(13, MethodList, `{"limit":-1}`), "limit must not be negative", CodeInvalidParams, "13"},
		{req(14, MethodList, `{"limit":10001}`), "over the maximum of 10000", CodeInvalidParams, "14"},
		{req(15, MethodList, `{"limit":1.5}`), "limit must be an integer", CodeInvalidParams, "15"},
		{req(16, MethodWait, `{"ids":[]}`), "ids must not be empty", CodeInvalidParams, "16"},
		{req(17, MethodWait, `{"ids":["j1"],"timeout":30}`), "duration must be a string", CodeInvalidParams, "17"},
		{req(18, MethodWait, `{"ids":["j1"],"timeout":"soon"}`), "invalid duration", CodeInvalidParams, "18"},
		{req(19, MethodTail, `{}`), "job_id is required unless follow is true", CodeInvalidParams, "19"},
		{req(20, MethodTail, `{"job_id":"j1","queue":"q","follow":true}`), "not both", CodeInvalidParams, "20"},
		{req(21, MethodStats, `{"verbose":true}`), `unknown field "verbose"`, CodeInvalidParams, "21"},
		{req(22, MethodEnqueue, `{"queue":"q","priority":"high"}`), "priority must be an integer, got string", CodeInvalidParams, "22"},
		{req(23, MethodEnqueue, `{"queue":"q","colour":"red"}`), `unknown field "colour"`, CodeInvalidParams, "23"},
		{req(24, MethodCancel, `{"id":"j1","force":true}`), `unknown field "force"`, CodeInvalidParams, "24"},
		{req(25, MethodRecover, `null`), "", 0, "25"}, // null params mean {}
		{req(26, MethodWait, `{"ids":["j1"],"timeout":"infd"}`), "invalid duration", CodeInvalidParams, "26"},
		{req(27, MethodWait, `{"ids":["j1"],"timeout":"1e300d"}`), "invalid duration", CodeInvalidParams, "27"},
	}
	for _, tc := range cases {
		c.send(tc.line)
		r := c.recv()
		if string(r.ID) != tc.id {
			t.Errorf("%s: id %s, want %s", tc.line, r.ID, tc.id)
		}
		if tc.code == 0 {
			if r.Error != nil {
				t.Errorf("%s: unexpected error %v", tc.line, r.Error)
			}
			continue
		}
		if r.Error == nil {
			t.Errorf("%s: no error, result %s", tc.line, r.Result)
			continue
		}
		if r.Error.Code != tc.code || !strings.Contains(r.Error.Message, tc.msg) {
			t.Errorf("%s: got %d %q, want %d containing %q", tc.line, r.Error.Code, r.Error.Message, tc.code, tc.msg)
		}
	}
}

func TestBlankLinesAndCRLF(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := dialRaw(t, ts.path)
	c.send("")
	c.send("  \r")
	c.send(req(1, MethodAuth, `{"token":"`+testToken+`"}`) + "\r")
	if r := c.recv(); r.Error != nil {
		t.Fatalf("auth with CRLF: %v", r.Error)
	}
}

func TestLineTooLong(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{MaxLineBytes: 1024})
	bystander := authedRaw(t, ts.path)
	c := authedRaw(t, ts.path)

	// Exactly at the limit is fine (the newline does not count).
	line := req(1, MethodStats, "")
	line += strings.Repeat(" ", 1024-len(line))
	c.send(line)
	if r := c.recv(); r.Error != nil {
		t.Fatalf("line at the limit: %v", r.Error)
	}

	c.send(line + " ")
	e := c.recvErr(CodeLimitExceeded)
	if !strings.Contains(e.Message, "1024") {
		t.Errorf("message %q does not name the limit", e.Message)
	}
	c.expectClosed()

	bystander.send(req(2, MethodStats, ""))
	if r := bystander.recv(); r.Error != nil {
		t.Fatalf("other connection broken: %v", r.Error)
	}
	fresh := authedRaw(t, ts.path)
	fresh.send(req(3, MethodStats, ""))
	if r := fresh.recv(); r.Error != nil {
		t.Fatalf("new connection broken: %v", r.Error)
	}
}

func TestLineTooLongDefaultLimit(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	bystander := authedRaw(t, ts.path)
	c := authedRaw(t, ts.path)
	big := `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"queue":"q","payload":"` +
		strings.Repeat("x", 3<<20) + `"}}` + "\n"
	// The server stops reading at 2 MiB and closes, so the write may fail;
	// the reply must arrive either way.
	go func() {
		c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		c.nc.Write([]byte(big))
	}()
	c.recvErr(CodeLimitExceeded)
	c.expectClosed()
	bystander.send(req(2, MethodStats, ""))
	if r := bystander.recv(); r.Error != nil {
		t.Fatalf("other connection broken: %v", r.Error)
	}
}

func TestLongLineBeforeAuth(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := dialRaw(t, ts.path)
	go func() {
		c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		c.nc.Write([]byte(strings.Repeat("x", 64<<10) + "\n"))
	}()
	c.recvErr(CodeLimitExceeded)
	c.expectClosed()
}

func TestUnauthenticatedIdleTimeout(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{AuthTimeout: 150 * time.Millisecond})
	idle := dialRaw(t, ts.path)
	start := time.Now()
	e := idle.recvErr(CodeUnauthorized)
	if !strings.Contains(e.Message, "auth.v1") {
		t.Errorf("message %q", e.Message)
	}
	idle.expectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %s", d)
	}

	// Trickling bytes does not extend the deadline: it runs from accept.
	slow := dialRaw(t, ts.path)
	start = time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range []byte(`{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"`) {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := slow.nc.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	slow.recvErr(CodeUnauthorized)
	slow.expectClosed()
	if d := time.Since(start); d > time.Second {
		t.Errorf("slow writer kept the connection for %s", d)
	}

	// An authenticated connection has no idle timeout.
	c := authedRaw(t, ts.path)
	time.Sleep(300 * time.Millisecond)
	c.send(req(1, MethodStats, ""))
	if r := c.recv(); r.Error != nil {
		t.Fatal(r.Error)
	}
}

func TestConnectionLimit(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{MaxConns: 4})
	var conns []*rawConn
	for range 4 {
		conns = append(conns, authedRaw(t, ts.path))
	}
	extra := dialRaw(t, ts.path)
	r := extra.recv()
	if r.Error == nil || r.Error.Code != CodeLimitExceeded || string(r.ID) != "null" {
		t.Fatalf("5th connection: %+v", r)
	}
	extra.expectClosed()
	for i, c := range conns {
		c.send(req(i, MethodStats, ""))
		if r := c.recv(); r.Error != nil {
			t.Fatalf("conn %d: %v", i, r.Error)
		}
	}
	// A slot frees once a connection ends.
	conns[0].nc.Close()
	eventually(t, "a free connection slot", func() bool { return authOnce(ts.path) })
}

// authOnce dials and authenticates once. Until the freed slot is seen, the
// server may refuse and close before the auth line is written, so a broken
// pipe or an early EOF means "not yet", not a failure.
func authOnce(path string) bool {
	nc, err := net.Dial("unix", path)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := nc.Write([]byte(req(0, MethodAuth, `{"token":"`+testToken+`"}`) + "\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(nc).ReadBytes('\n')
	if err != nil {
		return false
	}
	var r testResp
	return json.Unmarshal(line, &r) == nil && r.Error == nil && r.Result != nil
}

func TestInFlightLimit(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{MaxInFlight: 2})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodWait, `{"ids":["j1"]}`))
	c.send(req(2, MethodWait, `{"ids":["j1"]}`))
	c.send(req(3, MethodWait, `{"ids":["j1"]}`))
	e := c.recvErr(CodeLimitExceeded)
	if !strings.Contains(e.Message, "in flight") {
		t.Errorf("message %q", e.Message)
	}
	ts.fake.setState("j1", "DONE")
	for range 2 {
		if r := c.recv(); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
}

func TestConcurrentRequestsOnOneConnection(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodWait, `{"ids":["j1"]}`))
	c.send(req(2, MethodGet, `{"id":"j1"}`))
	if r := c.recv(); string(r.ID) != "2" || r.Error != nil {
		t.Fatalf("get did not answer while wait was pending: %+v", r)
	}
	ts.fake.setState("j1", "DONE")
	r := c.recv()
	if string(r.ID) != "1" || r.Error != nil {
		t.Fatalf("wait: %+v", r)
	}
}

func TestHalfCloseStillAnswers(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	c := dialRaw(t, ts.path)
	c.send(req(0, MethodAuth, `{"token":"`+testToken+`"}`) + "\n" + req(1, MethodGet, `{"id":"j1"}`) + "\n" + req(2, MethodWait, `{"ids":["j1"]}`))
	c.nc.(interface{ CloseWrite() error }).CloseWrite()
	got := map[string]*RPCError{}
	for range 3 {
		r := c.recv()
		got[string(r.ID)] = r.Error
	}
	if got["0"] != nil || got["1"] != nil {
		t.Fatalf("auth or get failed: %v %v", got["0"], got["1"])
	}
	// The open-ended wait is cancelled when the client stops sending.
	if e := got["2"]; e == nil || e.Code != CodeInternal {
		t.Fatalf("wait after half-close: %v", e)
	}
	c.expectClosed()
}

func TestShutdownAnswersInFlight(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodWait, `{"ids":["j1"]}`))
	c.send(req(2, MethodGet, `{"id":"j1"}`)) // make sure the wait is running
	c.recv()
	start := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	e := c.recvErr(CodeUnavailable)
	if e.Message != "daemon shutting down" {
		t.Errorf("message %q", e.Message)
	}
	c.expectClosed()
	if _, err := os.Lstat(ts.path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
}

func TestShutdownClosesStuckConnection(t *testing.T) {
	// A client that never reads: the server must still stop within the
	// shutdown and write timeouts.
	ts := startServer(t, nil, ServerOptions{ShutdownTimeout: 100 * time.Millisecond})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	for range 200 {
		ts.fake.addLog("j1", strings.Repeat("y", 4000), false)
	}
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodTail, `{"job_id":"j1","follow":true}`))
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s", d)
	}
}

func TestMethodsList(t *testing.T) {
	ms := Methods()
	if len(ms) != 15 {
		t.Fatalf("Methods() = %v", ms)
	}
	for _, m := range ms {
		if !isMethod(m) {
			t.Errorf("%s listed but not served", m)
		}
	}
}

// TestAPIDocCoversProtocol keeps docs/API.md in step with the code.
func TestAPIDocCoversProtocol(t *testing.T) {
	doc, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(Methods(), NotifyLogsEvent) {
		if !bytes.Contains(doc, []byte("`"+m+"`")) {
			t.Errorf("docs/API.md does not mention %s", m)
		}
	}
	for _, code := range []int{CodeParseError, CodeInvalidRequest, CodeMethodNotFound, CodeInvalidParams, CodeInternal,
		CodeUnauthorized, CodeNotFound, CodeConflict, CodeUnavailable, CodeLimitExceeded, CodeRateLimited} {
		if !bytes.Contains(doc, []byte(itoaCode(code))) {
			t.Errorf("docs/API.md does not mention code %d", code)
		}
	}
}

func itoaCode(c int) string { b, _ := json.Marshal(c); return string(b) }

type panicBackend struct{ *fakeBackend }

func (panicBackend) Stats(context.Context) (engine.Stats, error) { panic("boom") }

func TestBackendPanicIsAnInternalError(t *testing.T) {
	ts := startServerWith(t, panicBackend{newFake()}, ServerOptions{})
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodStats, ""))
	if e := c.recvErr(CodeInternal); e.Message != "internal error" {
		t.Errorf("message %q", e.Message)
	}
	c.send(req(2, MethodRecover, ""))
	if r := c.recv(); r.Error != nil {
		t.Fatalf("connection broken after a panic: %v", r.Error)
	}
}
