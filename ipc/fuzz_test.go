package ipc

// Fuzz tests of the request path. FuzzDecodeRequest drives the pure
// functions the server runs on every line (lineReader, parseCall,
// decodeCall) and then conn.call with a recording backend; FuzzServerLine
// sends one line to a real server on a Unix socket. Both run their seed
// corpus (f.Add and testdata/fuzz/<name>/) under plain `go test`.
//
// Inputs are (data, n): when n > 0 the data is expanded by expandFuzz, so a
// seed a few bytes long can stand for 100000 nested brackets.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"stq/engine"
)

// maxFuzzReps bounds the repetition count of expandFuzz.
const maxFuzzReps = 1 << 17

// expandFuzz turns a compact input into a large one. With n == 0 the data is
// used as it is. Otherwise data is split at 0xFF bytes and every odd-numbered
// part is repeated n%maxFuzzReps times, with the total kept within limit:
// "pre\xff[\xff\xff]\xffpost" with n = 100000 becomes pre, 100000 '[',
// 100000 ']', post.
func expandFuzz(data []byte, n uint32, limit int) []byte {
	if n == 0 {
		return data
	}
	parts := bytes.Split(data, []byte{0xff})
	fixed, unit := 0, 0
	for i, p := range parts {
		if i%2 == 0 {
			fixed += len(p)
		} else {
			unit += len(p)
		}
	}
	reps := int(n % maxFuzzReps)
	if unit > 0 && fixed+reps*unit > limit {
		reps = max(0, (limit-fixed)/unit)
	}
	out := make([]byte, 0, fixed+reps*unit)
	for i, p := range parts {
		if i%2 == 0 {
			out = append(out, p...)
			continue
		}
		for range reps {
			out = append(out, p...)
		}
	}
	return out
}

// fuzzSeeds are the seeds both fuzzers start from (more, and the big and
// binary ones, are in testdata/fuzz).
var fuzzSeeds = []struct {
	line string
	n    uint32
}{
	{`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"}`, 0},
	{`{"jsonrpc":"2.0","id":"a","method":"admin.recover.v1","params":{}}`, 0},
	{`{"jsonrpc":"2.0","id":2,"method":"dev.enqueue.v1","params":{"queue":"lint","subject":"src/main.go","command":["go","vet","./..."],"cwd":"/home/ann","delay":"2s","payload":{"file":"src/main.go"}}}`, 0},
	{`{"jsonrpc":"2.0","id":3,"method":"dev.enqueue.v1","params":{"generation":-1,"priority":99999999999999999999,"max_attempts":1e3}}`, 0},
	{`{"jsonrpc":"2.0","id":4,"method":"dev.get.v1","params":{"id":"j1"}}`, 0},
	{`{"jsonrpc":"2.0","id":5,"method":"dev.list.v1","params":{"states":["queued","Done"],"limit":10}}`, 0},
	{`{"jsonrpc":"2.0","id":6,"method":"dev.cancel.v1","params":{"id":"j1"}}`, 0},
	{`{"jsonrpc":"2.0","id":7,"method":"dev.wait.v1","params":{"ids":["j1","j2"],"timeout":"0s"}}`, 0},
	{`{"jsonrpc":"2.0","id":8,"method":"logs.tail.v1","params":{"job_id":"j2","after_seq":0}}`, 0},
	{`{"jsonrpc":"2.0","id":9,"method":"logs.tail.v1","params":{"follow":true,"queue":"q"}}`, 0},
	{`{"jsonrpc":"2.0","id":16,"method":"logs.tail.v1","params":{"job_id":"j2","last":3}}`, 0},
	{`{"jsonrpc":"2.0","id":17,"method":"logs.tail.v1","params":{"follow":true,"last":-1}}`, 0},
	{`{"jsonrpc":"2.0","id":10,"method":"auth.v1","params":{"token":"` + testToken + `"}}`, 0},
	{`{"jsonrpc":"2.0","id":11,"method":"admin.pause.v1","params":{"queue":"q"}}`, 0},
	{`{"jsonrpc":"2.0","id":12,"method":"admin.resume.v1","params":{"queue":""}}`, 0},
	{`{"jsonrpc":"2.0","id":13,"method":"dev.retry.v1","params":{"id":"j1"}}`, 0},
	{`{"jsonrpc":"2.0","id":14,"method":"admin.shutdown.v1"}`, 0},
	{`{"jsonrpc":"2.0","id":15,"method":"admin.reload.v1","params":{}}`, 0},
	{`[{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"}]`, 0},
	{`{"jsonrpc":"2.0","method":"admin.stats.v1"}`, 0},
	{`{"jsonrpc":"2.0","id":1e400,"method":"dev.lsit.v1"}`, 0},
	{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"dev.get.v1\",\"params\":{\"id\":\"\xff\x00\"}}", 0},
	// 100000 nested arrays as the payload of an enqueue.
	{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"dev.enqueue.v1\",\"params\":{\"payload\":\xff[\xff\xff]\xff}}", 100000},
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.line), s.n)
	}
	f.Fuzz(func(t *testing.T, data []byte, n uint32) {
		in := expandFuzz(data, n, DefaultMaxLineBytes+64)
		// The server's own line splitting, with its default limit.
		lr := newLineReader(bytes.NewReader(in), DefaultMaxLineBytes)
		for {
			line, err := lr.next()
			switch {
			case errors.Is(err, io.EOF):
				return
			case errors.Is(err, errLineTooLong):
				// The server answers -32005 and closes: nothing is decoded.
				if len(in) <= DefaultMaxLineBytes {
					t.Fatalf("line too long in an input of %d bytes", len(in))
				}
				return
			case err != nil:
				t.Fatalf("line reader: %v", err)
			}
			if len(line) > DefaultMaxLineBytes || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line reader returned %d bytes with a newline or over the limit", len(line))
			}
			checkLine(t, line)
		}
	})
}

