package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"stq/engine"
)

// The engine is the production Backend.
var _ Backend = (*engine.Engine)(nil)

func enqueueReq(queue string) engine.EnqueueRequest {
	return engine.EnqueueRequest{Queue: queue, Command: []string{"true"}}
}

func TestClientRoundTrips(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := dialClient(t, ts.path)
	ctx := testCtx(t)
	if c.ServerVersion() != "test-1" {
		t.Errorf("server version %q", c.ServerVersion())
	}

	// enqueue: defaults, durations as strings, payload kept verbatim.
	delay := engine.Duration(30 * time.Second)
	var res engine.EnqueueResult
	err := c.Call(ctx, MethodEnqueue, &engine.EnqueueRequest{
		Subject: "src/a.go", Payload: json.RawMessage(`{"file":"a.go"}`), Delay: &delay,
		Command: []string{"go", "vet"}, Env: map[string]string{"A": "1"},
	}, &res)
	if err != nil {
		t.Fatal(err)
	}
	j1 := res.Job
	if j1.ID != "j1" || j1.Queue != "default" || j1.Type != "exec" || j1.State != engine.StateQueued ||
		string(j1.Payload) != `{"file":"a.go"}` || !j1.RunAt.Equal(epoch.Add(30*time.Second)) || j1.Env["A"] != "1" {
		t.Fatalf("enqueued job %+v", j1)
	}
	// Same subject: the first is superseded.
	if err := c.Call(ctx, MethodEnqueue, &engine.EnqueueRequest{Subject: "src/a.go"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Job.ID != "j2" || len(res.Superseded) != 1 || res.Superseded[0] != "j1" {
		t.Fatalf("second enqueue %+v %v", res.Job, res.Superseded)
	}
	if err := c.Call(ctx, MethodEnqueue, &engine.EnqueueRequest{Queue: "other", Type: "lint"}, nil); err != nil {
		t.Fatal(err)
	}

	var got engine.Job
	if err := c.Call(ctx, MethodGet, &GetParams{ID: "j1"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.State != engine.StateSuperseded || got.Subject != "src/a.go" {
		t.Fatalf("get j1: %+v", got)
	}

	var list JobsResult
	if err := c.Call(ctx, MethodList, &ListParams{States: []string{"queued"}}, &list); err != nil {
		t.Fatal(err)
	}
	if ids := jobIDs(list.Jobs); ids != "j3,j2" {
		t.Fatalf("list queued: %s", ids)
	}
	if err := c.Call(ctx, MethodList, &ListParams{Queue: "other"}, &list); err != nil {
		t.Fatal(err)
	}
	if ids := jobIDs(list.Jobs); ids != "j3" {
		t.Fatalf("list queue other: %s", ids)
	}
	if err := c.Call(ctx, MethodList, &ListParams{Limit: 1}, &list); err != nil {
		t.Fatal(err)
	}
	if ids := jobIDs(list.Jobs); ids != "j3" {
		t.Fatalf("list limit 1: %s", ids)
	}
	// An empty list is [] on the wire, not null.
	var raw json.RawMessage
	if err := c.Call(ctx, MethodList, &ListParams{Queue: "none"}, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"jobs":[],"next_cursor":""}` {
		t.Fatalf("empty list: %s", raw)
	}

	var cancelled JobsResult
	if err := c.Call(ctx, MethodCancel, &engine.CancelRequest{ID: "j2"}, &cancelled); err != nil {
		t.Fatal(err)
	}
	if len(cancelled.Jobs) != 1 || cancelled.Jobs[0].State != engine.StateCancelled {
		t.Fatalf("cancel: %+v", cancelled.Jobs)
	}
	err = c.Call(ctx, MethodCancel, &engine.CancelRequest{ID: "j2"}, &cancelled)
	if code := rpcCode(err); code != CodeConflict {
		t.Fatalf("cancel a finished job: %v", err)
	}

	var st engine.Stats
	if err := c.Call(ctx, MethodStats, nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Workers != 4 || st.Owner != "host/1" || st.Queues["default"][engine.StateQueued] != 2 || st.DBBytes != 4096 {
		t.Fatalf("stats %+v", st)
	}

	var rep engine.RecoverReport
	if err := c.Call(ctx, MethodRecover, struct{}{}, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 2 || len(rep.Recovered) != 1 || !rep.Recovered[0].Killed {
		t.Fatalf("recover %+v", rep)
	}

	// The connection is still good after an error response.
	if err := c.Call(ctx, MethodGet, &GetParams{ID: "nope"}, &got); rpcCode(err) != CodeNotFound {
		t.Fatalf("get unknown: %v", err)
	}
	if err := c.Call(ctx, MethodGet, &GetParams{ID: "j3"}, &got); err != nil || got.Queue != "other" {
		t.Fatalf("get after error: %v %+v", err, got)
	}
}

func jobIDs(jobs []*engine.Job) string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return strings.Join(ids, ",")
}

func rpcCode(err error) int {
	var re *RPCError
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

func TestBackendErrorMapping(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := dialClient(t, ts.path)
	ctx := testCtx(t)
	cases := []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: queue must not be empty", engine.ErrInvalid), CodeInvalidParams},
		{fmt.Errorf("get x: %w", engine.ErrNotFound), CodeNotFound},
		{fmt.Errorf("cancel x: %w", engine.ErrFinished), CodeConflict},
		{fmt.Errorf("enqueue: %w", engine.ErrClosed), CodeUnavailable},
		{errors.New("disk on fire"), CodeInternal},
		{context.Canceled, CodeInternal},
	}
	for _, tc := range cases {
		ts.fake.setFail(tc.err)
		for _, m := range []struct {
			method string
			params any
		}{
			{MethodEnqueue, enqueueReq("q")},
			{MethodCancel, engine.CancelRequest{ID: "x"}},
			{MethodGet, GetParams{ID: "x"}},
			{MethodList, ListParams{}},
			{MethodWait, WaitParams{IDs: []string{"x"}}},
			{MethodTail, TailParams{JobID: "x"}},
			{MethodTail, TailParams{JobID: "x", Follow: true}},
			{MethodStats, nil},
			{MethodRecover, nil},
		} {
			err := c.Call(ctx, m.method, m.params, nil)
			var re *RPCError
			if !errors.As(err, &re) {
				t.Fatalf("%s with %v: not an RPCError: %v", m.method, tc.err, err)
			}
			if re.Code != tc.code || re.Message != tc.err.Error() {
				t.Errorf("%s with %v: got %d %q", m.method, tc.err, re.Code, re.Message)
			}
		}
	}
}

func TestWaitBlocksUntilTerminal(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	ts.fake.Enqueue(ctx, enqueueReq("q"))
	ts.fake.Enqueue(ctx, enqueueReq("q"))
	c := dialClient(t, ts.path)

	done := make(chan error, 1)
	var res WaitResult
	go func() { done <- c.Call(ctx, MethodWait, &WaitParams{IDs: []string{"j1", "j2"}}, &res) }()
	select {
	case err := <-done:
		t.Fatalf("wait returned early: %v %+v", err, res)
	case <-time.After(100 * time.Millisecond):
	}
	ts.fake.setState("j1", engine.StateDone)
	select {
	case err := <-done:
		t.Fatalf("wait returned with one job live: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	ts.fake.setState("j2", engine.StateFailed)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("wait did not return")
	}
	if res.TimedOut || len(res.Jobs) != 2 || res.Jobs[0].State != engine.StateDone || res.Jobs[1].State != engine.StateFailed {
		t.Fatalf("wait result %+v", res)
	}
}

func TestWaitTimeout(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	ts.fake.Enqueue(ctx, enqueueReq("q"))
	ts.fake.Enqueue(ctx, enqueueReq("q"))
	ts.fake.setState("j2", engine.StateDone)
	c := dialClient(t, ts.path)

	d := engine.Duration(50 * time.Millisecond)
	var res WaitResult
	start := time.Now()
	if err := c.Call(ctx, MethodWait, &WaitParams{IDs: []string{"j1", "j2"}, Timeout: &d}, &res); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 2*time.Second || !res.TimedOut || len(res.Jobs) != 2 ||
		res.Jobs[0].State != engine.StateQueued || res.Jobs[1].State != engine.StateDone {
		t.Fatalf("timed-out wait %+v", res)
	}
	// A zero timeout polls; all terminal means not timed out.
	zero := engine.Duration(0)
	if err := c.Call(ctx, MethodWait, &WaitParams{IDs: []string{"j2"}, Timeout: &zero}, &res); err != nil {
		t.Fatal(err)
	}
	if res.TimedOut || len(res.Jobs) != 1 {
		t.Fatalf("poll of a finished job %+v", res)
	}
	// The wire form: timeout is a duration string.
	var raw json.RawMessage
	if err := c.Call(ctx, MethodWait, json.RawMessage(`{"ids":["j1"],"timeout":"10ms"}`), &raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"timed_out":true`) {
		t.Fatalf("raw wait result %s", raw)
	}
}

// tailCollector records logs.event notifications.
type tailCollector struct {
	events []engine.Event
	onLine func(engine.Event)
}

func (tc *tailCollector) notify(method string, params json.RawMessage) error {
	if method != NotifyLogsEvent {
		return fmt.Errorf("unexpected notification %s", method)
	}
	var ev engine.Event
	if err := json.Unmarshal(params, &ev); err != nil {
		return err
	}
	tc.events = append(tc.events, ev)
	if tc.onLine != nil {
		tc.onLine(ev)
	}
	return nil
}

func (tc *tailCollector) lines() string {
	var out []string
	for _, ev := range tc.events {
		if ev.Kind == engine.EventLog {
			out = append(out, fmt.Sprintf("%d:%s", ev.Line.Seq, ev.Line.Text))
		}
	}
	return strings.Join(out, " ")
}

func TestTailFollow(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	f := ts.fake
	f.Enqueue(ctx, enqueueReq("q"))
	f.setState("j1", engine.StateRunning)
	f.addLog("j1", "one", false)
	l2 := f.addLog("j1", "two", false)
	c := dialClient(t, ts.path)

	tc := &tailCollector{}
	// Once the stored lines are through, feed live events: a duplicate of a
	// stored line, a new line, then the end of the job.
	tc.onLine = func(ev engine.Event) {
		if ev.Kind == engine.EventLog && ev.Line.Seq == 2 {
			go func() {
				f.publish(engine.Event{Kind: engine.EventLog, JobID: "j1", Line: &l2})
				// The engine attaches the job to log events; it must not
				// reach the wire.
				l3 := f.addLog("j1", "three", false)
				job, _ := f.Get(context.Background(), "j1")
				f.publish(engine.Event{Kind: engine.EventLog, JobID: "j1", Job: job, Line: &l3})
				f.publish(engine.Event{Kind: engine.EventLog, JobID: "j1", Line: &l2})
				f.setState("j1", engine.StateDone)
			}()
		}
	}
	var res TailResult
	if err := c.Stream(ctx, MethodTail, &TailParams{JobID: "j1", Follow: true}, tc.notify, &res); err != nil {
		t.Fatal(err)
	}
	if got := tc.lines(); got != "1:one 2:two 3:three" {
		t.Fatalf("lines %q", got)
	}
	if res.Job == nil || res.Job.State != engine.StateDone {
		t.Fatalf("final result %+v", res)
	}
	for _, ev := range tc.events {
		if ev.Kind == engine.EventLog && ev.Job != nil {
			t.Errorf("log event carries its job: %+v", ev)
		}
	}
	last := tc.events[len(tc.events)-1]
	if last.Kind != engine.EventJob || last.Job.State != engine.StateDone {
		t.Errorf("last event %+v", last)
	}
	eventually(t, "the subscription to close", func() bool { return f.subscribers() == 0 })

	// The same connection serves the next call.
	var got engine.Job
	if err := c.Call(ctx, MethodGet, &GetParams{ID: "j1"}, &got); err != nil {
		t.Fatal(err)
	}
}

func TestTailFollowFinishedJob(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	f := ts.fake
	f.Enqueue(ctx, enqueueReq("q"))
	for i := range 2500 { // more than one page
		f.addLog("j1", fmt.Sprint("line", i), false)
	}
	f.setState("j1", engine.StateFailed)
	c := dialClient(t, ts.path)
	tc := &tailCollector{}
	var res TailResult
	if err := c.Stream(ctx, MethodTail, &TailParams{JobID: "j1", Follow: true, AfterSeq: 100}, tc.notify, &res); err != nil {
		t.Fatal(err)
	}
	if len(tc.events) != 2400 || tc.events[0].Line.Seq != 101 || tc.events[2399].Line.Seq != 2500 {
		t.Fatalf("got %d events", len(tc.events))
	}
	if res.Job.State != engine.StateFailed {
		t.Fatalf("final %+v", res.Job)
	}
}

func TestTailStored(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	f := ts.fake
	f.Enqueue(ctx, enqueueReq("q"))
	for i := range MaxTailLines + 5 {
		f.addLog("j1", fmt.Sprint("l", i), false)
	}
	c := dialClient(t, ts.path)
	var res LinesResult
	if err := c.Call(ctx, MethodTail, &TailParams{JobID: "j1"}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Lines) != MaxTailLines || !res.More || res.Lines[0].Seq != 1 {
		t.Fatalf("first page: %d lines, more=%v", len(res.Lines), res.More)
	}
	after := res.Lines[len(res.Lines)-1].Seq
	res = LinesResult{}
	if err := c.Call(ctx, MethodTail, &TailParams{JobID: "j1", AfterSeq: after}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Lines) != 5 || res.More || res.Lines[0].Seq != after+1 {
		t.Fatalf("second page: %d lines, more=%v", len(res.Lines), res.More)
	}
	if err := c.Call(ctx, MethodTail, &TailParams{JobID: "nope"}, &res); rpcCode(err) != CodeNotFound {
		t.Fatalf("tail of unknown job: %v", err)
	}
}

func TestTailFollowQueue(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	f := ts.fake
	f.Enqueue(ctx, enqueueReq("build")) // j1
	f.Enqueue(ctx, enqueueReq("other")) // j2
	c := dialClient(t, ts.path)

	stop := errors.New("enough")
	tc := &tailCollector{}
	go func() {
		poll(func() bool { return f.subscribers() == 1 })
		f.addLog("j2", "not mine", true)
		f.addLog("j1", "mine", true)
		f.setState("j2", engine.StateRunning)
		f.setState("j1", engine.StateRunning)
		f.addLog("j1", "last", true)
	}()
	err := c.Stream(ctx, MethodTail, &TailParams{Queue: "build", Follow: true}, func(m string, p json.RawMessage) error {
		if err := tc.notify(m, p); err != nil {
			return err
		}
		if ev := tc.events[len(tc.events)-1]; ev.Kind == engine.EventLog && ev.Line.Text == "last" {
			return stop
		}
		return nil
	}, nil)
	if !errors.Is(err, stop) {
		t.Fatalf("stream ended with %v", err)
	}
	if got := tc.lines(); got != "1:mine 2:last" {
		t.Fatalf("lines %q", got)
	}
	for _, ev := range tc.events {
		if ev.JobID != "j1" {
			t.Errorf("event of another queue: %+v", ev)
		}
	}
	// Stopping a stream leaves the client closed; the server notices.
	if err := c.Call(ctx, MethodStats, nil, nil); err == nil {
		t.Fatal("client usable after an aborted stream")
	}
	eventually(t, "the subscription to close", func() bool { return f.subscribers() == 0 })
}

func TestTailSubscriberLag(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	f := ts.fake
	f.Enqueue(ctx, enqueueReq("q"))
	c := dialClient(t, ts.path)
	go func() {
		poll(func() bool { return f.subscribers() == 1 })
		f.cutAll(true)
	}()
	err := c.Stream(ctx, MethodTail, &TailParams{JobID: "j1", Follow: true}, func(string, json.RawMessage) error { return nil }, nil)
	var re *RPCError
	if !errors.As(err, &re) || re.Code != CodeLimitExceeded || re.Message != "subscriber fell behind" {
		t.Fatalf("lagged tail: %v", err)
	}

	// A subscription the engine closes at shutdown is "unavailable".
	go func() {
		poll(func() bool { return f.subscribers() == 1 })
		f.cutAll(false)
	}()
	err = c.Stream(ctx, MethodTail, &TailParams{Follow: true}, func(string, json.RawMessage) error { return nil }, nil)
	if rpcCode(err) != CodeUnavailable {
		t.Fatalf("tail at engine shutdown: %v", err)
	}
}

func TestClientContextCancel(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ts.fake.Enqueue(testCtx(t), enqueueReq("q"))
	c := dialClient(t, ts.path)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Call(ctx, MethodWait, &WaitParams{IDs: []string{"j1"}}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with a short context: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("cancel took too long")
	}
	if err := c.Call(testCtx(t), MethodStats, nil, nil); err == nil {
		t.Fatal("client usable after a cancelled call")
	}
	// The server drops the abandoned wait.
	eventually(t, "the server to end the connection", func() bool {
		return ts.fake.waiters() == 0
	})
}

func TestDialNoDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "stq")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	missing := filepath.Join(dir, "missing.sock")
	_, err = Dial(testCtx(t), missing, testToken)
	if !errors.Is(err, ErrNoDaemon) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("dial missing socket: %v", err)
	}
	// The library states the fact; advice is the CLI's (commands/hints.go).
	var nd *NoDaemonError
	want := "no daemon at " + missing
	if !errors.As(err, &nd) || nd.Path != missing || nd.Starting != "" || err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}

	stale := filepath.Join(dir, "stale.sock")
	makeStaleSocket(t, stale)
	if _, err := Dial(testCtx(t), stale, testToken); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("dial stale socket: %v", err)
	}
}

