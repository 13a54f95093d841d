package ipc

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

// recvBatch reads one line that must be an array of responses.
func (c *rawConn) recvBatch() []testResp {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var out []testResp
	if err := json.Unmarshal(line, &out); err != nil {
		c.t.Fatalf("%q is not an array of responses: %v", line, err)
	}
	return out
}

func TestBatchEnqueuesShareOneStoreCall(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := authedRaw(t, ts.path)
	c.send(`[` + req(1, MethodEnqueue, `{"queue":"a"}`) + `,` + req(2, MethodStats, "") + `,` +
		req(3, MethodEnqueue, `{"queue":"b","after":["nope"]}`) + `,` + req(4, MethodEnqueue, `{"queue":"c","colour":1}`) + `,` +
		`{"jsonrpc":"2.0","method":"dev.enqueue.v1","params":{"queue":"d"}}` + `,` + req(5, MethodEnqueue, `{"queue":"e"}`) + `]`)
	got := c.recvBatch()
	ids := make([]string, len(got))
	for i, r := range got {
		ids[i] = string(r.ID)
	}
	if !slices.Equal(ids, []string{"1", "2", "3", "4", "5"}) {
		t.Fatalf("response ids %v, want 1..5 (the notification unanswered)", ids)
	}
	for i, code := range []int{0, 0, CodeInvalidParams, CodeInvalidParams, 0} {
		if (got[i].Error == nil) != (code == 0) || (got[i].Error != nil && got[i].Error.Code != code) {
			t.Errorf("response %s: %+v, want code %d", got[i].ID, got[i].Error, code)
		}
	}
	ts.fake.mu.Lock()
	calls := slices.Clone(ts.fake.eachCalls)
	ts.fake.mu.Unlock()
	// The entry with unknown params never reaches the backend; the other
	// four (the notification among them) go in one call.
	if !slices.Equal(calls, []int{4}) {
		t.Errorf("EnqueueEach calls %v, want one call of 4", calls)
	}
	if n := ts.fake.count(); n != 3 {
		t.Errorf("%d jobs stored, want 3 (a, d, e)", n)
	}
}

func TestBatchEnqueuesAreRateLimitedOneByOne(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{Limits: RateLimits{ConnEnqueueRate: 1, ConnEnqueueBurst: 2}})
	c := authedRaw(t, ts.path)
	c.send(`[` + req(1, MethodEnqueue, "") + `,` + req(2, MethodEnqueue, "") + `,` + req(3, MethodEnqueue, "") + `]`)
	got := c.recvBatch()
	limited := 0
	for _, r := range got {
		if r.Error != nil && r.Error.Code == CodeRateLimited {
			limited++
		}
	}
	if len(got) != 3 || limited != 1 || ts.fake.count() != 2 {
		t.Fatalf("%d responses, %d rate limited, %d stored; want 3, 1, 2", len(got), limited, ts.fake.count())
	}
}

func TestEnqueueManyTakesItsTokensAtOnce(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{Limits: RateLimits{ConnEnqueueRate: 1, ConnEnqueueBurst: 3}})
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	four := make([]engine.EnqueueRequest, 4)
	_, err := cl.EnqueueMany(ctx, four)
	if !errors.Is(err, ErrLimitExceeded) || !strings.Contains(err.Error(), "burst of 3") {
		t.Fatalf("a batch over the burst: %v, want a limit error naming the burst", err)
	}
	if _, err := cl.EnqueueMany(ctx, four[:3]); err != nil {
		t.Fatal(err)
	}
	_, err = cl.EnqueueMany(ctx, four[:2])
	if d, ok := RetryAfter(err); !ok || d <= 0 || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("an empty bucket: %v, want rate limited with a wait", err)
	}
	if n := ts.fake.count(); n != 3 {
		t.Fatalf("%d stored, want 3: a refused batch stores nothing", n)
	}
}

func TestClientErrorsMatchSentinels(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	if _, err := cl.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		t.Errorf("get unknown: %v", err)
	}
	if _, err := cl.List(ctx, ListParams{Limit: -1}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("bad limit: %v", err)
	}
	j, _ := cl.Enqueue(ctx, engine.EnqueueRequest{Queue: "q"})
	ts.fake.setState(j.Job.ID, engine.StateDone)
	if _, err := cl.Cancel(ctx, engine.CancelRequest{ID: j.Job.ID}); !errors.Is(err, ErrConflict) {
		t.Errorf("cancel finished: %v", err)
	}
	_, err := cl.EnqueueMany(ctx, []engine.EnqueueRequest{{}, {After: []string{"nope"}}})
	if i, ok := BatchIndex(err); !ok || i != 1 || !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("refused batch: index %d %v, err %v", i, ok, err)
	}
	if _, ok := BatchIndex(errors.New("other")); ok {
		t.Error("BatchIndex of a plain error")
	}
	bad, err := Dial(ctx, ts.path, "wrong")
	if err == nil {
		bad.Close()
	}
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("wrong token: %v", err)
	}
}