// checkLine runs one line through what an authenticated connection does
// with it and checks the outcome.
func checkLine(t *testing.T, line []byte) {
	if isBlank(line) {
		return // ignored by the server
	}
	req, id, perr := parseCall(line)
	checkReplyID(t, id)
	wellFormed := utf8.Valid(line) && json.Valid(line)
	if perr != nil {
		switch perr.Code {
		case CodeParseError, CodeInvalidRequest, CodeMethodNotFound:
		default:
			t.Fatalf("parseCall(%.200q): undocumented code %d %q", line, perr.Code, perr.Message)
		}
		if (perr.Code == CodeParseError) == wellFormed {
			t.Fatalf("parseCall(%.200q): code %d, but valid UTF-8 and JSON = %v", line, perr.Code, wellFormed)
		}
		if perr.Code == CodeParseError && string(id) != "null" {
			t.Fatalf("parseCall(%.200q): parse error with id %s", line, id)
		}
		if req != nil && perr.Code != CodeMethodNotFound && perr.Code != CodeInvalidRequest {
			t.Fatalf("parseCall(%.200q): a request with error %d", line, perr.Code)
		}
		return
	}
	if !wellFormed {
		t.Fatalf("parseCall accepted a line that is not valid UTF-8 JSON: %.200q", line)
	}
	if req.JSONRPC != "2.0" || !isMethod(req.Method) || req.Method == MethodAuth {
		t.Fatalf("parseCall accepted %q (jsonrpc %q, method %q)", line, req.JSONRPC, req.Method)
	}
	if req.notification() {
		if string(id) != "null" {
			t.Fatalf("parseCall(%.200q): notification answered with id %s", line, id)
		}
	} else if string(id) != string(req.ID) {
		t.Fatalf("parseCall(%.200q): id %s, request id %s", line, id, req.ID)
	}
	checkMembers(t, "request", line, reflect.TypeFor[request]())

	params, derr := decodeCall(req)
	rec := &recordingBackend{}
	c := &conn{srv: &Server{backend: rec, log: slog.New(slog.DiscardHandler)}}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	_, cerr := c.call(ctx, req)

	if derr != nil {
		e := toRPCError(derr, false)
		if e.Code != CodeInvalidParams {
			t.Fatalf("decodeCall(%s, %.200q): code %d %q, want %d", req.Method, req.Params, e.Code, e.Message, CodeInvalidParams)
		}
		if calls := rec.calls(); len(calls) > 0 {
			t.Fatalf("invalid params %.200q (%v) reached the backend: %v", req.Params, derr, calls)
		}
		if ce := toRPCError(cerr, false); cerr == nil || ce.Code != e.Code || ce.Message != e.Message {
			t.Fatalf("call answered %v, decodeCall %v", cerr, derr)
		}
		return
	}
	if raw := bytes.TrimLeft(req.Params, " \t\r\n"); !isNullOrEmpty(raw) && raw[0] != '{' {
		t.Fatalf("params %.200q accepted, not an object", req.Params)
	}
	checkParams(t, req, params)
	if len(rec.calls()) == 0 {
		t.Fatalf("a valid %s request did not reach the backend", req.Method)
	}
	if p, ok := params.(*engine.EnqueueRequest); ok {
		got := rec.enqueued()
		if len(got) != 1 || !reflect.DeepEqual(got[0], *p) {
			t.Fatalf("backend got %+v, decodeCall gave %+v", got, *p)
		}
	} else if len(rec.enqueued()) > 0 {
		t.Fatalf("a %s request enqueued", req.Method)
	}
}