func TestDialWrongToken(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	_, err := Dial(testCtx(t), ts.path, "bad")
	if rpcCode(err) != CodeUnauthorized || errors.Is(err, ErrNoDaemon) {
		t.Fatalf("dial with a wrong token: %v", err)
	}
}

func TestDialConnectionLimit(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{MaxConns: 1})
	dialClient(t, ts.path)
	_, err := Dial(testCtx(t), ts.path, testToken)
	if rpcCode(err) != CodeLimitExceeded {
		t.Fatalf("dial over the limit: %v", err)
	}
}

func makeStaleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

// benchBackend answers Enqueue with a fixed job, so the benchmark measures
// the protocol and not the fake.
type benchBackend struct {
	*fakeBackend
	res engine.EnqueueResult
}

func (b *benchBackend) Enqueue(context.Context, engine.EnqueueRequest) (engine.EnqueueResult, error) {
	return b.res, nil
}

func BenchmarkCallEnqueue(b *testing.B) {
	job := &engine.Job{ID: "01J0000000000000000000000", Queue: "bench", Type: "exec", Subject: "file.go",
		Generation: 7, State: engine.StateQueued, MaxAttempts: 3, Command: []string{"go", "vet", "./..."},
		RunAt: epoch, CreatedAt: epoch, Deadline: engine.Duration(time.Minute), Attempts: []engine.Attempt{}}
	bb := &benchBackend{fakeBackend: newFake(), res: engine.EnqueueResult{Job: job, Superseded: []string{"01J0000000000000000000001"}}}
	ts := startServerWith(b, bb, ServerOptions{})
	c := dialClient(b, ts.path)
	ctx := context.Background()
	req := &engine.EnqueueRequest{Queue: "bench", Subject: "file.go", Command: []string{"go", "vet", "./..."}}
	var res engine.EnqueueResult
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Call(ctx, MethodEnqueue, req, &res); err != nil {
			b.Fatal(err)
		}
	}
}