func TestListAllWalksEveryPage(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	var want []string
	for range 23 {
		r, err := cl.Enqueue(ctx, engine.EnqueueRequest{Queue: "q"})
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{r.Job.ID}, want...)
	}
	var got []string
	for j, err := range cl.ListAll(ctx, ListParams{Queue: "q", Limit: 5}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, j.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListAll gave %v, want %v", got, want)
	}
	// Stopping early is fine and leaves the client usable.
	for range cl.ListAll(ctx, ListParams{Queue: "q", Limit: 5}) {
		break
	}
	if _, err := cl.Stats(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTailFollowEndsWithTheJobAndLeavesTheClientUsable(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	r, _ := cl.Enqueue(ctx, engine.EnqueueRequest{Queue: "q"})
	id := r.Job.ID
	ts.fake.addLog(id, "stored", false)
	go func() {
		poll(func() bool { return ts.fake.subscribers() > 0 })
		ts.fake.addLog(id, "live", true)
		ts.fake.setState(id, engine.StateDone)
	}()
	var texts []string
	var last engine.Event
	for ev, err := range cl.Tail(ctx, TailParams{JobID: id, Follow: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == engine.EventLog {
			texts = append(texts, ev.Line.Text)
		}
		last = ev
	}
	if !slices.Equal(texts, []string{"stored", "live"}) || last.Kind != engine.EventJob || last.Job.State != engine.StateDone {
		t.Fatalf("lines %v, last event %+v", texts, last)
	}
	// A job that ended before the follow began still ends the sequence
	// with its terminal state.
	var events []engine.Event
	for ev, err := range cl.Tail(ctx, TailParams{JobID: id, Follow: true}) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	if n := len(events); n == 0 || events[n-1].Kind != engine.EventJob || events[n-1].Job.State != engine.StateDone {
		t.Fatalf("follow of an ended job: %+v", events)
	}
	// Stored lines, without follow.
	var stored []string
	for ev, err := range cl.Tail(ctx, TailParams{JobID: id}) {
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, ev.Line.Text)
	}
	if !slices.Equal(stored, []string{"stored", "live"}) {
		t.Fatalf("stored lines %v", stored)
	}
	// Breaking out of a follow closes only its own connection.
	r2, _ := cl.Enqueue(ctx, engine.EnqueueRequest{Queue: "q"})
	ts.fake.addLog(r2.Job.ID, "one", false)
	for range cl.Tail(ctx, TailParams{JobID: r2.Job.ID, Follow: true}) {
		break
	}
	if _, err := cl.Get(ctx, r2.Job.ID); err != nil {
		t.Fatalf("client unusable after an early break: %v", err)
	}
}

// TestEnqueueManyBriefReply holds reply "brief" to its promise: each
// entry names its job's id, state and generation (and what it
// superseded) and nothing else, and agrees with the job as stored.
func TestEnqueueManyBriefReply(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodEnqueueMany, `{"reply":"brief","jobs":[{"subject":"a.go"},{"subject":"a.go"},{"queue":"q"}]}`))
	r := c.recv()
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	var raw struct {
		Results []map[string]json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(r.Result, &raw); err != nil || len(raw.Results) != 3 {
		t.Fatalf("result %s: %v", r.Result, err)
	}
	for i, e := range raw.Results {
		want := []string{"generation", "id", "state"}
		if i == 1 {
			want = []string{"generation", "id", "state", "superseded"}
		}
		if got := slices.Sorted(maps.Keys(e)); !slices.Equal(got, want) {
			t.Errorf("results[%d] has members %v, want %v", i, got, want)
		}
	}
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	brief, err := cl.EnqueueManyBrief(ctx, map[string]string{"A": "1"}, []engine.EnqueueRequest{{Subject: "b.go"}, {Subject: "b.go"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(brief) != 2 || !slices.Equal(brief[1].Superseded, []string{brief[0].ID}) {
		t.Fatalf("brief results %+v: want the second to supersede the first", brief)
	}
	// The first was QUEUED when stored and SUPERSEDED by the second.
	for i, want := range []engine.State{engine.StateSuperseded, engine.StateQueued} {
		j, err := cl.Get(ctx, brief[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if brief[i].State != engine.StateQueued || j.State != want || j.Generation != brief[i].Generation {
			t.Errorf("brief %+v, stored state %s generation %d", brief[i], j.State, j.Generation)
		}
	}
}

func TestEnqueueManyRefusesAnUnknownReply(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodEnqueueMany, `{"reply":"ids","jobs":[{}]}`))
	if e := c.recvErr(CodeInvalidParams); !strings.Contains(e.Message, `reply must be "jobs" or "brief"`) {
		t.Errorf("message %q", e.Message)
	}
	c.send(req(2, MethodEnqueueMany, `{"reply":"jobs","jobs":[{}]}`))
	var res EnqueueManyResult
	if r := c.recv(); r.Error != nil || json.Unmarshal(r.Result, &res) != nil || len(res.Results) != 1 || res.Results[0].Job == nil {
		t.Fatalf("reply jobs: %+v", r)
	}
	if n := ts.fake.count(); n != 1 {
		t.Errorf("%d jobs stored, want 1: the refused call stores nothing", n)
	}
}