// checkReplyID checks an id the server would put in a response: null, or a
// JSON string or number that encodes.
func checkReplyID(t *testing.T, id json.RawMessage) {
	t.Helper()
	if string(id) != "null" && (!json.Valid(id) || !validID(id)) {
		t.Fatalf("reply id %.200q is not null, a string or a number", id)
	}
	if _, err := json.Marshal(response{JSONRPC: "2.0", ID: id, Error: rpcErr(CodeInternal, "x")}); err != nil {
		t.Fatalf("a response with id %.200q does not encode: %v", id, err)
	}
}

// checkMembers checks every member of the JSON object raw is a field of
// struct type typ (case-insensitively, as encoding/json matches them).
func checkMembers(t *testing.T, what string, raw []byte, typ reflect.Type) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("%s %.200q accepted but is not a JSON object: %v", what, raw, err)
	}
	for k := range obj {
		known := false
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if strings.EqualFold(name, k) {
				known = true
			}
		}
		if !known {
			t.Fatalf("%s %.200q accepted with unknown member %q", what, raw, k)
		}
	}
}

// checkParams checks decodeCall's result has the method's type and holds
// what decodeCall promises.
func checkParams(t *testing.T, req *request, params any) {
	t.Helper()
	raw := bytes.TrimLeft(req.Params, " \t\r\n")
	members := func(typ reflect.Type) {
		if !isNullOrEmpty(raw) {
			checkMembers(t, req.Method+" params", raw, typ)
		}
	}
	bad := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s params %.200q: "+format, append([]any{req.Method, req.Params}, args...)...)
	}
	switch p := params.(type) {
	case *engine.EnqueueRequest:
		if req.Method != MethodEnqueue {
			bad("decoded as enqueue")
		}
		members(reflect.TypeFor[engine.EnqueueRequest]())
	case *engine.CancelRequest:
		if req.Method != MethodCancel {
			bad("decoded as cancel")
		}
		members(reflect.TypeFor[engine.CancelRequest]())
	case *GetParams:
		if req.Method != MethodGet || p.ID == "" {
			bad("decoded as get %+v", p)
		}
		members(reflect.TypeFor[GetParams]())
	case *ListParams:
		if req.Method != MethodList || p.Limit < 1 || p.Limit > MaxListLimit {
			bad("decoded as list %+v", p)
		}
		for _, s := range p.States {
			if _, err := engine.ParseState(s); err != nil {
				bad("state %q", s)
			}
		}
		members(reflect.TypeFor[ListParams]())
	case *EnqueueManyParams:
		if req.Method != MethodEnqueueMany || len(p.Jobs) == 0 || len(p.Jobs) > MaxBatch ||
			!validReply(p.Reply) {
			bad("decoded as enqueue many with %d jobs", len(p.Jobs))
		}
		members(reflect.TypeFor[EnqueueManyParams]())
	case *WaitParams:
		if req.Method != MethodWait || len(p.IDs) == 0 || len(p.IDs) > MaxWaitIDs ||
			(p.Timeout != nil && *p.Timeout < 0) {
			bad("decoded as wait %+v", p)
		}
		for _, id := range p.IDs {
			if id == "" {
				bad("empty id")
			}
		}
		members(reflect.TypeFor[WaitParams]())
	case *TailParams:
		if req.Method != MethodTail || p.AfterSeq < 0 || (p.JobID != "" && p.Queue != "") || (!p.Follow && p.JobID == "") ||
			(p.Last != nil && (*p.Last < 0 || p.JobID == "")) {
			bad("decoded as tail %+v", p)
		}
		members(reflect.TypeFor[TailParams]())
	case *statsParams:
		if req.Method != MethodStats {
			bad("decoded as stats")
		}
		members(reflect.TypeFor[statsParams]())
	case *recoverParams:
		if req.Method != MethodRecover {
			bad("decoded as recover")
		}
		members(reflect.TypeFor[recoverParams]())
	case *QueueParams:
		if (req.Method != MethodPause && req.Method != MethodResume) || p.Queue == "" {
			bad("decoded as pause or resume %+v", p)
		}
		members(reflect.TypeFor[QueueParams]())
	case *RetryParams:
		if req.Method != MethodRetry || p.ID == "" {
			bad("decoded as retry %+v", p)
		}
		members(reflect.TypeFor[RetryParams]())
	case *shutdownParams:
		if req.Method != MethodShutdown {
			bad("decoded as shutdown")
		}
		members(reflect.TypeFor[shutdownParams]())
	case *reloadParams:
		if req.Method != MethodReload {
			bad("decoded as reload")
		}
		members(reflect.TypeFor[reloadParams]())
	default:
		bad("decoded to %T", params)
	}
}

