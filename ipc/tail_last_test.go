package ipc

import (
	"fmt"
	"testing"

	"stq/engine"
)

func TestTailLastStartsWithTheNewestLines(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	ctx := testCtx(t)
	f := ts.fake
	f.Enqueue(ctx, enqueueReq("q"))
	const stored = MaxTailLines + 50
	for i := range stored {
		f.addLog("j1", fmt.Sprint("l", i+1), false)
	}
	f.setState("j1", engine.StateDone)
	c := dialClient(t, ts.path)
	seqs := func(p TailParams) (first, last int64, n int) {
		t.Helper()
		for ev, err := range c.Tail(ctx, p) {
			if err != nil {
				t.Fatalf("tail %+v: %v", p, err)
			}
			if ev.Kind != engine.EventLog {
				continue
			}
			if n == 0 {
				first = ev.Line.Seq
			} else if ev.Line.Seq != last+1 {
				t.Fatalf("tail %+v: seq %d after %d", p, ev.Line.Seq, last)
			}
			last = ev.Line.Seq
			n++
		}
		return first, last, n
	}
	last := func(n int) *int { return &n }
	for _, tc := range []struct {
		p           TailParams
		first, stop int64
		n           int
	}{
		{TailParams{JobID: "j1", Last: last(10)}, stored - 9, stored, 10},
		{TailParams{JobID: "j1", Last: last(0)}, 0, 0, 0},
		// More than a page: the first page starts at the right line and
		// the next pages carry on from it.
		{TailParams{JobID: "j1", Last: last(MaxTailLines + 20)}, 31, stored, MaxTailLines + 20},
		{TailParams{JobID: "j1", Last: last(stored + 5)}, 1, stored, stored},
		{TailParams{JobID: "j1", AfterSeq: stored - 3, Last: last(10)}, stored - 2, stored, 3},
		{TailParams{JobID: "j1", Follow: true, Last: last(10)}, stored - 9, stored, 10},
		{TailParams{JobID: "j1", Follow: true, Last: last(0)}, 0, 0, 0},
	} {
		first, stop, n := seqs(tc.p)
		if first != tc.first || stop != tc.stop || n != tc.n {
			t.Errorf("tail %+v (last %d): lines %d..%d (%d), want %d..%d (%d)", tc.p, *tc.p.Last, first, stop, n, tc.first, tc.stop, tc.n)
		}
	}
	for _, p := range []TailParams{
		{JobID: "j1", Last: last(-1)},
		{Follow: true, Last: last(5)},
	} {
		var res LinesResult
		if err := c.Call(ctx, MethodTail, &p, &res); rpcCode(err) != CodeInvalidParams {
			t.Errorf("tail %+v: %v, want invalid params", p, err)
		}
	}
	var res LinesResult
	if err := c.Call(ctx, MethodTail, &TailParams{JobID: "nope", Last: last(1)}, &res); rpcCode(err) != CodeNotFound {
		t.Errorf("tail of an unknown job: %v, want not found", err)
	}
}