// Connect sends the auth request with the first call: one write, and the
// call's answer or the refusal comes back on that round trip.
func TestConnectAuthenticatesWithFirstCall(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	c, err := Connect(ctx, ts.path, testToken)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ServerVersion() != "" {
		t.Fatalf("version %q known before any call", c.ServerVersion())
	}
	var res engine.EnqueueResult
	if err := c.Call(ctx, MethodEnqueue, &engine.EnqueueRequest{Type: "lint"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Job == nil || res.Job.Type != "lint" || c.ServerVersion() != "test-1" {
		t.Fatalf("first call: %+v, version %q", res.Job, c.ServerVersion())
	}
	// Later calls go out alone.
	var got engine.Job
	if err := c.Call(ctx, MethodGet, &GetParams{ID: res.Job.ID}, &got); err != nil || got.ID != res.Job.ID {
		t.Fatalf("second call: %+v, %v", got, err)
	}

	bad, err := Connect(ctx, ts.path, "bad")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Call(ctx, MethodEnqueue, &engine.EnqueueRequest{Type: "lint"}, &res)
	if rpcCode(err) != CodeUnauthorized || !strings.Contains(err.Error(), "authenticate") {
		t.Fatalf("first call with a wrong token: %v", err)
	}
	if err := bad.Call(ctx, MethodGet, &GetParams{ID: res.Job.ID}, &got); err == nil {
		t.Fatal("a refused connection served a later call")
	}
	var list JobsResult
	if err := c.Call(ctx, MethodList, &ListParams{}, &list); err != nil || len(list.Jobs) != 1 {
		t.Fatalf("jobs after the refused enqueue: %d, %v; want only the first", len(list.Jobs), err)
	}
}