// recordingBackend records every call and answers at once, so no request
// blocks: Get, Cancel and Wait say "not found" and Subscribe fails.
type recordingBackend struct {
	mu    sync.Mutex
	log   []string
	enqs  []engine.EnqueueRequest
	jobID int
}

func (r *recordingBackend) record(m string) {
	r.mu.Lock()
	r.log = append(r.log, m)
	r.mu.Unlock()
}

func (r *recordingBackend) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

func (r *recordingBackend) enqueued() []engine.EnqueueRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.EnqueueRequest(nil), r.enqs...)
}

func (r *recordingBackend) Enqueue(_ context.Context, req engine.EnqueueRequest) (engine.EnqueueResult, error) {
	r.record("Enqueue")
	r.mu.Lock()
	r.enqs = append(r.enqs, req)
	r.jobID++
	id := r.jobID
	r.mu.Unlock()
	return engine.EnqueueResult{Job: &engine.Job{ID: fmt.Sprintf("j%d", id), State: engine.StateQueued}}, nil
}

func (r *recordingBackend) Cancel(_ context.Context, req engine.CancelRequest) ([]*engine.Job, error) {
	r.record("Cancel")
	return nil, fmt.Errorf("cancel %s: %w", req.ID, engine.ErrNotFound)
}

func (r *recordingBackend) Get(_ context.Context, id string) (*engine.Job, error) {
	r.record("Get")
	return nil, fmt.Errorf("get %s: %w", id, engine.ErrNotFound)
}

func (r *recordingBackend) List(context.Context, engine.ListFilter) (engine.ListPage, error) {
	r.record("List")
	return engine.ListPage{}, nil
}

func (r *recordingBackend) EnqueueMany(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, error) {
	out := make([]engine.EnqueueResult, len(reqs))
	for i, req := range reqs {
		out[i], _ = r.Enqueue(ctx, req)
	}
	return out, nil
}

func (r *recordingBackend) EnqueueEach(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, []error) {
	out, _ := r.EnqueueMany(ctx, reqs)
	return out, make([]error, len(reqs))
}

func (r *recordingBackend) Wait(context.Context, []string) ([]*engine.Job, error) {
	r.record("Wait")
	return nil, fmt.Errorf("wait: %w", engine.ErrNotFound)
}

func (r *recordingBackend) Logs(context.Context, string, int64, int) ([]engine.LogLine, error) {
	r.record("Logs")
	return nil, nil
}

