package ipc

import (
	"testing"

	"stq/engine"
)

// sharedFake is a backend whose store other daemons share: what they do
// to a job reaches the store, never the local subscriptions.
type sharedFake struct{ *fakeBackend }

func (sharedFake) Shared() bool { return true }

// endElsewhere stores a job's end without any event, as another daemon's
// completion would.
func (f *fakeBackend) endElsewhere(id string, st engine.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[id].State = st
	f.changedLocked()
}

// A follow on a shared store of a job that another daemon runs: its lines
// and its end arrive only in the store, and the follow reads them there.
func TestTailFollowsAJobRunningUnderAnotherDaemon(t *testing.T) {
	f := newFake()
	ts := startServerWith(t, sharedFake{f}, ServerOptions{})
	ctx := testCtx(t)
	f.Enqueue(ctx, enqueueReq("q"))
	f.endElsewhere("j1", engine.StateRunning)
	f.addLog("j1", "one", false)
	c := dialClient(t, ts.path)

	tc := &tailCollector{}
	tc.onLine = func(ev engine.Event) {
		if ev.Kind == engine.EventLog && ev.Line.Seq == 1 {
			go func() {
				f.addLog("j1", "two", false)
				f.endElsewhere("j1", engine.StateDone)
			}()
		}
	}
	var res TailResult
	if err := c.Stream(ctx, MethodTail, &TailParams{JobID: "j1", Follow: true}, tc.notify, &res); err != nil {
		t.Fatal(err)
	}
	if got := tc.lines(); got != "1:one 2:two" {
		t.Fatalf("lines %q", got)
	}
	if res.Job == nil || res.Job.State != engine.StateDone {
		t.Fatalf("final result %+v", res)
	}
	last := tc.events[len(tc.events)-1]
	if last.Kind != engine.EventJob || last.Job.State != engine.StateDone {
		t.Fatalf("last event %+v", last)
	}
}