func (r *recordingBackend) LogStart(context.Context, string, int64, int) (int64, error) {
	r.record("LogStart")
	return 0, nil
}

func (r *recordingBackend) Subscribe(engine.EventFilter) *engine.Subscription {
	r.record("Subscribe")
	return nil
}

func (r *recordingBackend) Stats(context.Context) (engine.Stats, error) {
	r.record("Stats")
	return engine.Stats{}, nil
}

func (r *recordingBackend) Recover(context.Context) (engine.RecoverReport, error) {
	r.record("Recover")
	return engine.RecoverReport{}, nil
}

func (r *recordingBackend) Pause(context.Context, string) error {
	r.record("Pause")
	return nil
}

func (r *recordingBackend) Resume(context.Context, string) error {
	r.record("Resume")
	return nil
}

func (r *recordingBackend) Retry(ctx context.Context, id string) (*engine.Job, error) {
	r.record("Retry")
	return nil, fmt.Errorf("retry %s: %w", id, engine.ErrNotFound)
}

func (r *recordingBackend) Shutdown(context.Context) (engine.ShutdownResult, error) {
	r.record("Shutdown")
	return engine.ShutdownResult{}, nil
}

func (r *recordingBackend) Reload(context.Context) (engine.ReloadResult, error) {
	r.record("Reload")
	return engine.ReloadResult{}, nil
}

// swapBackend lets one server (started once per fuzz process) use a fresh
// fakeBackend for every input.
type swapBackend struct {
	mu sync.Mutex
	f  *fakeBackend
}

func (s *swapBackend) set(f *fakeBackend) {
	s.mu.Lock()
	s.f = f
	s.mu.Unlock()
}

func (s *swapBackend) cur() *fakeBackend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f
}

func (s *swapBackend) Enqueue(ctx context.Context, r engine.EnqueueRequest) (engine.EnqueueResult, error) {
	return s.cur().Enqueue(ctx, r)
}

func (s *swapBackend) Cancel(ctx context.Context, r engine.CancelRequest) ([]*engine.Job, error) {
	return s.cur().Cancel(ctx, r)
}

func (s *swapBackend) Get(ctx context.Context, id string) (*engine.Job, error) {
	return s.cur().Get(ctx, id)
}

func (s *swapBackend) List(ctx context.Context, f engine.ListFilter) (engine.ListPage, error) {
	return s.cur().List(ctx, f)
}

func (s *swapBackend) EnqueueMany(ctx context.Context, r []engine.EnqueueRequest) ([]engine.EnqueueResult, error) {
	return s.cur().EnqueueMany(ctx, r)
}

func (s *swapBackend) EnqueueEach(ctx context.Context, r []engine.EnqueueRequest) ([]engine.EnqueueResult, []error) {
	return s.cur().EnqueueEach(ctx, r)
}

func (s *swapBackend) Wait(ctx context.Context, ids []string) ([]*engine.Job, error) {
	return s.cur().Wait(ctx, ids)
}

func (s *swapBackend) Logs(ctx context.Context, id string, after int64, limit int) ([]engine.LogLine, error) {
	return s.cur().Logs(ctx, id, after, limit)
}

func (s *swapBackend) LogStart(ctx context.Context, id string, after int64, last int) (int64, error) {
	return s.cur().LogStart(ctx, id, after, last)
}

func (s *swapBackend) Subscribe(f engine.EventFilter) *engine.Subscription {
	return s.cur().Subscribe(f)
}

func (s *swapBackend) Stats(ctx context.Context) (engine.Stats, error) {
	return s.cur().Stats(ctx)
}

func (s *swapBackend) Recover(ctx context.Context) (engine.RecoverReport, error) {
	return s.cur().Recover(ctx)
}

func (s *swapBackend) Pause(ctx context.Context, q string) error { return s.cur().Pause(ctx, q) }

func (s *swapBackend) Shutdown(ctx context.Context) (engine.ShutdownResult, error) {
	return s.cur().Shutdown(ctx)
}

func (s *swapBackend) Reload(ctx context.Context) (engine.ReloadResult, error) {
	return s.cur().Reload(ctx)
}

func (s *swapBackend) Resume(ctx context.Context, q string) error { return s.cur().Resume(ctx, q) }

func (s *swapBackend) Retry(ctx context.Context, id string) (*engine.Job, error) {
	return s.cur().Retry(ctx, id)
}

// fuzzServerMaxLine is the line limit of FuzzServerLine's server: small, so
// fuzzed inputs reach it.
const fuzzServerMaxLine = 16 << 10

// FuzzServerLine sends one fuzzed line to a server over a Unix socket,
// either as the first line of a connection or after auth.v1, half-closes,
// and reads everything until the server closes. It checks the replies
// against what parseCall and decodeCall say, that nothing was enqueued
// unless the line was a valid dev.enqueue.v1, and that the server still
// answers admin.stats.v1 on a new connection.
func FuzzServerLine(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.line), s.n, false)
	}
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"`+testToken+`"}}`), uint32(0), true)
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"nope"}}`), uint32(0), true)
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"}`), uint32(0), true)

	sb := &swapBackend{}
	sb.set(newFake())
	// Failed auths are slowed down server-wide; the fuzzer fails one on
	// every other input, so that bucket is off here.
	ts := startServerWith(f, sb, ServerOptions{MaxLineBytes: fuzzServerMaxLine, Limits: RateLimits{AuthFailureRate: -1}})

	f.Fuzz(func(t *testing.T, data []byte, n uint32, preAuth bool) {
		line := expandFuzz(data, n, fuzzServerMaxLine+64)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i] // one line
		}
		fake := newFake()
		ctx := testCtx(t)
		fake.Enqueue(ctx, enqueueReq("q")) // j1, QUEUED
		fake.Enqueue(ctx, engine.EnqueueRequest{Queue: "q", Subject: "s", Command: []string{"true"}})
		fake.addLog("j2", "hello", false)
		fake.setState("j2", engine.StateDone) // j2, DONE with a line of log
		seeded := fake.count()
		sb.set(fake)

		c := dialRaw(t, ts.path)
		if !preAuth {
			c.auth()
		}
		want := expectReplies(line, preAuth)
		c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, werr := c.nc.Write(append(line, '\n'))
		if werr == nil {
			werr = c.nc.(*net.UnixConn).CloseWrite()
		}
		if werr != nil && !want.closes {
			t.Fatalf("write: %v", werr)
		}
		resps, notes := readUntilClosed(t, c)
		c.nc.Close()

		if len(resps) != len(want.replies) {
			t.Fatalf("line %.300q (preAuth %v): %d responses %+v, want %d %+v", line, preAuth, len(resps), resps, len(want.replies), want.replies)
		}
		for i, w := range want.replies {
			checkReply(t, line, resps[i], w)
		}
		if len(notes) > 0 && !want.notify {
			t.Fatalf("line %.300q: %d notifications, want none", line, len(notes))
		}
		for _, nt := range notes {
			if nt.Method != NotifyLogsEvent {
				t.Fatalf("line %.300q: notification %q", line, nt.Method)
			}
		}
		if got := fake.count() - seeded; got < want.enqMin || got > want.enqMax {
			t.Fatalf("line %.300q: %d jobs enqueued, want %d to %d", line, got, want.enqMin, want.enqMax)
		}

		// The server still answers, on a new connection.
		c2 := authedRaw(t, ts.path)
		c2.send(req(1, MethodStats, ""))
		if r := c2.recv(); r.Error != nil || string(r.ID) != "1" {
			t.Fatalf("admin.stats.v1 after %.300q: %+v", line, r)
		}
		c2.nc.Close()
	})
}

// wantReply is one expected response: its id, and an error code (with its
// message when msg is set), auth.v1's result, or for a valid request a
// result or an error with one of the codes in anyOf.
type wantReply struct {
	id       json.RawMessage
	code     int
	msg      string
	valid    bool // a valid request: a result or an error from anyOf
	anyOf    []int
	method   string
	mustJob  bool // the result carries a job (a valid dev.enqueue.v1)
	authedOK bool // the result is auth.v1's
}

type wantExchange struct {
	replies []wantReply
	closes  bool // the server closes before reading everything
	notify  bool // notifications are allowed
	// enqMin and enqMax bound the jobs stored.
	enqMin, enqMax int
}

// expectReplies predicts the server's answer to line from the pure
// functions it uses.
func expectReplies(line []byte, preAuth bool) wantExchange {
	limit := fuzzServerMaxLine
	if preAuth {
		limit = min(authLineMax, fuzzServerMaxLine)
	}
	if len(line) > limit { // the line reader counts a '\r' but not the '\n'
		return wantExchange{closes: true, replies: []wantReply{{id: nullID(), code: CodeLimitExceeded}}}
	}
	if k := len(line); k > 0 && line[k-1] == '\r' {
		line = line[:k-1]
	}
	if isBlank(line) {
		return wantExchange{}
	}
	if preAuth {
		r, id, perr := parseRequest(line)
		ok := perr == nil && r.Method == MethodAuth
		if ok {
			var p AuthParams
			ok = decodeParams(r.Params, &p) == nil && p.Token == testToken
		}
		if ok {
			return wantExchange{replies: []wantReply{{id: id, authedOK: true}}}
		}
		return wantExchange{closes: true, replies: []wantReply{{id: id, code: CodeUnauthorized, msg: "unauthorized"}}}
	}
	if first, _ := firstNonSpace(line); first == '[' {
		return expectBatch(line)
	}
	ex := expectCall(line, false)
	return ex
}

// expectBatch predicts the answer to a batch line: the answers of its
// entries, in order, or one error for the batch as a whole.
func expectBatch(line []byte) wantExchange {
	var entries []json.RawMessage
	if !utf8.Valid(line) || json.Unmarshal(line, &entries) != nil {
		return wantExchange{replies: []wantReply{{id: nullID(), code: CodeParseError}}}
	}
	switch {
	case len(entries) == 0:
		return wantExchange{replies: []wantReply{{id: nullID(), code: CodeInvalidRequest}}}
	case len(entries) > MaxBatch:
		return wantExchange{replies: []wantReply{{id: nullID(), code: CodeLimitExceeded}}}
	}
	var ex wantExchange
	for _, e := range entries {
		one := expectCall(e, true)
		ex.replies = append(ex.replies, one.replies...)
		ex.notify = ex.notify || one.notify
		ex.enqMin += one.enqMin
		ex.enqMax += one.enqMax
	}
	return ex
}

// expectCall predicts the answer to one request object of an
// authenticated connection. inBatch: other entries of its batch may
// enqueue the jobs an after list names, or not yet.
func expectCall(line []byte, inBatch bool) wantExchange {
	r, id, perr := parseCall(line)
	if perr != nil {
		if r != nil && r.notification() {
			return wantExchange{}
		}
		return wantExchange{replies: []wantReply{{id: id, code: perr.Code, msg: perr.Message}}}
	}
	var ex wantExchange
	reply := func(w wantReply) {
		if !r.notification() {
			ex.replies = []wantReply{w}
		}
	}
	params, err := decodeCall(r)
	if err != nil {
		e := toRPCError(err, false)
		reply(wantReply{id: id, code: e.Code, msg: e.Message})
		return ex
	}
	w := wantReply{id: id, valid: true, method: r.Method}
	switch p := params.(type) {
	case *engine.EnqueueRequest:
		switch knownAfter(p.After) {
		case yes:
			w.mustJob = true
			ex.enqMin, ex.enqMax = 1, 1
		case no:
			if !inBatch {
				reply(wantReply{id: id, code: CodeInvalidParams})
				return ex
			}
			fallthrough
		default:
			w.anyOf = []int{CodeInvalidParams}
			ex.enqMax = 1
		}
	case *EnqueueManyParams:
		w.anyOf = []int{CodeInvalidParams}
		all := yes
		for _, j := range p.Jobs {
			all = min(all, knownAfter(j.After))
		}
		if all == yes {
			ex.enqMin = len(p.Jobs)
		}
		if all != no || inBatch {
			ex.enqMax = len(p.Jobs)
		}
	case *engine.CancelRequest:
		w.anyOf = []int{CodeNotFound, CodeConflict}
	case *GetParams:
		w.anyOf = []int{CodeNotFound}
	case *WaitParams:
		w.anyOf = []int{CodeNotFound, CodeInternal}
	case *TailParams:
		w.anyOf = []int{CodeNotFound, CodeInternal}
		ex.notify = true
	case *RetryParams: // docs: a job in another state is -32602
		w.anyOf = []int{CodeNotFound, CodeInvalidParams}
	case *ListParams:
		w.anyOf = []int{CodeInvalidParams} // a cursor the backend did not make
	}
	reply(w)
	return ex
}

// tri is a yes, no or maybe answer, ordered so that min combines them.
type tri int

const (
	no tri = iota
	maybe
	yes
)

// knownAfter says whether every id of an after list names a job the
// fuzzer's fake holds before the request: j1 and j2. Other ids of the
// j<n> form may be enqueued by an earlier entry of the same batch.
func knownAfter(after []string) tri {
	res := yes
	for _, id := range after {
		if id == "j1" || id == "j2" {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(id, "j")); err == nil && n > 2 && strings.HasPrefix(id, "j") {
			res = min(res, maybe)
			continue
		}
		res = no
	}
	return res
}

func checkReply(t *testing.T, line []byte, got testResp, w wantReply) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("line %.300q: "+format, append([]any{line}, args...)...)
	}
	if w.id != nil && !sameJSON(got.ID, w.id) {
		fail("response id %s, want %s", got.ID, w.id)
	}
	switch {
	case w.code != 0:
		if got.Error == nil || got.Error.Code != w.code || (w.msg != "" && got.Error.Message != w.msg) {
			fail("got %+v (result %s), want error %d %q", got.Error, got.Result, w.code, w.msg)
		}
	case w.authedOK:
		var ar AuthResult
		if got.Error != nil || json.Unmarshal(got.Result, &ar) != nil || !ar.OK {
			fail("auth: got %+v %s", got.Error, got.Result)
		}
	case w.valid:
		if got.Error != nil {
			allowed := false
			for _, c := range w.anyOf {
				allowed = allowed || c == got.Error.Code
			}
			if got.Error.Code == CodeInternal && got.Error.Message != "cancelled: the connection is closing" {
				allowed = false // only the open-ended methods, cancelled by the half-close
			}
			if !allowed {
				fail("valid %s request answered %d %q", w.method, got.Error.Code, got.Error.Message)
			}
			return
		}
		if got.Result == nil {
			fail("neither result nor error")
		}
		if w.mustJob {
			var res struct {
				Job *engine.Job `json:"job"`
			}
			if err := json.Unmarshal(got.Result, &res); err != nil || res.Job == nil || res.Job.ID == "" {
				fail("enqueue result without a job: %s", got.Result)
			}
		}
	}
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return false
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}

// readUntilClosed reads lines until the server closes the connection, and
// sorts them into responses and notifications. A read that times out fails
// the test: after a half-close every request must end.
func readUntilClosed(t *testing.T, c *rawConn) (resps, notes []testResp) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server did not close the connection within %s", ioTimeout)
			}
			if len(line) > 0 {
				t.Fatalf("partial line from the server: %q", line)
			}
			return resps, notes
		}
		// A batch's answer is an array of responses, in the order of the
		// requests (which stq keeps, though JSON-RPC does not promise it).
		var batch []json.RawMessage
		items := []json.RawMessage{line}
		if json.Unmarshal(line, &batch) == nil {
			if len(batch) == 0 {
				t.Fatalf("an empty array from the server")
			}
			items = batch
		}
		for _, item := range items {
			var r testResp
			if err := json.Unmarshal(item, &r); err != nil || r.JSONRPC != "2.0" {
				t.Fatalf("bad line from the server %q: %v", line, err)
			}
			if r.Method != "" && r.ID == nil {
				if len(items) > 1 || batch != nil {
					t.Fatalf("a notification inside a batch answer: %q", line)
				}
				notes = append(notes, r)
				continue
			}
			if (r.Error == nil) == (r.Result == nil) {
				t.Fatalf("response needs exactly one of result and error: %q", line)
			}
			resps = append(resps, r)
		}
	}
}

// count is the number of jobs the fake holds.
func (f *fakeBackend) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}
